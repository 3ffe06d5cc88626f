"""Scale: 2.5 million 384-d vectors and their SQLite rows, built and searched the way an index folder is.

    python benchmarks/scale.py [--n 2500000] [--queries 500] [--dir DIR --keep]
    python benchmarks/scale.py --n 200000      # a quick check (IVF while n > EXACT_LIMIT; else lower --exact-limit)

Vectors: a two-level Gaussian mixture (``--topics`` topics of 16 subtopics each, topic sizes falling off like a
Zipf law, each vector its subtopic's centre plus noise of varying strength), L2-normalised. Clustered, because
uniform random vectors in 384 dimensions are all nearly orthogonal to one another: no vector has near neighbours,
every IVF cell is as good as another, and recall and speed on them say nothing about a corpus of texts, whose
embeddings crowd into topics. Normalised, because the embedder's vectors are, and the index scores inner product as
cosine. Queries are fresh draws from the same mixture, not stored vectors.

SQLite: the real schema through :class:`rag.store.Store`: ``n / 10`` synthetic cables of 10 paragraphs, each one
vector row. Simplified: a paragraph is 12 words from a Zipf vocabulary (a real one is about 80), so the database
and its FTS5 table are smaller than a real corpus's; one window per paragraph.

FAISS: :func:`rag.vectors.build_faiss` (IVF-SQ8 above ``EXACT_LIMIT`` vectors, nprobe tuned for recall@10), written
with a manifest, and opened as any index is, by an :class:`rag.assistant.Assistant` (with a fake embedder whose
name the manifest records: queries come as vectors). Searched one query at a time through
:func:`rag.vectors.search_faiss`, as the Searcher calls it, and through the Searcher's dense search end to end
(FAISS, then SQLite for the paragraphs), with FAISS's default OpenMP threads and with one. Recall@10 is measured
for the IVF index alone and for what ``search_faiss`` returns (which may re-score candidates exactly).

Baseline: exact search, what ``build_faiss`` builds below ``EXACT_LIMIT``: its memory (every vector as float32)
and one query's exact scan of all vectors. Goals: peak resident memory ≤ 3 GB, search p95 ≤ 100 ms, recall@10
≥ 0.95 against exact search. Memory is ``VmHWM`` (= ``ru_maxrss``), which counts pages of memory-mapped files
too, and, sampled every 50 ms, the peak of anonymous memory (``RssAnon``) and of file pages (``RssFile``) per
phase.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.assistant import Assistant
from rag.embed import FakeEmbedder
from rag.index import DATABASE, FAISS, VECTORS, Manifest
from rag.metrics import percentile
from rag.models import Cable, Paragraph
from rag.store import Store
from rag.vectors import EXACT_LIMIT, VectorFile, build_faiss, search_faiss

CHUNK = 65_536
PARAGRAPHS_PER_CABLE, WORDS_PER_PARAGRAPH, VOCABULARY = 10, 12, 20_000
GiB = 1024**3  # /proc reports kB of 1024 bytes


class Memory:
    """Peaks of this process's resident memory, by phase, sampled from /proc/self/status in a thread."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self) -> None:
        self.phase = "start"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def status() -> dict[str, int]:
        """Fields of /proc/self/status in bytes."""
        found = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                found[name] = int(value.split()[0]) * 1024
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            now = self.status()
            peak = self.peaks.setdefault(self.phase, dict.fromkeys(self.FIELDS, 0))
            for field in self.FIELDS:
                peak[field] = max(peak[field], now.get(field, 0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def mixture(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Subtopic centres (unit rows) and how likely each is."""
    rng = np.random.default_rng(args.seed)
    topics = unit(rng.standard_normal((args.topics, args.dim), dtype=np.float32))
    # A subtopic's centre sits at cosine ~0.8 to its topic's: related, not the same.
    subtopics = unit(np.repeat(topics, 16, axis=0) +
                     0.75 * rng.standard_normal((args.topics * 16, args.dim), dtype=np.float32) / np.sqrt(args.dim))
    weights = np.repeat(1 / np.arange(1, args.topics + 1) ** 0.8, 16) * rng.uniform(0.5, 1.5, args.topics * 16)
    return subtopics, weights / weights.sum()


def draw(centres: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` unit vectors from the mixture: a subtopic's centre plus noise of strength 0.6–1.4 (cosine to
    the centre 0.85–0.58), so that neighbours are graded, not all equally near."""
    which = rng.choice(len(centres), size=count, p=weights)
    strength = rng.uniform(0.6, 1.4, size=(count, 1)).astype(np.float32)
    noise = rng.standard_normal((count, centres.shape[1]), dtype=np.float32) / np.float32(np.sqrt(centres.shape[1]))
    return unit(centres[which] + strength * noise)


def unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def cables(n: int, seed: int) -> Iterator[Cable]:
    """``n`` paragraphs in cables of ten, with Zipf-distributed words, in vector-row order."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "zo", "mi", "tre", "lun", "pa", "dor", "ve", "si", "nax", "bu", "rel", "to", "gim", "es", "qua"]
    vocabulary = np.array(["".join(rng.choice(syllables, size=rng.integers(2, 5))) for _ in range(VOCABULARY)])
    frequency = 1 / np.arange(1, VOCABULARY + 1) ** 1.1
    frequency /= frequency.sum()
    step = PARAGRAPHS_PER_CABLE * 6_000  # whole cables, so that none straddles two steps
    for first in range(0, n, step):
        count = min(step, n - first)
        words = vocabulary[rng.choice(VOCABULARY, size=(count, WORDS_PER_PARAGRAPH), p=frequency)]
        texts = [" ".join(row) for row in words]
        for at in range(0, count, PARAGRAPHS_PER_CABLE):
            number = (first + at) // PARAGRAPHS_PER_CABLE
            cable_id = f"99SYNTHETIC{number}"
            yield Cable(id=cable_id, date=datetime(2000 + number % 10, 1 + number % 12, 1 + number % 28),
                        origin=f"Embassy Synthetic {number % 180}", classification="UNCLASSIFIED",
                        subject=texts[at][:60].upper(),
                        paragraphs=tuple(Paragraph(cable_id, j + 1, text)
                                         for j, text in enumerate(texts[at:at + PARAGRAPHS_PER_CABLE])))


def exact_top(path: Path, dim: int, n: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosines, row ids) of the exact top ``k`` for each query, best first, reading the vector file in chunks
    without mapping it."""
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for first in range(0, n, CHUNK):
        rows = np.fromfile(path, dtype=np.float32, count=min(CHUNK, n - first) * dim, offset=first * dim * 4)
        scores = queries @ rows.reshape(-1, dim).T
        ids = np.arange(first, first + len(scores[0]))
        merged = np.concatenate([best, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argpartition(-merged, k - 1, axis=1)[:, :k]
        best, best_ids = np.take_along_axis(merged, top, 1), np.take_along_axis(merged_ids, top, 1)
    order = np.argsort(-best, axis=1)
    return np.take_along_axis(best, order, 1), np.take_along_axis(best_ids, order, 1)


def overlap(found: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """Mean share of each query's exact top 10 that was found."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1] for a, b in zip(found, truth)]))


def timed(call: Callable[[np.ndarray], object], items: Sequence[np.ndarray]) -> list[float]:
    """Milliseconds of each call, one item at a time."""
    took = []
    for item in items:
        started = time.perf_counter()
        call(item)
        took.append((time.perf_counter() - started) * 1000)
    return took


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_500_000, help="vectors (default 2,500,000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--topics", type=int, default=512, help="topics, of 16 subtopics each (default 512)")
    parser.add_argument("--queries", type=int, default=500, help="queries for recall and latency (default 500)")
    parser.add_argument("--exact-limit", type=int, default=EXACT_LIMIT,
                        help=f"build_faiss's exact_limit (default {EXACT_LIMIT:,}); lower it to test IVF on a small n")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the built folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import faiss

    folder = args.dir or Path(tempfile.mkdtemp(prefix="cablechat-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    memory = Memory()
    seconds: dict[str, float] = {}

    def phase(name: str) -> None:
        memory.phase = name
        seconds[name] = time.perf_counter()

    def done(name: str) -> None:
        seconds[name] = time.perf_counter() - seconds[name]
        peak = memory.peaks.get(name, {})
        print(f"{name}: {seconds[name]:.1f} s, peak RSS {peak.get('VmRSS', 0) / GiB:.2f} GiB, anonymous "
              f"{peak.get('RssAnon', 0) / GiB:.2f} GiB", file=sys.stderr, flush=True)

    try:
        phase("vectors")
        centres, weights = mixture(args)
        vectors = VectorFile(folder / VECTORS, args.dim)
        rng = np.random.default_rng(args.seed + 1)
        for first in range(0, args.n, CHUNK):
            vectors.append(draw(centres, weights, min(CHUNK, args.n - first), rng))
        done("vectors")

        phase("sqlite")
        counts = fill_store(folder / DATABASE, args)
        done("sqlite")

        phase("faiss build")
        index, described = build_faiss(vectors, np.arange(args.n, dtype=np.int64), exact_limit=args.exact_limit)
        faiss.write_index(index, str(folder / FAISS))
        del index, vectors
        Manifest(model=FakeEmbedder(dim=args.dim).name, dim=args.dim, fingerprint="synthetic",
                 counts={k: counts[k] for k in ("cables", "paragraphs", "vectors")},
                 built_at=datetime.now(UTC).isoformat(timespec="seconds"), faiss=described).write(folder)
        done("faiss build")

        phase("exact search")
        queries = draw(centres, weights, args.queries, np.random.default_rng(args.seed + 3))
        nearest, truth = exact_top(folder / VECTORS, args.dim, args.n, queries, 10)
        done("exact search")
        exact_ms = timed(lambda q: exact_top(folder / VECTORS, args.dim, args.n, q[None], 10), queries[:5])

        phase("search")
        recall, latency = search(folder, args.dim, queries, truth)
        done("search")
        memory.stop()
        print(f"a query's nearest stored vector: cosine {np.median(nearest[:, 0]):.2f} (median), its 10th "
              f"{np.median(nearest[:, 9]):.2f} (on the corpus index, a dev question's best window: 0.73, its 10th "
              "0.60)")
        report(args, folder, described, counts, seconds, memory, recall, latency, exact_ms)
    finally:
        memory.stop()
        if not args.keep:
            shutil.rmtree(folder)
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


def fill_store(path: Path, args: argparse.Namespace) -> dict[str, int]:
    """The synthetic cables written through Store, vector row r embedding paragraph r; the store's counts."""
    store = Store(path, create=True)
    row = 0
    store.begin()
    for number, cable in enumerate(cables(args.n, args.seed + 2), 1):
        paragraphs = store.add_cable(cable)
        store.add_vectors([(row + i, p, f"{row + i:x}") for i, p in enumerate(paragraphs)])
        row += len(paragraphs)
        if number % 2000 == 0:
            store.commit()
            store.begin()
    store.set_meta(model=FakeEmbedder(dim=args.dim).name, dim=str(args.dim), vectors_committed=str(row))
    store.commit()
    counts = store.counts()
    store.close()
    return counts


def search(folder: Path, dim: int, queries: np.ndarray, truth: np.ndarray) -> tuple[dict[str, float],
                                                                                      dict[str, list[float]]]:
    """Recall@10 against ``truth`` and per-query latencies, the index opened as the CLI and UI open one."""
    import faiss

    recall: dict[str, float] = {}
    latency: dict[str, list[float]] = {}
    with Assistant(folder, embedder=FakeEmbedder(dim=dim)) as assistant:
        index, rows = assistant.index.faiss, assistant.index.vectors
        recall["the FAISS index alone"] = overlap(index.search(queries, 10)[1], truth)
        found: list[np.ndarray] = []

        def dense(query: np.ndarray) -> object:
            return assistant.searcher.search("synthetic", k=10, method="dense", query_vector=query)

        for threads in (faiss.omp_get_max_threads(), 1):
            faiss.omp_set_num_threads(threads)
            timed(dense, queries[:20])
            found.clear()
            latency[f"search_faiss, k=10, {threads} thread(s)"] = timed(
                lambda q: found.append(search_faiss(index, q, 10, vectors=rows)[1]), queries)
            latency[f"Searcher dense, k=10, {threads} thread(s)"] = timed(dense, queries)
        recall["search_faiss (as the Searcher gets it)"] = overlap(found, truth)
    return recall, latency


def report(args: argparse.Namespace, folder: Path, described: dict, counts: dict[str, int],
           seconds: dict[str, float], memory: Memory, recall: dict[str, float], latency: dict[str, list[float]],
           exact_ms: list[float]) -> None:
    status = Memory.status()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sizes = {name: (folder / name).stat().st_size for name in (VECTORS, DATABASE, FAISS)}
    flat_bytes = args.n * args.dim * 4
    index_bytes = sizes[FAISS]
    print(f"{args.n:,} vectors of {args.dim} dimensions ({args.topics} topics × 16 subtopics); {counts['cables']:,} "
          f"cables, {counts['paragraphs']:,} paragraphs in SQLite; {args.queries} fresh queries\n")
    print(f"FAISS: {described}\n")
    print("| phase | seconds | peak RSS GiB | peak anonymous GiB | peak file pages GiB |")
    print("|---|---:|---:|---:|---:|")
    for phase, peak in memory.peaks.items():
        took = seconds.get(phase)
        print(f"| {phase} | {'' if took is None else f'{took:.1f}'} | {peak['VmRSS'] / GiB:.2f} | "
              f"{peak['RssAnon'] / GiB:.2f} | {peak['RssFile'] / GiB:.2f} |")
    peak_anon = max(p["RssAnon"] for p in memory.peaks.values())
    print(f"\nVmHWM {status['VmHWM'] / GiB:.2f} GiB, ru_maxrss {maxrss / GiB:.2f} GiB, peak anonymous "
          f"{peak_anon / GiB:.2f} GiB (goal ≤ 3 GB)")
    print("files: " + ", ".join(f"{name} {size / GiB:.2f} GiB" for name, size in sizes.items()))
    for name, value in recall.items():
        print(f"recall@10 against exact search, {name}: {value:.3f} (goal ≥ 0.95)")
    print()
    exact = percentile(exact_ms, 50) or 0.0
    print("| search | p50 ms | p95 ms | p50 × exact |")
    print("|---|---:|---:|---:|")
    for name, took in latency.items():
        p50, p95 = percentile(took, 50) or 0.0, percentile(took, 95) or 0.0
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {p50 / exact:.4f} |")
    print(f"| baseline: exact scan of the vector file, one query | {exact:.0f} | {percentile(exact_ms, 95):.0f} | 1 |")
    print(f"\nindex memory: {index_bytes / GiB:.2f} GiB on disk for {described.get('type')}, against "
          f"{flat_bytes / GiB:.2f} GiB of float32 for exact search (× {index_bytes / flat_bytes:.2f})")


if __name__ == "__main__":
    raise SystemExit(main())
