"""An index directory on disk, and opening one for search.

    index/
      manifest.json    format, model, dim, counts, corpus fingerprint, build time, the FAISS index chosen, checksums
      cables.sqlite    cables, paragraphs, tags, references, vector rows and their checksums, FTS5 (rag.store)
      vectors.f32      every embedded window, append-only (rag.vectors)
      faiss.index      built over the live rows of vectors.f32

The manifest is written last, atomically, by a build that finished, and removed first by a build that changes
anything: an index without one is half-built, and :func:`open_index` says so instead of loading it wrong, unless a
build is running there now (rag.lock): then it opens what that build has committed so far, and ``Index.building``
says so. Every message about a damaged index names one command that repairs it (:func:`repair_command`), or, when
the database itself is lost, one that builds the same cables into a new folder (:func:`rebuild_command`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexMissingError
from rag.lock import build_holder
from rag.store import Store
from rag.vectors import VectorFile, faiss_ids, faiss_rows

__all__ = ["FORMAT", "Building", "Index", "Manifest", "build_command", "default_index_dir", "lost_database",
           "open_index", "rebuild_command", "recorded_build", "repair_command"]

FORMAT = 1
MANIFEST, DATABASE, VECTORS, FAISS = "manifest.json", "cables.sqlite", "vectors.f32", "faiss.index"


def default_index_dir() -> Path:
    """``CABLECHAT_INDEX``, else ``./index``."""
    return Path(os.environ.get("CABLECHAT_INDEX") or "index")


def repair_command(folder: Path) -> str:
    """The command that rebuilds what can be rebuilt of ``folder`` from what is intact (rag.repair)."""
    return f"cablechat index --index {shlex.quote(str(folder))}"


def build_command(folder: Path, inputs: Sequence[str] = ()) -> str:
    """``cablechat index`` of ``inputs`` (a placeholder when unknown) into ``folder``."""
    paths = " ".join(shlex.quote(p) for p in inputs) if inputs else "CABLES..."
    return f"cablechat index {paths} --index {shlex.quote(str(folder))}"


def rebuild_command(folder: Path, inputs: Sequence[str] = ()) -> str:
    """A build of ``folder``'s cables into a new folder beside it, from the inputs its builds recorded."""
    return build_command(Path(f"{folder}.rebuilt"), inputs)


def recorded_build(folder: Path) -> tuple[str | None, list[str]]:
    """The model ``folder`` was built with and the inputs its builds were given, from the database, else the
    manifest; ``(None, [])`` when neither can be read."""
    try:
        store = Store(folder / DATABASE)
        try:
            model, inputs = store.meta("model"), store.meta("inputs")
        finally:
            store.close()
        return model, json.loads(inputs) if inputs else []
    except (sqlite3.Error, ValueError):
        pass
    try:
        data = json.loads((folder / MANIFEST).read_text())
        inputs = data.get("build", {}).get("inputs", [])
        return (data.get("model") if isinstance(data.get("model"), str) else None,
                [p for p in inputs if isinstance(p, str)] if isinstance(inputs, list) else [])
    except (OSError, ValueError, AttributeError):
        return None, []


# What each manifest field must hold; a hand edit that breaks one is reported by name, with its value.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "dim": int, "counts": dict, "fingerprint": str, "built_at": str, "faiss": dict,
    "embed_backend": (str, type(None)), "build": dict, "checksums": dict, "format": int,
}
COUNTS = ("cables", "paragraphs", "vectors")


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
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256, for faiss.index
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not JSON: {exc}"
            raise IndexCorruptError(f"cannot read {path} ({reason}); {_repair(folder)}", folder=folder) from exc
        problem = _manifest_problem(data)
        if problem:
            raise IndexCorruptError(f"{path} is damaged: {problem}; {_repair(folder)}", folder=folder)
        manifest = cls(**data)
        if manifest.format != FORMAT:
            raise IndexCorruptError(
                f"{path} is index format {manifest.format}, this CableChat reads format {FORMAT}; rebuild it into a "
                f"new folder: `{rebuild_command(folder, recorded_build(folder)[1])}`", folder=folder)
        return manifest

    def write(self, folder: Path) -> None:
        tmp = folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, folder / MANIFEST)


def _manifest_problem(data: Any) -> str | None:
    """What is wrong with a manifest's JSON, naming the field and its value; None when it is well-formed."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    missing = [name for name in ("model", "dim", "counts", "fingerprint", "built_at") if name not in data]
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if missing or unknown:
        return f"fields {missing} are missing" if missing else f"unknown fields {unknown}"
    for name, kind in _FIELD_TYPES.items():
        value = data.get(name)
        if name in data and (not isinstance(value, kind) or isinstance(value, bool)):
            return f'"{name}" is {json.dumps(value)}'
    counts = data["counts"]
    if sorted(counts) != sorted(COUNTS) or any(not isinstance(v, int) or isinstance(v, bool) or v < 0
                                               for v in counts.values()):
        return f'"counts" is {json.dumps(counts)}, not {{"cables": N, "paragraphs": N, "vectors": N}}'
    nprobe = data.get("faiss", {}).get("nprobe", 1)
    if not isinstance(nprobe, int) or isinstance(nprobe, bool) or nprobe < 1:
        return f'"faiss.nprobe" is {json.dumps(nprobe)}, not a whole number of lists to search'
    if data["dim"] < 1:
        return f'"dim" is {data["dim"]}'
    return None


def lost_database(folder: Path) -> str:
    """What to do when the database of ``folder`` is unreadable or gone."""
    return ("the cables' text is lost with it, and the rest of the index means nothing without it; build the same "
            f"cables into a new folder: `{rebuild_command(folder, recorded_build(folder)[1])}`")


def _repair(folder: Path) -> str:
    return f"repair it: `{repair_command(folder)}` rebuilds it from the database and the vectors"


def check_model(folder: Path, recorded: str, dim: int, embedder: Any) -> None:
    """Refuse an embedder other than the one the index was built with: its vectors would be meaningless there."""
    if recorded != embedder.name or dim != embedder.dim:
        raise IndexMismatchError(
            f"index {folder} was built with model {recorded!r} ({dim} dimensions), but the embedder given is "
            f"{embedder.name!r} ({embedder.dim} dimensions); use that model (--model {recorded} or "
            f"CABLECHAT_MODEL={recorded}), or rebuild the index into a new folder with the new one", folder=folder)


@dataclass(frozen=True, slots=True)
class Building:
    """An index another process is building, as far as that build had committed when it was opened."""

    pid: int
    cables: int
    paragraphs: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return (f"still being built (process {self.pid}): {self.cables:,} cables so far; restart to see the cables "
                "indexed since")


class Index:
    """An opened index: the manifest, the vector file, the FAISS index, and a read-only store per thread.

    SQLite connections must not be shared between threads, and a UI answers several users at once: each thread
    gets its own connection on first use, closed when that thread ends (a server's worker threads come and go, and
    each connection holds a file handle and SQLite's page cache). FAISS searches and the vector file are safe to share.

    ``building`` is None for a finished index, else what :class:`Building` says.
    """

    def __init__(self, folder: Path, manifest: Manifest, store: Store, vectors: VectorFile, faiss: Any,
                 building: Building | None = None) -> None:
        self.folder, self.manifest, self.vectors, self.faiss = folder, manifest, vectors, faiss
        self.building = building
        self._local = threading.local()
        self._stores: weakref.WeakSet[Store] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._adopt(store)

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._adopt(Store(self.folder / DATABASE))
        return store

    def _adopt(self, store: Store) -> Store:
        # The thread's local slot holds the only strong reference: when the thread ends, the Store goes, and this
        # closes its connection, from whichever thread that happens in (check_same_thread is off for this).
        weakref.finalize(store, store.db.close)
        self._local.store = store
        with self._lock:
            self._stores.add(store)
        return store

    def close(self) -> None:
        with self._lock:
            stores = list(self._stores)
            self._stores.clear()
        for store in stores:
            store.close()


def _missing(folder: Path) -> str:
    """What to run when ``folder`` holds no index: the sample cables only for the default ./index beside seeds/."""
    where = f"no index at {folder.resolve()}"
    other = "or point --index (or CABLECHAT_INDEX) at an existing index folder"
    if folder.resolve() == default_index_dir().resolve() and any(Path("seeds").glob("*.txt")):
        return f"{where}; build it from the sample cables with `cablechat index seeds/ --index {folder}`, {other}"
    return (f"{where}; build it from your cables with `cablechat index CABLES --index {folder}`, where CABLES is "
            "the Cablegate cables.csv, a folder of the cablegate site's HTML pages, or a folder of your own cable "
            f"text files (README, \"Get the cables\"); {other}")


def open_index(folder: str | os.PathLike[str], *, embedder: Any = None) -> Index:
    """Open ``folder`` for search, checking it is whole and, when ``embedder`` is given, built with it.

    A folder another process is building opens as far as that build has committed (``Index.building``).
    """
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        holder = build_holder(folder)
        if holder is not None:
            return _open_building(folder, holder, embedder)
        if (folder / DATABASE).exists():
            _, inputs = recorded_build(folder)
            again = f"`{build_command(folder, inputs)}`" if inputs else \
                f"the same `cablechat index PATH... --index {folder}`"
            raise IndexCorruptError(
                f"index {folder} is half-built: a build was interrupted, and none is running now. Run {again} "
                "again; it resumes where it stopped", folder=folder)
        raise IndexMissingError(_missing(folder), folder=folder)
    manifest = Manifest.read(folder)
    if embedder is not None:
        check_model(folder, manifest.model, manifest.dim, embedder)
    if not (folder / DATABASE).exists():
        raise IndexCorruptError(f"{folder / DATABASE} is missing: {lost_database(folder)}", folder=folder)
    for name in (VECTORS, FAISS):
        if not (folder / name).exists():
            raise IndexCorruptError(f"index {folder} lacks {name}; {_repair(folder)}", folder=folder)
    store, counts = _open_store(folder)
    try:
        if any(counts.get(k) != v for k, v in manifest.counts.items()):
            raise IndexCorruptError(
                f"index {folder} does not match its manifest (manifest {manifest.counts}, database "
                f"{ {k: counts[k] for k in COUNTS} }): it was changed after its build finished; {_repair(folder)}",
                folder=folder)
        index = _read_faiss(folder, manifest)
        if index.ntotal != counts["vectors"] or index.d != manifest.dim:
            raise IndexCorruptError(
                f"{folder / FAISS} holds {index.ntotal} vectors of {index.d} dimensions, the database "
                f"{counts['vectors']} of {manifest.dim}; {_repair(folder)}", folder=folder)
        vectors = VectorFile(folder / VECTORS, manifest.dim)
        if len(vectors) != counts["vector_rows"]:
            raise IndexCorruptError(
                f"{folder / VECTORS} holds {len(vectors)} vectors, the database {counts['vector_rows']}: the file was "
                f"cut or changed after its build; {_repair(folder)}", folder=folder)
        if not _sample_agrees(index, vectors):
            raise IndexCorruptError(
                f"{folder / VECTORS} and {FAISS} hold different vectors for the same rows: one was written over "
                f"after the build; {_repair(folder)}", folder=folder)
    except BaseException:
        store.close()
        raise
    return Index(folder, manifest, store, vectors, index)


def _open_store(folder: Path) -> tuple[Store, dict[str, int]]:
    store = None
    try:
        store = Store(folder / DATABASE)
        return store, store.counts()
    except sqlite3.DatabaseError as exc:  # a truncated or overwritten file, not a database
        if store is not None:
            store.close()
        raise IndexCorruptError(f"cannot read {folder / DATABASE} ({exc}): {lost_database(folder)}",
                                folder=folder) from exc


def _read_faiss(folder: Path, manifest: Manifest) -> Any:
    import faiss

    # One question at a time gains nothing from FAISS's OpenMP threads, and on a busy 2-core machine they cost a great
    # deal: 103 ms against 0.007 ms for a dense search of the seeds index (benchmarks/README.md, "FAISS threads").
    faiss.omp_set_num_threads(1)
    data = (folder / FAISS).read_bytes()
    recorded = manifest.checksums.get(FAISS)
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        raise IndexCorruptError(f"{folder / FAISS} was changed after its build (its checksum differs from the "
                                f"manifest's); {_repair(folder)}", folder=folder)
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as exc:  # FAISS's own C++ message says nothing a user can act on
        raise IndexCorruptError(f"{folder / FAISS} is damaged: FAISS cannot read it; {_repair(folder)}",
                                folder=folder) from exc
    if "nprobe" in manifest.faiss:
        index.nprobe = manifest.faiss["nprobe"]
    return index


def _sample_agrees(index: Any, vectors: VectorFile, rows: int = 32) -> bool:
    """Whether an exact FAISS index and the vector file agree on a few rows: a cheap guard at every open against a
    file written over (``cablechat check`` compares every row and every checksum)."""
    if not hasattr(index, "id_map") or index.ntotal == 0:
        return True
    ids = faiss_ids(index)
    sample = np.sort(np.random.default_rng().choice(ids, size=min(rows, len(ids)), replace=False))
    return bool(np.array_equal(faiss_rows(index, sample), vectors.rows(sample)))


def _open_building(folder: Path, pid: int, embedder: Any) -> Index:
    """What the build running in ``folder`` has committed so far, searched exactly (its FAISS index comes last)."""
    from rag.vectors import build_faiss

    if not (folder / DATABASE).exists():
        raise IndexBusyError(f"index {folder} is being built by process {pid} and holds no cable yet; try again "
                             "when it has written its first batch (a few seconds)", folder=folder, pid=pid)
    store, _ = _open_store(folder)
    try:
        store.db.execute("BEGIN")  # one snapshot for the counts and the rows, between two of the build's batches
        counts = store.counts()
        model, dim, backend = store.meta("model"), store.meta("dim"), store.meta("embed_backend")
        live = np.fromiter((row for row, _ in store.live_vectors()), dtype=np.int64)
        store.db.execute("COMMIT")
        if model is None or dim is None:
            raise IndexBusyError(f"index {folder} is being built by process {pid} and holds no cable yet; try "
                                 "again in a few seconds", folder=folder, pid=pid)
        if embedder is not None:
            check_model(folder, model, int(dim), embedder)
        vectors = VectorFile(folder / VECTORS, int(dim))
        if len(live) and len(vectors) <= int(live[-1]):
            raise IndexCorruptError(f"{folder / VECTORS} holds {len(vectors)} vectors, fewer than the build has "
                                    f"committed; {_repair(folder)} once process {pid} has ended", folder=folder)
        index, described = build_faiss(vectors, live, exact_limit=len(live))
    except BaseException:
        store.close()
        raise
    manifest = Manifest(model=model, dim=int(dim), counts={k: counts[k] for k in COUNTS}, fingerprint="",
                        built_at="", faiss=described, embed_backend=backend)
    return Index(folder, manifest, store, vectors, index,
                 building=Building(pid=pid, cables=counts["cables"], paragraphs=counts["paragraphs"]))
