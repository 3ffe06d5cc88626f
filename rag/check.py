"""``check_index``: is an index folder whole, and if not, what is wrong and the one command that repairs it.

What is verified, each against the part it derives from:

- the database: SQLite's own quick check, its counts, the model it records;
- ``vectors.f32``: its length against the rows the database committed, and every block of rows against the SHA-256
  the build recorded with it (rows written over at the same size are found);
- ``faiss.index``: its checksum in the manifest, that it holds exactly the live rows of the vector file, and that
  what it holds are those rows' vectors (every one for an exact index, a sample for a quantised one);
- ``manifest.json``: well-formed, and its counts, model and corpus fingerprint those of the database.

The database is the source of everything else: FAISS is rebuilt from the vectors, lost or damaged vectors are
embedded again from the paragraphs' text, the manifest is written again from the database. ``cablechat index``
does all of that (rag.repair). Only a lost database needs the cables again, in a new folder.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError, IndexMissingError
from rag.index import (
    COUNTS,
    DATABASE,
    FAISS,
    MANIFEST,
    VECTORS,
    Manifest,
    build_command,
    rebuild_command,
    recorded_build,
    repair_command,
)
from rag.lock import build_holder
from rag.store import Store
from rag.vectors import VectorFile, faiss_ids, faiss_rows

__all__ = ["CheckReport", "Problem", "check_index"]

# Rows of a quantised FAISS index compared with the vector file, and how close their reconstruction must be.
_SAMPLE, _MIN_COSINE = 256, 0.98


@dataclass(frozen=True, slots=True)
class Problem:
    part: str  # "database", "vectors", "faiss", "manifest"
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What :func:`check_index` found. ``fix`` is the one command that repairs every problem (None when whole).

    The rest tells the repair what to do: ``damaged`` vector blocks (first row, rows) whose bytes are lost or wrong,
    ``unchecked`` rows that carry no checksum (an index built before checksums), ``extra_rows`` a killed build left
    past the committed ones, and whether the database, FAISS and the manifest are sound.
    """

    folder: str
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    fix: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    building: int | None = None
    database_ok: bool = True
    faiss_ok: bool = True
    manifest_ok: bool = True
    half_built: bool = False
    damaged: tuple[tuple[int, int], ...] = ()
    unchecked: tuple[int, int] | None = None
    extra_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.building is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        """The report as a person reads it: a verdict, each problem and note, the command that repairs them."""
        if self.building is not None:
            return [f"{self.folder}: being built by process {self.building} ({self.counts.get('cables', 0):,} "
                    "cables committed so far); check it again when that build has ended"]
        verdict = "whole" if self.ok else f"{len(self.problems)} problem{'s' * (len(self.problems) != 1)}"
        counts = ", ".join(f"{self.counts[k]:,} {k}" for k in COUNTS if k in self.counts)
        out = [f"{self.folder}: {verdict}{f' ({counts})' if counts else ''}"]
        out += [f"  {p.part}: {p.message}" for p in self.problems]
        out += [f"  note: {n}" for n in self.notes]
        if self.fix:
            out.append(f"fix: `{self.fix}`")
        return out


def check_index(folder: Path, *, own_build: bool = False) -> CheckReport:
    """Check every part of the index in ``folder``. ``own_build``: the caller holds the build lock (rag.repair)."""
    folder = Path(folder)
    holder = None if own_build else build_holder(folder)
    if not (folder / DATABASE).exists():
        if holder is not None:
            return CheckReport(str(folder), building=holder)
        if not (folder / MANIFEST).exists():
            raise IndexMissingError(f"no index at {folder} to check; build one with `cablechat index CABLES "
                                    f"--index {folder}`", folder=folder)
    _, inputs = recorded_build(folder)
    if not (folder / DATABASE).exists():
        return CheckReport(str(folder), (Problem("database", f"{folder / DATABASE} is missing"),),
                           fix=rebuild_command(folder, inputs), database_ok=False)
    try:
        store = Store(folder / DATABASE)
        try:
            found = _Checker(folder, store).run()
        finally:
            store.close()
    except sqlite3.DatabaseError as exc:
        found = _Found(problems=[Problem("database", f"{folder / DATABASE} cannot be read ({exc})")],
                       database_ok=False)
    if holder is not None:
        return CheckReport(str(folder), counts=found.counts, building=holder)
    fix = None
    if not found.database_ok:
        fix = rebuild_command(folder, inputs)
    elif found.problems or found.notes:
        # The build command resumes a half-built index and repairs everything else on its way.
        fix = build_command(folder, inputs) if found.half_built and inputs else repair_command(folder)
    return CheckReport(
        str(folder), tuple(found.problems), tuple(found.notes), fix, found.counts, None, found.database_ok,
        found.faiss_ok, found.manifest_ok, found.half_built, tuple(found.damaged), found.unchecked, found.extra_rows)


@dataclass
class _Found:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    database_ok: bool = True
    faiss_ok: bool = True
    manifest_ok: bool = True
    half_built: bool = False
    damaged: list[tuple[int, int]] = field(default_factory=list)
    unchecked: tuple[int, int] | None = None
    extra_rows: int = 0


class _Checker:
    def __init__(self, folder: Path, store: Store) -> None:
        self.folder, self.store, self.found = folder, store, _Found()

    def problem(self, part: str, message: str) -> None:
        self.found.problems.append(Problem(part, message))

    def run(self) -> _Found:
        found, store = self.found, self.store
        verdict = store.quick_check()
        if verdict != "ok":
            self.problem("database", f"{self.folder / DATABASE} is damaged (SQLite: {verdict})")
            found.database_ok = False
            return found
        counts = store.counts()
        found.counts = {k: counts[k] for k in COUNTS}
        model, dim = store.meta("model"), store.meta("dim")
        committed = int(store.meta("vectors_committed") or 0)
        if model is None or dim is None:
            found.half_built = True
            self.problem("database", "no model recorded: the first batch of a build never committed")
            return found
        if counts["vector_rows"] != committed:
            self.problem("database", f"{counts['vector_rows']} vector rows, but {committed} recorded as committed")
            found.database_ok = False
            return found
        vectors = VectorFile(self.folder / VECTORS, int(dim))
        self.vectors(vectors, committed)
        live = np.fromiter((row for row, _ in store.live_vectors()), dtype=np.int64)
        manifest = self.manifest(model, int(dim), found.counts)
        self.faiss(vectors, live, manifest)
        return found

    def vectors(self, vectors: VectorFile, committed: int) -> None:
        found, path = self.found, vectors.path
        held = len(vectors)
        if not path.exists() and committed:
            self.problem("vectors", f"{path} is missing: {committed:,} rows were committed")
        elif held < committed:
            self.problem("vectors", f"{path} holds {held:,} rows, {committed:,} were committed: rows {held:,} to "
                                    f"{committed - 1:,} are lost")
        elif held > committed:
            found.extra_rows = held - committed
            self.problem("vectors", f"{path} holds {found.extra_rows:,} rows past the {committed:,} committed (a "
                                    "build stopped between writing them and committing them)")
        elif path.exists() and path.stat().st_size % (vectors.dim * 4):
            self.problem("vectors", f"{path} ends inside a row: it was cut or written to")
        covered = 0
        for first, rows, digest in self.store.blocks():
            if first != covered:
                break  # a gap: the rows from here on count as unchecked
            if first + rows > held or vectors.digest(first, rows) != digest:
                found.damaged.append((first, rows))
            covered = first + rows
        changed = [(f, r) for f, r in found.damaged if f + r <= held]
        if changed:
            rows = sum(r for _, r in changed)
            self.problem("vectors", f"{rows:,} rows in {len(changed)} block{'s' * (len(changed) != 1)} of {path} "
                                    f"differ from their checksums (first at row {changed[0][0]:,}): written over")
        if covered < committed:
            lost_from = max(covered, held)  # rows past the end of the file are lost, checksum or not
            if lost_from < committed:
                found.damaged.append((lost_from, committed - lost_from))
            if covered < lost_from:
                found.unchecked = (covered, lost_from - covered)
                found.notes.append(f"rows {covered:,} to {lost_from - 1:,} of {path} carry no checksum (an index "
                                   "built before checksums); a build records them")

    def manifest(self, model: str, dim: int, counts: dict[str, int]) -> Manifest | None:
        found = self.found
        if not (self.folder / MANIFEST).exists():
            found.half_built, found.manifest_ok = True, False
            self.problem("manifest", f"{self.folder / MANIFEST} is missing: a build was interrupted before it ended")
            return None
        try:
            manifest = Manifest.read(self.folder)
        except IndexCorruptError as exc:
            found.manifest_ok = False
            self.problem("manifest", str(exc).split("; repair it")[0])
            return None
        wrong = []
        if manifest.counts != counts:
            wrong.append(f"counts {manifest.counts}, the database {counts}")
        if (manifest.model, manifest.dim) != (model, dim):
            wrong.append(f"model {manifest.model!r} ({manifest.dim}), the database {model!r} ({dim})")
        if manifest.fingerprint != self.store.corpus_fingerprint():
            wrong.append("a corpus fingerprint other than the database's cables give")
        if wrong:
            found.manifest_ok = False
            self.problem("manifest", f"{self.folder / MANIFEST} says {'; '.join(wrong)}")
        return manifest

    def faiss(self, vectors: VectorFile, live: np.ndarray, manifest: Manifest | None) -> None:
        import faiss

        path = self.folder / FAISS
        if not path.exists():
            self.found.faiss_ok = False
            self.problem("faiss", f"{path} is missing")
            return
        data = path.read_bytes()
        recorded = manifest.checksums.get(FAISS) if manifest else None
        if recorded and hashlib.sha256(data).hexdigest() != recorded:
            self.found.faiss_ok = False
            self.problem("faiss", f"{path} differs from the checksum the manifest recorded for it")
            return
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            self.found.faiss_ok = False
            self.problem("faiss", f"{path} is damaged: FAISS cannot read it")
            return
        ids = np.sort(faiss_ids(index))
        wrong = None
        if index.d != vectors.dim:
            wrong = f"vectors of {index.d} dimensions, the vector file {vectors.dim}"
        elif len(ids) != len(live) or not np.array_equal(ids, live):
            wrong = f"{len(ids):,} vectors, not the {len(live):,} live rows of {VECTORS}"
        elif len(live) and not self.found.damaged and not _same_vectors(index, vectors, live):
            wrong = f"vectors other than those {VECTORS} holds for the same rows"
        if wrong:
            self.found.faiss_ok = False
            self.problem("faiss", f"{path} holds {wrong}")


def _same_vectors(index: Any, vectors: VectorFile, live: np.ndarray) -> bool:
    """Whether FAISS holds the file's vectors: all of them, bit for bit, when exact; a sample, closely, when not."""
    import faiss

    if hasattr(index, "id_map"):
        ids = faiss_ids(index)
        held = faiss.vector_to_array(faiss.downcast_index(index.index).codes).view(np.float32).reshape(-1, vectors.dim)
        for first in range(0, len(ids), 65_536):
            part = ids[first:first + 65_536]
            if not np.array_equal(held[first:first + len(part)], vectors.rows(part)):
                return False
        return True
    sample = np.sort(np.random.default_rng(0).choice(live, size=min(_SAMPLE, len(live)), replace=False))
    rebuilt, stored = faiss_rows(index, sample), vectors.rows(sample)
    cosine = np.sum(rebuilt * stored, axis=1) / np.maximum(
        np.linalg.norm(rebuilt, axis=1) * np.linalg.norm(stored, axis=1), 1e-12)
    return bool(np.all(cosine >= _MIN_COSINE))
