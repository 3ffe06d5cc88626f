"""Word-level helpers shared by citation checking, extractive answers and lexical search: stop-words, the
stemmer, numbers and names, and the share of a claim's content words a text contains."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

__all__ = ["NUMBER", "STOPWORDS", "WORD", "YEAR", "content_words", "is_summary", "names", "numbers", "overlap", "stem"]

STOPWORDS = frozenset(
    """a about above after again against all also although am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either few for from further
    had has have having he her here hers him his how however i if in into is it its itself just may might more
    most much must my neither no nor not now of off on once only or other our out over own per same she should
    since so some such than that the their theirs them then there these they this those though through thus to
    too under until up upon very via was we were what when where whether which while who whom whose why will
    with within without would yet you your
    said says say saying noted notes stated states told tells reported reports according mentioned added
    cable cables paragraph paragraphs embassy regarding concerning""".split()
)
WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A year as questions and cables write one: 1800-2099.
YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
_local = threading.local()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball's English stem (PyStemmer), cut to six letters.

    Snowball makes "asked"/"ask" and "killed"/"kill" agree; the cut makes "Kazakhstani"/"Kazakhstan" and
    "Icelandic"/"Iceland" agree too, which questions and cables write either way (measured in benchmarks/README.md
    against the six-letter cut alone).
    """
    word = re.sub(r"['’]s?$", "", word.lower())
    return _stemmer().stemWord(word)[:6]


def _stemmer() -> Any:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:  # a Stemmer keeps state between calls, so each thread has its own
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def content_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text) if len(w) > 2 and w.lower().strip("'’") not in STOPWORDS]


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def names(claim: str) -> list[str]:
    """Capitalised words after the first (which any sentence capitalises): names and acronyms."""
    words = WORD.findall(re.sub(r"^[\W\d_]+", "", claim))
    return [w for w in words[1:] if w[0].isupper() and len(w) > 2 and w.lower() not in STOPWORDS]


def overlap(claim: str, paragraph_text: str) -> float:
    words = content_words(claim)
    if not words:
        return 0.0
    stems = {stem(w) for w in WORD.findall(paragraph_text)}
    return sum(stem(w) in stems for w in words) / len(words)


_SUMMARY = re.compile(r"\W*(?:begin |executive )?summary\b", re.IGNORECASE)


def is_summary(text: str, heading: str | None) -> bool:
    """Whether a paragraph is its cable's summary ("Summary: ...", or under a Summary heading).

    A summary restates in brief what later paragraphs say in detail, and the detail is what a citation should
    point at, so search and extractive answers weigh summaries down.
    """
    return bool(_SUMMARY.match(text[:40]) or (heading and _SUMMARY.match(heading)))
