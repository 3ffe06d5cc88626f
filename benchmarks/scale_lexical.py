"""BM25 alone, FTS5 beside tantivy, on one index folder's database: no FAISS, no model, no manifest needed.

    python benchmarks/scale_lexical.py --dir /tmp/h14-sh-2500k/scaled [--baseline-questions 10]

For a folder that ``benchmarks/scale_hybrid.py`` is still building (its SQLite phase done, FAISS not yet), or any
index: brings its tantivy index up to date (timed; a no-op when it is), then searches the dev questions through
each engine's :class:`rag.lexical.LexicalIndex` as the Searcher does (depth 100, the Searcher's query words), a
first "cold" pass (document frequencies counted as the words are first met) and a warm one, then the warm pass
filtered to the year of each answerable question's gold cable. Recall@5 from the warm pass. FTS5 only on the
first ``--baseline-questions`` questions when given (at 2.5 M paragraphs one of its queries takes seconds), and
filtered on the first ``--baseline-filtered`` only.
Peak memory per phase as in ``benchmarks/scale.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import GiB, Memory

from rag.evaluate import Question, load_questions
from rag.index import DATABASE
from rag.lexical import Fts5Lexical, LexicalIndex, fts_terms
from rag.lexical_tantivy import TantivyLexicalIndex
from rag.metrics import first_rank, percentile
from rag.models import citation_key
from rag.query import make_filters
from rag.retrieval import CANDIDATES
from rag.store import Store

SHARED = ROOT.parent / "shared"


def run(lexical: LexicalIndex, store: Store, questions: Sequence[Question], filtered: int | None) -> dict[str, object]:
    took: dict[str, list[float]] = {"cold": [], "warm": [], "year filter": []}
    ranks: list[int | None] = []
    for kind in ("cold", "warm"):
        for q in questions:
            started = time.perf_counter()
            found = lexical.search(fts_terms(q.question), depth=CANDIDATES)
            took[kind].append((time.perf_counter() - started) * 1000)
            if kind == "warm" and q.answerable:
                rows = store.paragraphs([r for r, _ in found[:10]])
                refs = [citation_key(rows[r][1].id, rows[r][0].number) for r, _ in found[:10] if r in rows]
                ranks.append(first_rank(refs, q.golds))
    for q in questions[:filtered]:
        cable = store.cable(q.cable, paragraphs=False) if q.cable else None
        if cable is not None and cable.date:
            where = store.where(make_filters(year=cable.date.year))
            started = time.perf_counter()
            lexical.search(fts_terms(q.question), depth=CANDIDATES, where=where)
            took["year filter"].append((time.perf_counter() - started) * 1000)
    return {"took": took, "recall@5": float(np.mean([r is not None and r <= 5 for r in ranks])) if ranks else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="an index folder (its cables.sqlite)")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    parser.add_argument("--engines", nargs="+", choices=("tantivy", "fts5"), default=["tantivy", "fts5"])
    parser.add_argument("--baseline-questions", type=int, metavar="N", help="FTS5 on the first N questions only")
    parser.add_argument("--baseline-filtered", type=int, default=3, metavar="N",
                        help="FTS5 filtered to a year on the first N questions only (default 3): at 100,000 "
                             "paragraphs one such query took a minute")
    args = parser.parse_args(argv)

    memory = Memory()
    questions = load_questions(args.questions)
    written, synced = 0, 0.0
    if "tantivy" in args.engines:
        writable = Store(args.dir / DATABASE, create=True)
        memory.phase = "tantivy: bring up to date"
        started = time.perf_counter()
        written = TantivyLexicalIndex(args.dir, lambda: writable, 0).sync(writable)
        synced = time.perf_counter() - started
        writable.close()
    store = Store(args.dir / DATABASE)
    paragraphs = store.counts()["paragraphs"]
    engines = {}
    if "tantivy" in args.engines:
        engines["tantivy"] = (TantivyLexicalIndex(args.dir, lambda: store, paragraphs), questions, None)
    if "fts5" in args.engines:
        engines["fts5 (baseline)"] = (Fts5Lexical(lambda: store, paragraphs), questions[:args.baseline_questions],
                                      args.baseline_filtered)
    results = {}
    for name, (lexical, asked, filtered) in engines.items():
        memory.phase = f"search, {name}"
        results[name] = run(lexical, store, asked, filtered)
    memory.stop()
    print(f"{args.dir}: {paragraphs:,} paragraphs; tantivy brought up to date in {synced:.1f} s ({written:,} "
          f"paragraphs written)\n")
    print("| engine | questions | recall@5 | cold p50 / p95 ms | warm p50 / p95 ms | year filter p50 / p95 ms (queries) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        cells = [f"{percentile(v, 50):.1f} / {percentile(v, 95):.1f}" if v else "not run" for v in result["took"].values()]
        cells[-1] += f" ({len(result['took']['year filter'])})"
        recall = f"{result['recall@5']:.3f}" if len(engines[name][1]) == len(questions) else "–"
        print(f"| {name} | {len(engines[name][1])} | {recall} | " + " | ".join(cells) + " |")
    print("\n| phase | peak RSS GiB | peak anonymous GiB | peak file pages GiB |")
    print("|---|---:|---:|---:|")
    for phase, peak in memory.peaks.items():
        print(f"| {phase} | {peak['VmRSS'] / GiB:.2f} | {peak['RssAnon'] / GiB:.2f} | {peak['RssFile'] / GiB:.2f} |")
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
