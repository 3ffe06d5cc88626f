"""Export a sentence-transformers model to ONNX (fp32 and int8) once per machine, for the ONNX backends of rag.embed.

torch and onnxruntime's quantiser are imported inside :func:`export_onnx`, which runs once per model and recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import cast

from rag.embed import ONNX_INPUTS, embedding_dim, load_sentence_transformer
from rag.errors import CableChatError

__all__ = ["cache_key", "export_onnx"]

# Bump when the exported graph or its quantisation changes, so that stale exports are not reused.
_EXPORT_VERSION = 1


def cache_key(name: str, source: str) -> str:
    """Folder name for one model's export; it changes when the model's files or the export recipe change."""
    path = Path(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    stamp = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    digest = hashlib.sha256(json.dumps([_EXPORT_VERSION, source, stamp]).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{digest}"


def export_onnx(source: str, folder: Path) -> None:
    """Write model.onnx (fp32), model-int8.onnx, tokenizer.json and meta.json into ``folder``, atomically."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    st = load_sentence_transformer(source, device="cpu")
    tokenizer = st.tokenizer
    example = tokenizer(["a short text", "a longer text, to pad the first one"], padding=True, return_tensors="pt")
    inputs = list(example.keys())
    prompt = getattr(st, "default_prompt_name", None)
    if not set(inputs) <= set(ONNX_INPUTS) or not getattr(tokenizer, "is_fast", False) or prompt:
        raise CableChatError(
            f"model {source!r} takes inputs {inputs}, lacks a fast tokenizer or adds the prompt {prompt!r} to every "
            "text, and the ONNX backends handle none of these; use backend='torch'"
        )

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, self.st(dict(zip(inputs, tensors)))["sentence_embedding"])

    scratch = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.mkdir(parents=True)
    except OSError as exc:
        raise CableChatError(
            f"cannot write the ONNX export of {source!r} under {folder.parent} ({exc}); pass cache_dir= a writable "
            "folder, or set XDG_CACHE_HOME"
        ) from exc
    try:
        axes = {name: {0: "batch", 1: "tokens"} for name in inputs} | {"embedding": {0: "batch"}}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about branches that are fixed at inference
            torch.onnx.export(
                Graph().eval(), tuple(example[n] for n in inputs), str(scratch / "model.onnx"), input_names=inputs,
                output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        # Per-channel weights, MatMuls only: per-tensor weights, or quantised embedding lookups too, gave cosine 0.95
        # to fp32 instead of 0.994, and no more speed.
        logging.disable(logging.WARNING)  # its advice to pre-process first fails on this graph
        try:
            quantize_dynamic(
                scratch / "model.onnx", scratch / "model-int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            logging.disable(logging.NOTSET)
        (scratch / "tokenizer.json").write_text(tokenizer.backend_tokenizer.to_str())
        meta = {"source": source, "dim": embedding_dim(st), "max_seq_length": int(st.max_seq_length), "inputs": inputs,
                "pad_id": int(tokenizer.pad_token_id or 0), "do_lower_case": bool(getattr(st[0], "do_lower_case", 0))}
        (scratch / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            scratch.rename(folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # else another process exported it first, which is as good
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
