"""The search half of :class:`rag.store.Store`: the queries that filters, retrieval and the answer layer make.

A ``Where`` (from :meth:`SearchQueries.where`) is a condition over ``cables c``; callers pass it back and never
write SQL themselves. The methods read ``self.db``, the store's connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from rag.query import Filters

__all__ = ["LEVELS", "SearchQueries", "Where"]


@dataclass(frozen=True, slots=True)
class Where:
    """A condition over ``cables c`` made by :meth:`SearchQueries.where`, with its parameters."""

    sql: str
    params: tuple[object, ...]


LEVELS = {"UNCLASSIFIED": "UNCLASSIFIED", "UNCLAS": "UNCLASSIFIED", "CONFIDENTIAL": "CONFIDENTIAL",
          "SECRET": "SECRET", "TOP SECRET": "TOP SECRET"}


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SearchQueries:
    """Mixed into :class:`rag.store.Store`."""

    db: sqlite3.Connection


    def where(self, filters: Filters) -> Where:
        """The condition over ``cables c`` that ``filters`` set together (the values unchecked: rag.query checks)."""
        clauses: list[str] = []
        params: list[object] = []
        if filters.origin:
            clauses.append("c.origin LIKE ? ESCAPE '\\'")
            params.append(f"%{_like(filters.origin)}%")
        if filters.date_from:
            clauses.append("c.date >= ?")
            params.append(filters.date_from.isoformat())
        if filters.date_to:
            clauses.append("c.date < ?")
            params.append((filters.date_to + timedelta(days=1)).isoformat())
        if filters.classification:
            value = filters.classification.upper()
            if value in LEVELS:
                clauses.append("c.level = ?")
                params.append(LEVELS[value])
            else:
                clauses.append("c.classification LIKE ? ESCAPE '\\'")
                params.append(f"%{_like(value)}%")
        for tag in filters.tags:
            clauses.append("c.rowid IN (SELECT cable FROM tags WHERE tag = ?)")
            params.append(tag)
        if filters.cable_id:
            clauses.append("c.id = ?")
            params.append(filters.cable_id)
        return Where(" AND ".join(clauses) or "1", tuple(params))

    def any_cable(self, where: Where) -> bool:
        return self.db.execute(f"SELECT 1 FROM cables c WHERE {where.sql} LIMIT 1", where.params).fetchone() is not None

    def count_cables(self, where: Where) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM cables c WHERE {where.sql}", where.params).fetchone()[0])

    def distinct(self, field: str) -> list[str]:
        """Every value of one filterable field: ``origin``, ``classification``, ``level``, ``tag`` or ``id``."""
        sql = {"origin": "SELECT DISTINCT origin FROM cables", "classification": "SELECT DISTINCT classification FROM cables",
               "level": "SELECT DISTINCT level FROM cables", "tag": "SELECT DISTINCT tag FROM tags",
               "id": "SELECT id FROM cables"}[field]
        return sorted(r[0] for r in self.db.execute(sql) if r[0])

    def year_range(self) -> tuple[int | None, int | None]:
        first, last = self.db.execute("SELECT min(year), max(year) FROM cables").fetchone()
        return first, last

    def nearest_dates(self, start: str, stop: str) -> tuple[str | None, str | None]:
        """The last cable date before ``start`` and the first on or after ``stop`` (ISO strings)."""
        before = self.db.execute("SELECT max(date) FROM cables WHERE date < ?", (start,)).fetchone()[0]
        after = self.db.execute("SELECT min(date) FROM cables WHERE date >= ?", (stop,)).fetchone()[0]
        return before, after

    def vector_rows(self, where: Where) -> list[int]:
        """Vector rows of the paragraphs of cables passing ``where``, ascending."""
        return [r[0] for r in self.db.execute(
            "SELECT v.rowid FROM vectors v JOIN paragraphs p ON p.rowid = v.paragraph JOIN cables c ON "
            f"c.rowid = p.cable WHERE {where.sql} ORDER BY v.rowid", where.params)]

    def cables_in(self, where: Where) -> list[int]:
        """Rowids of the cables passing ``where``, ascending."""
        return [r[0] for r in self.db.execute(f"SELECT c.rowid FROM cables c WHERE {where.sql} ORDER BY c.rowid",
                                              where.params)]

    def vector_owners(self, rows: Sequence[int]) -> dict[int, int]:
        """Vector row -> the paragraph rowid it embeds (rows of replaced cables left out)."""
        owners: dict[int, int] = {}
        for first in range(0, len(rows), 500):
            part = [int(r) for r in rows[first:first + 500]]
            owners.update(self.db.execute(
                f"SELECT rowid, paragraph FROM vectors WHERE paragraph IS NOT NULL AND rowid IN ({','.join('?' * len(part))})",
                part))
        return owners

    def fts_count(self, match: str, *, limit: int | None = None) -> int:
        """Paragraphs matching an FTS5 query; counting stops at ``limit`` (1 asks whether there is any)."""
        if limit is None:
            return int(self.db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (match,)).fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM (SELECT 1 FROM fts WHERE fts MATCH ? LIMIT ?)",
                                   (match, limit)).fetchone()[0])

    def fts_rank(self, match: str, *, weights: Sequence[float], depth: int,
                 where: Where | None = None) -> list[tuple[int, float]]:
        """(paragraph rowid, BM25 score, higher is better) for an FTS5 query, best first, inside ``where``."""
        columns = ", ".join(str(w) for w in weights)
        sql = f"SELECT rowid, -bm25(fts, {columns}) FROM fts WHERE fts MATCH ?"
        params: tuple[object, ...] = (match,)
        if where is not None:
            sql += (" AND rowid IN (SELECT p.rowid FROM paragraphs p JOIN cables c ON c.rowid = p.cable "
                    f"WHERE {where.sql})")
            params += where.params
        sql += f" ORDER BY bm25(fts, {columns}) LIMIT ?"
        return [(int(r), float(s)) for r, s in self.db.execute(sql, params + (depth,))]

    def fts_cables(self, match: str, *, within: Sequence[int] | None = None, limit: int = 100_000) -> set[int]:
        """Rowids of cables with a paragraph (text or context) matching an FTS5 query, at most ``limit`` of them,
        optionally only among ``within`` (500 at the most: a longer list is intersected by the caller)."""
        sql = "SELECT DISTINCT p.cable FROM fts JOIN paragraphs p ON p.rowid = fts.rowid WHERE fts MATCH ?"
        params: list[object] = [match]
        if within is not None:
            if not within:
                return set()
            if len(within) > 500:
                raise ValueError("fts_cables takes at most 500 cables in within")
            sql += f" AND p.cable IN ({','.join('?' * len(within))})"
            params += list(within)
        return {r[0] for r in self.db.execute(sql + " LIMIT ?", [*params, limit])}

    def fts_paragraphs(self, match: str, *, cables: Iterable[int], limit: int = 200) -> list[int]:
        """Rowids of paragraphs of ``cables`` matching an FTS5 query, best BM25 first."""
        cables = list(cables)
        if not cables:
            return []
        return [r[0] for r in self.db.execute(
            "SELECT fts.rowid FROM fts JOIN paragraphs p ON p.rowid = fts.rowid WHERE fts MATCH ? "
            f"AND p.cable IN ({','.join('?' * len(cables))}) ORDER BY bm25(fts) LIMIT ?", [match, *cables, limit])]

    def cables_dated_from(self, day: str, *, within: Iterable[int] | None = None) -> set[int]:
        """Rowids of the cables dated on or after ``day`` (ISO; such a cable can report on what happened then),
        optionally among ``within``."""
        if within is None:
            return {r[0] for r in self.db.execute("SELECT rowid FROM cables WHERE date >= ?", (day,))}
        cables = list(within)
        found: set[int] = set()
        for first in range(0, len(cables), 500):
            part = cables[first:first + 500]
            found.update(r[0] for r in self.db.execute(
                f"SELECT rowid FROM cables WHERE date >= ? AND rowid IN ({','.join('?' * len(part))})", [day, *part]))
        return found

    def cables_saying(self, words: Sequence[str], *, within: Sequence[int]) -> set[int]:
        """Rowids of the cables among ``within`` (500 at most) with a paragraph holding ``words`` in that order
        (as text, case ignored: "march 2010" finds "March 6, 2010")."""
        pattern = "%" + "%".join(_like(w) for w in words) + "%"
        return {r[0] for r in self.db.execute(
            f"SELECT DISTINCT cable FROM paragraphs WHERE cable IN ({','.join('?' * len(within))}) "
            "AND text LIKE ? ESCAPE '\\'", [*within, pattern])}

    def cable_rows(self, cable_ids: Sequence[str]) -> dict[str, int]:
        """Cable id -> its rowid, for the stored ones."""
        ids = list(dict.fromkeys(cable_ids))
        if not ids:
            return {}
        return dict(self.db.execute(f"SELECT id, rowid FROM cables WHERE id IN ({','.join('?' * len(ids))})", ids))

    def summary_candidates(self, rowids: Sequence[int]) -> list[tuple[int, str, str | None]]:
        """(rowid, the first 40 characters, heading) of paragraphs, for telling summaries apart."""
        if not rowids:
            return []
        return self.db.execute(
            f"SELECT rowid, substr(text, 1, 40), heading FROM paragraphs WHERE rowid IN ({','.join('?' * len(rowids))})",
            list(rowids)).fetchall()

    def cable_rowids(self, paragraph_rowids: Sequence[int]) -> dict[int, int]:
        """Paragraph rowid -> its cable's rowid."""
        if not paragraph_rowids:
            return {}
        return dict(self.db.execute(
            f"SELECT rowid, cable FROM paragraphs WHERE rowid IN ({','.join('?' * len(paragraph_rowids))})",
            list(paragraph_rowids)))
