"""Indexing on Ray (issue 14): a build on a local Ray cluster equals the single-process build of the same input, a
driver killed mid-build resumes to that same index, and the CLI's ``--ray`` runs it.

One local cluster (2 CPUs) serves the whole session: Ray takes seconds to start. The builds use the deterministic
FakeEmbedder, so "equal" means the very same vectors; one test, marked ``real_model``, checks the real model's
vectors agree within cosine 0.9999.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SEEDS, kill_after

from rag.assistant import Assistant
from rag.cli import main
from rag.embed import FakeEmbedder
from rag.index import MANIFEST, open_index

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

QUERIES = ("Kazakhstan missile technology", "human rights elections", "oil exports to China")


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The address of a local Ray cluster of 2 CPUs, started once for the session."""
    from rag.distributed import connect

    connected = connect(num_cpus=2)
    yield connected.get_runtime_context().gcs_address
    connected.shutdown()


def windows(folder: Path) -> dict[str, np.ndarray]:
    """Every stored paragraph's window vectors by citation key, whichever rows of the file hold them."""
    index = open_index(folder)
    try:
        rows: dict[str, list[int]] = {}
        for row, cable_id, number in index.store.db.execute(
                "SELECT v.rowid, c.id, p.number FROM vectors v JOIN paragraphs p ON p.rowid = v.paragraph "
                "JOIN cables c ON c.rowid = p.cable ORDER BY v.rowid"):
            rows.setdefault(f"{cable_id} ¶{number}", []).append(row)
        return {key: index.vectors.rows(ids) for key, ids in rows.items()}
    finally:
        index.close()


def assert_same_index(built: Path, reference: Path, *, cosine: float = 0.9999) -> None:
    """Same cables and paragraphs, vectors within ``cosine``, the same search results."""
    ours, theirs = open_index(built), open_index(reference)
    try:
        assert ours.store.counts() == theirs.store.counts()
        ids = ours.store.cable_ids()
        assert ids == theirs.store.cable_ids()
        assert [ours.store.cable(i) for i in ids] == [theirs.store.cable(i) for i in ids]
    finally:
        ours.close()
        theirs.close()
    mine, reference_vectors = windows(built), windows(reference)
    assert mine.keys() == reference_vectors.keys()
    for key, rows in mine.items():
        assert rows.shape == reference_vectors[key].shape, key
        assert np.all(np.sum(rows * reference_vectors[key], axis=1) >= cosine), key
    embedder = FakeEmbedder() if "fake" in json.loads((built / MANIFEST).read_text())["model"] else None
    with Assistant(built, embedder=embedder) as assistant, Assistant(reference, embedder=embedder) as clean:
        for query in QUERIES:
            for method in ("hybrid", "dense", "bm25"):
                assert ([h.ref for h in assistant.search(query, method=method, k=20)] ==
                        [h.ref for h in clean.search(query, method=method, k=20)]), (query, method)


@pytest.mark.corpus
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_build_equals_the_single_process_build(ray_address, corpus_slice, corpus_index, tmp_path, workers):
    from rag.distributed import build_index_ray

    folder = tmp_path / "index"
    summary = build_index_ray([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), address=ray_address,
                              workers=workers, batch_cables=16)
    clean = json.loads((corpus_index / MANIFEST).read_text())
    assert (summary.added, summary.skipped, summary.cables) == (clean["counts"]["cables"], 0, clean["counts"]["cables"])
    assert_same_index(folder, corpus_index)
    again = build_index_ray([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), address=ray_address)
    assert (again.added, again.replaced, again.skipped, again.embedded) == (0, 0, clean["counts"]["cables"], 0)


# build_index_ray in a process of its own, on the session's cluster, that stops after ``argv[1]`` cables, between
# two batches, until killed.
KILLABLE_BUILD = """
import sys, time
from rag.distributed import build_index_ray
from rag.embed import FakeEmbedder

def between_batches(written):
    print(written, flush=True)
    if written >= int(sys.argv[1]):
        time.sleep(600)

build_index_ray(sys.argv[4:], sys.argv[2], embedder=FakeEmbedder(), address=sys.argv[3], batch_cables=16,
                on_batch=between_batches)
"""


@pytest.mark.corpus
def test_driver_killed_mid_build_resumes_to_the_clean_build(ray_address, corpus_slice, corpus_index, tmp_path):
    from rag.distributed import build_index_ray

    folder = tmp_path / "index"
    build = subprocess.Popen([sys.executable, "-c", KILLABLE_BUILD, "64", str(folder), ray_address, str(corpus_slice),
                              str(SEEDS)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    written = kill_after(build, 64)
    assert written == [16, 32, 48, 64]
    assert not (folder / MANIFEST).exists()
    summary = build_index_ray([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), address=ray_address,
                              batch_cables=16)
    clean = json.loads((corpus_index / MANIFEST).read_text())
    assert (summary.added, summary.skipped) == (clean["counts"]["cables"] - 64, 64)
    assert_same_index(folder, corpus_index)


def test_cli_index_with_ray(ray_address, seeds_index, tmp_path, capsys):
    folder = tmp_path / "index"
    assert main(["index", str(SEEDS), "--index", str(folder), "--model", "fake-hash-64", "--ray", ray_address,
                 "--ray-workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["added"], summary["cables"], summary["skipped"]) == (2, 2, 0)
    assert_same_index(folder, seeds_index)


def test_ray_build_of_nothing_says_so_and_leaves_no_index(ray_address, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = tmp_path / "index"
    assert main(["index", str(empty), "--index", str(folder), "--model", "fake-hash-64", "--ray", ray_address]) == 1
    err = capsys.readouterr().err
    assert "found no cable" in err and "no index was made" in err  # the words a single-process build says
    assert not folder.exists()


@pytest.mark.real_model
def test_real_model_on_ray_agrees_with_the_single_process_build(ray_address, tmp_path):
    from rag.distributed import build_index_ray
    from rag.embed import load_embedder
    from rag.indexer import build_index

    embedder = load_embedder()
    build_index([SEEDS], tmp_path / "single", embedder=embedder)
    build_index_ray([SEEDS], tmp_path / "ray", embedder=embedder, address=ray_address, workers=1)
    assert_same_index(tmp_path / "ray", tmp_path / "single")


def test_unreachable_cluster_is_a_clear_error(tmp_path):
    code = ("from rag.cli import main; import sys; "
            f"sys.exit(main(['index', {str(SEEDS)!r}, '--index', {str(tmp_path / 'x')!r}, '--model', 'fake-hash-64', "
            "'--ray', '127.0.0.1:9']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot connect to the Ray cluster at '127.0.0.1:9'" in done.stderr
    assert "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr
