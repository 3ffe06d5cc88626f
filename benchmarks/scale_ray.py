"""Indexing throughput on Ray against the single-process build, on the same cables, in one run.

    python benchmarks/scale_ray.py [--cables 150] [--workers 1 2] [--address ADDRESS]

Builds the first ``--cables`` cables of the corpus three or more ways into fresh folders, with the model the CLI
uses (all-MiniLM-L6-v2, int8 ONNX on a CPU, unless ``--model``/``--backend`` say otherwise):

- baseline: :func:`rag.indexer.build_index`, one process;
- :func:`rag.distributed.build_index_ray` with each of ``--workers`` embedders, on a local Ray cluster of this
  machine's cores (or the cluster at ``--address``).

Paragraphs/s counts the paragraphs written over the whole build (parse, embed, write, FAISS, manifest), Ray's
start-up of its pipeline and actors included; the cluster's own start is timed apart. Every build is checked to
hold the same paragraphs as the baseline. The order of the builds is baseline first, then Ray, so that the
operating system's page cache favours none of them. GPU workers: ``--gpus 1 --backend torch`` on a machine with
one (not measured here: this machine has none).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.distributed import build_index_ray, connect
from rag.embed import load_embedder
from rag.indexer import build_index

SHARED = ROOT.parent / "shared"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cablegate-6712.jsonl.gz")
    parser.add_argument("--cables", type=int, default=150, help="the corpus's first cables to index (default 150)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes (default 1 2)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray worker (default 0)")
    parser.add_argument("--address", help="a running Ray cluster (default: a local one)")
    parser.add_argument("--model", help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--backend", help="default: int8 ONNX on a CPU")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="cablechat-scale-ray-"))
    try:
        source = root / "cables.jsonl"
        with gzip.open(args.corpus, "rb") as stream:
            source.write_bytes(b"".join(islice(stream, args.cables)))
        embedder = load_embedder(args.model, backend=args.backend)
        embedder.embed(["warm up"])
        rows: list[tuple[str, float, int, int]] = []
        started = time.perf_counter()
        summary = build_index([source], root / "single", embedder=embedder)
        rows.append(("single process (baseline)", time.perf_counter() - started, summary.paragraphs, summary.embedded))
        started = time.perf_counter()
        ray = connect(args.address)
        cluster_s = time.perf_counter() - started
        cpus = ray.cluster_resources().get("CPU", 0)
        for workers in args.workers:
            started = time.perf_counter()
            summary = build_index_ray([source], root / f"ray-{workers}", embedder=embedder, workers=workers,
                                      gpus_per_worker=args.gpus)
            rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", time.perf_counter() - started,
                         summary.paragraphs, summary.embedded))
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert len({r[2] for r in rows}) == 1, rows  # every build holds the same paragraphs
    base = rows[0][2] / rows[0][1]
    print(f"{args.cables} corpus cables, {rows[0][2]} paragraphs, {rows[0][3]} windows embedded; model {embedder!r}; "
          f"Ray cluster of {cpus:g} CPUs started in {cluster_s:.1f} s (not counted below)\n")
    print("| build | seconds | paragraphs/s | windows/s | × baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, paragraphs, embedded in rows:
        print(f"| {name} | {seconds:.1f} | {paragraphs / seconds:.1f} | {embedded / seconds:.1f} | "
              f"{paragraphs / seconds / base:.2f} |")
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
