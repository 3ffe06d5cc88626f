"""An answer being written: typed text events while it grows, then the finished :class:`~rag.models.Answer`.

``Assistant.ask_stream`` returns an :class:`AnswerStream`::

    stream = assistant.ask_stream("Who wants Kazakhstan to join the MTCR?", mode="llm")
    for event in stream:          # TextEvent, in order
        show(event.shown)         # the whole text to show now (or append event.text when event.kind == "extend")
    answer = stream.answer()      # the finished, checked Answer

Callers never tell text from answer by type: events are text, ``answer()`` is the answer. The last event's ``shown``
is always the answer's text, so a display that only follows the events ends on what ``ask`` returns.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from rag.models import Answer, _Record

__all__ = ["AnswerStream", "Piece", "TextEvent", "extending"]

T = TypeVar("T")

Kind = Literal["extend", "replace"]
Piece = tuple[Kind, str]
"""What a producer yields: ``("extend", delta)`` or ``("replace", whole_text)``; AnswerStream adds ``shown``."""


@dataclass(frozen=True, slots=True)
class TextEvent(_Record):
    """Text to show now.

    ``kind`` says how ``text`` relates to what was shown before: ``"extend"`` appends it (a model's next tokens,
    the next words of an extractive answer); ``"replace"`` discards everything shown and shows ``text`` instead
    (the checked version of a model's reply, or the extractive answer when the reply could not be used).
    ``shown`` is the whole text to show after this event, whichever the kind.
    """

    kind: Kind
    text: str
    shown: str


class AnswerStream:
    """Iterate for :class:`TextEvent`; then :meth:`answer` gives the finished Answer (running what is left first).

    Iterating a finished stream again replays its events; one that failed raises its error again. Not for sharing
    between threads.
    """

    def __init__(self, pieces: Generator[Piece, None, Answer]) -> None:
        self._pieces = pieces
        self._events: list[TextEvent] = []
        self._answer: Answer | None = None
        self._error: Exception | None = None

    @property
    def result(self) -> Answer | None:
        """The finished Answer, or ``None`` while the stream is still running."""
        return self._answer

    @property
    def shown(self) -> str:
        """The text shown so far."""
        return self._events[-1].shown if self._events else ""

    def __iter__(self) -> Iterator[TextEvent]:
        if self._answer is not None:
            yield from list(self._events)
            return
        if self._error is not None:
            raise self._error
        while True:
            try:
                kind, text = next(self._pieces)
            except StopIteration as done:
                self._answer = done.value
                break
            except Exception as exc:
                self._error = exc
                raise
            yield self._record(kind, text)
        if self._answer.text != self.shown:
            yield self._record("replace", self._answer.text)

    def answer(self) -> Answer:
        """The finished Answer; events not yet read are run through (and kept for a replay)."""
        for _ in self:
            pass
        assert self._answer is not None
        return self._answer

    def close(self) -> None:
        """Stop early (a reader left): the producer's ``finally`` blocks run, an open server stream is closed."""
        self._pieces.close()

    def _record(self, kind: Kind, text: str) -> TextEvent:
        event = TextEvent(kind, text, self.shown + text if kind == "extend" else text)
        self._events.append(event)
        return event


def extending(deltas: Generator[str, None, T]) -> Generator[Piece, None, T]:
    """Each text delta of ``deltas`` as an ``extend`` piece; returns what ``deltas`` returns, and closes it early
    when the stream is closed (so an open server connection goes with it)."""
    try:
        while True:
            try:
                delta = next(deltas)
            except StopIteration as done:
                return done.value
            yield "extend", delta
    finally:
        deltas.close()
