"""``Assistant``: one opened index and its embedder, answering searches and questions.

The model is loaded once per Assistant and the index opened once; an Assistant is safe to share between threads
(each thread gets its own SQLite connection). ``ask`` returns a finished :class:`~rag.models.Answer`;
``ask_stream`` returns an :class:`~rag.stream.AnswerStream`: text events as the answer grows, then the Answer.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.embed import Embedder, load_embedder
from rag.errors import LLMError, QueryError
from rag.answerable import NULL_QUESTIONS, Calibration, Subject, find_subject, load_word_frequencies
from rag.extractive import ABSTAIN_MESSAGE, compose, judge, long_date
from rag.fusion import Candidate
from rag.index import check_model, default_index_dir, open_index
from rag.lexical_tantivy import open_lexical
from rag.llm import LLMConfig, check_server
from rag.models import Answer, Cable, Hit
from rag.query import Filters, make_filters, parse_query
from rag.reply import ask_model, reply_answer
from rag.lexical import fts_terms
from rag.rerank import Reranker, SentenceReranker
from rag.retrieval import Method, Searcher, fill_hits
from rag.stream import AnswerStream, Piece, extending
from rag.text import STOPWORDS, WORD

__all__ = ["Assistant", "Mode"]

Mode = Literal["extractive", "llm"]
MODES: tuple[Mode, ...] = ("extractive", "llm")
MAX_QUESTION_CHARS = 2000
# The rerank stage reads this many fused candidates to choose an answer's few. On the dev subset 12 and 20 gave the
# same answers; on the 57,392-paragraph corpus index 20 found the gold paragraph of one more of the 75 answerable dev
# questions (the gold sat 13th-20th in fusion), for about 5 ms (benchmarks/README.md).
RERANK_POOL = 20
# Paragraphs fetched from the cables that hold a question's subject when retrieval found none of them, and the most
# such cables to look in (more means the subject is common, and retrieval's own ranking is the better guide).
SUBJECT_PARAGRAPHS, SUBJECT_CABLES = 6, 500
_FOLLOW_UP = re.compile(r"^\s*(?:and|but|also|so|what about|how about|then|why|what else)\b|\b(?:he|she|they|it|"
                        r"them|his|her|their|its|that|this|those|these)\b", re.IGNORECASE)


class Assistant:
    """Search and ask over the index in ``index_dir`` (default ``CABLECHAT_INDEX`` or ``./index``).

    ``embedder``: any :class:`~rag.embed.Embedder`; default, the model the index was built with. ``llm``: the
    server for ``mode="llm"``; default from ``CABLECHAT_LLM_URL`` / ``_MODEL`` / ``_KEY``.
    """

    def __init__(self, index_dir: str | os.PathLike[str] | None = None, *, embedder: Embedder | None = None,
                 llm: LLMConfig | None = None, reranker: Reranker | None = None) -> None:
        folder = Path(index_dir) if index_dir is not None else default_index_dir()
        # Opened first, so that what is wrong with the folder is said before a model is loaded for it.
        self.index = open_index(folder)
        try:
            manifest = self.index.manifest
            if embedder is None:
                # Questions are embedded the way the index was, backend included, unless CABLECHAT_EMBED_BACKEND says.
                embedder = load_embedder(manifest.model, backend=os.environ.get("CABLECHAT_EMBED_BACKEND")
                                         or _usable_backend(manifest.embed_backend))
            check_model(folder, manifest.model, manifest.dim, embedder)
            # tantivy's BM25 when the index was built with it (``--lexical tantivy``), else FTS5's.
            lexical = open_lexical(folder, lambda: self.index.store, manifest.counts.get("paragraphs", 0))
        except BaseException:
            self.index.close()
            raise
        self.embedder = embedder
        self.searcher = Searcher(self.index, embedder, lexical=lexical)
        self.reranker: Reranker = reranker or SentenceReranker(idf=self._idf, embed=embedder.embed)
        self._calibration: Calibration | None = None
        self._calibrating = threading.Lock()
        threading.Thread(target=load_word_frequencies, name="wordfreq", daemon=True).start()
        self._llm = llm

    @property
    def llm(self) -> LLMConfig:
        """The LLM server configuration (read from the environment when none was given)."""
        if self._llm is None:
            self._llm = LLMConfig.from_env()
        return self._llm

    @property
    def llm_configured(self) -> bool:
        return self._llm is not None or bool(os.environ.get("CABLECHAT_LLM_URL", "").strip())

    def llm_status(self) -> tuple[bool, str]:
        """Whether LLM mode can be used now, and a line saying why (never raises)."""
        if not self.llm_configured:
            return False, "no LLM server configured; set CABLECHAT_LLM_URL (and CABLECHAT_LLM_MODEL) to enable it"
        try:
            return check_server(self.llm)
        except LLMError as exc:
            return False, str(exc)

    def close(self) -> None:
        self.searcher.close()
        self.index.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups -------------------------------------------------------------------------------------------

    def cable(self, cable_id: str) -> Cable:
        """The whole indexed cable, paragraphs included."""
        cable = self.index.store.cable(cable_id.strip().upper())
        if cable is None:
            raise QueryError(f"cable {cable_id!r} is not in the index {self.index.folder}; search for it or index "
                             "the file that holds it")
        return cable

    def referenced_by(self, cable_id: str) -> list[str]:
        """Indexed cables whose REF lines name ``cable_id``."""
        return self.index.store.referenced_by(cable_id.strip().upper())

    def is_indexed(self, cable_ids: Sequence[str]) -> set[str]:
        return self.index.store.indexed(cable_ids)

    def filter_values(self, field: str) -> list[str]:
        """Every indexed value of one filter field (``origin``, ``classification``, ``level``, ``tag``), sorted."""
        return self.index.store.distinct(field)

    def stats(self) -> dict[str, Any]:
        m = self.index.manifest
        first, last = self.searcher.years
        building = self.index.building
        return {"index": str(self.index.folder), "model": m.model, "built_at": m.built_at, **m.counts,
                "years": [first, last], "faiss": m.faiss, "building": building.to_dict() if building else None}

    # -- search --------------------------------------------------------------------------------------------

    def filters(self, *, origin: str | None = None, date_from: str | int | date | None = None,
                date_to: str | int | date | None = None, year: str | int | None = None,
                classification: str | None = None, tags: str | Sequence[str] | None = None,
                cable_id: str | None = None) -> Filters:
        return make_filters(origin=origin, date_from=date_from, date_to=date_to, year=year,
                            classification=classification, tags=tags, cable_id=cable_id)

    def search(self, query: str, *, k: int = 10, method: Method = "hybrid", **filters: Any) -> list[Hit]:
        """Ranked paragraphs for ``query``. Filters: origin, date_from, date_to, year, classification, tags,
        cable_id; inline ``key:value`` filters in the query are applied too."""
        text, inline = parse_query(query)
        return self.searcher.search(text, k=k, filters=self.filters(**filters).merged(inline), method=method)

    def count(self, query: str = "", **filters: Any) -> int:
        """How many indexed cables pass the filters (keyword or inline in ``query``) together."""
        return self.searcher.count(self.filters(**filters).merged(parse_query(query)[1]))

    # -- answers -------------------------------------------------------------------------------------------

    def ask(self, question: str, *, k: int = 8, mode: Mode = "extractive",
            history: Sequence[Mapping[str, str]] = (), **filters: Any) -> Answer:
        """Answer ``question`` with citations. ``history``: earlier turns as chat messages (``role``,
        ``content``), used to resolve a short follow-up. Filters as for :meth:`search`."""
        return self.ask_stream(question, k=k, mode=mode, history=history, **filters).answer()

    def ask_stream(self, question: str, *, k: int = 8, mode: Mode = "extractive",
                   history: Sequence[Mapping[str, str]] = (), **filters: Any) -> AnswerStream:
        """The answer as it is written: iterate for :class:`~rag.stream.TextEvent`, then ``.answer()``.

        An LLM reply arrives as ``extend`` events; its checked version (citations cleaned, unsupported sentences
        marked), or the extractive answer when the reply could not be used, then comes as a ``replace``. A question
        that cannot be asked (unknown mode, too long, no words) raises here, at once; a filter no cable has, or LLM
        mode with no server configured (LLMError), as the stream starts.
        """
        started = time.perf_counter()
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if len(question) > MAX_QUESTION_CHARS:
            raise QueryError(f"the question is {len(question):,} characters long; ask in at most "
                             f"{MAX_QUESTION_CHARS:,} (a question, not a document)")
        text, inline = parse_query(question)
        if not fts_terms(text):
            raise QueryError("the question has no words to search for; ask about a person, place, event or topic")
        chosen = self.filters(**filters).merged(inline)
        return AnswerStream(self._answer(question, text, chosen, k, mode, history, started))

    def _answer(self, question: str, text: str, chosen: Filters, k: int, mode: Mode,
                history: Sequence[Mapping[str, str]], started: float) -> Generator[Piece, None, Answer]:
        query = _retrieval_query(text, history)
        timings: dict[str, float] = {}
        vector = self.embedder.embed([query])[0]
        hits = self.searcher.search(query, k=max(k, RERANK_POOL), filters=chosen, query_vector=vector)
        timings["search_ms"] = _ms(started)
        if mode == "llm":
            # After the search, so that a filter no cable has is reported first; LLMError when none is configured.
            config = self.llm
            return (yield from self._llm_answer(config, question, text, hits, history, timings, started, vector,
                                                k=k))
        answer = self._extractive(question, text, hits, timings, started, vector, k=k)
        yield from _stream_text(answer.text)
        return answer

    def _extractive(self, question: str, text: str, hits: list[Hit], timings: dict[str, float],
                    started: float, vector: np.ndarray, *, k: int = 8, notice: str | None = None) -> Answer:
        """The extractive answer from the candidate paragraphs ``hits``; its ``hits`` are the best ``k`` reranked."""
        composing = time.perf_counter()
        store = self.index.store
        subject = find_subject(text, store, years=self.searcher.years)
        pool = hits + self._subject_paragraphs(subject, hits)
        ranked = self.reranker.rerank(text, pool, vector=vector)
        held: frozenset[str] = frozenset()
        if subject.cables:
            rows = store.cable_rows([r.hit.cable.id for r in ranked])
            held = frozenset(cable for cable, row in rows.items() if row in subject.cables)
            ranked = sorted(ranked, key=lambda r: r.hit.cable.id not in held)
        cosine = max((h.scores.get("dense", 0.0) for h in hits[:3]), default=0.0)
        verdict = judge(text, ranked, subject, calibration=self.calibration() if not subject.anchors else None,
                        cosine=cosine, held=held)
        shown = [r.hit for r in ranked[:k]]
        timings.update(compose_ms=_ms(composing), total_ms=_ms(started))
        if not verdict.answerable:
            return _abstention(question, shown, verdict.reason, "extractive", timings, notice)
        body, citations = compose(verdict.chosen)
        return Answer(question=question, text=body, citations=citations, hits=tuple(shown), mode="extractive",
                      notice=notice, timings=timings)

    def _subject_paragraphs(self, subject: Subject, hits: Sequence[Hit]) -> list[Hit]:
        """When no candidate lies in a cable holding the question's subject, the paragraphs of those cables that
        hold its rarest anchor: the subject is the better guide to the answer than a near paraphrase elsewhere."""
        if not subject.cables or len(subject.cables) > SUBJECT_CABLES:
            return []
        store = self.index.store
        rows = store.cable_rows([h.cable.id for h in hits])
        if any(rows.get(h.cable.id) in subject.cables for h in hits):
            return []
        rarest = min((a for a in subject.anchors if a.kind != "year"), key=lambda a: store.fts_count(a.match),
                     default=None)
        if rarest is None:
            return []
        found = store.fts_paragraphs(rarest.match, cables=sorted(subject.cables), limit=SUBJECT_PARAGRAPHS)
        return fill_hits(store, [Candidate(rowid, 0.0) for rowid in found])

    def calibration(self) -> Calibration:
        """This index's off-topic ceiling (rag.answerable.Calibration), measured once, on first need."""
        with self._calibrating:
            if self._calibration is None:
                vectors = self.embedder.embed(list(NULL_QUESTIONS))
                self._calibration = Calibration.measure(
                    lambda _: [next(iter(self.searcher.dense(v, 1, None)), (0, 0.0))[1] for v in vectors])
            return self._calibration

    def _llm_answer(self, config: LLMConfig, question: str, text: str, hits: list[Hit],
                    history: Sequence[Mapping[str, str]], timings: dict[str, float], started: float,
                    vector: np.ndarray, *, k: int) -> Generator[Piece, None, Answer]:
        # The extractive judge goes first: a question it refuses on the evidence is never sent to the model, and
        # its answer is what the reader gets whenever the model's reply cannot be used.
        extractive = self._extractive(question, text, hits, timings, started, vector, k=k)
        hits = list(extractive.hits)  # the reranked best k, not every candidate
        if extractive.abstained:
            return dataclasses.replace(extractive, notice="The question was not sent to the LLM: the retrieved "
                                                          "paragraphs do not hold its answer.")
        asking = time.perf_counter()
        try:
            reply = yield from extending(ask_model(config, text, hits, history))
        except LLMError as exc:
            timings.update(llm_ms=_ms(asking), total_ms=_ms(started))
            return dataclasses.replace(extractive, notice=f"LLM mode failed, so this is the extractive answer. {exc}")
        if reply.config.context_tokens != config.context_tokens:
            self._llm = reply.config  # the server said its context size: later prompts fit it the first time
        timings.update(llm_ms=_ms(asking), total_ms=_ms(started))
        return reply_answer(question, reply, hits, extractive, timings)

    def _idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term (as a prefix) over the indexed paragraphs."""
        total = self.index.manifest.counts.get("paragraphs", 1) or 1
        return max(0.1, math.log((total + 1) / (self.searcher.lexical.document_frequency(term, prefix=True) + 0.5)))


def _usable_backend(recorded: str | None) -> str | None:
    """The index's ONNX backend, or None (this machine's default) for an index built with torch, e.g. on a GPU."""
    if recorded in ("onnx", "onnx-int8"):
        return recorded
    return None


def _retrieval_query(text: str, history: Sequence[Mapping[str, str]]) -> str:
    """The question, with the previous question prepended when this one reads as a follow-up to it."""
    previous = next((m.get("content", "") for m in reversed(history) if m.get("role") == "user"), "")
    if not previous:
        return text
    words = [w for w in WORD.findall(text) if w.lower() not in STOPWORDS]
    if len(words) <= 4 or _FOLLOW_UP.search(text):
        return f"{parse_query(previous)[0]} {text}"
    return text


def _abstention(question: str, hits: list[Hit], reason: str, mode: str, timings: dict[str, float],
                notice: str | None = None) -> Answer:
    nearest = "\n".join(
        f"- [{h.ref}] {', '.join(p for p in (h.cable.origin, long_date(h.cable.date) if h.cable.date else None) if p)}"
        f": {h.cable.subject or ''}" for h in hits[:3])
    text = f"{ABSTAIN_MESSAGE} {reason}"
    if nearest:
        text += f"\n\nNearest cables:\n{nearest}"
    return Answer(question=question, text=text, citations=(), hits=tuple(hits), mode=mode, abstained=True,
                  notice=notice, timings=timings)


def _stream_text(text: str) -> Iterator[Piece]:
    """The text a few words at a time, so a chat can show it arriving."""
    words = re.findall(r"\S+\s*", text)
    for start in range(0, len(words), 6):
        yield "extend", "".join(words[start:start + 6])


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
