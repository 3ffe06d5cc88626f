"""BM25 over tantivy, a Lucene-style engine, behind the LexicalIndex seam (rag.lexical): top-k by block-max WAND,
so a query reads only the posting blocks that can still reach the top k, where FTS5 scores every paragraph that
holds a query word. At 2.5 M paragraphs that is the difference between seconds and milliseconds
(benchmarks/scale_hybrid.py; benchmarks/README.md says why this engine and not another).

An index uses it when built with ``cablechat index ... --lexical tantivy`` (recorded in the database, ``lexical``);
the FTS5 table is kept all the same, for the answer layer's phrase lookups. The tantivy index lives in
``lexical/`` and is derived from the database: SQLite triggers log every paragraph inserted or deleted, in the
transaction that does it (rag.store, "change log"), and :meth:`TantivyLexicalIndex.sync` replays the log into
tantivy, commits, and only then records how far it got (``applied.json``). A replay is idempotent (each logged
paragraph is deleted, then added again if the database still holds it), so a build killed anywhere leaves tantivy
behind its store, never astray, and the next build catches up before it writes the manifest; a lost or damaged
``lexical/`` is rebuilt from the database by ``cablechat index --index DIR``.

Scoring follows the FTS5 table it stands in for: a document per paragraph with two fields, the paragraph's text
and its cable's context line, each query word scored by BM25 in both and summed; Snowball English stemming (FTS5:
Porter), diacritics folded. Every query word counts: FTS5 leaves out words found in more than a tenth of the
paragraphs because scoring their rows is what makes it slow, while WAND skips their postings where they cannot
change the top k; and with them, tantivy's dev recall@5 on the corpus equals FTS5's (0.909; 0.855 without them).
A word that splits into several tokens ("o'neill") must match all of them in one field. Filters apply inside the
search: the query is restricted to the cables that pass them, not cut from a top k.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import CableChatError, IndexCorruptError

if TYPE_CHECKING:
    from rag.store import Store, Where

__all__ = ["ENGINES", "FOLDER", "TantivyLexicalIndex", "open_lexical", "sync_lexical"]

ENGINES = ("fts5", "tantivy")
FOLDER = "lexical"
_APPLIED = "applied.json"
_FORMAT = 1
_TOKENIZER = "cablechat"
# The writer's memory budget: tantivy flushes a segment each time it is spent.
_WRITER_HEAP = 200_000_000


def _analyzer() -> Any:
    from tantivy import Filter, TextAnalyzerBuilder, Tokenizer

    return (TextAnalyzerBuilder(Tokenizer.simple()).filter(Filter.remove_long(40)).filter(Filter.lowercase())
            .filter(Filter.ascii_fold()).filter(Filter.stemmer("english")).build())


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("rowid", indexed=True, fast=True)
    builder.add_integer_field("cable", indexed=True, fast=True)
    # Term frequencies without positions: BM25 needs no more, and positions would add a third to the index.
    builder.add_text_field("body", tokenizer_name=_TOKENIZER, index_option="freq")
    builder.add_text_field("context", tokenizer_name=_TOKENIZER, index_option="freq")
    return builder.build()


class TantivyLexicalIndex:
    """The ``lexical/`` folder of the index in ``folder``; ``store()`` gives the calling thread's Store."""

    def __init__(self, folder: Path, store: Callable[[], Store], paragraphs: int) -> None:
        if find_spec("tantivy") is None:
            raise CableChatError(f"index {folder} searches with tantivy, which is not installed: pip install tantivy")
        self.folder, self._store, self.paragraphs = Path(folder) / FOLDER, store, paragraphs
        self._analyzer = _analyzer()
        self.schema = _schema()
        self._index: Any = None
        self._df: dict[tuple[str, bool], int] = {}
        self._lock = threading.Lock()

    @property
    def index(self) -> Any:
        """The tantivy index, opened (or made) on first use: a build that writes nothing leaves no folder."""
        if self._index is None:
            import tantivy

            self.folder.mkdir(exist_ok=True)
            try:
                index = tantivy.Index(self.schema, path=str(self.folder), reuse=True)
            except ValueError as exc:
                raise IndexCorruptError(f"cannot open the lexical index {self.folder} ({exc}); run `cablechat index "
                                        f"--index {self.folder.parent}` to rebuild it from the database",
                                        folder=self.folder.parent) from exc
            index.register_tokenizer(_TOKENIZER, self._analyzer)
            self._index = index
        return self._index

    # -- searching ---------------------------------------------------------------------------------------------

    def search(self, terms: Sequence[str], *, depth: int, where: Where | None = None) -> list[tuple[int, float]]:
        """(paragraph rowid, BM25 score, higher is better) best first, at most ``depth``, inside ``where``."""
        from tantivy import Occur, Query

        # One flat disjunction of (word, field) clauses: block-max WAND applies to it as a whole.
        clauses = [(Occur.Should, q) for term in terms for q in self._term_queries(term)]
        if not clauses:
            return []
        query = Query.boolean_query(clauses)
        if where is not None:
            cables = self._store().cables_in(where)
            if not cables:
                return []
            # Scored 0, so that a filtered search scores as the unfiltered one does.
            allowed = Query.const_score_query(Query.term_set_query(self.schema, "cable", cables), 0.0)
            query = Query.boolean_query([(Occur.Must, query), (Occur.Must, allowed)])
        searcher = self.index.searcher()
        hits = searcher.search(query, depth, count=False).hits
        rowids = searcher.fast_field_values("rowid", [address for _, address in hits])
        return [(int(r), float(s)) for (s, _), r in zip(hits, rowids)]

    def _term_queries(self, term: str) -> list[Any]:
        """``term`` in the text, and in the context line; every token of it in the same field."""
        from tantivy import Occur, Query

        tokens = list(dict.fromkeys(self._analyzer.analyze(term)))
        if not tokens:
            return []
        found = []
        for field in ("body", "context"):
            parts = [Query.term_query(self.schema, field, t, "freq") for t in tokens]
            found.append(parts[0] if len(parts) == 1 else Query.boolean_query([(Occur.Must, p) for p in parts]))
        return found

    def document_frequency(self, term: str, *, prefix: bool = False) -> int:
        """Paragraphs whose text holds ``term`` (any word it begins, with ``prefix``); cached."""
        key = (term, prefix)
        found = self._df.get(key)
        if found is None:
            from tantivy import Query

            # Counted, not looked up (Searcher.doc_freq): the term dictionary counts deleted paragraphs too until
            # tantivy merges them away. Counting a word of 250,000 paragraphs takes about a millisecond.
            if prefix:
                query = Query.regex_query(self.schema, "body", re.escape(term.lower()) + ".*")
            else:
                queries = self._term_queries(term)
                query = queries[0] if queries else None
            found = int(self.index.searcher().search(query, 1, count=True).count) if query is not None else 0
            with self._lock:
                self._df[key] = found
        return found

    # -- keeping up with the database --------------------------------------------------------------------------

    def applied(self) -> int | None:
        """The last change of the database's log this index holds; None when that is unknown."""
        try:
            data = json.loads((self.folder / _APPLIED).read_text())
            return int(data["seq"]) if data.get("format") == _FORMAT else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def behind(self, store: Store) -> bool:
        """Whether :meth:`sync` has work to do: changes not applied yet, or an index that does not open."""
        applied = self.applied()
        if applied is None or applied != store.last_change():
            return True
        try:
            self.index.searcher()
        except (IndexCorruptError, ValueError):
            return True
        return False

    def sync(self, store: Store) -> int:
        """Replay ``store``'s change log into this index (all of the database when its state is unknown);
        returns how many paragraphs were written."""
        if not self.behind(store):
            return 0
        applied, last = self.applied(), store.last_change()
        try:
            index = self.index
            index.searcher()
        except (IndexCorruptError, ValueError):
            # Derived data: start it afresh from the database.
            self._index = None
            shutil.rmtree(self.folder)
            applied, index = None, self.index
        writer = index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        if applied is None or applied > last:
            writer.delete_all_documents()
            rows = store.lexical_rows()
        else:
            touched = store.changed_paragraphs(applied, last)
            for rowid in touched:
                writer.delete_documents_by_term("rowid", rowid)
            rows = store.lexical_rows(touched)
        import tantivy

        written = 0
        for rowid, cable, text, context in rows:
            writer.add_document(tantivy.Document(rowid=rowid, cable=cable, body=text, context=context))
            written += 1
        writer.commit()
        writer.wait_merging_threads()
        tmp = self.folder / f".{_APPLIED}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"format": _FORMAT, "seq": last}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / _APPLIED)
        store.forget_changes(last)  # tantivy holds them now
        self.index.reload()
        self._df.clear()
        return written


def sync_lexical(folder: Path, store: Store, engine: str | None) -> TantivyLexicalIndex | None:
    """For the one writer of ``folder``: record ``engine`` (None: keep the recorded one) and, for tantivy, start
    logging changes; returns the tantivy index to :meth:`~TantivyLexicalIndex.sync` before the manifest."""
    if engine is not None and engine not in ENGINES:
        raise CableChatError(f"unknown lexical engine {engine!r}; use one of {', '.join(ENGINES)}")
    recorded = store.meta("lexical") or "fts5"
    if engine is not None and engine != recorded:
        store.set_meta(lexical=engine)
        if engine == "fts5":
            shutil.rmtree(folder / FOLDER, ignore_errors=True)
    if (engine or recorded) != "tantivy":
        return None
    store.log_paragraph_changes()
    return TantivyLexicalIndex(folder, lambda: store, 0)


def open_lexical(folder: Path, store: Callable[[], Store], paragraphs: int) -> TantivyLexicalIndex | None:
    """The lexical index a reader of ``folder`` searches with: tantivy's when the index was built with it (after
    checking it holds what the database does), None for FTS5."""
    current = store()
    if current.meta("lexical") != "tantivy":
        return None
    if not (folder / FOLDER / _APPLIED).exists():
        raise IndexCorruptError(f"index {folder} searches with tantivy, but {folder / FOLDER} is missing or "
                                f"unfinished; run `cablechat index --index {folder}` to rebuild it from the database",
                                folder=folder)
    lexical = TantivyLexicalIndex(folder, store, paragraphs)
    held = int(lexical.index.searcher().num_docs)
    if lexical.behind(current) or held != paragraphs:
        raise IndexCorruptError(f"the lexical index {folder / FOLDER} holds {held} paragraphs, the database "
                                f"{paragraphs}; run `cablechat index --index {folder}` to bring it up to date",
                                folder=folder)
    return lexical
