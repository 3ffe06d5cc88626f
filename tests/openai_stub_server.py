"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI chat-completions protocol for tests.

Tests import it (no conftest) and script how it misbehaves::

    with StubServer(Script(reply="Baikonur is leased [09ASTANA664 ¶3].")) as server:
        config = LLMConfig(url=server.url, model="stub")

``server.requests`` records every JSON body received, so a test can check what the client sent. With
``Script(behaviour="proxy", upstream=url)`` it records in front of a real server (tests/test_real_llm.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = ["Behaviour", "Script", "StubServer", "closed_port_url"]

Behaviour = Literal["reply", "hang", "stall", "drip", "error", "stream_error", "no_stream", "malformed", "proxy"]


@dataclass(frozen=True, slots=True)
class Script:
    """What the server does with each chat request.

    ``reply``: answer with ``text`` (SSE in ``chunk`` sized deltas when the client asks to stream), finishing
    with ``finish`` ("length" plays a reply cut by the token limit).
    ``hang``: say nothing for ``hang_s`` seconds, then close. ``stall``: stream the first delta, then hang.
    ``drip``: stream ``text``, then the word " More" every ``interval_s`` seconds, for ``hang_s`` seconds.
    ``stream_error``: stream the first delta, then an SSE error event, as Ollama does when a model crashes.
    ``error``: answer HTTP ``status`` with an OpenAI-style error body. ``no_stream``: ignore ``stream``
    and always answer one JSON completion, as some servers do. ``malformed``: HTTP 200 that is not JSON.
    ``proxy``: pass every request to ``upstream`` (a base URL ending in /v1) and its answer back, as it streams.
    ``context_tokens``, when set, refuses any chat whose messages (a token per 4 characters) and ``max_tokens``
    pass it, with HTTP 400 and llama-cpp-python's words, whatever the behaviour.
    """

    text: str = "The cables do not say."
    behaviour: Behaviour = "reply"
    chunk: int = 8
    status: int = 500
    hang_s: float = 30.0
    models: tuple[str, ...] = ("stub-model",)
    finish: str = "stop"
    interval_s: float = 0.5
    upstream: str = ""
    context_tokens: int = 0


class StubServer:
    """Context manager: serves ``script`` on a free port until the block ends."""

    def __init__(self, script: Script = Script()) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        # Set on exit so a handler asked to hang returns at once and the server can shut down.
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll makes shutdown on exit quick; the default half second adds up over a test run.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A base URL where nothing listens: the port was free a moment ago and is closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _completion(text: str, model: str, finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def _handler_for(server: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

        def do_GET(self) -> None:
            if server.script.behaviour == "proxy":
                self._forward(None)
                return
            if self.path.rstrip("/") != "/v1/models":
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in server.script.models]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            body = json.loads(raw or b"{}")
            server.requests.append(body)
            if server.script.behaviour == "proxy":
                try:
                    self._forward(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a deadline, or it had the finish reason)
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            script = server.script
            model = str(body.get("model", "stub-model"))
            prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", ())) // 4
            wanted = prompt + int(body.get("max_tokens") or 0)
            try:
                if script.context_tokens and wanted > script.context_tokens:
                    self._json(400, {"error": {
                        "message": f"This model's maximum context length is {script.context_tokens} tokens. However, "
                                   f"you requested {wanted} tokens ({prompt} in the messages, {body.get('max_tokens')} "
                                   "in the completion). Please reduce the length of the messages or completion.",
                        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
                elif script.behaviour == "hang":
                    server._release.wait(script.hang_s)
                elif script.behaviour == "error":
                    self._json(script.status, {"error": {"message": "stub failure: out of memory",
                                                         "type": "server_error", "code": None}})
                elif script.behaviour == "malformed":
                    self._send(200, "application/json", b"<html>not json</html>")
                elif body.get("stream") and script.behaviour != "no_stream":
                    self._stream(script, model)
                else:
                    self._json(200, _completion(script.text, model, script.finish))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout), which is what the test wanted

        def _stream(self, script: Script, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(_chunk(model, {"role": "assistant", "content": ""}))
            pieces = [script.text[i:i + script.chunk] for i in range(0, len(script.text), script.chunk)]
            for n, piece in enumerate(pieces):
                self.wfile.write(_chunk(model, {"content": piece}))
                self.wfile.flush()
                if script.behaviour == "stall" and n == 0:
                    server._release.wait(script.hang_s)
                    return
                if script.behaviour == "stream_error" and n == 0:
                    error = {"error": {"message": "model runner has unexpectedly stopped", "type": "api_error"}}
                    self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                    return
            ends = time.monotonic() + script.hang_s
            while (script.behaviour == "drip" and time.monotonic() < ends
                   and not server._release.wait(script.interval_s)):
                self.wfile.write(_chunk(model, {"content": " More"}))
                self.wfile.flush()
            self.wfile.write(_chunk(model, {}, finish=script.finish))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _forward(self, raw: bytes | None) -> None:
            """Pass the request to the upstream server and copy its answer back line by line (SSE included)."""
            url = server.script.upstream.rstrip("/") + self.path.removeprefix("/v1")
            request = urllib.request.Request(url, data=raw, method="POST" if raw is not None else "GET",
                                             headers={"Content-Type": "application/json"})
            try:
                upstream = urllib.request.urlopen(request, timeout=600)
            except urllib.error.HTTPError as error:
                upstream = error
            with upstream:
                self.send_response(upstream.status)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.end_headers()
                for line in upstream:
                    self.wfile.write(line)
                    self.wfile.flush()

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._send(status, "application/json", json.dumps(payload).encode())

        def _send(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
