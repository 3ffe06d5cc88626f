"""Ask any OpenAI-compatible chat server (Ollama, llama.cpp's server, vLLM, OpenAI) to answer from paragraphs.

For LLM mode, the Assistant does::

    config = LLMConfig.from_env()
    messages = build_messages(question, hits, history=history)
    reply = ""
    for delta in stream_chat(config, messages):   # LLMError may come from any step of the loop
        reply += delta                             # show it as it grows
    checked = check_reply(reply, hits)             # rag.citations: clean, drop invented keys, check support

``openai`` is imported only inside the functions that talk to a server, so ``import rag`` stays instant.
Every failure is an :class:`~rag.errors.LLMError` naming the URL, what happened and how to fix it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rag.errors import LLMError
from rag.models import Hit

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_URL",
    "NO_ANSWER",
    "LLMConfig",
    "build_messages",
    "check_server",
    "complete_chat",
    "stream_chat",
]

DEFAULT_URL = "http://127.0.0.1:11434/v1"  # Ollama's OpenAI-compatible API
DEFAULT_MODEL = "llama3.2"
NO_ANSWER = "The retrieved cables do not answer this question."
"""What the prompt tells the model to say, word for word, when the paragraphs do not answer."""

# The openai client refuses to start without a key, and local servers ignore whatever it is.
_PLACEHOLDER_KEY = "no-key-needed"
_HISTORY_MESSAGES = 6  # earlier turns kept, so a follow-up has its context without crowding out paragraphs
_HISTORY_CHARS = 2000

SYSTEM_PROMPT = """\
You answer questions about US diplomatic cables. You are given numbered paragraphs from cables; \
each starts with its key in square brackets, for example {example}.

Rules:
1. Use only what the paragraphs say. No outside knowledge, no guesses.
2. End every sentence with the key of each paragraph it comes from, copied exactly, for example {example}.{several} \
Never cite a key that does not head one of the paragraphs.
3. If the paragraphs do not answer the question, reply with exactly this sentence and nothing else: {no_answer}
4. Be brief: a few sentences, or a short list for several facts. Mention dates and who said what when it matters."""


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Where the chat server is and how long to wait for it.

    ``read_timeout`` is the longest silence allowed between bytes (before the first token, between tokens);
    ``max_retries`` is 0 because a person is waiting and a retry would double the wait.
    """

    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    key: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_retries: int = 0
    temperature: float = 0.1
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise LLMError(f"LLM URL {self.url!r} is not an http(s) URL; set CABLECHAT_LLM_URL to the server's "
                           f"OpenAI-compatible base URL, e.g. {DEFAULT_URL}")
        if not self.model:
            raise LLMError(f"no LLM model named for {self.url}; set CABLECHAT_LLM_MODEL, e.g. {DEFAULT_MODEL}")
        for name in ("connect_timeout", "read_timeout"):
            if not getattr(self, name) > 0:
                raise LLMError(f"LLM {name} must be a positive number of seconds, got {getattr(self, name)!r}")

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """Read ``CABLECHAT_LLM_URL``, ``_MODEL``, ``_KEY`` and ``_TIMEOUT`` (read timeout, seconds).

        Keyword ``overrides`` (any field) win over the environment; ``None`` means "not given", so a CLI can
        pass its options through as they are.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var in (("url", "CABLECHAT_LLM_URL"), ("model", "CABLECHAT_LLM_MODEL"),
                           ("key", "CABLECHAT_LLM_KEY")):
            if env.get(var, "").strip():
                values[field] = env[var].strip()
        if env.get("CABLECHAT_LLM_TIMEOUT", "").strip():
            try:
                values["read_timeout"] = float(env["CABLECHAT_LLM_TIMEOUT"])
            except ValueError:
                raise LLMError(f"CABLECHAT_LLM_TIMEOUT={env['CABLECHAT_LLM_TIMEOUT']!r} is not a number of "
                               "seconds; set it to e.g. 120 or unset it for the default 60") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "url" in values:
            values["url"] = values["url"].rstrip("/")
        return cls(**values)


def _trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a sentence end (or a word), marked with ``[…]``."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(". "), head.rfind(".\n"))
    head = head[:cut + 1] if cut > limit // 2 else head.rsplit(None, 1)[0]
    return f"{head} […]"


def _paragraph_block(hit: Hit, limit: int) -> str:
    cable = hit.cable
    about = " · ".join(part for part in (
        cable.date.date().isoformat() if cable.date else None, cable.origin, cable.subject) if part)
    return f"[{hit.ref}] {about}\n{_trim(hit.paragraph.text.strip(), limit)}"


def build_messages(question: str, hits: Sequence[Hit], *, history: Sequence[Mapping[str, str]] = (),
                   max_context_chars: int = 12_000, max_paragraph_chars: int = 2_000) -> list[dict[str, str]]:
    """The chat for ``question``: rules, recent ``history``, then the paragraphs of ``hits`` and the question.

    ``hits`` go in rank order, each cut to ``max_paragraph_chars``; lower-ranked ones are left out once the
    paragraphs would pass ``max_context_chars`` (local servers often run with a 4k-8k token window and drop
    the start of a longer prompt silently). ``history`` holds ``{"role": "user"|"assistant", "content": ...}``.
    """
    refs = [f"[{hit.ref}]" for hit in hits[:2]] or ["[09ASTANA664 ¶6]"]
    several = f" For two paragraphs write {' '.join(refs)}." if len(refs) == 2 else ""
    system = SYSTEM_PROMPT.format(example=refs[0], several=several, no_answer=NO_ANSWER)

    blocks: list[str] = []
    used = 0
    for hit in hits:
        block = _paragraph_block(hit, max_paragraph_chars)
        if blocks and used + len(block) > max_context_chars:
            break
        blocks.append(block)
        used += len(block) + 2
    paragraphs = "\n\n".join(blocks) if blocks else "(No paragraphs were found for this question.)"

    messages = [{"role": "system", "content": system}]
    for turn in list(history)[-_HISTORY_MESSAGES:]:
        if turn.get("role") not in ("user", "assistant"):
            raise ValueError(f"history turn has role {turn.get('role')!r}; use 'user' or 'assistant'")
        messages.append({"role": turn["role"], "content": _trim(str(turn.get("content", "")), _HISTORY_CHARS)})
    messages.append({"role": "user", "content": f"Paragraphs:\n\n{paragraphs}\n\nQuestion: {question.strip()}"})
    return messages


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
    return " ".join(str(message or exc.message).split())[:300]


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
            fix = "the server refused the request; check CABLECHAT_LLM_MODEL and the server's log"
        return LLMError(f"{where} answered HTTP {status}: {_detail(exc)}. To fix: {fix}.")
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIResponseValidationError):
        return LLMError(f"{where} broke off its reply with an error: {exc.message}. Its log says why; ask again, "
                        "or try a smaller model if it ran out of memory.")
    return LLMError(f"{where} sent a reply that is not an OpenAI chat completion ({type(exc).__name__}: {exc}). "
                    "Check that CABLECHAT_LLM_URL points at an OpenAI-compatible API, usually ending in /v1.")


def _request(config: LLMConfig, messages: Sequence[Mapping[str, str]], *, stream: bool) -> dict[str, Any]:
    return {"model": config.model, "messages": list(messages), "temperature": config.temperature,
            "max_tokens": config.max_tokens, "stream": stream}


def complete_chat(config: LLMConfig, messages: Sequence[Mapping[str, str]], *, timeout: float | None = None) -> str:
    """The whole reply in one piece, without streaming. ``timeout`` overrides ``config.read_timeout``."""
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
    return content


def stream_chat(config: LLMConfig, messages: Sequence[Mapping[str, str]], *,
                timeout: float | None = None) -> Iterator[str]:
    """Yield the reply's text deltas as the server streams them; errors arrive while iterating.

    A server that ignores ``stream`` sends back no events at all; then the reply is fetched whole and yielded
    as one delta. ``timeout`` overrides ``config.read_timeout``.
    """
    events = 0
    try:
        with _client(config, timeout).chat.completions.create(**_request(config, messages, stream=True)) as stream:
            for chunk in stream:
                events += 1
                choices = getattr(chunk, "choices", None) or ()
                delta = getattr(choices[0], "delta", None) if choices else None
                if delta is not None and delta.content:
                    yield delta.content
    except _failures() as exc:
        raise _error(config, exc, timeout) from exc
    if not events:
        yield complete_chat(config, messages, timeout=timeout)


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
