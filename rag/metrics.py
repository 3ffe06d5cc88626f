"""The figures of an evaluation as plain functions of references and strings, so each can be checked by hand.

A paragraph is named by its citation key (``"09ASTANA664 ¶6"``). A question's golds are its gold paragraph and
any others its author accepted (``also``).

Ranks are 1-based positions in the list a method returned, counting each paragraph once: a method that returns
two paragraphs with the same score has still put one above the other, and that order is what a reader sees, so
ties are not re-broken here. A figure over no questions is ``None``, never 0: "not measured" is not "all wrong".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence

__all__ = ["citation_ok", "contains", "first_rank", "mrr_at", "normalise", "percentile", "recall_at",
           "recall_curve", "share"]

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, accents dropped, every punctuation or symbol character a space, runs of space one space.

    So "Jan 20-21" matches "jan. 20–21", "U.S." matches "U S", and "Zavizyan's" holds "Zavizyan".
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c
                   for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", kept).strip()


def contains(text: str, fact: str) -> bool:
    """Whether ``fact`` stands in ``text`` as whole words after :func:`normalise` of both.

    Whole words: "20" is not found in "2020", nor "Iran" in "Iranian". An empty fact is never found.
    """
    needle = normalise(fact)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def first_rank(retrieved: Sequence[str], golds: Collection[str]) -> int | None:
    """1-based rank of the first gold among ``retrieved`` (each paragraph counted once), None when absent."""
    seen: set[str] = set()
    for ref in retrieved:
        if ref in seen:
            continue
        seen.add(ref)
        if ref in golds:
            return len(seen)
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float | None:
    """Share of questions whose gold is ranked within the top ``k``."""
    return share(r is not None and r <= k for r in ranks)


def recall_curve(ranks: Sequence[int | None], k: int) -> tuple[float | None, ...]:
    """recall@1 … recall@k."""
    return tuple(recall_at(ranks, depth) for depth in range(1, k + 1))


def mrr_at(ranks: Sequence[int | None], k: int) -> float | None:
    """Mean reciprocal rank, a gold ranked below ``k`` (or not at all) counting 0."""
    if not ranks:
        return None
    return sum(1 / r for r in ranks if r is not None and r <= k) / len(ranks)


def share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100), interpolating linearly between the two nearest values, as numpy does."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def citation_ok(ref: str, paragraph_text: str | None, golds: Collection[str], evidence: str | None) -> bool:
    """A citation is right when it names a gold paragraph, or a paragraph that holds the evidence sentence
    (the same text repeated in another cable, a summary quoting it)."""
    if ref in golds:
        return True
    return bool(paragraph_text and evidence) and contains(paragraph_text or "", evidence or "")
