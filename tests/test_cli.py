"""The ``cablechat`` command: parse, index, search and ask on a tmp index (``rag.cli.main`` in-process), errors
as one line on stderr and exit status 1 (never a traceback), and a ``--help`` that imports nothing heavy.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SEED_IDS, SEEDS

from rag.cli import main
from rag.index import MANIFEST

FAKE = ["--model", "fake-hash-64"]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_parse_seeds_as_json(capsys):
    status, out, err = run(capsys, "parse", SEEDS, "--json")
    assert status == 0
    cables = json_lines(out)
    assert [c["id"] for c in cables] == sorted(SEED_IDS)
    assert all(c["paragraphs"] and c["date"] for c in cables)
    assert err.strip() == "loaded 2 cables, skipped 0"


def test_index_search_and_ask_as_json(capsys, tmp_path):
    folder = tmp_path / "index"
    status, out, _ = run(capsys, "index", SEEDS, "--index", folder, *FAKE, "--json")
    assert status == 0
    summary = json.loads(out)
    assert (summary["index"], summary["added"], summary["cables"], summary["paragraphs"]) == (str(folder), 2, 2, 16)
    assert (folder / MANIFEST).exists()

    status, out, err = run(capsys, "search", "Kazakhstan", "missile", "technology", "--index", folder, "--k", "3",
                           "--json")
    assert (status, err) == (0, "")
    hits = json_lines(out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["ref"] == "09ASTANA664 ¶11" and hits[0]["paragraph"]["cable_id"] == "09ASTANA664"

    status, out, err = run(capsys, "ask", "When is the experts meeting in Paris?", "--index", folder, "--json")
    assert (status, err) == (0, "")
    (answer,) = json_lines(out)
    assert answer["mode"] == "extractive" and not answer["abstained"]
    assert "09MOSCOW2809 ¶4" in [f"{c['cable_id']} ¶{c['paragraph']}" for c in answer["citations"]]


def test_search_and_ask_as_text(capsys, seeds_index):
    status, out, _ = run(capsys, "search", "Baiterek", "--index", seeds_index, "--method", "bm25", "--tag", "TSPA")
    assert status == 0
    assert out.startswith(" 1. 09ASTANA664 ¶") and "bm25#1" in out
    status, out, _ = run(capsys, "ask", "When is the experts meeting in Paris?", "--index", seeds_index,
                         "--origin", "Moscow")
    assert status == 0
    answer, sources = out.split("\nSources:\n")
    assert "[09MOSCOW2809 ¶4]" in answer
    assert any(line.startswith("  [09MOSCOW2809 ¶4] 2009-11-18") for line in sources.splitlines())


def test_reindex_reports_nothing_added(capsys, seeds_index, copy_index):
    folder = copy_index(seeds_index)
    status, out, _ = run(capsys, "index", SEEDS, "--index", folder, *FAKE)
    assert status == 0
    assert out.startswith(f"{folder}: 0 cables added, 0 replaced, 2 unchanged; index holds 2 cables")


# -- errors: one line on stderr, status 1 ------------------------------------------------------------------

ERRORS = [
    (["search", ""], "search", "has no words to search for"),
    (["search", "the", "of", "and"], "search", "has no words to search for"),
    (["search", "???"], "search", "has no words to search for"),
    (["search", "space", "--origin", "Moskow"], "search", "did you mean 'Embassy Moscow'?"),
    (["search", "space", "--tag", "TSPX"], "search", "no indexed cable has tag 'TSPX'; did you mean"),
    (["search", "space", "--year", "2015"], "search", "outside the indexed cables' dates (2009–2009)"),
    (["search", "space", "year:2010"], "search", "no indexed cable is dated from 2010-01-01"),
    (["search", "space", "--from", "2009-02-30"], "search", "is not a real date"),
    (["search", "space", "--k", "0"], "search", "k must be between 1 and 1000"),
    (["ask", "the", "of"], "ask", "the question has no words to search for"),
    (["ask", "Who", "wants", "the", "MTCR?", "--tag", "ZZZZ"], "ask", "no indexed cable has tag 'ZZZZ'"),
    (["ask", "Baikonur?", "--mode", "llm", "--classification", "secret"], "ask", "classification 'SECRET'"),
]


@pytest.mark.parametrize(("argv", "command", "words"), ERRORS)
def test_bad_input_is_one_line_on_stderr(capsys, seeds_index, argv, command, words):
    status, out, err = run(capsys, *argv, "--index", seeds_index)
    assert (status, out) == (1, "")
    assert err.startswith(f"cablechat {command}: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["search", "ask"])
@pytest.mark.parametrize(("state", "words"), [("missing", "no index at"), ("half-built", "is half-built"),
                                               ("cut", "holds 10 vectors")])
def test_unusable_index_is_one_line_on_stderr(capsys, seeds_index, tmp_path, command, state, words):
    folder = tmp_path / "index"
    if state != "missing":
        shutil.copytree(seeds_index, folder)
    if state == "half-built":
        (folder / MANIFEST).unlink()
    if state == "cut":
        with open(folder / "vectors.f32", "r+b") as f:
            f.truncate(10 * 64 * 4)
    status, out, err = run(capsys, command, "Baikonur", "--index", folder)
    assert (status, out) == (1, "")
    assert err.startswith(f"cablechat {command}: ") and words in err and "cablechat index" in err, err


def test_index_of_a_missing_path(capsys, tmp_path):
    status, _, err = run(capsys, "index", tmp_path / "nowhere", "--index", tmp_path / "index", *FAKE)
    assert status == 1
    assert err == f"cablechat index: cannot index {str(tmp_path / 'nowhere')!r}: no such file or folder\n"
    assert not (tmp_path / "index").exists()


# -- startup: fast, and nothing heavy imported -------------------------------------------------------------


def cablechat() -> list[str]:
    """The installed script beside this Python (a venv's bin/), else ``python -m rag.cli``."""
    script = Path(sys.executable).parent / "cablechat"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag.cli"]


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["ask", "--help"], ["index", "--help"]])
def test_help_is_fast(argv):
    # CPU seconds, not wall-clock ones: on a machine busy with other work, starting any Python takes seconds.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*cablechat(), *argv], cwd=REPO, capture_output=True, text=True, timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0 and done.stdout.startswith("usage: cablechat") and done.stderr == ""
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    assert cpu < 1.5, cpu


HEAVY = ("torch", "faiss", "gradio", "numpy", "openai", "sentence_transformers", "onnxruntime")


@pytest.mark.parametrize("code", ["import rag", "import rag.cli; rag.cli.build_parser()",
                                  "from rag import Filters, QueryError, parse_cable"])
def test_import_loads_nothing_heavy(code):
    check = f"{code}; import sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
