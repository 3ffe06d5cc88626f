"""Embedding speed and agreement: plain sentence-transformers fp32 against every CableChat backend, in one run.

    python benchmarks/embed.py [--n 2000] [--backends torch,torch-bf16,onnx,onnx-int8]

The baseline is exactly ``SentenceTransformer(path).encode(texts, batch_size=64)``. Every path embeds the same
``--n`` corpus paragraphs (a seeded sample of all parsed paragraphs), chunk by chunk, the paths taking turns within
each chunk in a rotating order, so CPU contention from other processes hits them alike.

Agreement with the baseline, per path: cosine of each paragraph's two vectors, and, for the dev questions searched
over a pool of the sample plus every paragraph of the questions' gold cables (the hardest distractors), how many of
the baseline's top-5 paragraphs the path also returns, and recall@5 of the gold paragraph. The pool is far smaller
than the corpus, so the recall is a proxy for the index's, not its value.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.embed import BACKENDS, SentenceTransformerEmbedder, default_backend, resolve_model
from rag.loaders import load_cables

SHARED = ROOT.parent / "shared"
Encoder = Callable[[Sequence[str]], np.ndarray]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="paragraphs to time (default 2000)")
    parser.add_argument("--chunk", type=int, default=100, help="paragraphs per turn (default 100)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, default all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cablegate-6712.jsonl.gz")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")

    started = time.perf_counter()
    cables = {c.id: c for c in load_cables(args.corpus)}
    everything = {p.ref: p.text for c in cables.values() for p in c.paragraphs}
    refs = random.Random(args.seed).sample(sorted(everything), args.n)
    sample = [everything[r] for r in refs]
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    gold = [f"{q['cable']} ¶{q['paragraph']}" if q.get("cable") else None for q in questions]
    extra = [p.ref for q in questions if q.get("cable") in cables for p in cables[q["cable"]].paragraphs]
    extra = [r for r in dict.fromkeys(extra) if r not in set(refs)]
    print(f"loaded {len(cables)} cables, {len(everything)} paragraphs in {time.perf_counter() - started:.0f}s; "
          f"timing {len(sample)} paragraphs (mean {np.mean([len(t) for t in sample]):.0f} chars); "
          f"{sum(g in everything for g in gold)}/{len(questions)} questions have a gold paragraph")
    print(f"{os.cpu_count()} CPU threads; default backend here: {default_backend()}")

    # Built here first, so that an ONNX export (once per machine) is not counted in the cold starts below.
    paths: dict[str, Encoder] = {"baseline": baseline_encoder()}
    paths |= {backend: SentenceTransformerEmbedder(backend=backend).embed for backend in backends}
    starts = {name: cold_start(name) for name in paths}
    for encode in paths.values():  # first calls build kernels and allocate; not what we measure
        encode(sample[:16])

    seconds = dict.fromkeys(paths, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in paths}
    names = list(paths)
    for turn, first in enumerate(range(0, len(sample), args.chunk)):
        chunk = sample[first : first + args.chunk]
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            started = time.perf_counter()
            vectors[name].append(paths[name](chunk))
            seconds[name] += time.perf_counter() - started
        done = first + len(chunk)
        print(f"\r{done}/{len(sample)} paragraphs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    extra_texts = [everything[r] for r in extra]
    pool_refs = refs + extra
    query_texts = [q["question"] for q in questions]
    docs = {n: unit(np.concatenate([*vectors[n], paths[n](extra_texts)])) for n in names}
    queries = {n: unit(paths[n](query_texts)) for n in names}
    top = {n: np.argsort(-queries[n] @ docs[n].T, axis=1)[:, :5] for n in names}
    answerable = [i for i, g in enumerate(gold) if g in set(pool_refs)]

    def recall(name: str) -> float:
        return float(np.mean([gold[i] in {pool_refs[j] for j in top[name][i]} for i in answerable]))

    base = seconds["baseline"]
    print(f"\n{len(sample)} paragraphs timed; agreement over a pool of {len(pool_refs)} paragraphs and "
          f"{len(questions)} dev questions ({len(answerable)} with their gold paragraph in the pool)\n")
    print("| path | cold start s | paragraphs/s | × baseline | cosine mean | cosine min | top-5 overlap | recall@5 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        cosine = np.sum(docs[n] * docs["baseline"], axis=1)
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top[n], top["baseline"])])
        label = f"{n} (default)" if n == default_backend() else n
        print(f"| {label} | {starts[n]:.1f} | {len(sample) / seconds[n]:.1f} | {base / seconds[n]:.2f} | "
              f"{cosine.mean():.4f} | {cosine.min():.4f} | {overlap:.3f} | {recall(n):.3f} |")
    return 0


def baseline_encoder() -> Encoder:
    """Plain sentence-transformers, fp32, as anyone would first write it."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    return lambda texts: model.encode(list(texts), batch_size=64, show_progress_bar=False)


def cold_start(path: str) -> float:
    """Seconds for a fresh Python to load ``path`` and embed one question, as each ``cablechat ask`` will."""
    load = (
        f"import os; os.environ['HF_HUB_OFFLINE'] = '1'; from sentence_transformers import SentenceTransformer; "
        f"SentenceTransformer({resolve_model(None)[1]!r}, device='cpu').encode(['q'])"
        if path == "baseline"
        else f"from rag.embed import SentenceTransformerEmbedder; SentenceTransformerEmbedder(backend={path!r}).embed(['q'])"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", load], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def unit(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


if __name__ == "__main__":
    raise SystemExit(main())
