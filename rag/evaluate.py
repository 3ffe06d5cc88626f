"""Measure retrieval and answers on questions whose gold paragraph is known: ``cablechat eval QUESTIONS``.

Questions are JSON lines ``{question, cable, paragraph, answer, evidence, also}``: ``cable`` and ``paragraph`` name
the gold paragraph (both null for a question the cables cannot answer), ``answer`` is the key fact a right answer
states, ``evidence`` the sentence of the gold paragraph that states it, and ``also`` other paragraphs that answer
it as well (``"09ASTANA664 ¶2"``, ``{"cable": …, "paragraph": …}`` or ``[cable, paragraph]``).

Retrieval, per method (bm25, dense, hybrid), over the answerable questions: recall@k, the share whose gold (any of
them) is among the top k paragraphs, and MRR@k. Answers, from ``ask`` in extractive mode (its own depth, k=8):

- key fact: the answer states ``answer`` (:func:`rag.metrics.contains`: case, accents, punctuation and spacing
  ignored, whole words), and did not abstain; over the answerable questions that give an ``answer``;
- gold cited: a gold paragraph is among the answer's citations;
- citation precision: of all citations made for answerable questions, the share naming a gold paragraph or one
  whose text holds the evidence sentence (:func:`rag.metrics.citation_ok`);
- abstention: share of unanswerable questions answered with an abstention, overall and for each ``kind`` the
  questions give (e.g. ``inrange_unanswerable``; those without one count as ``unanswerable``); wrong abstention:
  share of answerable ones;
- latency: p50 and p95 of ``ask`` wall time. The first question is asked once, untimed, beforehand, so that the
  model's first-call setup is not counted as a question's latency.

A gold paragraph whose cable the index does not hold is still counted (as a miss), and ``gold_not_indexed`` says
how many there were: an evaluation on the wrong index then reads as one.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import CableChatError, QueryError
from rag.metrics import citation_ok, contains, first_rank, mrr_at, percentile, recall_curve, share
from rag.models import Answer, Hit, citation_key

if TYPE_CHECKING:
    from rag.assistant import Assistant

__all__ = ["AnswerScores", "Evaluation", "Question", "RetrievalScores", "evaluate", "load_questions",
           "plot_recall", "score_answers"]

METHODS = ("bm25", "dense", "hybrid")
_REF = re.compile(r"\s*([0-9A-Z]+)\s*(?:¶|#|para(?:graph)?\.?)\s*(\d+)\s*", re.IGNORECASE)
# What a details line shows of each paragraph retrieved instead of the gold.
_SHOWN, _SNIPPET = 5, 160


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    cable: str | None = None
    paragraph: int | None = None
    answer: str | None = None
    evidence: str | None = None
    also: tuple[str, ...] = ()
    kind: str | None = None
    line: int = 0

    @property
    def answerable(self) -> bool:
        return self.cable is not None

    @property
    def golds(self) -> tuple[str, ...]:
        if self.cable is None or self.paragraph is None:
            return ()
        return (citation_key(self.cable, self.paragraph), *self.also)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_questions(path: str | os.PathLike[str]) -> list[Question]:
    """The questions of a JSON lines file; a malformed line raises CableChatError naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CableChatError(f"{path} is not UTF-8 text ({exc}); save the questions as UTF-8 JSON lines") from exc
    except OSError as exc:
        raise CableChatError(f"cannot read questions from {path} ({exc.strerror}); pass a JSON lines file such as "
                             "../shared/eval/dev-questions.jsonl") from exc
    questions = [_question(line, f"{path}:{n}", n) for n, line in enumerate(lines, 1) if line.strip()]
    if not questions:
        raise CableChatError(f"{path} holds no questions; write one JSON object a line: {{\"question\": …, "
                             '"cable": …, "paragraph": …, "answer": …, "evidence": …, "also": []}')
    return questions


def _question(line: str, where: str, number: int) -> Question:
    def bad(why: str) -> CableChatError:
        return CableChatError(f"{where}: {why}")

    try:
        data = json.loads(line)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    question, cable, paragraph = data.get("question"), data.get("cable"), data.get("paragraph")
    if not isinstance(question, str) or not question.strip():
        raise bad('"question" must be a non-empty string')
    if (cable is None) != (paragraph is None):
        raise bad('"cable" and "paragraph" go together: both set for an answerable question, both null for one '
                  "the cables cannot answer")
    if cable is not None and (not isinstance(cable, str) or not cable.strip()):
        raise bad(f'"cable" must be a cable id such as "09ASTANA664", got {cable!r}')
    if paragraph is not None and (isinstance(paragraph, bool) or not isinstance(paragraph, int) or paragraph < 0):
        raise bad(f'"paragraph" must be a paragraph number (0 for the lead), got {paragraph!r}')
    for name in ("answer", "evidence"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise bad(f'"{name}" must be a string or null, got {data[name]!r}')
    also = data.get("also") or []
    if not isinstance(also, list):
        raise bad(f'"also" must be a list of paragraphs such as "09ASTANA664 ¶2", got {also!r}')
    if also and cable is None:
        raise bad('"also" lists gold paragraphs, but "cable" is null (unanswerable)')
    try:
        refs = tuple(_ref(value) for value in also)
    except ValueError as exc:
        raise bad(f'"also": {exc}') from exc
    return Question(question=question.strip(), cable=cable.strip().upper() if cable else None, paragraph=paragraph,
                    answer=data.get("answer"), evidence=data.get("evidence"), also=refs, line=number,
                    kind=data["kind"] if isinstance(data.get("kind"), str) else None)


def _ref(value: Any) -> str:
    """A gold paragraph as its citation key, from ``"ID ¶N"``, ``{"cable": ID, "paragraph": N}`` or ``[ID, N]``."""
    if isinstance(value, dict):
        value = [value.get("cable"), value.get("paragraph")]
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return citation_key(value[0].strip().upper(), value[1])
    if isinstance(value, str) and (match := _REF.fullmatch(value)):
        return citation_key(match.group(1).upper(), int(match.group(2)))
    raise ValueError(f'cannot read {value!r} as a paragraph; write "09ASTANA664 ¶2"')


# -- figures ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrievalScores:
    method: str
    k: int
    curve: tuple[float | None, ...]  # recall@1 … recall@k
    mrr: float | None

    def recall(self, depth: int) -> float | None:
        return self.curve[depth - 1]

    def to_dict(self) -> dict[str, float | None]:
        shown = {f"recall@{d}": _round(self.recall(d)) for d in _depths(self.k)}
        return shown | {f"mrr@{self.k}": _round(self.mrr)}


@dataclass(frozen=True, slots=True)
class AnswerScores:
    key_fact: float | None
    gold_cited: float | None
    citation_precision: float | None
    abstention: float | None
    wrong_abstention: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    questions: int
    answerable: int
    unanswerable: int
    citations: int
    gold_not_indexed: int = 0
    abstention_by_kind: dict[str, float | None] = field(default_factory=dict)
    """Abstention over the unanswerable questions of each ``kind`` (those with none: ``unanswerable``)."""

    def to_dict(self) -> dict[str, Any]:
        return {name: _round(value) if isinstance(value, float) else
                {k: _round(v) for k, v in value.items()} if isinstance(value, dict) else value
                for name, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class _Checked:
    """One answer against its question."""

    key_fact: bool | None  # None: the question names no key fact
    gold_cited: bool
    citations: tuple[tuple[str, bool], ...]  # (ref, right) of each citation


def _check(question: Question, answer: Answer) -> _Checked:
    golds = question.golds
    texts = {h.ref: h.paragraph.text for h in answer.hits}
    refs = [c.ref for c in answer.citations]
    return _Checked(
        key_fact=None if not question.answer else not answer.abstained and contains(answer.text, question.answer),
        gold_cited=any(r in golds for r in refs),
        citations=tuple((r, citation_ok(r, texts.get(r), golds, question.evidence)) for r in refs),
    )


def score_answers(questions: Sequence[Question], answers: Sequence[Answer], latencies_ms: Sequence[float], *,
                  gold_not_indexed: int = 0) -> AnswerScores:
    """The answer figures of ``answers`` (one per question, in order), as the module docstring defines them."""
    pairs = list(zip(questions, answers, strict=True))
    answerable = [(q, a) for q, a in pairs if q.answerable]
    checked = [_check(q, a) for q, a in answerable]
    judged = [right for c in checked for _, right in c.citations]
    return AnswerScores(
        key_fact=share(c.key_fact for c in checked if c.key_fact is not None),
        gold_cited=share(c.gold_cited for c in checked),
        citation_precision=share(judged),
        abstention=share(a.abstained for q, a in pairs if not q.answerable),
        wrong_abstention=share(a.abstained for _, a in answerable),
        latency_p50_ms=_round(percentile(latencies_ms, 50), 1),
        latency_p95_ms=_round(percentile(latencies_ms, 95), 1),
        questions=len(pairs), answerable=len(answerable), unanswerable=len(pairs) - len(answerable),
        citations=len(judged), gold_not_indexed=gold_not_indexed,
        abstention_by_kind={kind: share(a.abstained for q, a in pairs if not q.answerable
                                        and (q.kind or "unanswerable") == kind)
                            for kind in sorted({q.kind or "unanswerable" for q, _ in pairs if not q.answerable})},
    )


@dataclass(frozen=True, slots=True)
class Evaluation:
    k: int
    retrieval: Mapping[str, RetrievalScores]
    answer: AnswerScores
    details: tuple[dict[str, Any], ...]
    """One dict a question: its golds, each method's rank, what was retrieved where the gold was missed, the
    answer and its wrong citations, and ``missed``: the names of the figures this question failed."""

    def to_dict(self) -> dict[str, Any]:
        return {m: s.to_dict() for m, s in self.retrieval.items()} | {"answer": self.answer.to_dict()}

    def table(self) -> str:
        a, k = self.answer, self.k
        depths = _depths(k)
        head = f"{'method':<8}" + "".join(f"{f'recall@{d}':>11}" for d in depths) + f"{f'mrr@{k}':>9}"
        rows = [f"{m:<8}" + "".join(f"{_fmt(s.recall(d)):>11}" for d in depths) + f"{_fmt(s.mrr):>9}"
                for m, s in self.retrieval.items()]
        asked = f"{a.answerable} answerable, {a.unanswerable} unanswerable"
        missing = f" ({a.gold_not_indexed} name a cable this index lacks)" if a.gold_not_indexed else ""
        lines = [f"retrieval over {a.answerable} answerable questions{missing}", head, *rows, "",
                 f"answers (extractive) to {a.questions} questions: {asked}",
                 f"  key fact in answer            {_fmt(a.key_fact)}",
                 f"  gold paragraph cited          {_fmt(a.gold_cited)}",
                 f"  citation precision            {_fmt(a.citation_precision)}  ({a.citations} citations)",
                 f"  abstained when unanswerable   {_fmt(a.abstention)}",
                 *(f"    {kind:<27} {_fmt(value)}" for kind, value in a.abstention_by_kind.items()
                   if len(a.abstention_by_kind) > 1),
                 f"  abstained when answerable     {_fmt(a.wrong_abstention)}",
                 f"  latency p50 / p95             {_fmt(a.latency_p50_ms, 'ms')} / {_fmt(a.latency_p95_ms, 'ms')}"]
        return "\n".join(lines)


def _depths(k: int) -> list[int]:
    """The depths a summary shows: 1, 5 and k, those not deeper than k."""
    return sorted(d for d in {1, 5, k} if d <= k)


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.0f} {unit}" if unit else f"{value:.3f}"


# -- running ----------------------------------------------------------------------------------------------


def evaluate(assistant: Assistant, questions: Sequence[Question], *, k: int = 10,
             progress: bool = False) -> Evaluation:
    """Search each answerable question with every method to depth ``k``, and ask every question."""
    from tqdm import tqdm

    if not questions:
        raise CableChatError("no questions to evaluate")
    indexed = assistant.is_indexed([q.cable for q in questions if q.cable])
    _run(questions[0], assistant.ask)
    ranks: dict[str, list[int | None]] = {m: [] for m in METHODS}
    answers: list[Answer] = []
    latencies: list[float] = []
    details: list[dict[str, Any]] = []
    for q in tqdm(questions, desc="evaluating", unit="question", disable=not progress, file=sys.stderr):
        started = time.perf_counter()
        answer = _run(q, assistant.ask)
        latencies.append((time.perf_counter() - started) * 1000)
        answers.append(answer)
        hits = {m: _run(q, assistant.search, k=k, method=m) for m in METHODS} if q.answerable else {}
        found = {m: first_rank([h.ref for h in ranked], q.golds) for m, ranked in hits.items()}
        for m, rank in found.items():
            ranks[m].append(rank)
        details.append(_detail(q, answer, latencies[-1], found, hits, q.cable in indexed))
    scores = score_answers(questions, answers, latencies,
                           gold_not_indexed=sum(q.answerable and q.cable not in indexed for q in questions))
    retrieval = {m: RetrievalScores(m, k, recall_curve(r, k), mrr_at(r, k)) for m, r in ranks.items()}
    return Evaluation(k=k, retrieval=retrieval, answer=scores, details=tuple(details))


def _run(q: Question, call: Callable[..., Any], **options: Any) -> Any:
    """``call(question)``, its QueryError naming the question's line."""
    try:
        return call(q.question, **options)
    except QueryError as exc:
        raise QueryError(f"question on line {q.line} ({q.question!r}): {exc}") from exc


def _detail(q: Question, answer: Answer, latency_ms: float, ranks: dict[str, int | None],
            hits: dict[str, list[Hit]], indexed: bool) -> dict[str, Any]:
    missed = [m for m, rank in ranks.items() if rank is None]
    detail: dict[str, Any] = {"line": q.line, "question": q.question, "gold": list(q.golds), "expected": q.answer}
    if q.answerable:
        checked = _check(q, answer)
        failed = {"key_fact": checked.key_fact is False, "gold_cited": not checked.gold_cited,
                  "citation_precision": not all(right for _, right in checked.citations),
                  "wrong_abstention": answer.abstained}
        missed += [name for name, failing in failed.items() if failing]
        detail |= {"gold_indexed": indexed, "ranks": ranks,
                   "retrieved": {m: [f"{h.ref}: {h.paragraph.text[:_SNIPPET]}" for h in hits[m][:_SHOWN]]
                                 for m in ranks if ranks[m] is None},
                   "wrong_citations": [ref for ref, right in checked.citations if not right]}
    elif not answer.abstained:
        missed.append("abstention")
    return detail | {"missed": missed, "abstained": answer.abstained,
                     "citations": [c.ref for c in answer.citations], "latency_ms": round(latency_ms, 1),
                     "timings": answer.timings, "answer": answer.text}


def plot_recall(evaluation: Evaluation, path: str | os.PathLike[str]) -> None:
    """A PNG of recall@k, k = 1 … K, one line a method."""
    import math

    from matplotlib.figure import (
        Figure,  # not pyplot: no global figure state, safe beside a running UI
    )

    k = evaluation.k
    figure = Figure(figsize=(6.4, 4.2), dpi=120)
    axes = figure.subplots()
    # Dashed and dotted, so that a method whose line another covers still shows.
    for (method, scores), style in zip(evaluation.retrieval.items(), ("--", ":", "-", "-.")):
        curve = [math.nan if v is None else v for v in scores.curve]
        axes.plot(range(1, k + 1), curve, style, marker="o", markersize=3,
                  label=f"{method} (MRR@{k} {_fmt(scores.mrr)})")
    axes.set(xlabel="k (paragraphs retrieved)", ylabel="recall@k", ylim=(0, 1.02), xlim=(0.5, k + 0.5),
             title=f"Gold paragraph in the top k ({evaluation.answer.answerable} answerable questions)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(Path(path), format="png")
