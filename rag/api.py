"""The two-line API: ``from rag import ask; print(ask("...").text)``.

``ask`` and ``search`` open the index once (per index folder) and reuse it, model included, for every later call.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from rag.assistant import Assistant
from rag.index import default_index_dir
from rag.models import Answer, Hit

__all__ = ["ask", "search"]

_open: dict[Path, Assistant] = {}
_lock = threading.Lock()


def _assistant(index_dir: str | os.PathLike[str] | None) -> Assistant:
    folder = Path(index_dir if index_dir is not None else default_index_dir()).resolve()
    with _lock:
        if folder not in _open:
            _open[folder] = Assistant(folder)
        return _open[folder]


def ask(question: str, *, index_dir: str | os.PathLike[str] | None = None, **options: Any) -> Answer:
    """``Assistant(index_dir).ask(question, **options)`` on an Assistant opened once and kept."""
    return _assistant(index_dir).ask(question, **options)


def search(query: str, *, index_dir: str | os.PathLike[str] | None = None, **options: Any) -> list[Hit]:
    """``Assistant(index_dir).search(query, **options)`` on an Assistant opened once and kept."""
    return _assistant(index_dir).search(query, **options)
