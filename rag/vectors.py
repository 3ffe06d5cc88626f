"""The vector half of an index: an append-only float32 file, and the FAISS index built over its live rows.

Inner product on L2-normalised vectors (cosine), FAISS ids = row numbers of ``vectors.f32`` (= ``vectors.rowid``
in SQLite). The file is the source of truth: FAISS is rebuilt from it at the end of every build that changed
something, so a killed build never leaves a FAISS file that disagrees with the database.

The index type depends on size (:func:`build_faiss`): exact search up to ``EXACT_LIMIT`` vectors, where a
query costs a few milliseconds; above it, IVF with 8-bit scalar quantisation, which keeps 2.5 million 384-d
vectors in about 1 GB instead of 3.8 GB, with ``nprobe`` raised until recall@10 against exact search, measured
on a sample of the vectors themselves, reaches ``TARGET_RECALL``. Approximate results are then re-scored with the
exact vectors from the file (``REFINE`` times as many as asked for), so quantisation changes which rows are found
but never their order. The choice and its measured recall are recorded in the manifest.

On 2 cores an exact search over the 77,000 windows of the 6,712-cable corpus took 12 ms, most of a 20 ms budget
for a whole query; IVF with refinement takes about 1 ms.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import faiss

__all__ = ["EXACT_LIMIT", "TARGET_RECALL", "VectorFile", "block_digest", "build_faiss", "faiss_ids", "faiss_rows",
           "search_faiss"]

EXACT_LIMIT = 50_000
TARGET_RECALL = 0.97
REFINE = 2
# Filtered searches over at most this many vectors read them and score them exactly: faster than FAISS with an
# id selector at this size, and exact.
SCAN_LIMIT = 60_000
_CHUNK = 65_536
# rows(): wanted rows at most _GAP apart share one read, of at most _RUN rows (1.5 MB at 384 dimensions).
_GAP, _RUN = 16, 1024
_READ_BYTES = 1 << 24


def block_digest(vectors: np.ndarray) -> str:
    """SHA-256 of rows as :meth:`VectorFile.append` writes them: what :meth:`VectorFile.digest` gives back."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


class VectorFile:
    """Rows of ``dim`` float32 values, appended in place; ``truncate`` drops rows a killed build left uncommitted.

    Rows are read with ``pread``, not through a memory map: every page of a mapped file a process has touched counts
    as its resident memory, so building or serving a 2.5-million-vector index through a map held all 3.6 GiB of
    the file (benchmarks/scale.py: 5.5 GiB peak); read into buffers, only what is asked for is held.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, dim
        self._row_bytes = dim * 4

    def __len__(self) -> int:
        return self.path.stat().st_size // self._row_bytes if self.path.exists() else 0

    def truncate(self, rows: int) -> None:
        with open(self.path, "ab") as f:
            f.truncate(rows * self._row_bytes)

    def append(self, vectors: np.ndarray) -> int:
        """Write ``vectors`` at the end, durably; returns the row number of the first."""
        first = len(self)
        with open(self.path, "ab") as f:
            f.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
            f.flush()
            os.fsync(f.fileno())
        return first

    def write_rows(self, first: int, vectors: np.ndarray) -> None:
        """Overwrite rows from ``first`` on with ``vectors``, durably (a repair of rows found damaged)."""
        with open(self.path, "r+b") as f:
            os.pwrite(f.fileno(), np.ascontiguousarray(vectors, dtype=np.float32).tobytes(), first * self._row_bytes)
            os.fsync(f.fileno())

    def digest(self, first: int, rows: int) -> str:
        """SHA-256 of rows ``first`` to ``first + rows - 1`` as stored (a short file hashes what it holds)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            at, end = first * self._row_bytes, (first + rows) * self._row_bytes
            while at < end:
                chunk = os.pread(f.fileno(), min(_READ_BYTES, end - at), at)
                if not chunk:
                    break
                digest.update(chunk)
                at += len(chunk)
        return digest.hexdigest()

    def rows(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The rows ``ids``, in that order. Rows close together are read in one call."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if not len(ids):
            return out
        order = np.argsort(ids, kind="stable")
        wanted = ids[order]
        # A new read starts where the next wanted row is far from the last, or the span would grow past _RUN rows.
        starts = np.flatnonzero(np.diff(wanted) > _GAP) + 1
        with open(self.path, "rb") as f:
            for run in np.split(np.arange(len(wanted)), starts):
                for part in np.array_split(run, max(1, int(wanted[run[-1]] - wanted[run[0]]) // _RUN + 1)):
                    first, last = int(wanted[part[0]]), int(wanted[part[-1]])
                    raw = os.pread(f.fileno(), (last - first + 1) * self._row_bytes, first * self._row_bytes)
                    span = np.frombuffer(raw, dtype=np.float32).reshape(-1, self.dim)
                    out[order[part]] = span[wanted[part] - first]
        return out

    def chunks(self, ids: np.ndarray) -> Any:
        """(ids, vectors) in chunks of at most 65,536 rows, read without holding the whole file in memory."""
        for first in range(0, len(ids), _CHUNK):
            part = ids[first:first + _CHUNK]
            yield part, self.rows(part)


def _faiss() -> Any:
    import faiss

    return faiss


def build_faiss(vectors: VectorFile, ids: np.ndarray, *, exact_limit: int = EXACT_LIMIT,
                seed: int = 0) -> tuple[faiss.Index, dict[str, Any]]:
    """An index over the rows ``ids`` of ``vectors`` and a description of it for the manifest."""
    faiss = _faiss()
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) <= exact_limit:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.dim))
        for part, rows in vectors.chunks(ids):
            index.add_with_ids(rows, part)
        return index, {"type": "Flat", "exact": True, "recall@10": 1.0}
    rng = np.random.default_rng(seed)
    nlist = int(2 ** round(np.log2(4 * np.sqrt(len(ids)))))
    index = faiss.index_factory(vectors.dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    train = np.sort(rng.choice(ids, size=min(len(ids), 50 * nlist), replace=False))
    index.train(vectors.rows(train))
    for part, rows in vectors.chunks(ids):
        index.add_with_ids(rows, part)
    nprobe, recall = _tune_nprobe(index, vectors, ids, rng)
    index.nprobe = nprobe
    return index, {"type": f"IVF{nlist},SQ8", "exact": False, "nprobe": nprobe, "recall@10": round(recall, 4)}


def _tune_nprobe(index: Any, vectors: VectorFile, ids: np.ndarray, rng: np.random.Generator,
                 queries: int = 200, k: int = 10) -> tuple[int, float]:
    """Smallest power-of-two nprobe whose recall@10 against exact search reaches TARGET_RECALL."""
    queries = min(queries, len(ids))  # an index just above a small exact_limit has fewer vectors than queries
    sample = vectors.rows(np.sort(rng.choice(ids, size=queries, replace=False)))
    # Real questions are not copies of stored vectors: a question's best paragraph is typically at cosine 0.5-0.6.
    # Noise of 1.5 times the vector's length puts a probe at about cosine 0.55 from the vector it came from; on the
    # corpus index, recall measured so matched that of the dev questions within 0.01 at every nprobe.
    probe = sample + rng.normal(scale=1.5 / np.sqrt(vectors.dim), size=sample.shape).astype(np.float32)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    best = np.full((queries, k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((queries, k), dtype=np.int64)
    for part, rows in vectors.chunks(ids):
        scores = probe @ rows.T
        merged = np.concatenate([best, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(part, scores.shape)], axis=1)
        top = np.argpartition(-merged, k - 1, axis=1)[:, :k]
        best, best_ids = np.take_along_axis(merged, top, 1), np.take_along_axis(merged_ids, top, 1)
    nprobe, recall = 1, 0.0
    while nprobe <= index.nlist:
        index.nprobe = nprobe
        _, found = index.search(probe, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, best_ids)]))
        if recall >= TARGET_RECALL:
            break
        nprobe *= 2
    return min(nprobe, index.nlist), recall


def faiss_ids(index: Any) -> np.ndarray:
    """The row ids a FAISS index built by :func:`build_faiss` holds, in its own order."""
    faiss = _faiss()
    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
             for n in range(ivf.nlist) if lists.list_size(n)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def faiss_rows(index: Any, ids: np.ndarray) -> np.ndarray:
    """The vectors a FAISS index holds for rows ``ids``: as added when exact, decoded when quantised."""
    if not hasattr(index, "id_map"):
        faiss = _faiss()
        faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
    return index.reconstruct_batch(np.asarray(ids, dtype=np.int64))


def search_faiss(index: Any, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
                 vectors: VectorFile | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` nearest rows, best first, only among ``allowed`` rows when given.

    With ``vectors``, a small ``allowed`` set is scored exactly from the file, and an approximate index's
    candidates are re-scored exactly.
    """
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if allowed is not None and len(allowed) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    if allowed is not None and vectors is not None and len(allowed) <= SCAN_LIMIT:
        return _exact(vectors, np.asarray(allowed, dtype=np.int64), query[0], k)
    approximate = hasattr(index, "nprobe")
    wanted = k * REFINE if approximate and vectors is not None else k
    if allowed is not None:
        faiss = _faiss()
        selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        params = (faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe) if approximate
                  else faiss.SearchParameters(sel=selector))
        scores, ids = index.search(query, wanted, params=params)
    else:
        scores, ids = index.search(query, wanted)
    found = ids[0][ids[0] >= 0]
    if approximate and vectors is not None:
        return _exact(vectors, np.sort(found), query[0], k)
    return scores[0][: len(found)], found


def _exact(vectors: VectorFile, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors.rows(rows) @ query
    top = np.argsort(-scores, kind="stable")[:k]
    return scores[top], rows[top]
