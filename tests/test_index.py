"""Building, extending and opening an index (issues 3 and 11): incremental builds, a build killed with SIGKILL and
resumed, refusing indexes that cannot be used, the same cable twice in one build, one build at a time (and an
index opened while it is built), input without a cable, connections of ended threads, and the FAISS index chosen
by size. Damaged index files and their repair: tests/test_check.py.

Everything uses the deterministic FakeEmbedder; the kill test runs a real ``build_index`` in a subprocess over a
slice of the shared corpus and resumes it with the real ``cablechat index`` command.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SEED_IDS, SEEDS, kill_after, seed_texts

from rag.assistant import Assistant
from rag.cli import main
from rag.embed import FakeEmbedder
from rag.check import check_index
from rag.errors import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexMissingError
from rag.index import DATABASE, FAISS, MANIFEST, VECTORS, Building, Index, open_index
from rag.indexer import build_index
from rag.vectors import TARGET_RECALL, VectorFile, build_faiss

# With FakeEmbedder's 200-word windows 09ASTANA664 embeds as 14 windows, 09MOSCOW2809 as 6.
ASTANA_WINDOWS, MOSCOW_WINDOWS = 14, 6
OLD_SENTENCE = ("The MOD has prepared a recommendation on a point of contact for notifications that is awaiting "
                "signature.")
NEW_SENTENCE = "The General Staff has drafted a proposal naming a duty officer for collision warnings."


@contextmanager
def opened(folder: Path, **options: object) -> Iterator[Index]:
    index = open_index(folder, **options)
    try:
        yield index
    finally:
        index.close()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of an index folder by name, with a digest of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def write_cables(folder: Path, cables: dict[str, str]) -> Path:
    """``cables`` (id → cable text) as one .jsonl file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cables.jsonl"
    path.write_text("".join(json.dumps({"id": cable_id, "body": text}) + "\n" for cable_id, text in cables.items()))
    return path


def changed_moscow(folder: Path) -> Path:
    """09MOSCOW2809 with one sentence of ¶3 rewritten."""
    moscow = seed_texts()[1]
    assert OLD_SENTENCE in moscow
    return write_cables(folder, {"09MOSCOW2809": moscow.replace(OLD_SENTENCE, NEW_SENTENCE)})


def astana_copy(folder: Path) -> Path:
    """09ASTANA664's text under another id: every window is one the index has embedded already."""
    return write_cables(folder, {"09ASTANA999": seed_texts()[0]})


def live_vectors(index: Index) -> dict[str, bytes]:
    """The vectors of every stored paragraph by citation key, whichever rows of the file hold them."""
    rows: dict[str, list[int]] = {}
    for row, cable_id, number in index.store.db.execute(
            "SELECT v.rowid, c.id, p.number FROM vectors v JOIN paragraphs p ON p.rowid = v.paragraph "
            "JOIN cables c ON c.rowid = p.cable ORDER BY v.rowid"):
        rows.setdefault(f"{cable_id} ¶{number}", []).append(row)
    return {key: index.vectors.rows(ids).tobytes() for key, ids in rows.items()}


# -- incremental builds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("make_input", "expected"), [
    pytest.param(lambda folder: SEEDS, dict(added=0, replaced=0, skipped=2, embedded=0, reused=0), id="same input"),
    pytest.param(changed_moscow, dict(added=0, replaced=1, skipped=0, embedded=1, reused=MOSCOW_WINDOWS - 1),
                 id="changed paragraph"),
    pytest.param(astana_copy, dict(added=1, replaced=0, skipped=0, embedded=0, reused=ASTANA_WINDOWS),
                 id="same text, new id"),
])
def test_second_build_summary(seeds_index, copy_index, tmp_path, make_input, expected):
    folder = copy_index(seeds_index)
    summary = build_index([make_input(tmp_path / "input")], folder, embedder=FakeEmbedder())
    assert {k: getattr(summary, k) for k in expected} == expected
    with opened(folder, embedder=FakeEmbedder()) as index:
        counts = index.store.counts()
        assert index.manifest.counts == {"cables": summary.cables, "paragraphs": summary.paragraphs,
                                         "vectors": summary.vectors}
        assert index.faiss.ntotal == counts["vectors"]
        assert len(index.vectors) == counts["vector_rows"]


def test_reindexing_the_same_input_changes_no_file(seeds_index, copy_index):
    folder = copy_index(seeds_index)
    before = snapshot(folder)
    summary = build_index([SEEDS], folder, embedder=FakeEmbedder())
    assert (summary.added, summary.skipped, summary.cables) == (0, 2, 2)
    assert snapshot(folder) == before


def test_changed_cable_replaces_the_old_one(seeds_index, copy_index, tmp_path):
    folder = copy_index(seeds_index)
    old_fingerprint = json.loads((folder / MANIFEST).read_text())["fingerprint"]
    build_index([changed_moscow(tmp_path)], folder, embedder=FakeEmbedder())
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        moscow = assistant.cable("09MOSCOW2809")
        assert [p.number for p in moscow.paragraphs] == [1, 2, 3, 4, 5]
        assert NEW_SENTENCE in moscow.paragraph(3).text
        texts = [text for (text,) in assistant.index.store.db.execute("SELECT text FROM paragraphs")]
        assert len(texts) == 16 and not any(OLD_SENTENCE in t for t in texts)
        # BM25 no longer finds the old words, and both searches find the new ones in ¶3.
        assert not any("awaiting signature" in h.paragraph.text
                       for h in assistant.search("awaiting signature", method="bm25"))
        for method in ("bm25", "dense", "hybrid"):
            assert assistant.search(NEW_SENTENCE, method=method)[0].ref == "09MOSCOW2809 ¶3", method
        counts = assistant.index.store.counts()
        # The old cable's rows stay in the append-only file, without a paragraph, and out of FAISS.
        assert counts["vector_rows"] == ASTANA_WINDOWS + 2 * MOSCOW_WINDOWS
        assert counts["vectors"] == assistant.index.faiss.ntotal == ASTANA_WINDOWS + MOSCOW_WINDOWS
        assert assistant.index.manifest.fingerprint != old_fingerprint


def test_identical_text_reuses_the_stored_vectors(seeds_index, copy_index, tmp_path):
    folder = copy_index(seeds_index)
    build_index([astana_copy(tmp_path)], folder, embedder=FakeEmbedder())
    with opened(folder, embedder=FakeEmbedder()) as index:
        vectors = live_vectors(index)
    for number in range(1, 12):
        assert vectors[f"09ASTANA999 ¶{number}"] == vectors[f"09ASTANA664 ¶{number}"]


# -- a build killed and resumed -----------------------------------------------------------------------------

# build_index in a process of its own that stops after ``argv[1]`` cables, between two batches, until killed.
KILLABLE_BUILD = """
import sys, time
from rag.embed import load_embedder
from rag.indexer import build_index

def between_batches(written):
    print(written, flush=True)
    if written >= int(sys.argv[1]):
        time.sleep(600)

build_index(sys.argv[3:], sys.argv[2], embedder=load_embedder(), batch_cables=16, on_batch=between_batches)
"""


@pytest.mark.corpus
def test_killed_build_is_refused_then_resumes_to_a_clean_build(corpus_slice, corpus_index, tmp_path, capsys):
    folder = tmp_path / "index"
    env = {**os.environ, "CABLECHAT_MODEL": "fake-hash-64"}
    build = subprocess.Popen([sys.executable, "-c", KILLABLE_BUILD, "96", str(folder), str(corpus_slice), str(SEEDS)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    written = kill_after(build, 96)
    assert written == [16, 32, 48, 64, 80, 96]
    with closing(sqlite3.connect(f"file:{folder / DATABASE}?mode=ro", uri=True)) as db:
        committed = int(db.execute("SELECT value FROM meta WHERE key = 'vectors_committed'").fetchone()[0])
        assert db.execute("SELECT count(*) FROM cables").fetchone()[0] == 96
    assert 0 < committed == os.path.getsize(folder / VECTORS) // (64 * 4)
    assert not (folder / MANIFEST).exists()
    for opening in (lambda: open_index(folder), lambda: Assistant(folder)):
        with pytest.raises(IndexCorruptError, match="half-built.*resumes where it stopped"):
            opening()
    # A batch killed after writing its vectors and before committing its rows leaves rows like these behind.
    with open(folder / VECTORS, "ab") as f:
        f.write(np.full((5, 64), 0.125, dtype=np.float32).tobytes())

    capsys.readouterr()
    assert main(["index", str(corpus_slice), str(SEEDS), "--index", str(folder), "--model", "fake-hash-64",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    clean = json.loads((corpus_index / MANIFEST).read_text())
    assert (summary["added"], summary["skipped"], summary["cables"]) == (clean["counts"]["cables"] - 96, 96,
                                                                          clean["counts"]["cables"])
    resumed = json.loads((folder / MANIFEST).read_text())
    for key in ("model", "dim", "counts", "fingerprint", "faiss"):
        assert resumed[key] == clean[key], key
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in corpus_index.iterdir())
    with opened(folder, embedder=FakeEmbedder()) as index, opened(corpus_index, embedder=FakeEmbedder()) as reference:
        assert index.store.counts() == reference.store.counts()
        ids = index.store.cable_ids()
        assert ids == reference.store.cable_ids()
        assert [index.store.cable(i) for i in ids] == [reference.store.cable(i) for i in ids]
        assert live_vectors(index) == live_vectors(reference)
    with Assistant(folder) as assistant, Assistant(corpus_index) as clean_assistant:
        for query in ("Kazakhstan missile technology", "human rights elections", "oil exports to China"):
            for method in ("hybrid", "dense", "bm25"):
                found = [(h.ref, h.score) for h in assistant.search(query, method=method, k=20)]
                assert found == [(h.ref, h.score) for h in clean_assistant.search(query, method=method, k=20)]


def test_resume_summary_counts_what_the_killed_run_wrote(tmp_path):
    """The same, in-process and on seeds: a build that committed one cable resumes with the other."""
    folder = tmp_path / "index"
    texts = dict(zip(("09ASTANA664", "09MOSCOW2809"), seed_texts()))
    build_index([write_cables(tmp_path / "first", {"09ASTANA664": texts["09ASTANA664"]})], folder,
                embedder=FakeEmbedder())
    (folder / MANIFEST).unlink()  # what a build killed after its first batch leaves
    summary = build_index([write_cables(tmp_path / "all", texts)], folder, embedder=FakeEmbedder(), batch_cables=1)
    assert (summary.added, summary.skipped, summary.cables, summary.embedded) == (1, 1, 2, MOSCOW_WINDOWS)
    with opened(folder, embedder=FakeEmbedder()) as index:
        assert index.store.cable_ids() == ["09ASTANA664", "09MOSCOW2809"]


# -- indexes that cannot be used ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherModel(FakeEmbedder):
    """An embedder with the same dimension as the index's and another name: its vectors mean something else."""

    @property
    def name(self) -> str:
        return "other-model"


@pytest.mark.parametrize("embedder", [FakeEmbedder(dim=32), OtherModel()], ids=["dimension", "model"])
def test_another_embedder_is_refused_naming_both(seeds_index, copy_index, embedder):
    folder = copy_index(seeds_index)
    before = snapshot(folder)
    words = ["fake-hash-64", "64 dimensions", repr(embedder.name), f"{embedder.dim} dimensions"]
    for use in (lambda: open_index(folder, embedder=embedder), lambda: Assistant(folder, embedder=embedder),
                lambda: build_index([SEEDS], folder, embedder=embedder)):
        with pytest.raises(IndexMismatchError) as caught:
            use()
        assert all(word in str(caught.value) for word in words), str(caught.value)
    assert snapshot(folder) == before
    with opened(folder, embedder=FakeEmbedder()):
        pass


def test_missing_index_says_how_to_build_one(tmp_path):
    for opening in (lambda: open_index(tmp_path / "nowhere"), lambda: Assistant(tmp_path / "nowhere")):
        with pytest.raises(IndexMissingError) as caught:
            opening()
        assert f"no index at {tmp_path / 'nowhere'}" in str(caught.value)
        assert f"cablechat index CABLES --index {tmp_path / 'nowhere'}" in str(caught.value)


def test_an_index_of_another_format_is_refused_naming_a_build_that_works(seeds_index, copy_index, capsys):
    folder = copy_index(seeds_index)
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(IndexCorruptError, match="index format 99, this CableChat reads format 1") as caught:
        open_index(folder)
    command = re.findall(r"`(cablechat [^`]+)`", str(caught.value))[0]
    assert command == f"cablechat index {SEEDS} --index {folder}.rebuilt"
    assert main([*shlex.split(command)[1:], "--model", "fake-hash-64"]) == 0
    with opened(Path(f"{folder}.rebuilt"), embedder=FakeEmbedder()) as index:
        assert index.store.cable_ids() == sorted(SEED_IDS)


# -- the same cable twice in one build ---------------------------------------------------------------------


def seed_copies(folder: Path, names: dict[str, str]) -> None:
    """09ASTANA664's seed file under each name, its text changed by ``(old, new)`` where the value says so."""
    astana = seed_texts()[0]
    folder.mkdir(parents=True, exist_ok=True)
    for name, change in names.items():
        old, _, new = change.partition("->")
        (folder / name).write_text(astana.replace(old, new) if old else astana)


SAID = "Shaimagambetov said"
# name: (make the inputs in folder d, the copy kept, the lines reporting the others)
DUPLICATES = {
    "two copies in a folder": (lambda d: (seed_copies(d, {"a.txt": "", "b.txt": ""}), [d])[1], "{d}/a.txt",
                               ["{d}/b.txt holds the same cable as {d}/a.txt; indexed once"]),
    "another text under the same id": (
        lambda d: (seed_copies(d, {"a.txt": "", "b.txt": f"{SAID}->Shaimagambetov told us"}), [d])[1], "{d}/a.txt",
        ["{d}/b.txt gives a different text than {d}/a.txt; kept the version in {d}/a.txt, the first read"]),
    "the same input twice": (lambda d: (seed_copies(d, {"a.txt": ""}), [d / "a.txt", d])[1], "{d}/a.txt",
                             ["{d}/a.txt holds the same cable as {d}/a.txt; indexed once"]),
    "twice in one batch of a .jsonl, and in a text file": (
        lambda d: (seed_copies(d, {"z.txt": ""}),
                   (d / "cables.jsonl").write_text(2 * (json.dumps({"id": "09ASTANA664", "body": seed_texts()[0]})
                                                        + "\n")), [d])[2], "{d}/cables.jsonl:1",
        ["{d}/cables.jsonl:2 holds the same cable as {d}/cables.jsonl:1; indexed once",
         "{d}/z.txt holds the same cable as {d}/cables.jsonl:1; indexed once"]),
}


@pytest.mark.parametrize("name", DUPLICATES)
def test_the_same_cable_twice_is_indexed_once_and_each_copy_reported_once(tmp_path, capsys, name):
    make, kept, lines = DUPLICATES[name]
    inputs = [str(p) for p in make(tmp_path / "d")]
    folder = tmp_path / "index"
    expected = [f"duplicate 09ASTANA664: {line.format(d=tmp_path / 'd')}" for line in lines]
    for run in range(2):  # and the same command again
        capsys.readouterr()
        assert main(["index", *inputs, "--index", str(folder), "--model", "fake-hash-64"]) == 0
        out, err = capsys.readouterr()
        assert [line for line in err.splitlines() if line.startswith("duplicate")] == expected
        assert f"{1 - run} cables added, 0 replaced, {run} unchanged, {len(lines)} duplicate" in out
    with opened(folder, embedder=FakeEmbedder()) as index:
        assert index.store.cable_ids() == ["09ASTANA664"]
        cable = index.store.cable("09ASTANA664")
        assert cable.source == kept.format(d=tmp_path / "d") and SAID in cable.paragraph(6).text
    summary = build_index(inputs, folder, embedder=FakeEmbedder())
    assert (summary.duplicates, len(summary.duplicate_list)) == (len(lines), len(lines))


# -- one build at a time ------------------------------------------------------------------------------------


@pytest.fixture
def paused_build(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``build_index`` of the seeds in a process of its own, stopped after its first cable, holding the lock."""
    folder = tmp_path / "index"
    env = {**os.environ, "CABLECHAT_MODEL": "fake-hash-64"}
    build = subprocess.Popen([sys.executable, "-c", KILLABLE_BUILD.replace("batch_cables=16", "batch_cables=1"), "1",
                              str(folder), str(SEEDS)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert build.stdout.readline() == "1\n"  # committed its first batch, and waits
        yield build, folder
    finally:
        if build.poll() is None:
            build.kill()
        build.wait()
        build.stdout.close()


def test_a_second_build_is_refused_naming_the_first_and_runs_once_it_is_stopped(paused_build, capsys):
    build, folder = paused_build
    argv = ["index", str(SEEDS), "--index", str(folder), "--model", "fake-hash-64"]
    capsys.readouterr()
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"is being built by process {build.pid}" in err
    with pytest.raises(IndexBusyError) as caught:
        build_index([SEEDS], folder, embedder=FakeEmbedder())
    assert caught.value.pid == build.pid
    assert main(["check", "--index", str(folder)]) == 1
    assert f"being built by process {build.pid} (1 cables committed so far)" in capsys.readouterr().out
    # What the message says to do: stop the build, then run the command again.
    stop = re.findall(r"`(kill \d+)`", err)[0]
    subprocess.run(shlex.split(stop), check=True)
    assert build.wait(timeout=30) == -signal.SIGTERM
    assert main(argv) == 0
    assert "1 cables added, 0 replaced, 1 unchanged; index holds 2 cables" in capsys.readouterr().out
    assert check_index(folder).ok
    assert sorted(p.name for p in folder.iterdir()) == [DATABASE, FAISS, MANIFEST, VECTORS]


def test_an_index_being_built_opens_as_far_as_it_is_committed(paused_build):
    build, folder = paused_build
    with opened(folder, embedder=FakeEmbedder()) as index:
        assert index.building == Building(pid=build.pid, cables=1, paragraphs=11)
        assert index.manifest.counts == {"cables": 1, "paragraphs": 11, "vectors": ASTANA_WINDOWS}
        assert index.faiss.ntotal == ASTANA_WINDOWS
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        assert assistant.index.building is not None
        hits = assistant.search("Baikonur lease", k=3)
        assert hits and all(h.paragraph.cable_id == "09ASTANA664" for h in hits)


def test_the_command_line_says_an_index_is_still_being_built(paused_build, capsys):
    build, folder = paused_build
    for argv in (["search", "Baikonur lease"], ["ask", "How long does the Baikonur lease run?"]):
        assert main([*argv, "--index", str(folder), "--model", "fake-hash-64"]) == 0
        out, err = capsys.readouterr()
        assert "09ASTANA664" in out
        assert f"note: the index in {folder} is still being built (process {build.pid}): 1 cables so far" in err


def test_a_finished_index_is_not_building(seeds_index):
    with opened(seeds_index) as index:
        assert index.building is None


# -- input that holds no cable ------------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
NO_CABLE = {
    "a passwd file": (lambda d: (d.mkdir(), (d / "passwd").write_text(PASSWD), d / "passwd")[2], 1),
    "an empty folder": (lambda d: (d.mkdir(), d)[1], 0),
    "a folder of non-cables": (lambda d: (d.mkdir(), (d / "a.txt").write_text(PASSWD),
                                          (d / "b.txt").write_text(""), d)[3], 2),
}


@pytest.mark.parametrize("name", NO_CABLE)
def test_input_without_a_cable_fails_and_leaves_no_index(tmp_path, capsys, name):
    make, skipped = NO_CABLE[name]
    source = make(tmp_path / "input")
    folder = tmp_path / "index"
    capsys.readouterr()
    assert main(["index", str(source), "--index", str(folder), "--model", "fake-hash-64"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"cablechat index: found no cable in {source}" in err and "no index was made" in err
    assert len([line for line in err.splitlines() if line.startswith("skipped ")]) == skipped
    assert not folder.exists()


def test_input_without_a_cable_leaves_an_index_as_it_was(seeds_index, copy_index, tmp_path, capsys):
    folder = copy_index(seeds_index)
    before = snapshot(folder)
    (tmp_path / "passwd").write_text(PASSWD)
    assert main(["index", str(tmp_path / "passwd"), "--index", str(folder)]) == 1
    assert f"the index {folder} is as it was" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_each_skipped_file_is_said_once(tmp_path):
    """As a shell runs it: no logging configured, so a logged warning would print a second copy."""
    (tmp_path / "passwd").write_text(PASSWD)
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(tmp_path / "passwd"), "--index",
                           str(tmp_path / "index"), "--model", "fake-hash-64"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count(str(tmp_path / "passwd")) == 2  # its skip line, and the error naming the input
    assert done.stderr.count("skipped ") == 1 and "Traceback" not in done.stderr


# -- connections of threads that ended ---------------------------------------------------------------------


def open_handles(path: Path) -> int:
    target = str(path.resolve())
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == target
        except OSError:
            pass  # closed while listing
    return count


def test_a_thread_s_connection_is_closed_when_the_thread_ends(seeds_index):
    with opened(seeds_index) as index:
        for _ in range(3):  # a server's worker threads come and go
            threads = [threading.Thread(target=lambda: index.store.counts()) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert open_handles(seeds_index / DATABASE) == 1  # the opening thread's
        assert index.store.counts()["cables"] == 2
    assert open_handles(seeds_index / DATABASE) == 0


# -- FAISS: exact or IVF by size ---------------------------------------------------------------------------


def clustered(count: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres, the way embeddings of a corpus cluster by topic."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    points = centres[rng.integers(0, 40, count)] + 0.35 * rng.normal(size=(count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory: pytest.TempPathFactory) -> VectorFile:
    vectors = VectorFile(tmp_path_factory.mktemp("vectors") / VECTORS, 64)
    vectors.append(clustered(4000))
    return vectors


def top10(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    scores = queries @ vectors[ids].T
    return [set(ids[np.argsort(-row)[:10]].tolist()) for row in scores]


@pytest.mark.parametrize(("count", "exact_limit", "kind"), [
    (2000, 400_000, "Flat"),
    (2000, 2000, "Flat"),
    (2000, 1999, "IVF"),
    (150, 100, "IVF"),  # fewer vectors than the 200 queries that measure recall
])
def test_build_faiss_is_exact_under_the_limit_and_ivf_above(vector_file, count, exact_limit, kind):
    ids = np.arange(0, 2 * count, 2, dtype=np.int64)[:count]  # only some rows are live, as after replacements
    index, described = build_faiss(vector_file, ids, exact_limit=exact_limit)
    assert described["type"].startswith(kind)
    assert described["exact"] is (kind == "Flat")
    assert index.ntotal == count
    assert described["recall@10"] >= TARGET_RECALL
    if kind == "IVF":
        assert 1 <= described["nprobe"] <= index.nlist and index.nprobe == described["nprobe"]
    # Recall measured here, on other queries, agrees with the recorded one.
    rng = np.random.default_rng(7)
    every = vector_file.rows(np.arange(len(vector_file)))
    queries = every[rng.choice(ids, 100)] + rng.normal(scale=0.05, size=(100, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, found = index.search(queries, 10)
    assert set(found.ravel().tolist()) <= set(ids.tolist())
    recall = np.mean([len(set(f.tolist()) & exact) / 10 for f, exact in zip(found, top10(every, ids, queries))])
    assert recall >= TARGET_RECALL - 0.03
