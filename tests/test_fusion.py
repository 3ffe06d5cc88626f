"""Reciprocal rank fusion (rag.fusion.fuse) on its own: a pure function over ranked candidate lists."""

from __future__ import annotations

import pytest

from rag.fusion import fuse


def test_a_paragraph_both_methods_found_beats_one_found_by_one():
    fused = fuse({"dense": [(1, 0.9), (2, 0.8)], "bm25": [(3, 12.0), (2, 11.0)]}, k=3, rrf_k=10)
    assert [c.rowid for c in fused] == [2, 1, 3]
    assert fused[0].ranks == {"dense": 2, "bm25": 2}
    assert fused[0].scores == {"dense": 0.8, "bm25": 11.0}
    assert fused[0].score == pytest.approx(2 / 12)


@pytest.mark.parametrize(("ranked", "k", "expected"), [
    # One method: its own order and raw scores, cut to k.
    ({"bm25": [(5, 3.0), (4, 2.0), (9, 1.0)]}, 2, [(5, 3.0), (4, 2.0)]),
    # Ties in fused score go to the better single rank, then the lower rowid: never dict order.
    ({"dense": [(7, 0.5), (8, 0.4)], "bm25": [(8, 9.0), (7, 8.0)]}, 2, [(7, None), (8, None)]),
    # Empty lists fuse to nothing.
    ({"dense": [], "bm25": []}, 5, []),
])
def test_fusion_table(ranked, k, expected):
    fused = fuse(ranked, k=k, rrf_k=10)
    assert [c.rowid for c in fused] == [rowid for rowid, _ in expected]
    if len(ranked) == 1:
        assert [c.score for c in fused] == [score for _, score in expected]


def test_a_summary_is_weighed_down_below_the_detail_it_restates():
    ranked = {"dense": [(1, 0.9), (2, 0.85)], "bm25": [(1, 10.0), (2, 9.0)]}
    assert [c.rowid for c in fuse(ranked, k=2)] == [1, 2]
    weighed = fuse(ranked, k=2, summaries={1}, summary_weight=0.5)
    assert [c.rowid for c in weighed] == [2, 1]


def test_method_weights_shift_the_order():
    ranked = {"dense": [(1, 0.9), (2, 0.1)], "bm25": [(2, 9.0), (1, 1.0)]}
    assert fuse(ranked, k=1, weights={"dense": 1.0, "bm25": 3.0})[0].rowid == 2
    assert fuse(ranked, k=1, weights={"dense": 3.0, "bm25": 1.0})[0].rowid == 1


def test_a_rowid_listed_twice_by_one_method_counts_once():
    fused = fuse({"dense": [(1, 0.9), (1, 0.8)], "bm25": [(2, 5.0)]}, k=5, rrf_k=10)
    assert fused[0].ranks == {"dense": 1}
    assert fused[0].score == pytest.approx(1 / 11)
