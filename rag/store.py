"""The SQLite half of an index: cables, paragraphs, references, tags, vector rows and the FTS5 table for BM25.

Row ids tie everything together: ``paragraphs.rowid`` is the FTS5 rowid, and ``vectors.rowid`` is both the row
of ``vectors.f32`` and the FAISS id, with ``vectors.paragraph`` pointing back at the paragraph it embeds (a long
paragraph has several windows, so several vector rows). A replaced cable's vector rows keep their place in the
append-only vector file with ``paragraph`` NULL, and FAISS leaves them out.

Everything one batch writes happens in one transaction, together with the count of vector rows it committed and the
SHA-256 of the block of rows it appended (``vector_blocks``), so a build killed at any point leaves a database that
agrees with the first ``vectors_committed`` rows of the file, and a row changed on disk afterwards is found.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from rag.models import Cable, Paragraph
from rag.store_search import LEVELS, SearchQueries, Where

__all__ = ["LEVELS", "SCHEMA_VERSION", "Store", "Where", "cable_fingerprint", "context_line"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cables (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, date TEXT, year INTEGER, origin TEXT,
    classification TEXT, level TEXT, subject TEXT, signer TEXT, source TEXT, addressees TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cables_date ON cables(date);
CREATE TABLE IF NOT EXISTS tags (
    cable INTEGER NOT NULL, position INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (cable, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag);
CREATE TABLE IF NOT EXISTS refs (
    source TEXT NOT NULL, position INTEGER NOT NULL, target TEXT NOT NULL, PRIMARY KEY (source, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_target ON refs(target);
CREATE TABLE IF NOT EXISTS paragraphs (
    rowid INTEGER PRIMARY KEY, cable INTEGER NOT NULL, number INTEGER NOT NULL, text TEXT NOT NULL,
    marking TEXT, heading TEXT, numbered INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS paragraphs_cable ON paragraphs(cable, number);
CREATE TABLE IF NOT EXISTS vectors (rowid INTEGER PRIMARY KEY, paragraph INTEGER, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_paragraph ON vectors(paragraph);
CREATE INDEX IF NOT EXISTS vectors_hash ON vectors(hash);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(body, context, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS vector_blocks (first INTEGER PRIMARY KEY, rows INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""

_CHANGE_LOG = """
CREATE TABLE IF NOT EXISTS paragraph_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, paragraph INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS paragraph_inserted AFTER INSERT ON paragraphs
    BEGIN INSERT INTO paragraph_changes (paragraph) VALUES (new.rowid); END;
CREATE TRIGGER IF NOT EXISTS paragraph_deleted AFTER DELETE ON paragraphs
    BEGIN INSERT INTO paragraph_changes (paragraph) VALUES (old.rowid); END;
"""

_CABLE_COLUMNS = "c.rowid, c.id, c.date, c.origin, c.classification, c.subject, c.signer, c.source, c.addressees"


def cable_fingerprint(cable: Cable) -> str:
    """Changes whenever anything indexed about ``cable`` changes; equal fingerprints mean skip on re-index."""
    data = cable.to_dict()
    data.pop("source", None)  # the same cable read from another file is the same cable
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def context_line(cable: Cable, paragraph: Paragraph) -> str:
    """What a question names and a paragraph rarely repeats: where, when, what about, under which heading."""
    parts = [cable.origin or "", f"{cable.date:%d %B %Y}" if cable.date else "", cable.subject or ""]
    if paragraph.heading:
        parts.append(paragraph.heading)
    return ". ".join(p.strip() for p in parts if p and p.strip())


class Store(SearchQueries):
    """One SQLite database. Not thread-safe: open one Store per thread (SQLite allows many readers)."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        uri = f"file:{path}" + ("" if create else "?mode=ro")
        # Each thread opens its own Store (rag.index.Index.store); the flag only lets the owner close them all at the end.
        self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        # The default rollback journal, not WAL: with WAL every reader leaves -wal and -shm files beside the
        # database (so an unchanged index's folder changes) and needs write access to the folder to open it.
        if not create:
            self.db.execute("PRAGMA query_only=1")
        if create:
            self.db.executescript(_SCHEMA)
            if self.meta("schema") != str(SCHEMA_VERSION):
                # Only when missing or stale: rewriting it on every open changed the file of an unchanged index.
                self.set_meta(schema=str(SCHEMA_VERSION))

    def close(self) -> None:
        self.db.close()

    # -- metadata ------------------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, **values: str) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def counts(self) -> dict[str, int]:
        one = lambda sql: int(self.db.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "cables": one("SELECT count(*) FROM cables"),
            "paragraphs": one("SELECT count(*) FROM paragraphs"),
            "vectors": one("SELECT count(*) FROM vectors WHERE paragraph IS NOT NULL"),
            "vector_rows": one("SELECT count(*) FROM vectors"),
        }

    # -- writing -------------------------------------------------------------------------------------------

    def fingerprints(self, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for first in range(0, len(ids), 500):  # SQLite caps the number of ? in one statement
            part = list(ids[first:first + 500])
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(f"SELECT id, fingerprint FROM cables WHERE id IN ({marks})", part))
        return found

    def known_vectors(self, hashes: Iterable[str]) -> dict[str, int]:
        """Vector rows already holding the embedding of these texts (by hash), live or left by a replaced cable."""
        hashes = list(dict.fromkeys(hashes))
        found: dict[str, int] = {}
        for first in range(0, len(hashes), 500):
            part = hashes[first:first + 500]
            sql = f"SELECT hash, min(rowid) FROM vectors WHERE hash IN ({','.join('?' * len(part))}) GROUP BY hash"
            found.update(self.db.execute(sql, part))
        return found

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def remove_cable(self, cable_id: str) -> None:
        row = self.db.execute("SELECT rowid FROM cables WHERE id = ?", (cable_id,)).fetchone()
        if row is None:
            return
        rowid = row[0]
        paragraphs = [r[0] for r in self.db.execute("SELECT rowid FROM paragraphs WHERE cable = ?", (rowid,))]
        marks = ",".join("?" * len(paragraphs))
        self.db.execute(f"UPDATE vectors SET paragraph = NULL WHERE paragraph IN ({marks})", paragraphs)
        self.db.execute(f"DELETE FROM fts WHERE rowid IN ({marks})", paragraphs)
        self.db.execute("DELETE FROM paragraphs WHERE cable = ?", (rowid,))
        self.db.execute("DELETE FROM tags WHERE cable = ?", (rowid,))
        self.db.execute("DELETE FROM refs WHERE source = ?", (cable_id,))
        self.db.execute("DELETE FROM cables WHERE rowid = ?", (rowid,))

    def add_cable(self, cable: Cable) -> list[int]:
        """Insert ``cable`` (which must not be stored) and return its paragraphs' rowids, in order."""
        addressees = json.dumps({"to": cable.to, "info": cable.info, "references": cable.references})
        cursor = self.db.execute(
            "INSERT INTO cables (id, date, year, origin, classification, level, subject, signer, source, addressees, "
            "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cable.id, cable.date.isoformat() if cable.date else None, cable.date.year if cable.date else None,
             cable.origin, cable.classification, cable.level, cable.subject, cable.signer, cable.source, addressees,
             cable_fingerprint(cable)),
        )
        rowid = cursor.lastrowid
        self.db.executemany("INSERT INTO tags VALUES (?, ?, ?)", [(rowid, i, t) for i, t in enumerate(cable.tags)])
        self.db.executemany("INSERT INTO refs VALUES (?, ?, ?)", [(cable.id, i, r) for i, r in enumerate(cable.references)])
        rowids = []
        for p in cable.paragraphs:
            cursor = self.db.execute(
                "INSERT INTO paragraphs (cable, number, text, marking, heading, numbered) VALUES (?, ?, ?, ?, ?, ?)",
                (rowid, p.number, p.text, p.marking, p.heading, int(p.numbered)),
            )
            rowids.append(cursor.lastrowid)
            self.db.execute("INSERT INTO fts (rowid, body, context) VALUES (?, ?, ?)",
                            (cursor.lastrowid, p.text, context_line(cable, p)))
        return rowids

    def add_vectors(self, rows: Sequence[tuple[int, int, str]]) -> None:
        """(vector row, paragraph rowid, text hash) for rows just appended to the vector file."""
        self.db.executemany("INSERT INTO vectors (rowid, paragraph, hash) VALUES (?, ?, ?)", rows)

    # -- integrity (rag.check, rag.repair) ------------------------------------------------------------------

    def add_block(self, first: int, rows: int, sha256: str) -> None:
        """Record (or, after a repair, replace) the checksum of vector rows ``first`` to ``first + rows - 1``."""
        self.db.execute("INSERT OR REPLACE INTO vector_blocks VALUES (?, ?, ?)", (first, rows, sha256))

    def blocks(self) -> list[tuple[int, int, str]]:
        """(first row, rows, SHA-256) of every checksummed block, by row; none in an index built before checksums."""
        try:
            return list(self.db.execute("SELECT first, rows, sha256 FROM vector_blocks ORDER BY first"))
        except sqlite3.OperationalError:  # no such table: read-only, and built before checksums
            return []

    def vector_range(self, first: int, stop: int) -> list[tuple[int, int | None, str]]:
        """(vector row, paragraph rowid or None, text hash) of rows ``first`` to ``stop - 1``."""
        return list(self.db.execute("SELECT rowid, paragraph, hash FROM vectors WHERE rowid >= ? AND rowid < ? "
                                    "ORDER BY rowid", (first, stop)))

    def forget_vectors(self, rows: Sequence[int]) -> None:
        """Rows whose vector was lost and cannot be derived again (a replaced cable's): never reuse them."""
        self.db.executemany("UPDATE vectors SET hash = '' WHERE rowid = ?", [(r,) for r in rows])

    def corpus_fingerprint(self) -> str:
        """One digest of every stored cable's id and fingerprint: equal for indexes of the same cables."""
        digest = hashlib.sha256()
        for cable_id, fingerprint in self.db.execute("SELECT id, fingerprint FROM cables ORDER BY id"):
            digest.update(f"{cable_id}:{fingerprint}\n".encode())
        return digest.hexdigest()[:32]

    def quick_check(self) -> str:
        """SQLite's own structural check of the file: "ok", or what it found wrong first."""
        return str(self.db.execute("PRAGMA quick_check").fetchone()[0])

    # -- reading -------------------------------------------------------------------------------------------

    def live_vectors(self) -> Iterator[tuple[int, int]]:
        """(vector row, paragraph rowid) of every vector that belongs to a stored paragraph, by row."""
        return iter(self.db.execute("SELECT rowid, paragraph FROM vectors WHERE paragraph IS NOT NULL ORDER BY rowid"))

    def cable(self, cable_id: str, *, paragraphs: bool = True) -> Cable | None:
        row = self.db.execute(f"SELECT {_CABLE_COLUMNS} FROM cables c WHERE c.id = ?", (cable_id,)).fetchone()
        if row is None:
            return None
        return self._cables([row], with_paragraphs=paragraphs)[row[0]]

    def cable_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM cables ORDER BY id")]

    def paragraphs(self, rowids: Sequence[int]) -> dict[int, tuple[Paragraph, Cable]]:
        """Paragraphs by rowid, each with its cable's metadata (a Cable without paragraphs)."""
        out: dict[int, tuple[Paragraph, Cable]] = {}
        rows = []
        for first in range(0, len(rowids), 500):
            part = list(rowids[first:first + 500])
            rows += self.db.execute(
                "SELECT p.rowid, p.cable, p.number, p.text, p.marking, p.heading, p.numbered, c.id FROM paragraphs p "
                f"JOIN cables c ON c.rowid = p.cable WHERE p.rowid IN ({','.join('?' * len(part))})", part,
            ).fetchall()
        cable_rows = {r[1] for r in rows}
        marks = ",".join("?" * len(cable_rows))
        cables = self._cables(
            self.db.execute(f"SELECT {_CABLE_COLUMNS} FROM cables c WHERE c.rowid IN ({marks})", list(cable_rows)),
            with_paragraphs=False,
        )
        for rowid, cable_row, number, text, marking, heading, numbered, cable_id in rows:
            out[rowid] = (Paragraph(cable_id, number, text, marking, heading, bool(numbered)), cables[cable_row])
        return out

    def _cables(self, rows: Iterable[tuple], *, with_paragraphs: bool) -> dict[int, Cable]:
        cables: dict[int, Cable] = {}
        for rowid, cable_id, date, origin, classification, subject, signer, source, addressees in rows:
            extra = json.loads(addressees)
            tags = tuple(r[0] for r in self.db.execute("SELECT tag FROM tags WHERE cable = ? ORDER BY position", (rowid,)))
            paragraphs: tuple[Paragraph, ...] = ()
            if with_paragraphs:
                paragraphs = tuple(
                    Paragraph(cable_id, n, text, marking, heading, bool(numbered))
                    for n, text, marking, heading, numbered in self.db.execute(
                        "SELECT number, text, marking, heading, numbered FROM paragraphs WHERE cable = ? ORDER BY rowid",
                        (rowid,))
                )
            cables[rowid] = Cable(
                id=cable_id, date=datetime.fromisoformat(date) if date else None, origin=origin,
                classification=classification, subject=subject, paragraphs=paragraphs, to=tuple(extra["to"]),
                info=tuple(extra["info"]), tags=tags, references=tuple(extra["references"]), signer=signer,
                source=source,
            )
        return cables

    def referenced_by(self, cable_id: str) -> list[str]:
        """Ids of stored cables whose REF lines name ``cable_id``."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT source FROM refs WHERE target = ? ORDER BY source",
                                              (cable_id,))]

    def indexed(self, cable_ids: Iterable[str]) -> set[str]:
        ids = list(cable_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        return {r[0] for r in self.db.execute(f"SELECT id FROM cables WHERE id IN ({marks})", ids)}

    # -- the change log of a lexical index kept outside SQLite (rag.lexical_tantivy) ------------------------
    # Triggers log every paragraph inserted or deleted, in the transaction that does it; the engine replays the
    # log and then forgets what it holds.

    def log_paragraph_changes(self) -> None:
        """Start logging paragraph inserts and deletes (idempotent)."""
        self.db.executescript(_CHANGE_LOG)

    def last_change(self) -> int:
        """The number of the last change ever logged (forgotten ones included: AUTOINCREMENT keeps it); 0 when none."""
        try:
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'paragraph_changes'").fetchone()
        except sqlite3.OperationalError:  # no sqlite_sequence: nothing was ever logged
            return 0
        return int(row[0]) if row else 0

    def changed_paragraphs(self, after: int, upto: int) -> list[int]:
        """Rowids of the paragraphs inserted or deleted by the changes numbered ``after + 1`` to ``upto``."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT paragraph FROM paragraph_changes WHERE seq > ? AND seq <= ?", (after, upto))]

    def forget_changes(self, upto: int) -> None:
        self.db.execute("DELETE FROM paragraph_changes WHERE seq <= ?", (upto,))

    def lexical_rows(self, rowids: Sequence[int] | None = None) -> Iterator[tuple[int, int, str, str]]:
        """(paragraph rowid, cable rowid, text, context line) of the stored paragraphs among ``rowids`` (every one
        when None), what a lexical index holds of a paragraph."""
        sql = ("SELECT p.rowid, p.cable, p.number, p.text, p.heading, c.id, c.date, c.origin, c.subject "
               "FROM paragraphs p JOIN cables c ON c.rowid = p.cable")
        if rowids is None:
            parts: Iterable[tuple[str, list[int]]] = [(sql + " ORDER BY p.rowid", [])]
        else:
            parts = ((sql + f" WHERE p.rowid IN ({','.join('?' * len(rowids[i:i + 500]))})", list(rowids[i:i + 500]))
                     for i in range(0, len(rowids), 500))
        for query, params in parts:
            for rowid, cable, number, text, heading, cable_id, date, origin, subject in self.db.execute(query, params):
                shell = Cable(id=cable_id, date=datetime.fromisoformat(date) if date else None, origin=origin,
                              classification=None, subject=subject, paragraphs=())
                yield rowid, cable, text, context_line(shell, Paragraph(cable_id, number, text, heading=heading))
