"""Search filters, given as keyword arguments or typed inline in a query by users who know them.

    origin:Moscow year:2009 tag:TSPA classification:secret   what did Russia say about space security?
    origin:"Abu Dhabi" from:2009-06 to:2010 cable:09ASTANA664

``year:`` takes a year or a range (``2008-2009``); ``from:``/``to:`` take a year, a month or a day, and ``to:``
includes the whole period it names. Several ``tag:`` filters must all match.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any

from rag.errors import QueryError

__all__ = ["Filters", "make_filters", "parse_query"]

_INLINE = re.compile(
    r"(?<!\S)(?P<key>origin|year|from|to|tags?|classification|class|cable)"
    r":(?:\"(?P<quoted>[^\"]*)\"|(?P<plain>\S+))", re.IGNORECASE)
_PERIOD = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    origin: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    classification: str | None = None
    tags: tuple[str, ...] = ()
    cable_id: str | None = None

    def __bool__(self) -> bool:
        return any(v for v in (self.origin, self.date_from, self.date_to, self.classification, self.tags,
                               self.cable_id))

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if v}

    def describe(self) -> str:
        """The filters in the inline syntax, e.g. ``origin:Moscow from:2009-01-01 tag:TSPA``."""
        parts = []
        if self.origin:
            parts.append(f'origin:"{self.origin}"' if " " in self.origin else f"origin:{self.origin}")
        if self.date_from:
            parts.append(f"from:{self.date_from.isoformat()}")
        if self.date_to:
            parts.append(f"to:{self.date_to.isoformat()}")
        if self.classification:
            parts.append(f"classification:{self.classification}")
        parts += [f"tag:{t}" for t in self.tags]
        if self.cable_id:
            parts.append(f"cable:{self.cable_id}")
        return " ".join(parts)

    def merged(self, other: Filters) -> Filters:
        """These filters with ``other``'s given values on top (tags added)."""
        values = {k: v for k, v in asdict(other).items() if v and k != "tags"}
        return replace(self, **values, tags=tuple(dict.fromkeys(self.tags + other.tags)))


def _period(value: str | int | date, *, end: bool, name: str) -> date:
    if isinstance(value, date):
        return value
    match = _PERIOD.fullmatch(str(value).strip())
    if not match:
        raise QueryError(f"{name} {value!r} is not a date; write a year (2009), a month (2009-04) or a day "
                         "(2009-04-17)")
    year, month, day = int(match[1]), match[2], match[3]
    try:
        if day:
            return date(year, int(month), int(day))
        if month:
            m = int(month)
            return date(year, m, calendar.monthrange(year, m)[1] if end else 1)
        return date(year, 12, 31) if end else date(year, 1, 1)
    except ValueError:
        raise QueryError(f"{name} {value!r} is not a real date; write e.g. 2009-04-17") from None


def make_filters(*, origin: str | None = None, date_from: str | int | date | None = None,
                 date_to: str | int | date | None = None, year: str | int | None = None,
                 classification: str | None = None, tags: str | list[str] | tuple[str, ...] | None = None,
                 cable_id: str | None = None) -> Filters:
    """Filters from loosely typed values (as a CLI, a form or a keyword argument gives them).

    ``year`` is ``2009`` or ``"2008-2009"`` and sets both ends; ``tags`` is a list or a comma/space separated string.
    """
    if year not in (None, ""):
        first, _, last = str(year).partition("-") if re.fullmatch(r"\d{4}-\d{4}", str(year)) else (year, "", year)
        date_from = date_from or _period(first, end=False, name="year")
        date_to = date_to or _period(last, end=True, name="year")
    start = _period(date_from, end=False, name="from") if date_from not in (None, "") else None
    stop = _period(date_to, end=True, name="to") if date_to not in (None, "") else None
    if start and stop and start > stop:
        raise QueryError(f"the date range runs backwards: from {start} to {stop}; swap them")
    if isinstance(tags, str):
        tags = re.split(r"[,\s]+", tags)
    return Filters(
        origin=(origin or "").strip() or None,
        date_from=start,
        date_to=stop,
        classification=(classification or "").strip().upper() or None,
        tags=tuple(dict.fromkeys(t.strip().upper() for t in tags or () if t.strip())),
        cable_id=(cable_id or "").strip().upper() or None,
    )


def parse_query(text: str) -> tuple[str, Filters]:
    """Split inline ``key:value`` filters out of ``text``: (the words left, the filters they gave)."""
    values: dict[str, Any] = {}
    tags: list[str] = []

    def take(match: re.Match[str]) -> str:
        key = match["key"].lower()
        value = match["quoted"] if match["quoted"] is not None else match["plain"]
        if key in ("tag", "tags"):
            tags.extend(re.split(r"[,]+", value))
        else:
            values[{"from": "date_from", "to": "date_to", "class": "classification", "cable": "cable_id"}.get(key, key)] = value
        return " "

    rest = " ".join(_INLINE.sub(take, text).split())
    return rest, make_filters(**values, tags=tags)
