"""Which lines of a cable start its numbered paragraphs, and with which numbers: the numbering the cable gives.

Every line that could open a paragraph ("3.", "¶3.", "13." with a mangled pilcrow, "3)") is a candidate; the chain
of candidates that reads most like a cable's own numbering (small steps up, strong markers, text that starts like a
paragraph) wins, found in one pass over the candidates (rag.parser says what the numbering must give).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Marker", "paragraph_markers"]

_MARKER = re.compile(
    r"^[ \t]*(?P<pilcrow>¶[ \t]*)?(?P<number>\d+)[ \t]*\.(?=[\s(\"'A-Za-z-]|$)"
    # Reflowed bodies run paragraphs on in one line; there only a number followed by a portion marking
    # after a sentence's end is taken, since bare "2." mid-line is too often something else.
    r"|(?<=[.!?\"')][ \t])[ \t]*(?P<inline>\d{1,2})\.[ \t]*(?=\((?:U|SBU|C|S|S/NF|C/NF)\))",
    re.MULTILINE,
)
_PAREN_MARKER = re.compile(r"^[ \t]*(?P<pilcrow>¶[ \t]*)?(?P<number>\d+)\)[ \t]+(?=[(\"'A-Z])", re.MULTILINE)

# The most a chain may skip, after a pilcrow-marked number (paragraphs lost in transit).
_MAX_GAP = 5
# Numbers of any length continue a chain (a cable may run past ¶999); only those below this may open one.
_LATE_OPENING = 1000


@dataclass(frozen=True, slots=True)
class Marker:
    start: int
    end: int
    number: int


def paragraph_markers(text: str, start: int) -> list[Marker]:
    """Line-start numbers accepted as paragraph numbers: the best-scoring increasing chain.

    Each candidate may be read as written or, without a pilcrow, with a mangled leading ``1`` dropped
    (``13.`` → 3). A chain scores most for each number that follows its predecessor; a pilcrow-marked
    number may skip ahead a little (a paragraph lost in transit), an unmarked one less, and it may open
    the chain at any number (a release that withholds the first paragraphs). Numbers that fit no good
    chain (lists inside paragraphs, pilcrows the site put on list items) stay paragraph text.

    A cable that counts down (30, 29 … 1) is read from its end, so that it keeps its own numbers: read
    forwards, its "11." and "2." made a ¶1 and a ¶2 of the wrong text. No corpus cable has even three
    line-start numbers in a row counting down, so no other cable is read that way.
    """
    candidates = _candidates(text, start, _MARKER)
    chain, score = _best_chain(candidates)
    if _counts_down(candidates):
        backward, backward_score = _best_chain(candidates[::-1])
        if backward_score > score:
            return backward[::-1]
    if chain and chain[0].number <= 3:
        return chain
    # "1)" numbers paragraphs in a few cables, but lists inside paragraphs far more often: only a cable
    # whose "1." numbering is missing or opens late (a lone "¶10." after "1)" to "9)") is read that way.
    paren, _ = _best_chain(_candidates(text, start, _PAREN_MARKER))
    return paren if len(paren) > len(chain) else chain


class _Candidate(NamedTuple):
    """A line-start number that may be a paragraph's: where it stands, how it is marked, how it may be read."""

    start: int
    end: int
    pilcrow: bool
    strong: bool  # a pilcrow, or a reflowed number before a marking, followed by what starts a paragraph
    plausible: bool  # followed by what starts a paragraph
    readings: tuple[int, ...]


def _candidates(text: str, start: int, marker: re.Pattern[str]) -> list[_Candidate]:
    # Plain values only, no Match objects: a crafted cable has tens of thousands of candidates, and the garbage
    # collector walks every container object kept alive.
    candidates: list[_Candidate] = []
    for m in marker.finditer(text, start):
        raw = m.group("number") or m.groupdict().get("inline")
        pilcrow = bool(m.group("pilcrow"))
        strong = pilcrow or bool(m.groupdict().get("inline"))
        if _looks_like_reference(text, m.end()):
            continue
        readings = (int(raw),)
        if not strong and len(raw) >= 2 and raw[0] == "1" and int(raw[1:]) > 0:
            readings += (int(raw[1:]),)
        plausible = _starts_like_paragraph(text, m.end())
        candidates.append(_Candidate(m.start(), m.end(), pilcrow, strong and plausible or pilcrow, plausible,
                                     readings))
    return candidates


def _counts_down(candidates: list[_Candidate], run: int = 3) -> bool:
    """Whether ``run`` candidates in a row, as written, count down by one."""
    length = 1
    for before, after in zip(candidates, candidates[1:]):
        length = length + 1 if after.readings[0] == before.readings[0] - 1 else 1
        if length >= run:
            return True
    return False


def _best_chain(candidates: list[_Candidate]) -> tuple[list[Marker], float]:
    """The best increasing chain through ``candidates``, in their order, and its score."""
    # best[(i, value)] = (score, previous state) for a chain ending at candidate i read as value. A step scores only
    # for a gap of 1 to 5, so a state needs, per value just below its own, the best chain ending there: ``ends``
    # keeps that one (the earliest of equals, with the order it was found in) for candidates before this one, which
    # makes the search linear in the number of candidates instead of quadratic.
    best: dict[tuple[int, int], tuple[float, tuple[int, int] | None]] = {}
    ends: dict[int, tuple[float, int, tuple[int, int]]] = {}
    for i, (_, _, pilcrow, strong, plausible, readings) in enumerate(candidates):
        found: list[tuple[int, float, int]] = []
        for value in readings:
            opening = 3.0 if value == 1 else 1.0 if value <= 3 and (strong or plausible) else None
            # A release may withhold all before ¶6 (07THEHAGUE1336); a pilcrow the site put on a year ("¶1989.")
            # opens nothing.
            if opening is None and pilcrow and value < _LATE_OPENING:
                opening = 0.5
            top = (opening, None) if opening is not None else None
            step_from: tuple[float, int, tuple[int, int]] | None = None
            for gap in range(1, _MAX_GAP + 1):
                end, step = ends.get(value - gap), _step_score(gap, strong, plausible)
                if end is None or step is None:
                    continue
                if step_from is None or (end[0] + step, -end[1]) > (step_from[0], -step_from[1]):
                    step_from = (end[0] + step, end[1], end[2])
            if step_from is not None and (top is None or step_from[0] > top[0]):
                top = (step_from[0], step_from[2])
            if top is not None:
                best[(i, value)] = top
                found.append((value, top[0], len(best)))
        for value, score, order in found:
            if value not in ends or score > ends[value][0]:
                ends[value] = (score, order, (i, value))
    if not best:
        return [], 0.0
    state: tuple[int, int] | None = max(best, key=lambda s: (best[s][0], -s[0]))
    score = best[state][0]
    chain: list[Marker] = []
    while state is not None:
        candidate = candidates[state[0]]
        chain.append(Marker(candidate.start, candidate.end, state[1]))
        state = best[state][1]
    return chain[::-1], score


def _step_score(gap: int, strong: bool, plausible: bool) -> float | None:
    if gap == 1:
        return 3.0
    if strong and gap <= _MAX_GAP:
        return 1.0
    if plausible and gap <= 2:
        return 0.5
    return None


def _looks_like_reference(text: str, at: int) -> bool:
    # A numbered REF list ("1. STATE 12345") before any paragraph is not ¶1.
    end = text.find("\n", at)
    rest = text[at: end if end >= 0 else len(text)].strip()
    return len(rest) < 80 and bool(re.match(r"^(?:\d{2}\s+)?[A-Z][A-Z ]{2,30}\s+\d{2,7}\b", rest))


def _starts_like_paragraph(text: str, at: int) -> bool:
    return bool(re.match(r"\s*(?:\(|[A-Z\"'])", text[at: at + 12]))
