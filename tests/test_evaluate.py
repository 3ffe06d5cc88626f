"""rag.metrics and rag.evaluate against figures computed by hand, then ``cablechat eval`` end to end on the seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rag.cli import main
from rag.embed import FakeEmbedder
from rag.errors import CableChatError
from rag.evaluate import Question, evaluate, load_questions, score_answers
from rag.indexer import build_index
from rag.metrics import citation_ok, contains, first_rank, mrr_at, normalise, percentile, recall_at, recall_curve, share
from rag.models import Answer, Cable, Citation, Hit, Paragraph

ROOT = Path(__file__).resolve().parent.parent
SEED_QUESTIONS = ROOT / "tests" / "eval-seeds.jsonl"
A, M = "09ASTANA664", "09MOSCOW2809"

# -- metrics ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("Jan 20-21", "jan 20 21"),
    ("  U.S.\tsupport\n", "u s support"),
    ("Zavizyan’s", "zavizyan s"),
    ("São Paulo", "sao paulo"),
    ("33 Chinese passports.", "33 chinese passports"),
    ("1,000 ($5)", "1 000 5"),
    ("", ""),
])
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(("text", "fact", "found"), [
    ("> we could perhaps do so before the Jan 20-21 meeting. [09MOSCOW2809 ¶4]", "Jan 20-21", True),
    ("before the JAN 20–21 meeting", "jan 20-21", True),
    ("Colonel Alexei Zavizyan's dinner", "Alexei Zavizyan", True),
    ("the Sao Paulo business community", "São Paulo", True),
    ("in 2020", "20", False),  # whole words only
    ("Iranian officials", "Iran", False),
    ("Xiahong had 33 Chinese\npassports", "33 Chinese passports", True),
    ("falling prices", "", False),
    ("", "falling prices", False),
])
def test_contains(text: str, fact: str, found: bool) -> None:
    assert contains(text, fact) is found


@pytest.mark.parametrize(("retrieved", "golds", "rank"), [
    (["a", "b", "c"], {"a"}, 1),
    (["a", "b", "c"], {"c"}, 3),
    (["a", "b", "c"], {"x"}, None),
    ([], {"a"}, None),  # empty retrieval
    (["a", "b"], set(), None),  # unanswerable: nothing is gold
    (["a", "a", "b", "c"], {"c"}, 3),  # a paragraph returned twice counts once
    (["b", "also", "gold"], {"gold", "also"}, 2),  # an `also` gold above the main one counts
    (["gold", "also"], {"gold", "also"}, 1),
])
def test_first_rank(retrieved: list[str], golds: set[str], rank: int | None) -> None:
    assert first_rank(retrieved, golds) == rank


def same(value: float | None, expected: float | None) -> bool:
    """Equal within float rounding, or both None (not measured)."""
    return value is None if expected is None else value == pytest.approx(expected)


RANKS = [1, 3, None, 2, 12, None, 1, 5]


@pytest.mark.parametrize(("ranks", "k", "recall", "mrr"), [
    (RANKS, 1, 2 / 8, 2 / 8),
    (RANKS, 3, 4 / 8, (1 + 1 / 3 + 1 / 2 + 1) / 8),
    (RANKS, 5, 5 / 8, (1 + 1 / 3 + 1 / 2 + 1 + 1 / 5) / 8),
    (RANKS, 10, 5 / 8, (1 + 1 / 3 + 1 / 2 + 1 + 1 / 5) / 8),  # rank 12 is beyond k=10: 0
    (RANKS, 12, 6 / 8, (1 + 1 / 3 + 1 / 2 + 1 + 1 / 5 + 1 / 12) / 8),
    ([None, None], 10, 0.0, 0.0),  # every retrieval empty
    ([], 10, None, None),  # no answerable question: not measured
])
def test_recall_and_mrr(ranks: list[int | None], k: int, recall: float | None, mrr: float | None) -> None:
    assert same(recall_at(ranks, k), recall) and same(mrr_at(ranks, k), mrr)


def test_recall_curve_rises_to_recall_at_k() -> None:
    assert recall_curve([2, None, 1, 4], 4) == (0.25, 0.5, 0.5, 0.75)
    assert recall_curve([], 2) == (None, None)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([10.0], 50, 10.0),
    ([30.0, 10.0, 20.0], 50, 20.0),
    ([10.0, 20.0, 30.0, 40.0], 50, 25.0),
    ([float(v) for v in range(1, 21)], 95, 19.05),  # numpy: 1 + 19 * 0.95 = 19.05
    ([5.0, 5.0, 5.0], 95, 5.0),
    ([], 50, None),
])
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert same(percentile(values, q), expected)


def test_share() -> None:
    assert share([True, False, True, True]) == 0.75
    assert share([]) is None


EVIDENCE = "we could perhaps do so before the Jan 20-21 meeting"


@pytest.mark.parametrize(("ref", "text", "golds", "evidence", "right"), [
    (f"{M} ¶4", "anything", {f"{M} ¶4"}, EVIDENCE, True),  # the gold itself
    (f"{M} ¶9", f"Repeated: {EVIDENCE.upper()}.", {f"{M} ¶4"}, EVIDENCE, True),  # another paragraph holding it
    (f"{M} ¶9", "a paragraph about Baikonur", {f"{M} ¶4"}, EVIDENCE, False),
    (f"{M} ¶9", None, {f"{M} ¶4"}, EVIDENCE, False),  # text unknown
    (f"{M} ¶9", EVIDENCE, {f"{M} ¶4"}, None, False),  # no evidence given: only golds count
    (f"{A} ¶2", "", {f"{A} ¶11", f"{A} ¶2"}, None, True),  # an `also` gold
])
def test_citation_ok(ref: str, text: str | None, golds: set[str], evidence: str | None, right: bool) -> None:
    assert citation_ok(ref, text, golds, evidence) is right


# -- questions --------------------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"question": "When?", "cable": M, "paragraph": 4, "answer": "Jan 20-21", "evidence": "x",
                   "also": []})


def test_load_seed_questions() -> None:
    questions = load_questions(SEED_QUESTIONS)
    assert [q.line for q in questions] == [1, 2, 3]
    assert questions[0].golds == (f"{A} ¶11", f"{A} ¶2")
    assert questions[1].golds == (f"{M} ¶4",) and questions[1].answer == "Jan 20-21"
    assert not questions[2].answerable and questions[2].golds == ()


@pytest.mark.parametrize("also", [
    [f"{A} ¶2", "09astana664 para 3", f"{A} #4"],
    [{"cable": A, "paragraph": 2}, [A, 3], f"{A}¶4"],
])
def test_also_spellings(tmp_path: Path, also: list[Any]) -> None:
    line = json.dumps({"question": "Who?", "cable": A.lower(), "paragraph": 11, "also": also})
    (question,) = load_questions(write(tmp_path, "", line, "  "))
    assert question.golds == (f"{A} ¶11", f"{A} ¶2", f"{A} ¶3", f"{A} ¶4")
    assert question.line == 2 and question.answer is None


@pytest.mark.parametrize(("line", "says"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"cable": "X", "paragraph": 1}', '"question"'),
    ('{"question": "  ", "cable": null, "paragraph": null}', '"question"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": null}', "go together"),
    ('{"question": "Q?", "cable": null, "paragraph": 3}', "go together"),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": "4"}', '"paragraph"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": -1}', '"paragraph"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": true}', '"paragraph"'),
    ('{"question": "Q?", "cable": 664, "paragraph": 4}', '"cable"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": 4, "answer": 20}', '"answer"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": 4, "also": "09ASTANA664 ¶2"}', '"also"'),
    ('{"question": "Q?", "cable": "09ASTANA664", "paragraph": 4, "also": ["paragraph two"]}', "paragraph two"),
    ('{"question": "Q?", "cable": null, "paragraph": null, "also": ["09ASTANA664 ¶2"]}', "unanswerable"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, says: str) -> None:
    path = write(tmp_path, GOOD, "", line)
    with pytest.raises(CableChatError) as caught:
        load_questions(path)
    assert f"{path}:3:" in str(caught.value) and says in str(caught.value)


def test_no_questions(tmp_path: Path) -> None:
    with pytest.raises(CableChatError, match="no questions"):
        load_questions(write(tmp_path, "", "  "))
    with pytest.raises(CableChatError, match="cannot read questions from .*missing.jsonl"):
        load_questions(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "S\xe3o Paulo?"}\n')
    with pytest.raises(CableChatError, match="not UTF-8"):
        load_questions(tmp_path / "latin1.jsonl")


# -- scoring answers and runs, by hand --------------------------------------------------------------------


def hit(ref: str, text: str = "text") -> Hit:
    cable_id, number = ref.split(" ¶")
    return Hit(paragraph=Paragraph(cable_id, int(number), text), cable=Cable(cable_id, None, None, None, None, ()),
               score=1.0)


def answer(text: str, cited: Sequence[str] = (), hits: Sequence[Hit] = (), *, abstained: bool = False) -> Answer:
    citations = tuple(Citation(r.split(" ¶")[0], int(r.split(" ¶")[1]), "quote") for r in cited)
    return Answer(question="q", text=text, citations=citations, hits=tuple(hits), mode="extractive",
                  abstained=abstained)


QUESTIONS = [
    Question("When is the meeting?", M, 4, "Jan 20-21", EVIDENCE, line=1),
    Question("Who wants it?", A, 11, "KazKosmos", "seeking U.S. support", (f"{A} ¶2",), line=2),
    Question("How much?", "07X1", 3, "33 passports", "had 33 passports", line=3),
    Question("Unanswerable one?", line=4),
    Question("Unanswerable two?", line=5, kind="inrange_unanswerable"),
]
ANSWERS = [
    # right fact; cites the gold and a paragraph that repeats the evidence: 2 right citations
    answer("before the Jan 20-21 meeting [09MOSCOW2809 ¶4]", [f"{M} ¶4", f"{M} ¶1"],
           [hit(f"{M} ¶4"), hit(f"{M} ¶1", f"Again: {EVIDENCE}.")]),
    # fact missing; cites the `also` gold (right) and an unrelated paragraph (wrong)
    answer("Kazakhstan asked [09ASTANA664 ¶2]", [f"{A} ¶2", f"{A} ¶5"], [hit(f"{A} ¶2"), hit(f"{A} ¶5")]),
    # abstained although answerable; its text happens to hold the fact, which must not count
    answer("No answer. Nearest: 33 passports", abstained=True),
    answer("No answer.", abstained=True),
    answer("Something [09ASTANA664 ¶3]", [f"{A} ¶3"], [hit(f"{A} ¶3")]),  # answered an unanswerable question
]


def test_score_answers_by_hand() -> None:
    scores = score_answers(QUESTIONS, ANSWERS, [10.0, 20.0, 30.0, 40.0, 100.0], gold_not_indexed=1)
    assert scores.to_dict() == {
        "key_fact": round(1 / 3, 4), "gold_cited": round(2 / 3, 4), "citation_precision": 0.75,
        "abstention": 0.5, "wrong_abstention": round(1 / 3, 4), "latency_p50_ms": 30.0, "latency_p95_ms": 88.0,
        "questions": 5, "answerable": 3, "unanswerable": 2, "citations": 4, "gold_not_indexed": 1,
        # One kind refused, the other answered: abstention per kind tells them apart.
        "abstention_by_kind": {"inrange_unanswerable": 0.0, "unanswerable": 1.0},
    }


def test_score_answers_without_answerable_questions() -> None:
    scores = score_answers(QUESTIONS[3:], ANSWERS[3:], [5.0, 5.0])
    assert (scores.key_fact, scores.gold_cited, scores.citation_precision, scores.wrong_abstention) == (None,) * 4
    assert scores.abstention == 0.5


class ScriptedAssistant:
    """Returns set hits per (question, method) and set answers per question, as an Assistant would."""

    def __init__(self, hits: dict[str, dict[str, list[str]]], answers: dict[str, Answer]) -> None:
        self.hits, self.answers = hits, answers
        self.asked: list[str] = []

    def is_indexed(self, cable_ids: Sequence[str]) -> set[str]:
        return {c for c in cable_ids if c != "07X1"}

    def search(self, question: str, *, k: int, method: str) -> list[Hit]:
        return [hit(r) for r in self.hits[question][method][:k]]

    def ask(self, question: str) -> Answer:
        self.asked.append(question)
        return self.answers[question]


def test_evaluate_with_scripted_retrieval() -> None:
    g1, g2, g3 = f"{M} ¶4", f"{A} ¶11", "07X1 ¶3"
    hits = {
        "When is the meeting?": {"bm25": [g1, "x ¶1"], "dense": ["x ¶1", "x ¶2", g1], "hybrid": [g1]},
        # the `also` gold ¶2 counts; dense found nothing at all
        "Who wants it?": {"bm25": ["x ¶1", f"{A} ¶2", g2], "dense": [], "hybrid": ["x ¶1", "x ¶2", "x ¶3", g2]},
        "How much?": {"bm25": ["x ¶1"] * 3, "dense": [g3],
                      "hybrid": ["x ¶1", "x ¶2", "x ¶3", "x ¶4", "x ¶5", g3]},
    }
    assistant = ScriptedAssistant(hits, {q.question: a for q, a in zip(QUESTIONS, ANSWERS)})
    result = evaluate(assistant, QUESTIONS, k=5)  # type: ignore[arg-type]
    assert assistant.asked[0] == QUESTIONS[0].question and len(assistant.asked) == len(QUESTIONS) + 1  # warm-up
    figures = result.to_dict()
    assert figures["bm25"] == {"recall@1": round(1 / 3, 4), "recall@5": round(2 / 3, 4), "mrr@5": 0.5}
    assert figures["dense"] == {"recall@1": round(1 / 3, 4), "recall@5": round(2 / 3, 4),
                                "mrr@5": round((1 / 3 + 1) / 3, 4)}
    assert figures["hybrid"] == {"recall@1": round(1 / 3, 4), "recall@5": round(2 / 3, 4),
                                 "mrr@5": round((1 + 1 / 4) / 3, 4)}  # ranks 1, 4, and 6 which k=5 cuts off
    assert result.retrieval["hybrid"].curve == (1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3)
    assert figures["answer"]["gold_not_indexed"] == 1 and figures["answer"]["key_fact"] == round(1 / 3, 4)

    first, second, third, fourth, fifth = result.details
    assert first["missed"] == [] and first["ranks"] == {"bm25": 1, "dense": 3, "hybrid": 1}
    assert second["ranks"]["dense"] is None and second["retrieved"] == {"dense": []}
    assert second["missed"] == ["dense", "key_fact", "citation_precision"]
    assert second["wrong_citations"] == [f"{A} ¶5"]
    assert third["gold_indexed"] is False and third["retrieved"]["bm25"][0].startswith("x ¶1: ")
    assert third["missed"] == ["bm25", "hybrid", "key_fact", "gold_cited", "wrong_abstention"]
    assert fourth["missed"] == [] and "ranks" not in fourth
    assert fifth["missed"] == ["abstention"] and fifth["citations"] == [f"{A} ¶3"]
    table = result.table()
    assert "recall@5" in table and "mrr@5" in table and "(1 name a cable this index lacks)" in table


def test_evaluate_needs_questions() -> None:
    with pytest.raises(CableChatError, match="no questions"):
        evaluate(ScriptedAssistant({}, {}), [])  # type: ignore[arg-type]


# -- end to end -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("index")
    build_index([ROOT / "seeds"], folder, embedder=FakeEmbedder())
    return folder


def test_cli_eval_on_seeds(seed_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    details, plot = tmp_path / "details.jsonl", tmp_path / "recall.png"
    code = main(["eval", str(SEED_QUESTIONS), "--index", str(seed_index), "--json", "--details", str(details),
                 "--plot", str(plot)])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"bm25", "dense", "hybrid", "answer"}
    for method in ("bm25", "dense", "hybrid"):
        assert set(figures[method]) == {"recall@1", "recall@5", "recall@10", "mrr@10"}
        assert figures[method]["recall@10"] == 1.0  # two cables, 16 paragraphs: every gold is in the top 10
    answers = figures["answer"]
    assert answers["questions"] == 3 and answers["answerable"] == 2 and answers["unanswerable"] == 1
    assert answers["abstention"] == 1.0 and answers["gold_not_indexed"] == 0  # the seeds end in 2009; it asks 2013
    assert 0 < answers["latency_p50_ms"] <= answers["latency_p95_ms"]

    # The answer figures follow from the details lines (how good the answers are is the extractive tests' business).
    lines = [json.loads(line) for line in details.read_text().splitlines()]
    assert [d["line"] for d in lines] == [1, 2, 3]
    answerable = lines[:2]
    assert answers["key_fact"] == sum("key_fact" not in d["missed"] for d in answerable) / 2
    assert answers["gold_cited"] == sum("gold_cited" not in d["missed"] for d in answerable) / 2
    assert answers["wrong_abstention"] == sum(d["abstained"] for d in answerable) / 2
    cited = sum(len(d["citations"]) for d in answerable)
    wrong = sum(len(d["wrong_citations"]) for d in answerable)
    assert answers["citations"] == cited and answers["citation_precision"] == round((cited - wrong) / cited, 4)
    assert all(d["ranks"]["hybrid"] is not None and d["retrieved"] == {} for d in answerable)
    assert lines[2]["abstained"] is True and lines[2]["missed"] == [] and "ranks" not in lines[2]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_cli_eval_table(seed_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(SEED_QUESTIONS), "--index", str(seed_index), "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "recall@5" in out and "mrr@5" in out and "recall@10" not in out
    assert "2 answerable, 1 unanswerable" in out and "key fact in answer" in out


def test_cli_eval_bad_questions(seed_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD, '{"question": "Q?", "cable": "09ASTANA664"}')
    assert main(["eval", str(path), "--index", str(seed_index)]) == 1
    assert f"{path}:2:" in capsys.readouterr().err


def test_import_stays_light() -> None:
    code = ("import sys, rag.evaluate; heavy = {'numpy', 'matplotlib', 'faiss', 'tqdm'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_kind_of_a_question_is_read_and_refusals_are_counted_per_kind(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Where was he shot?", "cable": null, "paragraph": null, "kind": "inrange_unanswerable"}\n'
                    '{"question": "What happened in 2015?", "cable": null, "paragraph": null}\n')
    questions = load_questions(path)
    assert [q.kind for q in questions] == ["inrange_unanswerable", None]
    scores = score_answers(questions, [answer("No.", abstained=True), answer("Something.")], [1.0, 1.0])
    assert scores.abstention_by_kind == {"inrange_unanswerable": 1.0, "unanswerable": 0.0}
