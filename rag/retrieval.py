"""Paragraph search over an opened index: dense (FAISS), lexical (rag.lexical), and both fused (rag.fusion).

A search runs in four steps, each replaceable on its own: the filters compile into one condition
(rag.query.compile_filters); the dense and lexical searches each rank ``CANDIDATES`` paragraphs inside it (the
lexical one in a worker thread while the question is embedded); :func:`rag.fusion.fuse` merges the lists; and the
winners are filled in from the store as :class:`~rag.models.Hit`.

Filters are applied inside each search, never to a cut top-k: the dense side searches only the allowed vector
rows, the lexical side only the allowed paragraphs, so a filter never returns fewer hits than exist.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from rag.embed import Embedder
from rag.errors import QueryError
from rag.fusion import Candidate, fuse
from rag.index import Index
from rag.lexical import Fts5Lexical, LexicalIndex, fts_terms
from rag.models import Hit
from rag.query import Filters, compile_filters
from rag.store import Store, Where
from rag.text import is_summary
from rag.vectors import search_faiss

__all__ = ["METHODS", "Method", "Searcher", "fill_hits"]

Method = Literal["hybrid", "dense", "bm25"]
METHODS: tuple[Method, ...] = ("hybrid", "dense", "bm25")
CANDIDATES = 100
MAX_QUERY_CHARS = 2000


class Searcher:
    """Searches one opened index. ``lexical`` replaces the FTS5 lexical index (rag.lexical.LexicalIndex)."""

    def __init__(self, index: Index, embedder: Embedder, *, lexical: LexicalIndex | None = None) -> None:
        self.index, self.embedder = index, embedder
        self.lexical: LexicalIndex = lexical or Fts5Lexical(lambda: self.index.store,
                                                             index.manifest.counts.get("paragraphs", 0))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.years = self.store.year_range()

    @property
    def store(self) -> Store:
        return self.index.store

    def count(self, filters: Filters) -> int:
        """How many cables pass ``filters`` together."""
        where = compile_filters(filters, self.store)
        return self.store.count_cables(where) if where is not None else self.index.manifest.counts.get("cables", 0)

    def search(self, query: str, *, k: int = 10, filters: Filters = Filters(), method: Method = "hybrid",
               query_vector: np.ndarray | None = None) -> list[Hit]:
        if not 1 <= k <= 1000:
            raise QueryError(f"k must be between 1 and 1000, got {k}")
        return fill_hits(self.store, self.candidates(query, depth=k, filters=filters, method=method,
                                                     query_vector=query_vector))

    def candidates(self, query: str, *, depth: int, filters: Filters = Filters(), method: Method = "hybrid",
                   query_vector: np.ndarray | None = None) -> list[Candidate]:
        """The best ``depth`` paragraphs for ``query``, fused, as rowids with their ranks and scores."""
        if method not in METHODS:
            raise QueryError(f"unknown search method {method!r}; use one of {', '.join(METHODS)}")
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        terms = fts_terms(query)
        if not terms:
            raise QueryError(f"the query {query!r} has no words to search for (only stop-words or punctuation); "
                             "ask with the names, places or topics you are looking for")
        where = compile_filters(filters, self.store)
        ranked: dict[str, list[tuple[int, float]]] = {}
        wanted = max(CANDIDATES, depth)
        lexical = (self._worker().submit(self.lexical.search, terms, depth=wanted, where=where)
                   if method != "dense" else None)
        if method in ("hybrid", "dense"):
            vector = query_vector if query_vector is not None else self.embedder.embed([query])[0]
            ranked["dense"] = self.dense(vector, wanted, where)
        if lexical is not None:
            ranked["bm25"] = lexical.result()
        pool = list(dict.fromkeys(r for results in ranked.values() for r, _ in results))
        summaries = {r for r, head, heading in self.store.summary_candidates(pool) if is_summary(head, heading)} \
            if len(ranked) > 1 else set()
        return fuse(ranked, k=depth, summaries=summaries)

    def dense(self, vector: np.ndarray, depth: int, where: Where | None) -> list[tuple[int, float]]:
        """(paragraph rowid, cosine) best first; a paragraph's score is that of its best window."""
        allowed = np.array(self.store.vector_rows(where), dtype=np.int64) if where is not None else None
        # Long paragraphs hold several windows: ask for more rows than paragraphs wanted.
        scores, rows = search_faiss(self.index.faiss, vector, depth * 2, allowed=allowed, vectors=self.index.vectors)
        owners = self.store.vector_owners([int(r) for r in rows])
        best: dict[int, float] = {}
        for score, row in zip(scores, rows):
            paragraph = owners.get(int(row))
            if paragraph is not None and paragraph not in best:
                best[paragraph] = float(score)
        return list(best.items())[:depth]

    def _worker(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lexical")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def fill_hits(store: Store, candidates: Sequence[Candidate]) -> list[Hit]:
    """Candidates as Hits, in their order, with each paragraph's text and its cable's metadata."""
    found = store.paragraphs([c.rowid for c in candidates])
    return [Hit(paragraph=found[c.rowid][0], cable=found[c.rowid][1], score=round(c.score, 6), ranks=c.ranks,
                scores={m: round(s, 6) for m, s in c.scores.items()})
            for c in candidates if c.rowid in found]
