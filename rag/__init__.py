"""CableChat: ask questions of US diplomatic cables; every claim cites its cable and paragraph.

    from rag import ask
    answer = ask("Who wants Kazakhstan to join the MTCR?")
    print(answer.text)                    # Markdown, citations like [09ASTANA664 ¶11]

Names are imported on first use, so that ``import rag`` stays instant and loads no model, FAISS or numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Answer",
    "AnswerStream",
    "Assistant",
    "BuildSummary",
    "Cable",
    "CableChatError",
    "CableParseError",
    "Citation",
    "FakeEmbedder",
    "FakeReranker",
    "Filters",
    "Hit",
    "IndexCorruptError",
    "IndexError_",
    "IndexMismatchError",
    "IndexMissingError",
    "LLMConfig",
    "LLMContextError",
    "LLMError",
    "LoadReport",
    "Paragraph",
    "QueryError",
    "Ranked",
    "Reranker",
    "SentenceReranker",
    "TextEvent",
    "ask",
    "build_index",
    "load_cables",
    "load_embedder",
    "parse_cable",
    "search",
]

_HOMES = {
    "Answer": "rag.models", "Cable": "rag.models", "Citation": "rag.models", "Hit": "rag.models",
    "Paragraph": "rag.models",
    "CableChatError": "rag.errors", "CableParseError": "rag.errors", "IndexCorruptError": "rag.errors",
    "IndexError_": "rag.errors", "IndexMismatchError": "rag.errors", "IndexMissingError": "rag.errors",
    "LLMContextError": "rag.errors", "LLMError": "rag.errors", "QueryError": "rag.errors",
    "AnswerStream": "rag.stream", "TextEvent": "rag.stream",
    "Assistant": "rag.assistant", "ask": "rag.api", "search": "rag.api",
    "BuildSummary": "rag.indexer", "build_index": "rag.indexer",
    "FakeEmbedder": "rag.embed", "load_embedder": "rag.embed",
    "Filters": "rag.query", "LLMConfig": "rag.llm",
    "FakeReranker": "rag.rerank", "Ranked": "rag.rerank", "Reranker": "rag.rerank", "SentenceReranker": "rag.rerank",
    "LoadReport": "rag.loaders", "load_cables": "rag.loaders", "parse_cable": "rag.parser",
}

if TYPE_CHECKING:
    from rag.api import ask, search
    from rag.assistant import Assistant
    from rag.embed import FakeEmbedder, load_embedder
    from rag.errors import (
        CableChatError,
        CableParseError,
        IndexCorruptError,
        IndexError_,
        IndexMismatchError,
        IndexMissingError,
        LLMContextError,
        LLMError,
        QueryError,
    )
    from rag.indexer import BuildSummary, build_index
    from rag.llm import LLMConfig
    from rag.loaders import LoadReport, load_cables
    from rag.models import Answer, Cable, Citation, Hit, Paragraph
    from rag.parser import parse_cable
    from rag.query import Filters
    from rag.rerank import FakeReranker, Ranked, Reranker, SentenceReranker
    from rag.stream import AnswerStream, TextEvent


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
