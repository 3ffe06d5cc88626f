"""The chat sent to a model in LLM mode: rules, recent turns, the retrieved paragraphs, the question, the rules again.

Two kinds of server shape this prompt:

- **Small contexts.** Local servers run with a 2k-8k token window and either refuse a longer prompt (HTTP 400) or
  silently drop its start. :func:`build_prompt` fits the paragraphs into ``context_tokens`` minus what the reply
  needs, estimating tokens from characters on the safe side (:func:`estimate_tokens`).
- **Chat templates that drop system messages** (llama-cpp-python's ``gemma`` format, some base models). The
  citation rule and the refusal sentence are repeated at the end of the user message, where nothing drops them,
  just before the question. The question comes last: with the rules last instead, SmolLM2-135M answered each of the
  four plain seed questions with the refusal sentence; with the question last, three of four got an answer.

Each paragraph block carries its cable's date, origin and subject and its section heading: a paragraph often leaves
to its heading what it is about ("Jan 20-21 Experts Meeting in Paris" over 09MOSCOW2809 ¶4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rag.errors import LLMContextError
from rag.models import Hit, _Record

__all__ = ["NO_ANSWER", "SYSTEM_PROMPT", "Prompt", "build_prompt", "estimate_tokens"]

NO_ANSWER = "The retrieved cables do not answer this question."
"""What the prompt tells the model to say, word for word, when the paragraphs do not answer."""

SYSTEM_PROMPT = """\
You answer questions about US diplomatic cables. You are given numbered paragraphs from cables; \
each starts with its key in square brackets, for example {example}.

Rules:
1. Use only what the paragraphs say. No outside knowledge, no guesses.
2. End every sentence with the key of each paragraph it comes from, copied exactly, for example {example}.{several} \
Never cite a key that does not head one of the paragraphs.
3. If the paragraphs do not answer the question, reply with exactly this sentence and nothing else: {no_answer}
4. Be brief: a few sentences, or a short list for several facts. Mention dates and who said what when it matters."""

REMINDER = ("Answer from the paragraphs above only, in a few sentences. End every sentence with the key of the "
            "paragraph it comes from, in square brackets, for example {example}. If the paragraphs do not answer "
            "the question, reply with exactly: {no_answer}")

# What a chat template adds around each message (role markers, separators).
MESSAGE_TOKENS = 8
# Earlier turns get at most this share of the context, so a long conversation never crowds out the paragraphs.
HISTORY_SHARE = 0.25
_HISTORY_MESSAGES = 6
# Less room than this for the top paragraph's text is no answer worth asking for: the server's context is too small.
MIN_PARAGRAPH_CHARS = 200


# Tokens are estimated by kind of character, on the safe side. Fitted to SmolLM2's tokenizer (49k words, the
# smallest vocabulary a chat model is likely to have) on 150 paragraphs and their block headers from the corpus,
# mixed-case and all-capitals: a token per word boundary, digit and punctuation mark, per 6 lower-case letters, per
# 2.5 capitals, and half a one more per non-ASCII character. No text there took more tokens than estimated (the
# worst took 0.97 of it); a whole prompt takes about 0.7 of its estimate. Larger vocabularies (Llama 3, Qwen, Gemma)
# take fewer tokens still.
def estimate_tokens(text: str) -> int:
    """A safe upper estimate of how many tokens ``text`` takes."""
    lower = sum(map(str.islower, text))
    upper = sum(map(str.isupper, text))
    non_ascii = sum(ord(ch) > 127 for ch in text)
    return int(lower / 6 + upper / 2.5 + (len(text) - lower - upper) + non_ascii / 2) + 1


@dataclass(frozen=True, slots=True)
class Prompt(_Record):
    """The chat to send, which retrieved paragraphs it shows (``refs``, rank order) and its estimated size."""

    messages: tuple[dict[str, str], ...]
    refs: tuple[str, ...]
    tokens: int


def _trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a sentence end (or a word), marked with ``[…]``."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(". "), head.rfind(".\n"))
    head = head[:cut + 1] if cut > limit // 2 else head.rsplit(None, 1)[0]
    return f"{head} […]"


def _header(hit: Hit) -> str:
    cable, heading = hit.cable, hit.paragraph.heading
    about = " · ".join(part for part in (
        cable.date.date().isoformat() if cable.date else None, cable.origin, cable.subject) if part)
    return f"[{hit.ref}] {about}\n" + (f"Section: {heading}\n" if heading else "")


def _history(history: Sequence[Mapping[str, str]], budget: int) -> list[dict[str, str]]:
    """The most recent turns that fit ``budget`` tokens, oldest first."""
    kept: list[dict[str, str]] = []
    for turn in reversed(list(history)[-_HISTORY_MESSAGES:]):
        if turn.get("role") not in ("user", "assistant"):
            raise ValueError(f"history turn has role {turn.get('role')!r}; use 'user' or 'assistant'")
        content = str(turn.get("content", ""))
        budget -= estimate_tokens(content) + MESSAGE_TOKENS
        if budget < 0:
            break
        kept.append({"role": turn["role"], "content": content})
    return kept[::-1]


def build_prompt(question: str, hits: Sequence[Hit], *, history: Sequence[Mapping[str, str]] = (),
                 context_tokens: int = 4096, reply_tokens: int = 300, max_paragraph_chars: int = 2000,
                 url: str | None = None) -> Prompt:
    """The chat for ``question``, sized to a server whose context holds ``context_tokens`` tokens.

    ``reply_tokens`` are kept free for the reply. ``hits`` go in rank order, each cut to ``max_paragraph_chars``;
    lower-ranked ones are left out once the next would not fit, and the first is cut to fit when it alone does not.
    ``history`` holds ``{"role": "user"|"assistant", "content": ...}``; the most recent turns that fit a quarter of
    the context are kept. Raises :class:`~rag.errors.LLMContextError` when the context leaves no room for a
    paragraph (``url`` names the server in the message).
    """
    refs = [f"[{hit.ref}]" for hit in hits[:2]] or ["[09ASTANA664 ¶6]"]
    several = f" For two paragraphs write {' '.join(refs)}." if len(refs) == 2 else ""
    system = SYSTEM_PROMPT.format(example=refs[0], several=several, no_answer=NO_ANSWER)
    reminder = REMINDER.format(example=refs[0], no_answer=NO_ANSWER)
    ask = f"{reminder}\n\nQuestion: {question.strip()}"
    turns = _history(history, int(context_tokens * HISTORY_SHARE))
    fixed = sum(estimate_tokens(m["content"]) + MESSAGE_TOKENS for m in turns) + estimate_tokens(system) \
        + estimate_tokens(f"Paragraphs:\n\n\n\n{ask}") + 2 * MESSAGE_TOKENS
    budget = context_tokens - reply_tokens - fixed
    blocks: list[str] = []
    shown: list[str] = []
    for hit in hits:
        header, text = _header(hit), hit.paragraph.text.strip()
        block = header + _trim(text, max_paragraph_chars)
        if estimate_tokens(block) + 1 > budget:
            if blocks:
                break
            room = 4 * (budget - estimate_tokens(header))
            while room >= MIN_PARAGRAPH_CHARS and estimate_tokens(block := header + _trim(text, room)) + 1 > budget:
                room = int(room * 0.8)
            if room < MIN_PARAGRAPH_CHARS:
                raise _too_small(url, context_tokens, reply_tokens)
        blocks.append(block)
        shown.append(hit.ref)
        budget -= estimate_tokens(block) + 1
    paragraphs = "\n\n".join(blocks) if blocks else "(No paragraphs were found for this question.)"
    messages = ({"role": "system", "content": system}, *turns,
                {"role": "user", "content": f"Paragraphs:\n\n{paragraphs}\n\n{ask}"})
    tokens = sum(estimate_tokens(m["content"]) + MESSAGE_TOKENS for m in messages)
    return Prompt(messages, tuple(shown), tokens)


def _too_small(url: str | None, context_tokens: int, reply_tokens: int) -> LLMContextError:
    where = f"the LLM server at {url}" if url else "the LLM server"
    return LLMContextError(
        f"{where} has a context of {context_tokens} tokens, which leaves no room for the cable paragraphs after the "
        f"rules, the question and the {reply_tokens} tokens kept for the reply. To fix: raise the server's context "
        "size (llama-cpp-python: --n_ctx 4096; llama.cpp: --ctx-size 4096; Ollama: the num_ctx parameter) and set "
        "CABLECHAT_LLM_CONTEXT to it.", url=url, limit=context_tokens)
