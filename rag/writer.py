"""The one writer of an index: :class:`IndexWriter` takes batches of cables (and, from rag.distributed, their
vectors already embedded) and keeps the folder consistent, as rag.indexer's docstring says: the build lock, the
check and repair before anything is added, batches appended and committed together, duplicates reported once.

What is embedded for a paragraph is its cable's context (origin, date, subject, section heading) and then its
text: questions name the country, the year and the topic, which a paragraph rarely repeats.
"""


from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rag.check import check_index
from rag.embed import Embedder
from rag.errors import IndexCorruptError, IndexMissingError
from rag.index import (
    COUNTS,
    DATABASE,
    FAISS,
    MANIFEST,
    VECTORS,
    Manifest,
    check_model,
    lost_database,
    recorded_build,
)
from rag.lexical_tantivy import sync_lexical
from rag.lock import BuildLock
from rag.models import Cable, Paragraph
from rag.repair import repair
from rag.store import Store, cable_fingerprint, context_line
from rag.vectors import VectorFile, block_digest, build_faiss


__all__ = ["Duplicate", "IndexWriter", "LISTED", "embedding_text", "paragraph_texts", "text_hash", "window_texts"]

# Tokens kept free in each window for the context line; longer context lines are cut to fit.
_CONTEXT_TOKENS = 48
_CONTEXT_CHARS = 180
# Duplicates and load problems kept in a summary; the counts are always whole.
LISTED = 50

@dataclass(frozen=True, slots=True)
class Duplicate:
    """A cable id met again in one build: the copy ``kept`` (the first read) and the one left out."""

    id: str
    kept: str | None
    dropped: str | None
    same: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.same:
            return f"{self.id}: {self.dropped} holds the same cable as {self.kept}; indexed once"
        return (f"{self.id}: {self.dropped} gives a different text than {self.kept}; kept the version in "
                f"{self.kept}, the first read")


def embedding_text(context: str, window: str) -> str:
    return f"{context[:_CONTEXT_CHARS]}\n{window}" if context else window


def text_hash(text: str) -> str:
    """The key of an embedded text: vectors given to :meth:`IndexWriter.write` are looked up by it."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def paragraph_texts(cable: Cable, paragraph: Paragraph, embedder: Embedder) -> list[str]:
    """What is embedded for ``paragraph``: one text per window of it, each led by its context line."""
    context = context_line(cable, paragraph)
    return [embedding_text(context, window)
            for window in embedder.windows(paragraph.text, reserve=_CONTEXT_TOKENS if context else 0)]


def window_texts(cables: Sequence[Cable], embedder: Embedder) -> tuple[list[str], list[tuple[int, int]]]:
    """Every text embedded for ``cables``, and its owner: (cable position, paragraph position)."""
    texts: list[str] = []
    owners: list[tuple[int, int]] = []
    for i, cable in enumerate(cables):
        for j, paragraph in enumerate(cable.paragraphs):
            for text in paragraph_texts(cable, paragraph, embedder):
                texts.append(text)
                owners.append((i, j))
    return texts, owners


class IndexWriter:
    """The one writer of an index folder, from open to :meth:`close`: it holds the build lock, mends what the
    check finds at open, and takes batches of cables.

    ``select(batch)`` returns the cables of a batch that need writing (new or changed, each id once per build, the
    first copy winning) and records the rest; ``write(cables, vectors)`` writes them, with ``vectors`` mapping
    :func:`text_hash` of texts from :func:`window_texts` to vectors embedded elsewhere (anything missing is copied
    from the index or embedded here); ``finish()`` rebuilds FAISS and the manifest when anything changed.
    ``repair_only``: refuse to create an index, only mend an existing one.
    """

    def __init__(self, folder: Path, embedder: Embedder, *, repair_only: bool = False,
                 lexical: str | None = None) -> None:
        self.folder, self.embedder, self.lexical_engine = folder, embedder, lexical
        if not (folder / DATABASE).exists():
            if any((folder / name).exists() for name in (MANIFEST, VECTORS, FAISS)):
                raise IndexCorruptError(f"{folder / DATABASE} is missing: {lost_database(folder)}",
                                        folder=folder)
            if repair_only:
                raise IndexMissingError(f"no index at {folder} to repair; build one with `cablechat index CABLES "
                                        f"--index {folder}`", folder=folder)
        self._made_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = BuildLock(folder)
        self.lock.acquire()
        self.created = not (folder / DATABASE).exists()
        self.added = self.replaced = self.unchanged = self.embedded = self.reused = 0
        self.duplicates: list[Duplicate] = []
        self.duplicate_count = 0
        self._seen: dict[str, tuple[str | None, str]] = {}
        self.repaired: list[str] = []
        try:
            self.store = Store(folder / DATABASE, create=True)
        except sqlite3.DatabaseError as exc:
            self.lock.release()
            raise IndexCorruptError(f"cannot open {folder / DATABASE} ({exc}): {lost_database(folder)}",
                                    folder=folder) from exc
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        store, embedder = self.store, self.embedder
        model, dim = store.meta("model"), store.meta("dim")
        if model is not None and dim is not None:
            check_model(self.folder, model, int(dim), embedder)
        else:
            store.set_meta(model=embedder.name, dim=str(embedder.dim), vectors_committed="0")
        backend = getattr(embedder, "backend", None)
        if backend and store.meta("embed_backend") != backend:
            store.set_meta(embed_backend=backend)
        self.vectors = VectorFile(self.folder / VECTORS, embedder.dim)
        self.lexical = sync_lexical(self.folder, store, self.lexical_engine)
        self.changed = self.created
        if self.created:
            return
        report = check_index(self.folder, own_build=True)
        if not report.database_ok:
            raise IndexCorruptError(f"{'; '.join(p.message for p in report.problems)}: "
                                    f"{lost_database(self.folder)}", folder=self.folder)
        mend = bool(report.problems or report.notes)
        if mend:
            # Before mending anything: a repair killed half-way must leave a folder that no reader takes as whole.
            (self.folder / MANIFEST).unlink(missing_ok=True)
        self.repaired = repair(report, store, self.vectors, _texts_of(embedder), self._embed)
        if mend and not report.half_built:  # a half-built index is resumed, not repaired
            self.repaired.append("FAISS index and manifest rebuilt")
        self.changed = mend
        if not self.changed and self.lexical is not None and self.lexical.behind(store):
            self.repaired.append("lexical index rebuilt from the database")
            (self.folder / MANIFEST).unlink(missing_ok=True)
            self.changed = True

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(texts), dtype=np.float32).reshape(len(texts), self.embedder.dim)

    # -- adding cables ---------------------------------------------------------------------------------------

    def note_input(self, path: str | os.PathLike[str]) -> None:
        """Record ``path`` among the inputs that gave cables, for the commands messages name (rag.index)."""
        recorded = json.loads(self.store.meta("inputs") or "[]")
        resolved = str(Path(path).resolve())
        if resolved not in recorded:  # written only when new: a write changes the file of an unchanged index
            self.store.set_meta(inputs=json.dumps([*recorded, resolved]))

    def select(self, batch: Sequence[Cable]) -> list[Cable]:
        """The cables of ``batch`` to write: new or changed, and not already met in this build."""
        fresh: dict[str, Cable] = {}
        for cable in batch:
            fingerprint = cable_fingerprint(cable)
            first = self._seen.get(cable.id)
            if first is not None:
                self.duplicate_count += 1
                if len(self.duplicates) < LISTED:
                    self.duplicates.append(Duplicate(cable.id, first[0], cable.source, first[1] == fingerprint))
                continue
            self._seen[cable.id] = (cable.source, fingerprint)
            fresh[cable.id] = cable
        stored = self.store.fingerprints(list(fresh))
        todo = [c for i, c in fresh.items() if stored.get(i) != self._seen[i][1]]
        self.unchanged += len(fresh) - len(todo)
        return todo

    def write(self, cables: Sequence[Cable], vectors: Mapping[str, np.ndarray] | None = None) -> None:
        """Write ``cables`` (from :meth:`select`), replacing stored versions, in one batch."""
        if not cables:
            return
        if not self.changed:
            # From here until the new manifest is written, the folder is a half-built index to every reader.
            (self.folder / MANIFEST).unlink(missing_ok=True)
            self.changed = True
        given = vectors or {}
        texts, owners = window_texts(cables, self.embedder)
        hashes = [text_hash(t) for t in texts]
        known = self.store.known_vectors(h for h in hashes if h not in given)
        to_embed: dict[str, str] = {}  # hash -> text, each new text once
        for h, text in zip(hashes, texts):
            if h not in known and h not in given:
                to_embed.setdefault(h, text)
        by_hash = dict(zip(to_embed, self._embed(list(to_embed.values())))) if to_embed else {}
        supplied = {h: given[h] for h in dict.fromkeys(hashes) if h in given}
        by_hash.update(supplied)
        reused = [h for h in dict.fromkeys(hashes) if h not in by_hash]
        by_hash.update(zip(reused, self.vectors.rows([known[h] for h in reused])))
        block = np.array([by_hash[h] for h in hashes], dtype=np.float32).reshape(len(hashes), self.embedder.dim)
        self.embedded += len(to_embed) + len(supplied)
        self.reused += len(hashes) - len(to_embed) - len(supplied)
        replace = self.store.indexed([c.id for c in cables])
        first_row = self.vectors.append(block) if len(block) else len(self.vectors)
        self.store.begin()
        try:
            for cable_id in replace:
                self.store.remove_cable(cable_id)
            paragraph_rows = [self.store.add_cable(c) for c in cables]
            self.store.add_vectors([(first_row + n, paragraph_rows[i][j], hashes[n])
                                    for n, (i, j) in enumerate(owners)])
            if len(block):
                self.store.add_block(first_row, len(block), block_digest(block))
            self.store.set_meta(vectors_committed=str(first_row + len(block)))
            self.store.commit()
        except BaseException:
            self.store.db.execute("ROLLBACK")
            raise
        self.added += len(cables) - len(replace)
        self.replaced += len(replace)

    # -- ending ----------------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Rebuild FAISS and write the manifest, if anything changed; returns the FAISS description."""
        if not self.changed:
            return Manifest.read(self.folder).faiss
        import faiss

        ids = np.fromiter((row for row, _ in self.store.live_vectors()), dtype=np.int64)
        index, described = build_faiss(self.vectors, ids)
        data = faiss.serialize_index(index).tobytes()
        tmp = self.folder / f".{FAISS}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / FAISS)
        if self.lexical is not None:
            self.lexical.sync(self.store)
        counts = self.store.counts()
        _, inputs = recorded_build(self.folder)
        Manifest(
            model=self.embedder.name, dim=self.embedder.dim, counts={k: counts[k] for k in COUNTS},
            fingerprint=self.store.corpus_fingerprint(),
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), faiss=described,
            embed_backend=getattr(self.embedder, "backend", None), build={"inputs": inputs},
            checksums={FAISS: hashlib.sha256(data).hexdigest()},
        ).write(self.folder)
        report = check_index(self.folder, own_build=True)
        if not report.ok:
            (self.folder / MANIFEST).unlink()
            raise IndexCorruptError(f"index {self.folder} failed its own check after this build: "
                                    f"{'; '.join(p.message for p in report.problems)}; run `{report.fix}`",
                                    folder=self.folder)
        return described

    def abandon(self) -> None:
        """Remove what this writer created, when it created the index and added nothing to it."""
        self.store.close()
        if self.created:
            for name in (DATABASE, f"{DATABASE}-journal", VECTORS):
                (self.folder / name).unlink(missing_ok=True)
        self.lock.release()
        if self._made_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: leave it

    def close(self) -> None:
        """Close the database and release the build lock; again, or after :meth:`abandon`, it does nothing more."""
        self.store.close()
        self.lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _texts_of(embedder: Embedder) -> Callable[[Store, Sequence[int]], dict[int, dict[str, str]]]:
    """For rag.repair: the texts embedded for stored paragraphs, by paragraph rowid, each by its hash."""

    def texts_of(store: Store, rowids: Sequence[int]) -> dict[int, dict[str, str]]:
        return {rowid: {text_hash(t): t for t in paragraph_texts(cable, paragraph, embedder)}
                for rowid, (paragraph, cable) in store.paragraphs(rowids).items()}

    return texts_of

