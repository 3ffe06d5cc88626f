"""Retrieval quality and search latency, BM25 / dense / hybrid side by side, BM25 being the baseline.

    python benchmarks/search.py [--index index/cablegate] [--questions FILE] [--repeat 5] [--plot recall.png]

Quality: :func:`rag.evaluate.evaluate` on the dev questions (recall@1/5/10, MRR@10 over the answerable ones), each
method's figures also as a ratio to BM25's, beside the issue's anchor (BM25 over paragraphs on held-out questions:
recall@5 0.82, MRR 0.65) and goals (hybrid recall@5 ≥ 0.92, MRR@10 ≥ 0.75).

Latency: warm, on the opened index (model loaded, one untimed pass first), every dev question searched
``--repeat`` times by each method in turn, k=10 as the CLI does; p50 and p95 per method against the goals (p50 ≤ 20
ms, p95 ≤ 60 ms), and the part of it that is embedding the question.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faiss

from rag.assistant import Assistant
from rag.evaluate import evaluate, load_questions, plot_recall
from rag.metrics import percentile

SHARED = ROOT.parent / "shared"
METHODS = ("bm25", "dense", "hybrid")
ANCHOR = {"recall@5": 0.82, "mrr@10": 0.65}
GOALS = {"recall@5": 0.92, "mrr@10": 0.75}
LATENCY_GOALS = {"p50": 20.0, "p95": 60.0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "cablegate")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the questions (default 5)")
    parser.add_argument("--plot", type=Path, help="also write the recall@k curves to this PNG")
    args = parser.parse_args(argv)

    questions = load_questions(args.questions)
    with Assistant(args.index) as assistant:
        result = evaluate(assistant, questions, k=10)
        texts = [q.question for q in questions]
        for text in texts:  # the untimed pass: page cache, the model's first calls
            for method in METHODS:
                assistant.search(text, k=10, method=method)
        took: dict[str, list[float]] = {m: [] for m in METHODS}
        embedding: list[float] = []
        for _ in range(args.repeat):
            for text in texts:
                for method in METHODS:
                    started = time.perf_counter()
                    assistant.search(text, k=10, method=method)
                    took[method].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                assistant.embedder.embed([text])
                embedding.append((time.perf_counter() - started) * 1000)
        stats = assistant.stats()

    figures = result.to_dict()
    print(f"index {args.index}: {stats['cables']:,} cables, {stats['paragraphs']:,} paragraphs, "
          f"{stats['vectors']:,} vectors, {stats['faiss'].get('type')}, model {stats['model']}, FAISS on "
          f"{faiss.omp_get_max_threads()} threads")
    print(f"{result.answer.answerable} answerable dev questions "
          f"({result.answer.gold_not_indexed} with a gold cable not in this index)\n")
    names = ["recall@1", "recall@5", "recall@10", "mrr@10"]
    print("| method | " + " | ".join(names) + " | recall@5 × bm25 | MRR@10 × bm25 |")
    print("|---|" + "---:|" * (len(names) + 2))
    base = figures["bm25"]
    for method in METHODS:
        row = figures[method]
        print(f"| {method} | " + " | ".join(_f(row[n]) for n in names) +
              f" | {_ratio(row['recall@5'], base['recall@5'])} | {_ratio(row['mrr@10'], base['mrr@10'])} |")
    print(f"| issue anchor: BM25, held-out | | {ANCHOR['recall@5']:.2f} | | {ANCHOR['mrr@10']:.2f} | | |")
    hybrid = figures["hybrid"]
    for name, goal in GOALS.items():
        met = (hybrid[name] or 0) >= goal
        print(f"goal hybrid {name} ≥ {goal}: {_f(hybrid[name])} {'met' if met else 'NOT MET'}")

    print(f"\nsearch latency, warm, {args.repeat} × {len(texts)} questions per method, k=10\n")
    print("| method | p50 ms | p95 ms | p50 × bm25 | p95 × bm25 |")
    print("|---|---:|---:|---:|---:|")
    cut = {m: (percentile(took[m], 50) or 0.0, percentile(took[m], 95) or 0.0) for m in METHODS}
    for method in METHODS:
        p50, p95 = cut[method]
        print(f"| {method} | {p50:.1f} | {p95:.1f} | {_ratio(p50, cut['bm25'][0])} | {_ratio(p95, cut['bm25'][1])} |")
    print(f"| of which embedding the question | {percentile(embedding, 50) or 0:.1f} | "
          f"{percentile(embedding, 95) or 0:.1f} | | |")
    p50, p95 = cut["hybrid"]
    met = p50 <= LATENCY_GOALS["p50"] and p95 <= LATENCY_GOALS["p95"]
    print(f"goal hybrid p50 ≤ {LATENCY_GOALS['p50']:.0f} ms, p95 ≤ {LATENCY_GOALS['p95']:.0f} ms: "
          f"{'met' if met else 'NOT MET'}")
    if args.plot:
        plot_recall(result, args.plot)
        print(f"\nrecall@k curves written to {args.plot}")
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "–"


if __name__ == "__main__":
    raise SystemExit(main())
