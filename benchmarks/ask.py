"""Answer quality and ``ask`` latency in extractive mode, beside a baseline that quotes the top paragraph whole.

    python benchmarks/ask.py [--index index/cablegate] [--questions FILE] [--details misses.jsonl]

CableChat's figures come from :func:`rag.evaluate.evaluate` (definitions there): key fact in the answer, gold
paragraph cited, citation precision, abstention on unanswerable questions, wrong abstention on answerable ones,
and ``ask`` latency p50/p95, against the issue's goals (≥ 0.75, ≥ 0.85, –, ≥ 0.8, ≤ 0.05; p50 ≤ 100 ms,
p95 ≤ 250 ms).

The baseline, scored by the same :func:`rag.evaluate.score_answers`, is retrieval alone: the same hybrid search
``ask`` runs (k=8), its best paragraph quoted whole and cited, never abstaining; its latency is that search's. The
ratios say what choosing sentences and judging answerability add, and cost, over it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faiss

from rag.assistant import Assistant
from rag.evaluate import AnswerScores, Question, evaluate, load_questions, score_answers
from rag.extractive import ABSTAIN_MESSAGE
from rag.metrics import percentile
from rag.models import Answer, Citation

SHARED = ROOT.parent / "shared"
# (figure, goal, higher is better)
GOALS = (("key_fact", 0.75, True), ("gold_cited", 0.85, True), ("citation_precision", None, True),
         ("abstention", 0.8, True), ("wrong_abstention", 0.05, False), ("latency_p50_ms", 100.0, False),
         ("latency_p95_ms", 250.0, False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "cablegate")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    parser.add_argument("--details", type=Path, help="write one JSON line per question, for error analysis")
    args = parser.parse_args(argv)

    questions = load_questions(args.questions)
    with Assistant(args.index) as assistant:
        result = evaluate(assistant, questions)
        baseline = top_paragraph(assistant, questions)
        stats = assistant.stats()
    if args.details:
        args.details.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in result.details))

    ours, theirs = result.answer.to_dict(), baseline.to_dict()
    a = result.answer
    print(f"index {args.index}: {stats['cables']:,} cables, model {stats['model']}, FAISS on "
          f"{faiss.omp_get_max_threads()} threads; {a.questions} questions, {a.answerable} answerable "
          f"({a.gold_not_indexed} with a gold cable not in this index), "
          f"{a.unanswerable} unanswerable\n")
    print("| figure | CableChat extractive | baseline: top paragraph | × baseline | goal | met |")
    print("|---|---:|---:|---:|---:|---|")
    for name, goal, higher in GOALS:
        value, base = ours[name], theirs[name]
        ratio = f"{value / base:.2f}" if value is not None and base else "–"
        met = "" if goal is None or value is None else "yes" if (value >= goal if higher else value <= goal) else "NO"
        sign = "" if goal is None else ("≥ " if higher else "≤ ") + f"{goal:g}"
        print(f"| {name} | {_f(value)} | {_f(base)} | {ratio} | {sign} | {met} |")
    print(f"| citations made | {a.citations} | {baseline.citations} | | | |")
    split = {part: percentile([d["timings"].get(part, 0.0) for d in result.details], 50) or 0.0
             for part in ("search_ms", "compose_ms")}
    print(f"\nwhere ask's time goes, p50: search {split['search_ms']:.1f} ms (embedding included), choosing "
          f"sentences and judging {split['compose_ms']:.1f} ms")
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


def top_paragraph(assistant: Assistant, questions: Sequence[Question]) -> AnswerScores:
    """Scores of answering with the best hybrid paragraph, quoted whole, for every question."""
    answers: list[Answer] = []
    took: list[float] = []
    for q in questions:
        started = time.perf_counter()
        hits = assistant.search(q.question, k=8)
        took.append((time.perf_counter() - started) * 1000)
        if not hits:
            answers.append(Answer(q.question, ABSTAIN_MESSAGE, (), (), "baseline", abstained=True))
            continue
        best = hits[0]
        citation = Citation(best.paragraph.cable_id, best.paragraph.number, best.paragraph.text)
        answers.append(Answer(q.question, f"> {best.paragraph.text} [{best.ref}]", (citation,), tuple(hits),
                              "baseline"))
    return score_answers(questions, answers, took)


def _f(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if isinstance(value, float) and value > 1 else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
