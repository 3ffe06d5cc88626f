"""Ask any OpenAI-compatible chat server (Ollama, llama.cpp's server, llama-cpp-python, vLLM, OpenAI).

For LLM mode, the Assistant does (rag.reply)::

    config = LLMConfig.from_env()                       # LLMError when CABLECHAT_LLM_URL is not set
    prompt = build_prompt(question, hits, context_tokens=config.context_tokens)   # rag.prompt
    for delta in stream_chat(config, prompt.messages):  # LLMError may come from any step of the loop
        reply += delta.text                              # show it as it grows
    delta.finish_reason                                  # "stop", "length" (token limit) or "deadline"

``openai`` is imported only inside the functions that talk to a server, so ``import rag`` stays instant.
Every failure is an :class:`~rag.errors.LLMError` naming the URL, what happened and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rag.errors import LLMContextError, LLMError

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEADLINE",
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "Delta",
    "LLMConfig",
    "check_server",
    "complete_chat",
    "stream_chat",
]

DEFAULT_URL = "http://127.0.0.1:11434/v1"  # Ollama's OpenAI-compatible API, the example in messages
DEFAULT_MODEL = "llama3.2"
DEADLINE = "deadline"
"""The ``finish_reason`` of a reply that :attr:`LLMConfig.deadline` cut off (servers say "stop" or "length")."""

# The openai client refuses to start without a key, and local servers ignore whatever it is.
_PLACEHOLDER_KEY = "no-key-needed"
_NOT_CONFIGURED = ("LLM mode is not configured: set CABLECHAT_LLM_URL to an OpenAI-compatible server's base URL "
                   f"(Ollama: {DEFAULT_URL}; llama-cpp-python: http://127.0.0.1:8080/v1) and CABLECHAT_LLM_MODEL "
                   "to the model it serves (README, \"LLM mode\"), or use the extractive mode")
# (field, variable, type, what a good value looks like)
_NUMBERS = (("read_timeout", "CABLECHAT_LLM_TIMEOUT", float, "seconds, e.g. 120"),
            ("deadline", "CABLECHAT_LLM_DEADLINE", float, "seconds, e.g. 300"),
            ("context_tokens", "CABLECHAT_LLM_CONTEXT", int, "tokens, e.g. 8192"))


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Where the chat server is, how long to wait for it, and how much it can read and write.

    ``read_timeout`` is the longest silence allowed between bytes (before the first token, between tokens);
    ``deadline`` the longest a whole reply may take, after which the reply so far is used. ``context_tokens``
    is the server's context size, which the prompt is fitted to; ``max_tokens`` caps the reply, enough for the
    few sentences the prompt asks for. ``max_retries`` is 0 because a person is waiting.
    """

    url: str
    model: str = DEFAULT_MODEL
    key: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    deadline: float = 180.0
    context_tokens: int = 4096
    max_retries: int = 0
    temperature: float = 0.1
    max_tokens: int = 300

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise LLMError(f"LLM URL {self.url!r} is not an http(s) URL; set CABLECHAT_LLM_URL to the server's "
                           f"OpenAI-compatible base URL, e.g. {DEFAULT_URL}")
        if not self.model:
            raise LLMError(f"no LLM model named for {self.url}; set CABLECHAT_LLM_MODEL, e.g. {DEFAULT_MODEL}")
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if not 0 < getattr(self, name) < math.inf:
                raise LLMError(f"LLM {name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if not self.context_tokens > self.max_tokens > 0:
            raise LLMError(f"the LLM context of {self.context_tokens} tokens must be larger than the "
                           f"{self.max_tokens} kept for the reply; set CABLECHAT_LLM_CONTEXT to the server's "
                           "context size, e.g. 4096")

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """Read ``CABLECHAT_LLM_URL`` (required), ``_MODEL``, ``_KEY``, ``_TIMEOUT`` (silence, seconds),
        ``_DEADLINE`` (whole reply, seconds) and ``_CONTEXT`` (the server's context size, tokens).

        Keyword ``overrides`` (any field) win over the environment; ``None`` means "not given", so a CLI can
        pass its options through as they are. Raises LLMError when no URL is set or a number is not one.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var in (("url", "CABLECHAT_LLM_URL"), ("model", "CABLECHAT_LLM_MODEL"),
                           ("key", "CABLECHAT_LLM_KEY")):
            if env.get(var, "").strip():
                values[field] = env[var].strip()
        for field, var, kind, example in _NUMBERS:
            if env.get(var, "").strip():
                try:
                    values[field] = kind(env[var])
                except ValueError:
                    raise LLMError(f"{var}={env[var]!r} is not a number of {example}; set it to one or unset "
                                   f"it for the default {cls.__dataclass_fields__[field].default}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "url" not in values:
            raise LLMError(_NOT_CONFIGURED)
        values["url"] = values["url"].rstrip("/")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed reply; the last one has a ``finish_reason`` ("stop", "length" or :data:`DEADLINE`)."""

    text: str
    finish_reason: str | None = None


# -- talking to the server ---------------------------------------------------------------------------------


def _client(config: LLMConfig, read_timeout: float | None) -> openai.OpenAI:
    import openai

    return openai.OpenAI(
        base_url=config.url,
        api_key=config.key or _PLACEHOLDER_KEY,
        timeout=openai.Timeout(read_timeout or config.read_timeout, connect=config.connect_timeout),
        max_retries=config.max_retries,
    )


def _http_library() -> ModuleType | None:
    """The HTTP library under openai: httpx, or httpx2 from openai 3 on (the one whose Timeout it re-exports)."""
    import openai

    return next((module for name in ("httpx2", "httpx")
                 if getattr(module := sys.modules.get(name), "Timeout", None) is openai.Timeout), None)


def _failures() -> tuple[type[Exception], ...]:
    """What a call may raise that means the server failed, not this code."""
    import openai

    # A stream that breaks mid-way can let the HTTP library's own error through instead of openai's.
    http = _http_library()
    transport = (http.HTTPError,) if http else ()
    return openai.OpenAIError, ValueError, *transport  # ValueError: a body that is not JSON


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else body
    return " ".join(str(message or exc.message).split())[:300].rstrip(". ")


# How servers say a prompt is longer than their context: OpenAI, vLLM and llama-cpp-python ("This model's maximum
# context length is 2048 tokens"), llama-cpp-python's own wording, llama.cpp's server ("exceeds the available
# context size", with n_ctx in the body).
_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)|exceed context window of (\d+)", re.IGNORECASE)
_CONTEXT_WORDS = re.compile(r"context[ _](?:length|window|size)", re.IGNORECASE)


def _context_error(config: LLMConfig, exc: openai.APIStatusError) -> LLMContextError | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = _detail(exc)
    said = _CONTEXT_LIMIT.search(detail)
    limit = int(said.group(1) or said.group(2)) if said else body.get("n_ctx")
    if not (said or _CONTEXT_WORDS.search(detail) or body.get("code") == "context_length_exceeded"):
        return None
    size = f"its context of {limit} tokens" if isinstance(limit, int) else "its context"
    return LLMContextError(
        f"LLM server at {config.url} answered HTTP {exc.status_code}: {detail}. The prompt does not fit {size}. "
        "To fix: raise the server's context size (llama-cpp-python: --n_ctx 4096; llama.cpp: --ctx-size 4096; "
        f"Ollama: the num_ctx parameter) and set CABLECHAT_LLM_CONTEXT to it (now {config.context_tokens}).",
        url=config.url, limit=limit if isinstance(limit, int) else None)


def _error(config: LLMConfig, exc: Exception, read_timeout: float | None) -> LLMError:
    """Turn whatever the client raised into an LLMError that says what happened and what to do."""
    import openai

    where = f"LLM server at {config.url}"
    http = _http_library()
    if isinstance(exc, openai.APITimeoutError) or (http and isinstance(exc, http.TimeoutException)):
        waited = read_timeout or config.read_timeout
        return LLMError(f"{where} sent nothing for {waited:g} s (model {config.model!r}). A local model may still "
                        "be loading or be too slow for this prompt: ask again, use a smaller model, or allow "
                        "longer with CABLECHAT_LLM_TIMEOUT (seconds).")
    if isinstance(exc, openai.APIConnectionError) or (http and isinstance(exc, http.TransportError)):
        cause = exc.__cause__ or exc
        return LLMError(f"cannot reach {where} ({cause}). Start the server (Ollama: `ollama serve`; llama.cpp: "
                        "`llama-server --port 8080`) or set CABLECHAT_LLM_URL to where it listens.")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 400 and (too_long := _context_error(config, exc)):
            return too_long
        if status in (401, 403):
            fix = "set CABLECHAT_LLM_KEY to a key this server accepts"
        elif status == 404:
            fix = (f"check that it serves model {config.model!r} (Ollama: `ollama pull {config.model}`) or set "
                   "CABLECHAT_LLM_MODEL, and that CABLECHAT_LLM_URL ends in /v1")
        elif status == 429:
            fix = "the server is limiting requests; wait a moment and ask again"
        elif status >= 500:
            fix = "the server failed on its side; its log says why (often memory: try a smaller model)"
        else:
            fix = "the server refused the request; its log says why"
        return LLMError(f"{where} answered HTTP {status}: {_detail(exc)}. To fix: {fix}.")
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIResponseValidationError):
        return LLMError(f"{where} broke off its reply with an error: {exc.message}. Its log says why; ask again, "
                        "or try a smaller model if it ran out of memory.")
    return LLMError(f"{where} sent a reply that is not an OpenAI chat completion ({type(exc).__name__}: {exc}). "
                    "Check that CABLECHAT_LLM_URL points at an OpenAI-compatible API, usually ending in /v1.")


def _request(config: LLMConfig, messages: Sequence[Mapping[str, str]], *, stream: bool) -> dict[str, Any]:
    return {"model": config.model, "messages": list(messages), "temperature": config.temperature,
            "max_tokens": config.max_tokens, "stream": stream}


def _complete(config: LLMConfig, messages: Sequence[Mapping[str, str]], timeout: float | None) -> Delta:
    try:
        response = _client(config, timeout).chat.completions.create(**_request(config, messages, stream=False))
        choices = getattr(response, "choices", None)
        content = choices[0].message.content if choices else None
    except _failures() as exc:
        raise _error(config, exc, timeout) from exc
    if not isinstance(content, str):
        raise LLMError(f"LLM server at {config.url} answered without any message text "
                       f"(got {str(response)[:200]!r}). Check that CABLECHAT_LLM_URL points at an OpenAI-compatible "
                       "API and that the model is a chat model.")
    return Delta(content, getattr(choices[0], "finish_reason", None) or "stop")


def complete_chat(config: LLMConfig, messages: Sequence[Mapping[str, str]], *, timeout: float | None = None) -> str:
    """The whole reply in one piece, without streaming. ``timeout`` overrides ``config.read_timeout``."""
    return _complete(config, messages, timeout).text


def _pump(config: LLMConfig, messages: Sequence[Mapping[str, str]], out: queue.SimpleQueue[Delta | LLMError],
          stop: threading.Event) -> None:
    """Read the server's stream into ``out``: deltas, then one with its finish reason, or an LLMError."""
    events, finish = 0, None
    try:
        with _client(config, None).chat.completions.create(**_request(config, messages, stream=True)) as stream:
            for chunk in stream:
                events += 1
                choices = getattr(chunk, "choices", None) or ()
                delta = getattr(choices[0], "delta", None) if choices else None
                finish = getattr(choices[0], "finish_reason", None) if choices else None
                if delta is not None and delta.content:
                    out.put(Delta(delta.content))
                if finish or stop.is_set():
                    break  # leaving the block closes the connection, which stops the server generating
        out.put(Delta("", finish or "stop") if events else _complete(config, messages, None))
    except _failures() as exc:
        error = _error(config, exc, None)
        error.__cause__ = exc
        out.put(error)
    except LLMError as exc:
        out.put(exc)


def stream_chat(config: LLMConfig, messages: Sequence[Mapping[str, str]]) -> Iterator[Delta]:
    """Yield the reply as the server streams it; errors arrive while iterating.

    The last delta has the ``finish_reason``: the server's ("stop", or "length" when ``config.max_tokens`` cut it),
    or :data:`DEADLINE` when ``config.deadline`` seconds passed first, and the reply so far is all there is. A
    thread reads the server, so the deadline holds however the server behaves (silent, or streaming forever); the
    thread closes the connection at the server's next word, or gives up after ``config.read_timeout`` of silence.
    A server that ignores ``stream`` sends back no events at all; then the reply is fetched whole, as one delta. So
    is one that refuses a streamed request with an empty stream, as llama-cpp-python does (HTTP 200, no events):
    asked again without streaming, it says why, e.g. that the prompt is longer than its context.
    """
    ends = time.monotonic() + config.deadline
    out: queue.SimpleQueue[Delta | LLMError] = queue.SimpleQueue()
    stop = threading.Event()
    threading.Thread(target=_pump, args=(config, messages, out, stop), name="llm-stream", daemon=True).start()
    try:
        while True:
            try:
                item = out.get(timeout=max(0.0, ends - time.monotonic()))
            except queue.Empty:
                yield Delta("", DEADLINE)
                return
            if isinstance(item, LLMError):
                raise item
            yield item
            if item.finish_reason:
                return
    finally:
        stop.set()


def check_server(config: LLMConfig, *, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether the server is up and serves ``config.model``, with a line for the UI to show. Never raises."""
    import openai

    quick = dataclasses.replace(config, connect_timeout=min(config.connect_timeout, timeout), read_timeout=timeout)
    try:
        models = [model.id for model in _client(quick, None).models.list()]
    except openai.NotFoundError:
        # Some servers have no model list; one tiny completion shows whether chat works.
        try:
            complete_chat(dataclasses.replace(quick, max_tokens=1), [{"role": "user", "content": "ping"}])
        except LLMError as exc:
            return False, str(exc)
        return True, f"{config.url} answers with model {config.model}"
    except _failures() as exc:
        return False, str(_error(quick, exc, None))
    if not models or any(name in (config.model, f"{config.model}:latest") for name in models):
        return True, f"{config.url} is up and serves {config.model}"
    return False, (f"{config.url} is up but does not serve model {config.model!r}; it serves "
                   f"{', '.join(models[:8])}. Set CABLECHAT_LLM_MODEL to one of those "
                   f"(or, for Ollama, `ollama pull {config.model}`).")
