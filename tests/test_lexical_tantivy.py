"""BM25 on tantivy (issue 14): an index built with ``--lexical tantivy`` searches with it, filters inside the search,
follows every change of the database, and survives a build killed mid-way or a damaged ``lexical/`` folder.

Indexes use the FakeEmbedder; the corpus slice gives filters something to choose between.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SEEDS, seed_texts

from rag.assistant import Assistant
from rag.cli import main
from rag.embed import FakeEmbedder
from rag.errors import IndexCorruptError
from rag.indexer import build_index
from rag.lexical import Fts5Lexical
from rag.lexical_tantivy import FOLDER, TantivyLexicalIndex

pytest.importorskip("tantivy")

QUERIES = ("Kazakhstan missile technology", "human rights elections", "oil exports to China")


@pytest.fixture(scope="module")
def tantivy_index(corpus_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus slice and seeds, with tantivy's BM25; read-only."""
    folder = tmp_path_factory.mktemp("tantivy") / "index"
    build_index([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), batch_cables=16, lexical="tantivy")
    return folder


def results(folder: Path, **options: object) -> list[list[tuple[str, float]]]:
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        return [[(h.ref, h.score) for h in assistant.search(q, k=20, **options)] for q in QUERIES]


@pytest.mark.corpus
def test_an_index_built_with_tantivy_searches_with_it(tantivy_index, corpus_index):
    with Assistant(tantivy_index, embedder=FakeEmbedder()) as assistant:
        lexical = assistant.searcher.lexical
        assert isinstance(lexical, TantivyLexicalIndex)
        hits = assistant.search("Kazakhstan missile technology", method="bm25", k=5)
        assert hits[0].cable.id == "09ASTANA664"
        assert lexical.document_frequency("kazakhstan") > 0
        assert lexical.document_frequency("kazakh", prefix=True) >= lexical.document_frequency("kazakhstan")
    with Assistant(corpus_index, embedder=FakeEmbedder()) as assistant:
        assert isinstance(assistant.searcher.lexical, Fts5Lexical)


@pytest.mark.corpus
@pytest.mark.parametrize(("filters", "passes"), [
    ({"cable_id": "09ASTANA664"}, lambda c: c.id == "09ASTANA664"),
    ({"year": 2009}, lambda c: c.date.year == 2009),
    ({"origin": "brasilia"}, lambda c: "Brasilia" in c.origin),
    ({"classification": "SECRET"}, lambda c: c.level == "SECRET"),
])
def test_filters_apply_inside_the_search(tantivy_index, filters, passes):
    with Assistant(tantivy_index, embedder=FakeEmbedder()) as assistant:
        unfiltered = assistant.search("government officials cooperation", method="bm25", k=1000)
        hits = assistant.search("government officials cooperation", method="bm25", k=1000, **filters)
    # Every paragraph passing the filters that the unfiltered search found is found, however far down it ranked.
    wanted = [(h.ref, h.score) for h in unfiltered if passes(h.cable)]
    assert len(wanted) < len(unfiltered)
    assert hits and [(h.ref, h.score) for h in hits] == wanted


def test_a_changed_cable_is_searched_in_its_new_words_only(tmp_path):
    folder = tmp_path / "index"
    build_index([SEEDS], folder, embedder=FakeEmbedder(), lexical="tantivy")
    moscow = seed_texts()[1].replace("awaiting signature", "awaiting zyxwvut")
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "moscow.jsonl").write_text(json.dumps({"id": "09MOSCOW2809", "body": moscow}) + "\n")
    build_index([changed], folder, embedder=FakeEmbedder())
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        assert [h.cable.id for h in assistant.search("zyxwvut", method="bm25")] == ["09MOSCOW2809"]
        assert assistant.searcher.lexical.document_frequency("signature") == 0
        assert assistant.searcher.lexical.paragraphs == assistant.index.manifest.counts["paragraphs"]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda folder: shutil.rmtree(folder / FOLDER), id="folder removed"),
    pytest.param(lambda folder: (folder / FOLDER / "applied.json").unlink(), id="progress lost"),
    pytest.param(lambda folder: (folder / FOLDER / "meta.json").write_text("{not json"), id="meta damaged"),
])
def test_damaged_lexical_index_is_named_and_rebuilt_by_the_fix_it_names(tmp_path, capsys, damage):
    folder = tmp_path / "index"
    build_index([SEEDS], folder, embedder=FakeEmbedder(), lexical="tantivy")
    clean = results(folder)
    damage(folder)
    assert main(["search", "missile", "--index", str(folder), "--model", "fake-hash-64"]) == 1
    error = capsys.readouterr().err
    assert f"cablechat index --index {folder}" in error and "Traceback" not in error
    assert main(["index", "--index", str(folder), "--model", "fake-hash-64"]) == 0
    assert results(folder) == clean


def test_switching_engines_both_ways(seeds_index, copy_index):
    folder = copy_index(seeds_index)
    fts5 = results(folder)
    build_index([], folder, embedder=FakeEmbedder(), lexical="tantivy")
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        assert isinstance(assistant.searcher.lexical, TantivyLexicalIndex)
    build_index([], folder, embedder=FakeEmbedder(), lexical="fts5")
    assert not (folder / FOLDER).exists()
    assert results(folder) == fts5


# build_index with tantivy in a process of its own that stops after ``argv[1]`` cables, between two batches.
KILLABLE_BUILD = """
import sys, time
from rag.embed import FakeEmbedder
from rag.indexer import build_index

def between_batches(written):
    print(written, flush=True)
    if written >= int(sys.argv[1]):
        time.sleep(600)

build_index(sys.argv[3:], sys.argv[2], embedder=FakeEmbedder(), batch_cables=16, on_batch=between_batches,
            lexical="tantivy")
"""


@pytest.mark.corpus
def test_build_killed_mid_way_resumes_to_the_clean_tantivy_index(corpus_slice, tantivy_index, tmp_path):
    folder = tmp_path / "index"
    build = subprocess.Popen([sys.executable, "-c", KILLABLE_BUILD, "48", str(folder), str(corpus_slice), str(SEEDS)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        for line in build.stdout:
            if int(line) >= 48:
                build.send_signal(signal.SIGKILL)
                break
        assert build.wait(timeout=60) == -signal.SIGKILL
    finally:
        if build.poll() is None:
            build.kill()
        build.stdout.close()
    with pytest.raises(IndexCorruptError, match="half-built"):
        Assistant(folder, embedder=FakeEmbedder())
    build_index([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), batch_cables=16)
    assert results(folder, method="bm25") == results(tantivy_index, method="bm25")
    assert results(folder, origin="Moscow") == results(tantivy_index, origin="Moscow")


def test_a_build_of_nothing_with_tantivy_leaves_no_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = tmp_path / "index"
    assert main(["index", str(empty), "--index", str(folder), "--model", "fake-hash-64", "--lexical", "tantivy"]) == 1
    assert "found no cable" in capsys.readouterr().err
    assert not folder.exists()
