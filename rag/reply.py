"""LLM mode from question to Answer: ask the model within the server's context and a deadline, then check the reply.

The Assistant decides first whether to ask at all: it computes the extractive answer, and a question the extractive
judge refuses on the evidence is never sent (``Assistant._llm_answer``). Otherwise::

    reply = yield from ask_model(config, question, hits, history)    # yields the reply's text as it streams
    answer = reply_answer(question, reply, hits, extractive, timings)

:func:`reply_answer` keeps what can be checked: citations of paragraphs the model was not shown are removed,
sentences their paragraphs do not support are marked ⚠, a reply cut off (token limit, deadline) keeps only its
finished, supported sentences, and a reply with nothing supported gives way to the extractive answer, with a notice
that quotes what the model wrote.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

from rag.citations import CheckedReply, Sentence, check_reply
from rag.errors import LLMContextError
from rag.llm import DEADLINE, LLMConfig, stream_chat
from rag.models import Answer, Hit
from rag.prompt import NO_ANSWER, Prompt, build_prompt

__all__ = ["Reply", "ask_model", "reply_answer"]

# How much of a reply that could not be used the notice quotes.
_QUOTED_CHARS = 600


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model wrote, why it stopped (``finish_reason``), the prompt it saw and the config that asked.

    ``config.context_tokens`` is the context the prompt was fitted to: the server's own size when it refused a
    longer prompt and said its size.
    """

    text: str
    finish_reason: str
    prompt: Prompt
    config: LLMConfig


def _stream(config: LLMConfig, prompt: Prompt, pieces: list[str]) -> Generator[str, None, str]:
    finish = "stop"
    for delta in stream_chat(config, prompt.messages):
        if delta.text:
            pieces.append(delta.text)
            yield delta.text
        finish = delta.finish_reason or finish
    return finish


def ask_model(config: LLMConfig, question: str, hits: Sequence[Hit],
              history: Sequence[Mapping[str, str]] = ()) -> Generator[str, None, Reply]:
    """Yield the reply's text deltas as they stream, and return the whole :class:`Reply`. Raises LLMError.

    A server that refuses the prompt as too long for its context and says its size (llama-cpp-python, llama.cpp,
    vLLM and OpenAI do) is asked once more with the prompt fitted to that size.
    """
    prompt = build_prompt(question, hits, history=history, context_tokens=config.context_tokens,
                          reply_tokens=config.max_tokens, url=config.url)
    pieces: list[str] = []
    try:
        finish = yield from _stream(config, prompt, pieces)
    except LLMContextError as exc:
        if pieces or not exc.limit or not config.max_tokens < exc.limit < config.context_tokens:
            raise
        config = dataclasses.replace(config, context_tokens=exc.limit)
        prompt = build_prompt(question, hits, history=history, context_tokens=exc.limit,
                              reply_tokens=config.max_tokens, url=config.url)
        finish = yield from _stream(config, prompt, pieces)
    return Reply("".join(pieces), finish, prompt, config)


def _finished_only(checked: CheckedReply) -> list[Sentence]:
    return [s for s, ok in zip(checked.sentences, checked.supported, strict=True) if ok and s.finished]


def _join(text: str, sentences: Sequence[Sentence]) -> str:
    """The sentences as they stand in ``text``, a line break between two where there was one (list items)."""
    out, previous = "", None
    for sentence in sentences:
        if previous is not None:
            out += "\n" if "\n" in text[previous:sentence.start] else " "
        out += text[sentence.start:sentence.end]
        previous = sentence.end
    return out


def _quoted(text: str) -> str:
    text = " ".join(text.split())
    return f"“{text[:_QUOTED_CHARS]}{'…' if len(text) > _QUOTED_CHARS else ''}”"


def reply_answer(question: str, reply: Reply, hits: Sequence[Hit], extractive: Answer,
                 timings: dict[str, float]) -> Answer:
    """The Answer to show for ``reply``; ``extractive`` is the extractive answer, used when the reply cannot be."""

    def fall_back(why: str) -> Answer:
        return dataclasses.replace(extractive, notice=f"{why}, so this is the extractive answer.", timings=timings)

    text = re.sub(r"[ \t]*⚠", "", reply.text).strip()  # the marks are CableChat's to place, never the model's
    if not text and reply.finish_reason == DEADLINE:
        return fall_back(f"The model had not begun its reply after {reply.config.deadline:g} s "
                         "(CABLECHAT_LLM_DEADLINE)")
    if not text:
        return fall_back("The model sent an empty reply")
    if text.rstrip(".") == NO_ANSWER.rstrip("."):
        return fall_back("The model found no answer in the paragraphs it was shown")
    shown = [hit for hit in hits if hit.ref in reply.prompt.refs]
    checked = check_reply(text, shown)
    notes: list[str] = []
    if reply.finish_reason in ("length", DEADLINE):
        cut = (f"The model's reply was cut off at its limit of {reply.config.max_tokens} tokens"
               if reply.finish_reason == "length" else
               f"The model was still writing after {reply.config.deadline:g} s (CABLECHAT_LLM_DEADLINE), so its "
               "reply was cut off")
        kept = _finished_only(checked)
        if not kept:
            return fall_back(f"{cut} before it finished a sentence the paragraphs support. It had written "
                             f"{_quoted(text)}")
        dropped = checked.dropped
        checked = check_reply(_join(checked.text, kept), shown)
        checked = dataclasses.replace(checked, dropped=dropped)
        notes.append(f"{cut}; only its finished sentences that the cited paragraphs support are shown.")
    elif not any(checked.supported):
        return fall_back(f"No sentence of the model's reply is supported by the paragraphs it cites (it wrote "
                         f"{_quoted(text)})")
    if checked.dropped:
        notes.append(f"Removed citations of paragraphs the model was not shown: {', '.join(checked.dropped)}.")
    if checked.unsupported:
        notes.append(f"{len(checked.unsupported)} sentence(s) are not supported by the paragraphs they cite "
                     "and are marked ⚠.")
    return Answer(question=question, text=checked.marked(), citations=checked.citations, hits=tuple(hits),
                  mode="llm", notice=" ".join(notes) or None, timings=timings, unsupported=checked.unsupported)
