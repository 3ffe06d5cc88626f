"""Shared test data and indexes.

Paths: ``seeds/`` (two real cables) and the shared corpus at /work/shared/corpus; tests marked ``corpus`` skip
cleanly when it is absent. Indexes are built once per session with the deterministic :class:`FakeEmbedder`
(``seeds_index``, ``corpus_index``); tests that change an index copy one first (``copy_index``). The real model
is loaded once, by ``real_assistant``, for every test marked ``real_model``.
"""

from __future__ import annotations

import gzip
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
CORPUS = REPO.parent / "shared" / "corpus"
JSONL_GZ = CORPUS / "cablegate-6712.jsonl.gz"
SEED_IDS = {"09ASTANA664", "09MOSCOW2809"}
# How many of the corpus's first cables the slice tests index: enough for every kind of filter, and quick to build.
SLICE_CABLES = 200

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not found at {CORPUS}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test marked ``corpus`` skips when the shared corpus is absent, with or without ``needs_corpus``."""
    if CORPUS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared corpus not found at {CORPUS}")
    for item in items:
        if item.get_closest_marker("corpus"):
            item.add_marker(skip)


def kill_after(build: subprocess.Popen[str], count: int) -> list[int]:
    """The cable counts a build prints after each batch, up to ``count``, when it is killed with SIGKILL (it waits
    between two batches); the build is gone whatever happens."""
    written: list[int] = []
    try:
        for line in build.stdout:
            written.append(int(line))
            if written[-1] >= count:
                build.send_signal(signal.SIGKILL)
                break
        assert build.wait(timeout=60) == -signal.SIGKILL, written
    finally:
        if build.poll() is None:
            build.kill()
        build.stdout.close()
    return written


def seed_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]


def corpus_lines(count: int) -> list[bytes]:
    with gzip.open(JSONL_GZ, "rb") as stream:
        return list(islice(stream, count))


# -- indexes built with the fake embedder -------------------------------------------------------------------


@pytest.fixture(scope="session")
def seeds_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of seeds/ (FakeEmbedder); read-only: copy it (``copy_index``) to change it."""
    from rag.embed import FakeEmbedder
    from rag.indexer import build_index

    folder = tmp_path_factory.mktemp("seeds") / "index"
    build_index([SEEDS], folder, embedder=FakeEmbedder())
    return folder


@pytest.fixture
def copy_index(tmp_path: Path) -> Callable[[Path], Path]:
    """``copy_index(folder)``: a copy of an index in this test's tmp_path, to change freely."""
    return lambda folder: Path(shutil.copytree(folder, tmp_path / "index-copy"))


@pytest.fixture(scope="session")
def corpus_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first SLICE_CABLES cables of the corpus as a .jsonl file."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    path = tmp_path_factory.mktemp("corpus") / "slice.jsonl"
    path.write_bytes(b"".join(corpus_lines(SLICE_CABLES)))
    return path


@pytest.fixture(scope="session")
def corpus_index(corpus_slice: Path) -> Path:
    """An index of the corpus slice and seeds/ (FakeEmbedder), built in batches of 16 cables; read-only."""
    from rag.embed import FakeEmbedder
    from rag.indexer import build_index

    folder = corpus_slice.parent / "index"
    build_index([corpus_slice, SEEDS], folder, embedder=FakeEmbedder(), batch_cables=16)
    return folder


# -- the real model -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The packaged all-MiniLM-L6-v2, loaded once, over an index of seeds/ built with it."""
    from rag.assistant import Assistant
    from rag.embed import load_embedder
    from rag.indexer import build_index

    embedder = load_embedder()
    folder = tmp_path_factory.mktemp("real") / "index"
    build_index([SEEDS], folder, embedder=embedder)
    with Assistant(folder, embedder=embedder) as assistant:
        yield assistant
