"""Build an index with parsing and embedding on a Ray cluster: ``build_index_ray(paths, index_dir, embedder=...)``.

Embedding is the cost of a big build (2.5 M paragraphs: about 5.5 hours on 2 CPU cores). Here it runs on Ray Data:

    input paths ─▶ parse (one task per path, on this machine, streaming chunks of ``batch_cables`` cables)
                ─▶ embed (an actor pool of ``workers`` embedders, CPU or GPU as Ray is asked for)
                ─▶ the driver, the one writer of the index (rag.writer.IndexWriter)

The writer is the same as a single-process build's, so the same rules hold: it holds the folder's build lock,
writes batch by batch, each batch one SQLite transaction after its vectors are fsynced, and a driver killed
anywhere leaves an index the next build (Ray or not) resumes. Incremental as well: the fingerprints of the cables
already stored go to every embedder, which embeds only cables that are new or changed, and the writer selects
again on arrival (which also leaves out a cable met twice, the first copy winning, as order is preserved).

Embedders are loaded in the actors by name and backend, the driver's (``load_embedder(embedder.name,
backend=embedder.backend)``), so the vectors are the ones the driver's own model would give; a vector missing
from a worker's answer is embedded by the writer. ``ray`` is an optional dependency: ``pip install
'cablechat[ray]'``. With no ``address`` a local cluster is started on this machine; ``address="auto"`` or
``RAY_ADDRESS`` joins a running one (README, "Indexing on a Ray cluster").
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed import Embedder, load_embedder
from rag.errors import CableChatError
from rag.indexer import BATCH_CABLES, BuildSummary, end_build
from rag.writer import IndexWriter, text_hash, window_texts
from rag.loaders import LoadReport, load_cables
from rag.store import cable_fingerprint

__all__ = ["build_index_ray", "connect"]

# What a parse task asks of the cluster: parsing is some 30 times cheaper than embedding.
_PARSE_CPUS = 0.1
_CONNECT_S = 5.0
_BLOCK_BYTES = 16 * 1024


def connect(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, connected: to ``address`` ("auto", "ray://host:10001", "host:6379"), else to
    ``RAY_ADDRESS``, else to a local cluster started here (``num_cpus`` of this machine's cores)."""
    try:
        import ray
    except ImportError as exc:
        raise CableChatError("indexing on Ray needs the ray package: pip install 'cablechat[ray]'") from exc
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address not in (None, "auto", "local"):
            # Ray itself retries an unreachable address for minutes before it gives up.
            host, _, port = address.removeprefix("ray://").rpartition(":")
            socket.create_connection((host, int(port)), timeout=_CONNECT_S).close()
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CableChatError(f"cannot connect to the Ray cluster at {address!r} ({exc}); start one with `ray start "
                             "--head` and pass the address it prints (host:6379), or leave the address out for a "
                             "local cluster") from exc
    return ray


def _parse(batch: dict[str, np.ndarray], *, batch_cables: int) -> Iterator[dict[str, list[Any]]]:
    """Cables of one input path, in chunks (pickled, to keep Arrow out of the way); the load report at the end."""
    for path in batch["path"]:
        report = LoadReport()
        chunk: list[Any] = []
        for cable in load_cables(str(path), report=report):
            chunk.append(cable)
            if len(chunk) == batch_cables:
                yield {"path": [path], "cables": [pickle.dumps(chunk)], "report": [b""]}
                chunk = []
        yield {"path": [path], "cables": [pickle.dumps(chunk)], "report": [pickle.dumps(report)]}


class _Embed:
    """An actor of the pool: one embedder, loaded once; embeds the new and changed cables of each chunk."""

    def __init__(self, model: str, backend: str | None, stored: dict[str, str]) -> None:
        self.embedder = load_embedder(model, backend=backend)
        self.stored = stored

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        vectors = []
        for blob in batch["cables"]:
            todo = [c for c in pickle.loads(blob) if self.stored.get(c.id) != cable_fingerprint(c)]
            texts = list(dict.fromkeys(window_texts(todo, self.embedder)[0]))
            rows = self.embedder.embed(texts) if texts else np.zeros((0, self.embedder.dim), dtype=np.float32)
            vectors.append(pickle.dumps(([text_hash(t) for t in texts], np.asarray(rows, dtype=np.float32))))
        return {"path": list(batch["path"]), "cables": list(batch["cables"]), "vectors": vectors,
                "report": list(batch["report"])}


def build_index_ray(paths: Sequence[str | os.PathLike[str]], index_dir: str | os.PathLike[str], *,
                    embedder: Embedder, address: str | None = None, workers: int | None = None,
                    gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, num_cpus: int | None = None,
                    report: LoadReport | None = None, batch_cables: int = BATCH_CABLES,
                    on_batch: Callable[[int], None] | None = None, lexical: str | None = None) -> BuildSummary:
    """Add the cables under ``paths`` to the index in ``index_dir``, parsing and embedding on Ray.

    ``workers``: embedders in the pool (default: as many as the cluster's CPUs allow at ``cpus_per_worker``, or
    its GPUs at ``gpus_per_worker``). ``num_cpus``: cores of a local cluster (default: all). ``report``,
    ``on_batch`` and ``lexical`` as for :func:`rag.indexer.build_index`.
    """
    if not paths:
        raise CableChatError("--ray builds from cable files; to repair an index run `cablechat index --index DIR` "
                             "without --ray")
    started = time.perf_counter()
    report = report if report is not None else LoadReport()
    ray = connect(address, num_cpus=num_cpus)
    with IndexWriter(Path(index_dir), embedder, lexical=lexical) as writer:
        workers, cpus_per_worker = _pool(ray, workers, cpus_per_worker, gpus_per_worker)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # first copy of a cable wins, as in a single-process build
        context.enable_progress_bars = False
        # Blocks this small hold one chunk each: else a path's chunks travel as one block, to one embedder.
        context.target_max_block_size = _BLOCK_BYTES
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines would bury the summary
        stored = dict(writer.store.fingerprints(writer.store.cable_ids()))
        # Parse tasks run on this machine, which holds the input files; only embedding spreads over the cluster.
        dataset = (ray.data.from_items([{"path": str(Path(p).resolve())} for p in paths], override_num_blocks=len(paths))
                   .map_batches(_parse, batch_size=1, num_cpus=_PARSE_CPUS, fn_kwargs={"batch_cables": batch_cables},
                                label_selector={"ray.io/node-id": ray.get_runtime_context().get_node_id()})
                   .map_batches(_Embed, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                num_cpus=cpus_per_worker,
                                num_gpus=gpus_per_worker or None, fn_constructor_kwargs={
                                    "model": embedder.name, "backend": getattr(embedder, "backend", None),
                                    "stored": stored}))
        written = 0
        noted: set[str] = set()
        for row in dataset.iter_rows():
            cables = pickle.loads(row["cables"])
            if row["report"]:
                _merge(report, pickle.loads(row["report"]))
            if cables and row["path"] not in noted:
                writer.note_input(row["path"])
                noted.add(row["path"])
            todo = writer.select(cables)
            if todo:
                hashes, rows = pickle.loads(row["vectors"])
                writer.write(todo, dict(zip(hashes, rows)))
                written += len(todo)
                if on_batch:
                    on_batch(written)
        return end_build(writer, report, paths, started)


def _pool(ray: Any, workers: int | None, cpus_per_worker: float, gpus_per_worker: float) -> tuple[int, float]:
    """(embedders, CPUs each): by default as many as the cluster holds; each asks for less than ``cpus_per_worker``
    when that many would leave no CPU for parsing, which would wait for them for ever."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    if workers is None:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        workers = (max(1, int(gpus / gpus_per_worker)) if gpus_per_worker and gpus
                   else max(1, int((cpus - _PARSE_CPUS) / cpus_per_worker)))
    if workers < 1:
        raise CableChatError(f"--ray-workers must be at least 1, got {workers}")
    return workers, min(cpus_per_worker, (cpus - _PARSE_CPUS) / workers)


def _merge(report: LoadReport, part: LoadReport) -> None:
    report.loaded += part.loaded
    report.skipped += part.skipped
    report.problems.extend(part.problems)
    report.notes.extend(part.notes)
