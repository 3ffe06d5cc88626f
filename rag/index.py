"""An index directory on disk, and opening one for search.

    index/
      manifest.json    format, model, dim, counts, corpus fingerprint, build time, the FAISS index chosen
      cables.sqlite    cables, paragraphs, tags, references, vector rows, FTS5 (rag.store)
      vectors.f32      every embedded window, append-only (rag.vectors)
      faiss.index      built over the live rows of vectors.f32

The manifest is written last, atomically, by a build that finished, and removed first by a build that changes
anything: an index without one is half-built, and :func:`open_index` says so instead of loading it wrong.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import IndexCorruptError, IndexMismatchError, IndexMissingError
from rag.store import Store
from rag.vectors import VectorFile

__all__ = ["FORMAT", "Index", "Manifest", "default_index_dir", "open_index"]

FORMAT = 1
MANIFEST, DATABASE, VECTORS, FAISS = "manifest.json", "cables.sqlite", "vectors.f32", "faiss.index"


def default_index_dir() -> Path:
    """``CABLECHAT_INDEX``, else ``./index``."""
    return Path(os.environ.get("CABLECHAT_INDEX") or "index")


@dataclass(frozen=True, slots=True)
class Manifest:
    model: str
    dim: int
    counts: dict[str, int]
    fingerprint: str
    built_at: str
    faiss: dict[str, Any] = field(default_factory=dict)
    embed_backend: str | None = None
    build: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
            manifest = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise IndexCorruptError(
                f"cannot read {path} ({exc}); rebuild it: `cablechat index PATH --index {folder}`") from exc
        if manifest.format != FORMAT:
            raise IndexCorruptError(
                f"{path} is index format {manifest.format}, this CableChat reads format {FORMAT}; rebuild it into a "
                f"new folder: `cablechat index PATH --index NEW_DIR`")
        return manifest

    def write(self, folder: Path) -> None:
        tmp = folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, folder / MANIFEST)


def check_model(folder: Path, recorded: str, dim: int, embedder: Any) -> None:
    """Refuse an embedder other than the one the index was built with: its vectors would be meaningless there."""
    if recorded != embedder.name or dim != embedder.dim:
        raise IndexMismatchError(
            f"index {folder} was built with model {recorded!r} ({dim} dimensions), but the embedder given is "
            f"{embedder.name!r} ({embedder.dim} dimensions); use that model (--model {recorded} or "
            f"CABLECHAT_MODEL={recorded}), or rebuild the index into a new folder with the new one")


class Index:
    """An opened index: the manifest, the vector file, the FAISS index, and a read-only store per thread.

    SQLite connections must not be shared between threads, and a UI answers several users at once: each thread
    gets its own connection on first use. FAISS searches and the vector file are safe to share.
    """

    def __init__(self, folder: Path, manifest: Manifest, store: Store, vectors: VectorFile, faiss: Any) -> None:
        self.folder, self.manifest, self.vectors, self.faiss = folder, manifest, vectors, faiss
        self._local = threading.local()
        self._local.store = store
        self._stores = [store]
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.folder / DATABASE)
            with self._lock:
                self._stores.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores:
                store.close()
            self._stores.clear()


def open_index(folder: str | os.PathLike[str], *, embedder: Any = None) -> Index:
    """Open ``folder`` for search, checking it is whole and, when ``embedder`` is given, built with it."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        if (folder / DATABASE).exists():
            raise IndexCorruptError(
                f"index {folder} is half-built: a build was interrupted or is still running. Run the same "
                f"`cablechat index PATH... --index {folder}` again; it resumes where it stopped")
        raise IndexMissingError(
            f"no index at {folder}; build one with `cablechat index seeds/ --index {folder}` (or set "
            "CABLECHAT_INDEX / --index to an existing index folder)")
    manifest = Manifest.read(folder)
    if embedder is not None:
        check_model(folder, manifest.model, manifest.dim, embedder)
    for name in (DATABASE, VECTORS, FAISS):
        if not (folder / name).exists():
            raise IndexCorruptError(f"index {folder} lacks {name}; rebuild it: `cablechat index PATH --index {folder}`")
    store = None
    try:
        store = Store(folder / DATABASE)
        counts = store.counts()
    except sqlite3.DatabaseError as exc:  # a truncated or overwritten file, not a database
        if store is not None:
            store.close()
        raise IndexCorruptError(f"cannot read {folder / DATABASE} ({exc}); rebuild the index into a new folder: "
                                "`cablechat index PATH... --index NEW_DIR`") from exc
    if any(counts.get(k) != v for k, v in manifest.counts.items()):
        store.close()
        raise IndexCorruptError(
            f"index {folder} does not match its manifest (manifest {manifest.counts}, database {counts}); it was "
            f"changed after its build finished. Run `cablechat index PATH... --index {folder}` again to repair it")
    import faiss

    # One question at a time gains nothing from FAISS's OpenMP threads, and on a busy 2-core machine they cost a great
    # deal: 103 ms against 0.007 ms for a dense search of the seeds index (benchmarks/README.md, "FAISS threads").
    faiss.omp_set_num_threads(1)
    try:
        index = faiss.read_index(str(folder / FAISS))
    except RuntimeError as exc:
        store.close()
        raise IndexCorruptError(f"cannot read {folder / FAISS} ({exc}); rebuild the index") from exc
    if "nprobe" in manifest.faiss:
        index.nprobe = int(manifest.faiss["nprobe"])
    if index.ntotal != counts["vectors"] or index.d != manifest.dim:
        store.close()
        raise IndexCorruptError(
            f"{folder / FAISS} holds {index.ntotal} vectors of {index.d} dimensions, the manifest "
            f"{counts['vectors']} of {manifest.dim}; run `cablechat index PATH... --index {folder}` again")
    vectors = VectorFile(folder / VECTORS, manifest.dim)
    if len(vectors) != counts["vector_rows"]:
        store.close()
        raise IndexCorruptError(
            f"{folder / VECTORS} holds {len(vectors)} vectors, the database {counts['vector_rows']}; the file was "
            "cut or changed after its build: rebuild the index into a new folder: `cablechat index PATH... --index "
            "NEW_DIR`")
    return Index(folder, manifest, store, vectors, index)
