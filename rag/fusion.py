"""Fusing ranked candidate lists into one: weighted reciprocal rank fusion, a pure function.

A paragraph found by one method only still counts. A summary paragraph counts ``SUMMARY_WEIGHT`` of its fused
score: it restates in brief what a later paragraph says in detail, and the detail is what a citation should point
at. Constants were tuned on the dev questions (benchmarks/search.py): RRF_K 10 over 60, and the summary weight,
each added 0.02-0.05 MRR@10; with 55 questions, values were kept at the middle of the plateaus rather than at the
best point.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Candidate", "RRF_K", "SUMMARY_WEIGHT", "WEIGHTS", "fuse"]

RRF_K = 10
WEIGHTS: Mapping[str, float] = {"dense": 1.0, "bm25": 1.0}
SUMMARY_WEIGHT = 0.7


@dataclass(frozen=True, slots=True)
class Candidate:
    """A paragraph (by rowid) with its fused score and what each method ranked (1 = best) and scored it."""

    rowid: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


def fuse(ranked: Mapping[str, Sequence[tuple[int, float]]], *, k: int, summaries: Collection[int] = (),
         weights: Mapping[str, float] = WEIGHTS, rrf_k: int = RRF_K,
         summary_weight: float = SUMMARY_WEIGHT) -> list[Candidate]:
    """The best ``k`` of the union of ``ranked`` (method -> (rowid, score) best first).

    With one method its own order and scores are kept; with several, each paragraph scores the sum of
    ``weight / (rrf_k + rank)`` over the methods that found it, summaries (``summaries``) weighed down; ties go to
    the better single rank, then the lower rowid, so the order never depends on dict order.
    """
    ranks: dict[int, dict[str, int]] = {}
    raw: dict[int, dict[str, float]] = {}
    fused: dict[int, float] = {}
    for method, results in ranked.items():
        for rank, (rowid, score) in enumerate(results, 1):
            if method in ranks.get(rowid, {}):
                continue
            fused[rowid] = fused.get(rowid, 0.0) + weights.get(method, 1.0) / (rrf_k + rank)
            ranks.setdefault(rowid, {})[method] = rank
            raw.setdefault(rowid, {})[method] = score
    if len(ranked) == 1:
        (method,) = ranked
        order = list(dict.fromkeys(rowid for rowid, _ in ranked[method]))[:k]
        return [Candidate(r, raw[r][method], ranks[r], raw[r]) for r in order]
    for rowid in summaries:
        if rowid in fused:
            fused[rowid] *= summary_weight
    order = sorted(fused, key=lambda r: (-fused[r], min(ranks[r].values()), r))[:k]
    return [Candidate(r, fused[r], ranks[r], raw[r]) for r in order]
