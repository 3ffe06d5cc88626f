"""Paragraph search over an opened index: dense (FAISS), BM25 (SQLite FTS5), and both fused.

Filters are applied inside each search, never to a cut top-k: the dense side searches only the allowed vector
rows, the BM25 side only the allowed paragraphs, so a filter never returns fewer hits than exist.

Hybrid is weighted reciprocal rank fusion of the two candidate lists (each ``CANDIDATES`` long); a paragraph
found by one method only still counts. A summary paragraph ("Summary: ...", or under a Summary heading) counts
``SUMMARY_WEIGHT`` of its score: it restates in brief what a later paragraph says in detail, and the detail is what
a citation should point at. Constants were tuned on the dev questions (benchmarks/search.py): RRF_K 10 over 60,
the context column at full weight and the summary weight each added 0.02-0.05 MRR@10; with 55 questions, values
were kept at the middle of the plateaus rather than at the best point.

BM25 leaves out query words found in more than ``COMMON_SHARE`` of paragraphs ("us", "discussed", a month):
scoring every paragraph that holds them costs most of a query's time and they barely move the ranking. The BM25
query runs in a worker thread while the question is embedded and searched densely.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np

from rag.embed import Embedder
from rag.errors import QueryError
from rag.index import Index
from rag.models import Hit
from rag.query import Filters
from rag.text import STOPWORDS, is_summary
from rag.vectors import search_faiss

__all__ = ["METHODS", "Method", "Searcher"]

Method = Literal["hybrid", "dense", "bm25"]
METHODS: tuple[Method, ...] = ("hybrid", "dense", "bm25")
CANDIDATES = 100
RRF_K = 10
WEIGHTS = {"dense": 1.0, "bm25": 1.0}
# FTS5 column weights: the paragraph's own words, then its cable's context line.
BM25_WEIGHTS = (1.0, 1.0)
SUMMARY_WEIGHT = 0.7
COMMON_SHARE = 0.1
MAX_QUERY_CHARS = 2000
_TERM = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
# FTS5 query syntax words, which must not be read as operators.
_FTS_WORDS = {"and", "or", "not", "near"}


@dataclass(frozen=True, slots=True)
class _Where:
    sql: str
    params: tuple[object, ...]


class Searcher:
    def __init__(self, index: Index, embedder: Embedder) -> None:
        self.index, self.embedder = index, embedder
        self._df: dict[tuple[str, bool], int] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        row = self.db.execute("SELECT min(year), max(year) FROM cables").fetchone()
        self.years = (row[0], row[1])

    @property
    def db(self) -> sqlite3.Connection:
        return self.index.store.db

    # -- filters -------------------------------------------------------------------------------------------

    def where(self, filters: Filters) -> _Where:
        """SQL over ``cables c`` for ``filters``, after checking that each filter alone matches something."""
        clauses: list[str] = []
        params: list[object] = []
        if filters.origin:
            clauses.append("c.origin LIKE ? ESCAPE '\\'")
            params.append(f"%{_like(filters.origin)}%")
            self._check(clauses[-1], params[-1:], "origin", filters.origin, "SELECT DISTINCT origin FROM cables")
        dates: list[str] = []
        for bound, op in ((filters.date_from, ">="), (filters.date_to, "<")):
            if bound is None:
                continue
            first, last = self.years
            if first is None or not first - 1 <= bound.year <= last + 1:
                raise QueryError(f"date {bound.isoformat()} is outside the indexed cables' dates ({first}–{last}); "
                                 "choose a date in that range")
            dates.append((bound if op == ">=" else bound + timedelta(days=1)).isoformat())
            clauses.append(f"c.date {op} ?")
            params.append(dates[-1])
        if dates:
            self._check_dates(" AND ".join(clauses[-len(dates):]), dates, filters)
        if filters.classification:
            value = filters.classification.upper()
            if value in ("UNCLASSIFIED", "CONFIDENTIAL", "SECRET", "TOP SECRET", "UNCLAS"):
                clauses.append("c.level = ?")
                params.append("UNCLASSIFIED" if value == "UNCLAS" else value)
            else:
                clauses.append("c.classification LIKE ? ESCAPE '\\'")
                params.append(f"%{_like(value)}%")
            self._check(clauses[-1], params[-1:], "classification", value,
                        "SELECT DISTINCT classification FROM cables")
        for tag in filters.tags:
            clauses.append("c.rowid IN (SELECT cable FROM tags WHERE tag = ?)")
            params.append(tag)
            self._check(clauses[-1], params[-1:], "tag", tag, "SELECT DISTINCT tag FROM tags")
        if filters.cable_id:
            clauses.append("c.id = ?")
            params.append(filters.cable_id)
            self._check(clauses[-1], params[-1:], "cable", filters.cable_id, "SELECT id FROM cables")
        return _Where(" AND ".join(clauses) or "1", tuple(params))

    def _check(self, clause: str, params: list[object], name: str, value: str, known_sql: str) -> None:
        if self.db.execute(f"SELECT 1 FROM cables c WHERE {clause} LIMIT 1", params).fetchone():
            return
        known = [r[0] for r in self.db.execute(known_sql) if r[0]]
        # A value is also matched by its last words, so that "Moskow" finds "Embassy Moscow".
        lookup: dict[str, str] = {}
        for k in known:
            words = k.upper().split()
            for i in range(len(words)):
                lookup.setdefault(" ".join(words[i:]), k)
        close = list(dict.fromkeys(lookup[c] for c in difflib.get_close_matches(value.upper(), lookup, n=6,
                                                                                 cutoff=0.6)))[:3]
        hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
                else f"{len(known)} values are indexed, e.g. {', '.join(sorted(known)[:5])}")
        raise QueryError(f"no indexed cable has {name} {value!r}; {hint}")

    def _check_dates(self, clause: str, bounds: list[str], filters: Filters) -> None:
        """A date range inside the indexed years can still fall between cables: say which dates are nearest."""
        if self.db.execute(f"SELECT 1 FROM cables c WHERE {clause} LIMIT 1", bounds).fetchone():
            return
        start, stop = bounds[0], bounds[-1]  # the range is [start, stop): stop is the day after date_to
        before = self.db.execute("SELECT max(date) FROM cables WHERE date < ?", (start,)).fetchone()[0]
        after = self.db.execute("SELECT min(date) FROM cables WHERE date >= ?", (stop,)).fetchone()[0]
        asked = " ".join(f"{word} {bound.isoformat()}" for word, bound in
                         (("from", filters.date_from), ("to", filters.date_to)) if bound)
        nearest = " and ".join(d[:10] for d in (before, after) if d)
        raise QueryError(f"no indexed cable is dated {asked}; the nearest cables are dated {nearest}")

    def count(self, filters: Filters) -> int:
        """How many cables pass ``filters`` together."""
        where = self.where(filters)
        return int(self.db.execute(f"SELECT count(*) FROM cables c WHERE {where.sql}", where.params).fetchone()[0])

    # -- searches ------------------------------------------------------------------------------------------

    def search(self, query: str, *, k: int = 10, filters: Filters = Filters(), method: Method = "hybrid",
               query_vector: np.ndarray | None = None) -> list[Hit]:
        if method not in METHODS:
            raise QueryError(f"unknown search method {method!r}; use one of {', '.join(METHODS)}")
        if not 1 <= k <= 1000:
            raise QueryError(f"k must be between 1 and 1000, got {k}")
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        terms = fts_terms(query)
        if not terms:
            raise QueryError(f"the query {query!r} has no words to search for (only stop-words or punctuation); "
                             "ask with the names, places or topics you are looking for")
        where = self.where(filters) if filters else None
        ranked: dict[str, list[tuple[int, float]]] = {}
        depth = max(CANDIDATES, k)
        lexical = self._worker().submit(self.bm25, self.rare_terms(terms), depth, where) if method != "dense" else None
        if method in ("hybrid", "dense"):
            vector = query_vector if query_vector is not None else self.embedder.embed([query])[0]
            ranked["dense"] = self.dense(vector, depth, where)
        if lexical is not None:
            ranked["bm25"] = lexical.result()
        return self._hits(ranked, k)

    def _worker(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def rare_terms(self, terms: Sequence[str]) -> list[str]:
        """``terms`` without those too common to rank by; the rarest few when all of them are common."""
        total = self.index.manifest.counts.get("paragraphs", 0)
        rare = [t for t in terms if self.document_frequency(t) <= COMMON_SHARE * total]
        return rare or sorted(terms, key=self.document_frequency)[:3]

    def document_frequency(self, term: str, *, prefix: bool = False) -> int:
        """Paragraphs holding ``term`` (its paragraph text only, any word it begins, with ``prefix``); cached."""
        key = (term, prefix)
        if key not in self._df:
            match = f'body:"{term}"*' if prefix else f'"{term}"'
            self._df[key] = self.db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (match,)).fetchone()[0]
        return self._df[key]

    def dense(self, vector: np.ndarray, depth: int, where: _Where | None) -> list[tuple[int, float]]:
        """(paragraph rowid, cosine) best first; a paragraph's score is that of its best window."""
        allowed = None
        if where is not None:
            allowed = np.fromiter((r[0] for r in self.db.execute(
                "SELECT v.rowid FROM vectors v JOIN paragraphs p ON p.rowid = v.paragraph JOIN cables c ON "
                f"c.rowid = p.cable WHERE {where.sql} ORDER BY v.rowid", where.params)), dtype=np.int64)
        # Long paragraphs hold several windows: ask for more rows than paragraphs wanted.
        scores, rows = search_faiss(self.index.faiss, vector, depth * 2, allowed=allowed, vectors=self.index.vectors)
        owners = dict(self.db.execute(
            f"SELECT rowid, paragraph FROM vectors WHERE rowid IN ({','.join('?' * len(rows))})",
            [int(r) for r in rows]).fetchall()) if len(rows) else {}
        best: dict[int, float] = {}
        for score, row in zip(scores, rows):
            paragraph = owners.get(int(row))
            if paragraph is not None and paragraph not in best:
                best[paragraph] = float(score)
        return list(best.items())[:depth]

    def bm25(self, terms: Sequence[str], depth: int, where: _Where | None) -> list[tuple[int, float]]:
        """(paragraph rowid, BM25 score, higher is better) best first."""
        match = " OR ".join(f'"{t}"' for t in terms)
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        sql = f"SELECT rowid, -bm25(fts, {weights}) AS score FROM fts WHERE fts MATCH ?"
        params: tuple[object, ...] = (match,)
        if where is not None:
            sql += (" AND rowid IN (SELECT p.rowid FROM paragraphs p JOIN cables c ON c.rowid = p.cable "
                    f"WHERE {where.sql})")
            params += where.params
        sql += f" ORDER BY bm25(fts, {weights}) LIMIT ?"
        return [(int(r), float(s)) for r, s in self.db.execute(sql, params + (depth,))]

    def _hits(self, ranked: dict[str, list[tuple[int, float]]], k: int) -> list[Hit]:
        fused: dict[int, float] = {}
        ranks: dict[int, dict[str, int]] = {}
        raw: dict[int, dict[str, float]] = {}
        for method, results in ranked.items():
            for rank, (rowid, score) in enumerate(results, 1):
                fused[rowid] = fused.get(rowid, 0.0) + WEIGHTS[method] / (RRF_K + rank)
                ranks.setdefault(rowid, {})[method] = rank
                raw.setdefault(rowid, {})[method] = score
        if len(ranked) == 1:
            (method,) = ranked
            order = [rowid for rowid, _ in ranked[method]][:k]
            score_of = {rowid: raw[rowid][method] for rowid in order}
        else:
            for rowid in self._summaries(list(fused)):
                fused[rowid] *= SUMMARY_WEIGHT
            order = sorted(fused, key=lambda r: (-fused[r], min(ranks[r].values())))[:k]
            score_of = fused
        found = self.index.store.paragraphs(order)
        return [Hit(paragraph=found[r][0], cable=found[r][1], score=round(score_of[r], 6), ranks=ranks[r],
                    scores={m: round(s, 6) for m, s in raw[r].items()})
                for r in order if r in found]


    def _summaries(self, rowids: list[int]) -> set[int]:
        rows = self.db.execute(
            f"SELECT rowid, substr(text, 1, 40), heading FROM paragraphs WHERE rowid IN ({','.join('?' * len(rowids))})",
            rowids)
        return {r for r, head, heading in rows if is_summary(head, heading)}


def fts_terms(query: str) -> list[str]:
    """The query's words worth matching: no stop-words, no FTS5 operators, each at most once."""
    words = [w.lower().replace("’", "'") for w in _TERM.findall(query)]
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS and w not in _FTS_WORDS and (len(w) > 1 or w.isdigit())))


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
