"""``cablechat check`` and the repair (issue 11): every way of damaging an index file is refused on opening with a
message that names one command, ``cablechat check`` finds it and names the same command, and that command, run as
a user would, leaves an index that checks whole and answers as before.

Everything uses the deterministic FakeEmbedder, so vectors embedded again from the database are the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from conftest import SEEDS

from rag.assistant import Assistant
from rag.check import check_index
from rag.cli import main
from rag.embed import FakeEmbedder
from rag.errors import IndexCorruptError
from rag.index import DATABASE, FAISS, MANIFEST, VECTORS, open_index

ROW_BYTES = 64 * 4


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def cut(path: Path, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


def edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / MANIFEST
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_faiss_entry(folder: Path, **changes: object) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    edit_manifest(folder, faiss={**data["faiss"], **changes})


def overwrite(path: Path) -> None:
    """Random bytes over the whole file, at the same size."""
    path.write_bytes(np.random.default_rng(5).bytes(path.stat().st_size))


def extra_rows(folder: Path) -> None:
    """What a build killed between appending a batch's vectors and committing its rows leaves."""
    with open(folder / VECTORS, "ab") as f:
        f.write(np.full((5, 64), 0.125, dtype=np.float32).tobytes())


# name: (damage, the part `cablechat check` blames, words of the message on opening)
DAMAGES: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "faiss.index cut": (lambda f: cut(f / FAISS, (f / FAISS).stat().st_size // 2), "faiss", "faiss.index"),
    "faiss.index deleted": (lambda f: (f / FAISS).unlink(), "faiss", f"lacks {FAISS}"),
    "faiss.index garbage": (lambda f: (f / FAISS).write_bytes(b"not faiss" * 10), "faiss", "faiss.index"),
    "manifest cut in half": (lambda f: cut(f / MANIFEST, (f / MANIFEST).stat().st_size // 2), "manifest",
                             "cannot read"),
    "manifest deleted": (lambda f: (f / MANIFEST).unlink(), "manifest", "is half-built"),
    "manifest nprobe abc": (lambda f: edit_faiss_entry(f, nprobe="abc"), "manifest", '"faiss.nprobe" is "abc"'),
    "manifest counts null": (lambda f: edit_manifest(f, counts=None), "manifest", '"counts" is null'),
    "manifest fields": (lambda f: (f / MANIFEST).write_text('{"model": "x"}'), "manifest", "are missing"),
    "manifest counts changed": (lambda f: edit_manifest(f, counts={"cables": 2, "paragraphs": 17, "vectors": 20}),
                                "manifest", "does not match its manifest"),
    "vectors.f32 deleted": (lambda f: (f / VECTORS).unlink(), "vectors", f"lacks {VECTORS}"),
    "vectors.f32 cut": (lambda f: cut(f / VECTORS, 10 * ROW_BYTES), "vectors", "holds 10 vectors, the database 20"),
    "vectors.f32 written over": (lambda f: overwrite(f / VECTORS), "vectors", "hold different vectors"),
    "vectors.f32 uncommitted rows": (extra_rows, "vectors", "holds 25 vectors, the database 20"),
    "cables.sqlite garbage": (lambda f: (f / DATABASE).write_bytes(b"not sqlite" * 1000), "database",
                              "cannot read"),
    "cables.sqlite deleted": (lambda f: (f / DATABASE).unlink(), "database", "is missing"),
}


def command_in(message: str) -> str:
    commands = re.findall(r"`(cablechat [^`]+)`", message)
    assert len(commands) == 1, message
    return commands[0]


def top_refs(folder: Path) -> list[str]:
    with Assistant(folder, embedder=FakeEmbedder()) as assistant:
        return [h.ref for h in assistant.search("Baikonur lease cosmodrome", k=5, method="dense")]


@pytest.fixture(scope="module")
def expected(seeds_index: Path) -> tuple[list[str], bytes]:
    return top_refs(seeds_index), (seeds_index / VECTORS).read_bytes()


@pytest.mark.parametrize("name", DAMAGES)
def test_damage_is_found_named_and_the_named_command_repairs_it(seeds_index, copy_index, expected, capsys,
                                                                 monkeypatch, name):
    # A user who builds with the fake model names it in the environment; the repair reads it from the index.
    monkeypatch.setenv("CABLECHAT_MODEL", "fake-hash-64")
    folder = copy_index(seeds_index)
    damage, part, words = DAMAGES[name]
    damage(folder)

    with pytest.raises(IndexCorruptError, match=re.escape(words)) as caught:
        open_index(folder, embedder=FakeEmbedder())
    told = command_in(str(caught.value))
    assert "Traceback" not in str(caught.value) and "faiss::" not in str(caught.value)

    status, out, _ = run(capsys, "check", "--index", folder)
    assert status == 1 and f"  {part}: " in out, out
    assert out.splitlines()[-1] == f"fix: `{told}`"
    status, out, _ = run(capsys, "check", "--index", folder, "--json")
    report = json.loads(out)
    assert status == 1 and not report["ok"] and report["fix"] == told
    assert part in {p["part"] for p in report["problems"]}

    status, out, err = run(capsys, *shlex.split(told)[1:])
    assert status == 0, err
    repaired = Path(shlex.split(told)[-1])
    assert check_index(repaired).ok
    status, out, _ = run(capsys, "check", "--index", repaired)
    assert (status, out.splitlines()[0]) == (0, f"{repaired}: whole (2 cables, 16 paragraphs, 20 vectors)")
    refs, vectors = expected
    assert top_refs(repaired) == refs
    assert (repaired / VECTORS).read_bytes() == vectors


REPAIRABLE = [name for name in DAMAGES if not name.startswith("cables.sqlite")]


@pytest.mark.parametrize("name", REPAIRABLE)
def test_indexing_into_a_damaged_index_repairs_it_first(seeds_index, copy_index, capsys, name):
    folder = copy_index(seeds_index)
    DAMAGES[name][0](folder)
    status, out, err = run(capsys, "index", SEEDS, "--index", folder, "--model", "fake-hash-64")
    assert status == 0, err
    assert "2 unchanged" in out
    if name != "manifest deleted":  # a half-built index is resumed, not repaired
        assert "repaired: " in err, err
    assert check_index(folder).ok


@pytest.mark.parametrize("name", ["cables.sqlite garbage", "cables.sqlite deleted"])
def test_indexing_into_a_lost_database_is_refused_naming_a_new_folder(seeds_index, copy_index, capsys, name):
    folder = copy_index(seeds_index)
    DAMAGES[name][0](folder)
    status, out, err = run(capsys, "index", SEEDS, "--index", folder, "--model", "fake-hash-64")
    assert (status, out) == (1, "")
    assert command_in(err) == f"cablechat index {SEEDS} --index {folder}.rebuilt"


def test_rows_a_replaced_cable_left_are_zeroed_and_never_reused(seeds_index, copy_index, tmp_path, capsys):
    """A written-over row whose text is gone with its replaced cable cannot be embedded again; nothing reuses it."""
    folder = copy_index(seeds_index)
    moscow = (sorted(SEEDS.glob("*.txt"))[1]).read_text()
    changed = tmp_path / "moscow.txt"
    changed.write_text(moscow.replace("The MOD has prepared", "The General Staff has prepared"))
    assert run(capsys, "index", changed, "--index", folder, "--model", "fake-hash-64")[0] == 0
    with closing(sqlite3.connect(folder / DATABASE)) as db:
        dead = [r for (r,) in db.execute("SELECT rowid FROM vectors WHERE paragraph IS NULL ORDER BY rowid")]
    assert dead
    overwrite(folder / VECTORS)
    status, out, err = run(capsys, "index", "--index", folder)
    assert status == 0, err
    assert f"{len(dead)} rows of replaced cables zeroed" in err
    assert check_index(folder).ok
    rows = np.frombuffer((folder / VECTORS).read_bytes(), dtype=np.float32).reshape(-1, 64)
    assert not rows[dead].any()
    with closing(sqlite3.connect(folder / DATABASE)) as db:
        assert {h for (h,) in db.execute(f"SELECT hash FROM vectors WHERE rowid IN ({','.join(map(str, dead))})")} \
            == {""}
    # Indexing the old text again embeds it again instead of copying the zeroed rows.
    summary = run(capsys, "index", sorted(SEEDS.glob("*.txt"))[1], "--index", folder, "--json")[1]
    assert json.loads(summary)["embedded"] > 0


def test_an_index_built_before_checksums_gets_them_from_the_named_command(seeds_index, copy_index, capsys):
    folder = copy_index(seeds_index)
    with closing(sqlite3.connect(folder / DATABASE)) as db, db:
        db.execute("DROP TABLE vector_blocks")
    status, out, _ = run(capsys, "check", "--index", folder)
    assert status == 0 and "note: rows 0 to 19 of" in out and "carry no checksum" in out
    fix = out.splitlines()[-1]
    assert fix == f"fix: `cablechat index --index {folder}`"
    assert run(capsys, *shlex.split(fix[6:-1])[1:])[0] == 0
    status, out, _ = run(capsys, "check", "--index", folder)
    assert status == 0 and "note:" not in out and "fix:" not in out
    # Rows written over after that are found.
    with open(folder / VECTORS, "r+b") as f:
        os.pwrite(f.fileno(), b"\0" * ROW_BYTES, 7 * ROW_BYTES)
    assert not check_index(folder).ok


def test_check_of_a_missing_index_is_one_line(tmp_path, capsys):
    status, out, err = run(capsys, "check", "--index", tmp_path / "nowhere")
    assert (status, out) == (1, "")
    assert err.startswith("cablechat check: no index at") and err.count("\n") == 1
