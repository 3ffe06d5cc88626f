"""The records that flow between stages: Cable → Paragraph → Hit → Citation → Answer.

Every record is a frozen dataclass with ``to_dict()`` giving plain JSON types, so the CLI's ``--json``,
the UI and the evaluation all speak the same shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Answer", "Cable", "Citation", "Hit", "Paragraph", "citation_key"]


def citation_key(cable_id: str, number: int) -> str:
    """The one spelling of a paragraph citation, e.g. ``09ASTANA664 ¶6``."""
    return f"{cable_id} ¶{number}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(self)


@dataclass(frozen=True, slots=True)
class Paragraph(_Record):
    """One paragraph as the cable numbers it.

    ``number`` is the cable's own number. Number 0 is the *lead*: text between the header and ¶1 that is
    not header (a summary, a "Classified By" rationale followed by prose). ``numbered=False`` marks a
    cable that numbers nothing, whose paragraphs are counted in reading order instead.
    """

    cable_id: str
    number: int
    text: str
    marking: str | None = None
    heading: str | None = None
    numbered: bool = True

    @property
    def ref(self) -> str:
        return citation_key(self.cable_id, self.number)


@dataclass(frozen=True, slots=True)
class Cable(_Record):
    id: str
    date: datetime | None
    origin: str | None
    classification: str | None
    subject: str | None
    paragraphs: tuple[Paragraph, ...]
    to: tuple[str, ...] = ()
    info: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    signer: str | None = None
    source: str | None = None

    @property
    def level(self) -> str | None:
        """The classification without caveats: UNCLASSIFIED, CONFIDENTIAL, SECRET or TOP SECRET."""
        if not self.classification:
            return None
        return self.classification.split("//")[0]

    def paragraph(self, number: int) -> Paragraph | None:
        return next((p for p in self.paragraphs if p.number == number), None)


@dataclass(frozen=True, slots=True)
class Hit(_Record):
    """A retrieved paragraph, its cable's metadata, and how each method ranked (1 = best) and scored it.

    ``cable`` carries the metadata only (its ``paragraphs`` are empty): ``Assistant.cable(id)`` gives the whole.
    """

    paragraph: Paragraph
    cable: Cable
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return self.paragraph.ref


@dataclass(frozen=True, slots=True)
class Citation(_Record):
    cable_id: str
    paragraph: int
    quote: str
    subject: str | None = None
    date: datetime | None = None
    supported: bool = True

    @property
    def ref(self) -> str:
        return citation_key(self.cable_id, self.paragraph)


@dataclass(frozen=True, slots=True)
class Answer(_Record):
    """What ``ask`` returns. ``text`` is Markdown whose citations read ``[09ASTANA664 ¶6]``."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    mode: str
    abstained: bool = False
    notice: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    """Sentences of ``text`` (LLM mode) that no cited paragraph supports; the text marks them with ⚠."""
