"""Build or extend an index: ``build_index(paths, index_dir, embedder=...)``.

Incremental: a cable already stored with the same fingerprint is skipped, one with a changed text is replaced,
and a text whose embedding the index already holds (a replaced cable's unchanged paragraph, boilerplate repeated
across cables) is copied instead of embedded again.

Crash-safe: cables are written in batches. Each batch's vectors are appended to ``vectors.f32`` and fsynced, then
the batch's rows and the new count of committed vector rows are committed in one SQLite transaction. A build
killed anywhere leaves at most some uncommitted vector rows, which the next build truncates, and no manifest,
so nothing loads the half-built index; running the same command again resumes where it stopped.

What is embedded for a paragraph is its cable's context (origin, date, subject, section heading) and then its
text: questions name the country, the year and the topic, which a paragraph rarely repeats.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed import Embedder
from rag.errors import IndexCorruptError
from rag.index import DATABASE, FAISS, MANIFEST, VECTORS, Manifest, check_model
from rag.loaders import LoadReport, load_cables
from rag.models import Cable
from rag.store import Store, cable_fingerprint, context_line
from rag.vectors import VectorFile, build_faiss

__all__ = ["BuildSummary", "build_index", "embedding_text"]

BATCH_CABLES = 32
# Tokens kept free in each window for the context line; longer context lines are cut to fit.
_CONTEXT_TOKENS = 48
_CONTEXT_CHARS = 180


@dataclass(frozen=True, slots=True)
class BuildSummary:
    added: int
    replaced: int
    skipped: int
    cables: int
    paragraphs: int
    vectors: int
    embedded: int
    reused: int
    seconds: float
    load: dict[str, Any]
    faiss: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        rate = f", {self.embedded / self.seconds:.1f} windows/s" if self.embedded and self.seconds else ""
        return (f"{self.added} cables added, {self.replaced} replaced, {self.skipped} unchanged; index holds "
                f"{self.cables} cables, {self.paragraphs} paragraphs, {self.vectors} vectors "
                f"({self.embedded} embedded, {self.reused} reused{rate}) in {self.seconds:.1f}s")


def embedding_text(context: str, window: str) -> str:
    return f"{context[:_CONTEXT_CHARS]}\n{window}" if context else window


def _text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _batches(cables: Iterable[Cable], size: int) -> Iterator[list[Cable]]:
    batch: list[Cable] = []
    for cable in cables:
        batch.append(cable)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Builder:
    def __init__(self, folder: Path, embedder: Embedder) -> None:
        self.folder, self.embedder = folder, embedder
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.store = Store(folder / DATABASE, create=True)
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"cannot open {folder / DATABASE} ({exc}); rebuild the index into a new folder: "
                                    "`cablechat index PATH... --index NEW_DIR`") from exc
        try:
            model, dim = self.store.meta("model"), self.store.meta("dim")
            if model is not None and dim is not None:
                check_model(folder, model, int(dim), embedder)
            else:
                self.store.set_meta(model=embedder.name, dim=str(embedder.dim), vectors_committed="0")
            self.vectors = VectorFile(folder / VECTORS, embedder.dim)
            committed = int(self.store.meta("vectors_committed") or 0)
            if len(self.vectors) < committed:
                # Truncating "up" would fill the missing rows with zeros: the file lost rows a commit vouched for.
                raise IndexCorruptError(
                    f"{folder / VECTORS} holds {len(self.vectors)} vectors but {committed} were committed; it was "
                    "cut or replaced after a build: rebuild the index into a new folder: `cablechat index PATH... "
                    "--index NEW_DIR`")
        except BaseException:
            self.store.close()
            raise
        if len(self.vectors) != committed:
            self.vectors.truncate(committed)  # rows of a batch that was killed before its commit
        self.changed = not (folder / MANIFEST).exists() or not (folder / FAISS).exists()
        self.embedded = self.reused = 0

    def unchanged(self, batch: Sequence[Cable]) -> tuple[list[Cable], list[Cable], int]:
        """(new cables, changed cables, count unchanged) of a batch."""
        stored = self.store.fingerprints([c.id for c in batch])
        new = [c for c in batch if c.id not in stored]
        changed = [c for c in batch if c.id in stored and stored[c.id] != cable_fingerprint(c)]
        return new, changed, len(batch) - len(new) - len(changed)

    def write(self, cables: Sequence[Cable], replace: Sequence[str]) -> None:
        if not self.changed:
            # From here until the new manifest is written, the folder is a half-built index to every reader.
            (self.folder / MANIFEST).unlink(missing_ok=True)
            self.changed = True
        texts: list[str] = []
        owners: list[tuple[int, int]] = []  # (cable position in batch, paragraph position in cable)
        for i, cable in enumerate(cables):
            for j, paragraph in enumerate(cable.paragraphs):
                context = context_line(cable, paragraph)
                for window in self.embedder.windows(paragraph.text, reserve=_CONTEXT_TOKENS if context else 0):
                    texts.append(embedding_text(context, window))
                    owners.append((i, j))
        hashes = [_text_hash(t) for t in texts]
        known = self.store.known_vectors(hashes)
        to_embed: dict[str, str] = {}  # hash -> text, each new text once
        for h, text in zip(hashes, texts):
            if h not in known:
                to_embed.setdefault(h, text)
        by_hash = dict(zip(to_embed, self.embedder.embed(list(to_embed.values())))) if to_embed else {}
        reused = [h for h in dict.fromkeys(hashes) if h in known]
        by_hash.update(zip(reused, self.vectors.rows([known[h] for h in reused])))
        block = np.array([by_hash[h] for h in hashes], dtype=np.float32).reshape(len(hashes), self.embedder.dim)
        self.embedded += len(to_embed)
        self.reused += len(hashes) - len(to_embed)
        first_row = self.vectors.append(block) if len(block) else len(self.vectors)
        self.store.begin()
        try:
            for cable_id in replace:
                self.store.remove_cable(cable_id)
            paragraph_rows = [self.store.add_cable(c) for c in cables]
            self.store.add_vectors([(first_row + n, paragraph_rows[i][j], hashes[n])
                                    for n, (i, j) in enumerate(owners)])
            self.store.set_meta(vectors_committed=str(first_row + len(block)))
            self.store.commit()
        except BaseException:
            self.store.db.execute("ROLLBACK")
            raise

    def finish(self) -> dict[str, Any]:
        """Rebuild FAISS and write the manifest, if anything changed; returns the FAISS description."""
        if not self.changed:
            return Manifest.read(self.folder).faiss
        import faiss

        ids = np.fromiter((row for row, _ in self.store.live_vectors()), dtype=np.int64)
        index, described = build_faiss(self.vectors, ids)
        tmp = self.folder / f".{FAISS}.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.folder / FAISS)
        rows = self.store.db.execute("SELECT id, fingerprint FROM cables ORDER BY id")
        digest = hashlib.sha256()
        for cable_id, fingerprint in rows:
            digest.update(f"{cable_id}:{fingerprint}\n".encode())
        counts = self.store.counts()
        Manifest(
            model=self.embedder.name, dim=self.embedder.dim,
            counts={k: counts[k] for k in ("cables", "paragraphs", "vectors")},
            fingerprint=digest.hexdigest()[:32], built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            faiss=described, embed_backend=getattr(self.embedder, "backend", None),
        ).write(self.folder)
        return described


def build_index(paths: Sequence[str | os.PathLike[str]], index_dir: str | os.PathLike[str], *,
                embedder: Embedder, progress: bool = False, report: LoadReport | None = None,
                batch_cables: int = BATCH_CABLES,
                on_batch: Callable[[int], None] | None = None) -> BuildSummary:
    """Add the cables found under ``paths`` to the index in ``index_dir`` (created if missing).

    ``progress`` shows a bar on stderr. ``report`` receives what the loader skipped. ``on_batch`` is called with
    the number of cables written after each committed batch.
    """
    started = time.perf_counter()
    report = report if report is not None else LoadReport()
    builder = _Builder(Path(index_dir), embedder)
    try:
        # A first, cheap pass (parsing only) tells how much work there is, so the bar can show an ETA; without a
        # bar it would only parse everything twice.
        work = 0
        if progress:
            fingerprints = {c.id: cable_fingerprint(c) for path in paths for c in load_cables(path)}
            stored = builder.store.fingerprints(list(fingerprints)) if fingerprints else {}
            work = sum(stored.get(i) != f for i, f in fingerprints.items())
        bar = _bar(work, progress)
        added = replaced = skipped = written = 0
        seen: set[str] = set()
        for path in paths:
            for batch in _batches(load_cables(path, report=report), batch_cables):
                fresh = [c for c in batch if c.id not in seen]
                skipped += len(batch) - len(fresh)  # the same id met twice in this run: the first one counts
                seen.update(c.id for c in fresh)
                new, changed, same = builder.unchanged(fresh)
                skipped += same
                if new or changed:
                    builder.write(new + changed, [c.id for c in changed])
                    added, replaced, written = added + len(new), replaced + len(changed), written + len(new) + len(changed)
                    bar.update(len(new) + len(changed))
                    bar.set_postfix_str(f"{builder.embedded + builder.reused} windows", refresh=False)
                    if on_batch:
                        on_batch(written)
        bar.close()
        described = builder.finish()
        counts = builder.store.counts()
    finally:
        builder.store.close()
    return BuildSummary(
        added=added, replaced=replaced, skipped=skipped, cables=counts["cables"], paragraphs=counts["paragraphs"],
        vectors=counts["vectors"], embedded=builder.embedded, reused=builder.reused,
        seconds=round(time.perf_counter() - started, 2),
        load={"loaded": report.loaded, "skipped": report.skipped, "problems": report.problems[:50]},
        faiss=described,
    )


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="cable", disable=not enabled or total == 0, file=sys.stderr, dynamic_ncols=True,
                desc="indexing")
