"""``Assistant``: one opened index and its embedder, answering searches and questions.

The model is loaded once per Assistant and the index opened once; an Assistant is safe to share between threads
(each thread gets its own SQLite connection). ``ask`` returns a finished :class:`~rag.models.Answer`;
``ask_stream`` yields the answer's text as it grows and then the finished Answer, for the UI.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.citations import check_reply
from rag.embed import Embedder, load_embedder
from rag.errors import LLMError, QueryError
from rag.extractive import ABSTAIN_MESSAGE, compose, judge, long_date, pick_sentences
from rag.index import check_model, default_index_dir, open_index
from rag.llm import NO_ANSWER, LLMConfig, build_messages, check_server, stream_chat
from rag.models import Answer, Cable, Hit
from rag.query import Filters, make_filters, parse_query
from rag.retrieval import Method, Searcher, fts_terms
from rag.text import STOPWORDS, WORD

__all__ = ["Assistant", "Mode"]

Mode = Literal["extractive", "llm"]
MODES: tuple[Mode, ...] = ("extractive", "llm")
MAX_QUESTION_CHARS = 2000
_FOLLOW_UP = re.compile(r"^\s*(?:and|but|also|so|what about|how about|then|why|what else)\b|\b(?:he|she|they|it|"
                        r"them|his|her|their|its|that|this|those|these)\b", re.IGNORECASE)


class Assistant:
    """Search and ask over the index in ``index_dir`` (default ``CABLECHAT_INDEX`` or ``./index``).

    ``embedder``: any :class:`~rag.embed.Embedder`; default, the model the index was built with. ``llm``: the
    server for ``mode="llm"``; default from ``CABLECHAT_LLM_URL`` / ``_MODEL`` / ``_KEY``.
    """

    def __init__(self, index_dir: str | os.PathLike[str] | None = None, *, embedder: Embedder | None = None,
                 llm: LLMConfig | None = None) -> None:
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
        except BaseException:
            self.index.close()
            raise
        self.embedder = embedder
        self.searcher = Searcher(self.index, embedder)
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

    def stats(self) -> dict[str, Any]:
        m = self.index.manifest
        first, last = self.searcher.years
        return {"index": str(self.index.folder), "model": m.model, "built_at": m.built_at, **m.counts,
                "years": [first, last], "faiss": m.faiss}

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
        answer = None
        for event in self.ask_stream(question, k=k, mode=mode, history=history, **filters):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def ask_stream(self, question: str, *, k: int = 8, mode: Mode = "extractive",
                   history: Sequence[Mapping[str, str]] = (), **filters: Any) -> Iterator[str | Answer]:
        """Yield the answer's text as it should be shown now, then the finished Answer.

        Each text replaces the one before. It usually grows, but it can change: the checked version of an LLM reply
        (citations cleaned, unsupported sentences marked) replaces the raw one, and the extractive answer replaces
        a reply the server broke off.
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
        query = _retrieval_query(text, history)
        timings: dict[str, float] = {}
        vector = self.embedder.embed([query])[0]
        hits = self.searcher.search(query, k=k, filters=chosen, query_vector=vector)
        timings["search_ms"] = _ms(started)
        if mode == "llm":
            yield from self._llm_answer(question, text, hits, history, timings, started, vector)
            return
        answer = self._extractive(question, text, hits, timings, started, vector)
        yield from _stream_text(answer.text)
        yield answer

    def _extractive(self, question: str, text: str, hits: list[Hit], timings: dict[str, float],
                    started: float, vector: np.ndarray, *, notice: str | None = None) -> Answer:
        composing = time.perf_counter()
        extracts = pick_sentences(text, hits, self._idf, lambda sentences: self.embedder.embed(sentences) @ vector)
        verdict = judge(text, extracts, hits, years=self.searcher.years)
        if not verdict.answerable:
            timings.update(compose_ms=_ms(composing), total_ms=_ms(started))
            return _abstention(question, hits, verdict.reason, "extractive", timings, notice)
        body, citations = compose(extracts)
        timings.update(compose_ms=_ms(composing), total_ms=_ms(started))
        return Answer(question=question, text=body, citations=citations, hits=tuple(hits), mode="extractive",
                      notice=notice, timings=timings)

    def _llm_answer(self, question: str, text: str, hits: list[Hit], history: Sequence[Mapping[str, str]],
                    timings: dict[str, float], started: float, vector: np.ndarray) -> Iterator[str | Answer]:
        asking = time.perf_counter()
        reply = ""
        try:
            config = self.llm
            for delta in stream_chat(config, build_messages(text, hits, history=history)):
                reply += delta
                yield reply
        except LLMError as exc:
            timings["llm_ms"] = _ms(asking)
            answer = self._extractive(question, text, hits, timings, started, vector,
                                      notice=f"LLM mode failed, so this is the extractive answer. {exc}")
            yield from _stream_text(answer.text)
            yield answer
            return
        timings["llm_ms"] = _ms(asking)
        if not hits or reply.strip().rstrip(".") == NO_ANSWER.rstrip("."):
            timings["total_ms"] = _ms(started)
            yield _abstention(question, hits, "The model found no answer in the retrieved paragraphs.", "llm", timings)
            return
        checked = check_reply(reply, hits)
        notes = []
        if checked.dropped:
            notes.append(f"Removed citations of paragraphs that were not retrieved: {', '.join(checked.dropped)}.")
        if checked.unsupported:
            notes.append(f"{len(checked.unsupported)} sentence(s) are not supported by the paragraphs they cite "
                         "and are marked ⚠.")
        body = checked.text
        for sentence in checked.unsupported:
            body = body.replace(sentence, f"{sentence} ⚠", 1)
        timings["total_ms"] = _ms(started)
        yield body
        yield Answer(question=question, text=body, citations=checked.citations, hits=tuple(hits), mode="llm",
                     notice=" ".join(notes) or None, timings=timings, unsupported=checked.unsupported)

    def _idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term (as a prefix) over the indexed paragraphs."""
        total = self.index.manifest.counts.get("paragraphs", 1) or 1
        return max(0.1, math.log((total + 1) / (self.searcher.document_frequency(term, prefix=True) + 0.5)))


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


def _stream_text(text: str) -> Iterator[str]:
    """The text in growing prefixes, a few words at a time, so a chat can show it arriving."""
    pieces = re.findall(r"\S+\s*", text)
    for end in range(6, len(pieces), 6):
        yield "".join(pieces[:end])
    yield text


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
