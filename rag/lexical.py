"""Lexical search: the ``LexicalIndex`` seam, SQLite FTS5's BM25 behind it, and an in-memory fake for tests.

FTS5 leaves out query words found in more than ``COMMON_SHARE`` of paragraphs ("us", "discussed", a month):
scoring every paragraph that holds them costs most of a query's time and they barely move the ranking
(benchmarks/search.py). Each paragraph row has two columns, its own words and its cable's context line
(rag.store.context_line), weighed ``BM25_WEIGHTS``.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from rag.text import STOPWORDS

if TYPE_CHECKING:
    from rag.store import Store, Where

__all__ = ["FakeLexical", "Fts5Lexical", "LexicalIndex", "fts_terms"]

# FTS5 column weights: the paragraph's own words, then its cable's context line.
BM25_WEIGHTS = (1.0, 1.0)
COMMON_SHARE = 0.1
_TERM = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
# FTS5 query syntax words, which must not be read as operators.
_FTS_WORDS = {"and", "or", "not", "near"}


class LexicalIndex(Protocol):
    """Ranks paragraphs by the words of a query.

    ``search`` returns (paragraph rowid, score, higher is better), best first, at most ``depth``, only among the
    paragraphs of cables passing ``where``. ``document_frequency`` counts the paragraphs holding a term (any word
    it begins, with ``prefix``), in the paragraph text only.
    """

    paragraphs: int

    def search(self, terms: Sequence[str], *, depth: int, where: Where | None = None) -> list[tuple[int, float]]: ...

    def document_frequency(self, term: str, *, prefix: bool = False) -> int: ...


class Fts5Lexical:
    """BM25 over the index's FTS5 table. ``store`` gives the calling thread's connection (rag.index.Index.store)."""

    def __init__(self, store: Callable[[], Store], paragraphs: int) -> None:
        self._store, self.paragraphs = store, paragraphs
        self._df: dict[tuple[str, bool], int] = {}
        self._lock = threading.Lock()

    def search(self, terms: Sequence[str], *, depth: int, where: Where | None = None) -> list[tuple[int, float]]:
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in self.rare(terms))
        return self._store().fts_rank(match, weights=BM25_WEIGHTS, depth=depth, where=where)

    def rare(self, terms: Sequence[str]) -> list[str]:
        """``terms`` without those too common to rank by; the rarest few when all of them are common."""
        rare = [t for t in terms if self.document_frequency(t) <= COMMON_SHARE * self.paragraphs]
        return rare or sorted(terms, key=self.document_frequency)[:3]

    def document_frequency(self, term: str, *, prefix: bool = False) -> int:
        key = (term, prefix)
        found = self._df.get(key)
        if found is None:
            match = f'body:"{term}"*' if prefix else f'"{term}"'
            found = self._store().fts_count(match)
            with self._lock:
                self._df[key] = found
        return found


class FakeLexical:
    """Plain BM25 over texts held in memory: a lexical index for tests, with no SQLite and no filters."""

    def __init__(self, texts: Mapping[int, str]) -> None:
        self._words = {rowid: Counter(fts_terms(text)) for rowid, text in texts.items()}
        self.paragraphs = len(texts)

    def search(self, terms: Sequence[str], *, depth: int, where: Where | None = None) -> list[tuple[int, float]]:
        if where is not None:
            raise ValueError("FakeLexical cannot filter; test filters against a real index")
        scores: dict[int, float] = {}
        for term in terms:
            df = self.document_frequency(term)
            if not df:
                continue
            idf = math.log(1 + (self.paragraphs - df + 0.5) / (df + 0.5))
            for rowid, words in self._words.items():
                if words[term]:
                    scores[rowid] = scores.get(rowid, 0.0) + idf * words[term] / (words[term] + 1.2)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:depth]

    def document_frequency(self, term: str, *, prefix: bool = False) -> int:
        return sum(1 for words in self._words.values()
                   if (any(w.startswith(term) for w in words) if prefix else words[term]))


def fts_terms(query: str) -> list[str]:
    """The query's words worth matching: no stop-words, no FTS5 operators, each at most once."""
    words = [w.lower().replace("’", "'") for w in _TERM.findall(query)]
    return list(dict.fromkeys(w for w in words
                              if w not in STOPWORDS and w not in _FTS_WORDS and (len(w) > 1 or w.isdigit())))
