"""What kind of thing a question asks for (a number, a date, a name), and whether a sentence gives one.

"How many people died" wants a number, and a sentence that only names the year of the event gives none; "when"
wants a date; "who" a name the question did not already say. The reranker uses :func:`holds_kind` as one signal
among several; the answer layer uses :func:`gives` to refuse a question whose subject the cables discuss without
the kind of fact asked for (a near miss).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from rag.text import NUMBER, STOPWORDS, WORD, YEAR, stem

__all__ = ["Kind", "asked_words", "asks", "focus", "gives", "holds_kind"]

Kind = Literal["number", "length", "date", "name"]

_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec").split()
_DATE = re.compile(rf"\b(?:{'|'.join(_MONTHS)})\b|\b(?:19|20)\d\d\b|\b(?:mid|early|late)-\w+\b|\b(?:yesterday|"
                   r"today|tomorrow|(?:next|last) (?:week|month|year)|monday|tuesday|wednesday|thursday|friday|"
                   r"saturday|sunday)\b", re.IGNORECASE)
_DAY = re.compile(rf"\b(?:{'|'.join(_MONTHS)})\.? \d{{1,2}}(?:st|nd|rd|th)?(?:[-–]\d{{1,2}})?\b|\b\d{{1,2}}(?:st|nd|rd|th)?"
                  rf"(?:[-–]\d{{1,2}})? (?:of )?(?:{'|'.join(_MONTHS)})\b", re.IGNORECASE)
_NUMBER_WORDS = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
                           r"thirty|forty|fifty|hundred|hundreds|thousand|thousands|million|millions|billion|dozen|"
                           r"dozens|percent|half|third|quarter|majority|several)\b", re.IGNORECASE)
_ASKS_LENGTH = re.compile(r"\bhow long\b|\buntil when\b", re.IGNORECASE)
_ASKS_NUMBER = re.compile(r"\bhow (?:many|much|big|large|far|old)\b|\bwhat (?:number|percentage|share|amount|"
                          r"size|vote|proportion|sum|figure|price|cost|level)\b|\bvote count\b|\bhow high\b",
                          re.IGNORECASE)
_ASKS_DATE = re.compile(r"\bwhen\b|\bwhat (?:date|day|year|month|time)\b|\bwhich (?:date|day|year|month)\b",
                        re.IGNORECASE)
_ASKS_NAME = re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bwhich (?:[\w-]+ ){0,3}(?:official|minister|person|leader|"
                        r"man|woman|ambassador|president|diplomat|general|colonel|officer|member|head|company|firm)\b"
                        r"|\bwhat (?:is|was) the name\b", re.IGNORECASE)
_FOCUS = re.compile(r"\bhow many ((?:[A-Za-z-]+ ){0,2}[A-Za-z-]+)", re.IGNORECASE)
_ASKS: tuple[tuple[Kind, re.Pattern[str]], ...] = (("length", _ASKS_LENGTH), ("number", _ASKS_NUMBER),
                                                    ("date", _ASKS_DATE), ("name", _ASKS_NAME))
_LEADING_CLAUSE = re.compile(r"^\s*(?:when|after|during|before|as|while|once|since|according to)\b[^,?]*,\s*",
                             re.IGNORECASE)
# What may stand before a question word that opens the question (or a clause of it, or follows a preposition or a
# verb of asking: "in what year", "say who"); any other word before "who", "which" or "when" makes it relative
# ("the specialist who spoke", "when they complained"), not what the question asks.
_OPENS = re.compile(r"(?:^|[,;:(]\s*|\b(?:in|on|at|by|to|for|from|of|with|under|until|since|and|or|but|roughly|about|"
                    r"approximately|exactly|precisely|say|said|know|tell|told|ask|asked|explain|recall|remember|"
                    r"me|us)\s+)$", re.IGNORECASE)
_CAPITAL = re.compile(r"\b[A-Z][a-zA-Z'’-]{2,}\b")


def asks(question: str) -> Kind | None:
    """The kind of answer ``question`` wants, or None for an open question ("what did ... say").

    "How long" is a kind of its own: a span ("three years") or an end ("until 2050") answers it. The question word
    that comes first decides ("Which leader ... when he met ..." wants a name), after a leading clause such as
    "When the consul pressed Modi in 2006, what did he say" is set aside; a relative "who" or "when" in the middle
    of a clause ("the specialist who spoke", "when they complained") asks nothing.
    """
    question = _LEADING_CLAUSE.sub("", question.strip())
    found = [(match.start(), kind) for kind, pattern in _ASKS for match in pattern.finditer(question)
             if _OPENS.search(question[:match.start()]) or match.group().lower().startswith("how ")]
    return min(found)[1] if found else None


def asked_words(question: str) -> frozenset[str]:
    """What the question already says: its stemmed words, its numbers, its date words (lower case)."""
    return frozenset({stem(w) for w in WORD.findall(question)} | set(NUMBER.findall(question))
                     | {m.group().lower() for m in _DATE.finditer(question)})


def focus(question: str) -> frozenset[str]:
    """The stemmed words a count is of, up to three after "how many" and before the verb ("how many suspect bank
    accounts did" -> suspect, bank, account; "how many satellites does Kazakhstan own" -> satellite): a figure
    answers the question only in a sentence that, with the one before it, names one of them. "How much" has none:
    its unit (money, time) goes unsaid."""
    match = _FOCUS.search(question)
    if not match:
        return frozenset()
    words = []
    for word in WORD.findall(match.group(1)):
        if word.lower() not in STOPWORDS:
            words.append(stem(word))
        elif words:  # "how many of the detainees": the counted noun comes after "of the"
            break
    return frozenset(words)


def holds_kind(kind: Kind | None, sentence: str, asked: Collection[str]) -> float:
    """1 when ``sentence`` holds what ``kind`` asks for, 0 when not; for an open question, 0.5 for a new name or
    a number (a sentence with a fact in it). ``asked``: :func:`asked_words` of the question."""
    if kind is not None:
        return 1.0 if gives(kind, sentence, asked) else 0.0
    return 0.5 if _new_names(sentence, asked) or NUMBER.search(sentence) else 0.0


def gives(kind: Kind, sentence: str, asked: Collection[str]) -> bool:
    """Whether ``sentence`` gives a ``kind`` that the question (:func:`asked_words`) did not already hold."""
    if kind == "number":
        # A day of a month ("April 15") and a year are dates, not the figure asked for.
        undated = _DAY.sub(" ", sentence)
        figures = [n for n in NUMBER.findall(undated) if not YEAR.fullmatch(n) and n not in asked]
        return bool(figures or _NUMBER_WORDS.search(undated))
    if kind == "length":
        return bool([n for n in NUMBER.findall(sentence) if n not in asked] or _NUMBER_WORDS.search(sentence))
    if kind == "date":
        return any(m.group().lower() not in asked for m in _DATE.finditer(sentence))
    return bool(_new_names(sentence, asked))


def _new_names(sentence: str, asked: Collection[str]) -> list[str]:
    return [w for w in _CAPITAL.findall(sentence)[1:] if stem(w) not in asked and w.lower() not in STOPWORDS
            and WORD.fullmatch(w)]
