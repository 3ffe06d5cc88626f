"""Search filters, given as keyword arguments or typed inline in a query by users who know them.

    origin:Moscow year:2009 tag:TSPA classification:secret   what did Russia say about space security?
    origin:"Abu Dhabi" from:2009-06 to:2010 cable:09ASTANA664

``year:`` takes a year or a range (``2008-2009``); ``from:``/``to:`` take a year, a month or a day, and ``to:``
includes the whole period it names. Several ``tag:`` filters must all match.
"""

from __future__ import annotations

import calendar
import difflib
import re
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from rag.errors import QueryError

if TYPE_CHECKING:
    from rag.store import Store, Where

__all__ = ["Filters", "compile_filters", "make_filters", "parse_query"]

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


def compile_filters(filters: Filters, store: Store) -> Where | None:
    """The search condition for ``filters`` on ``store``, None when there are none.

    Each filter is first checked alone, so that one matching nothing is named, with the indexed values nearest to
    it ("did you mean 'Embassy Moscow'?"), rather than the search quietly returning nothing.
    """
    if not filters:
        return None
    first, last = store.year_range()
    for name, bound in (("from", filters.date_from), ("to", filters.date_to)):
        if bound is not None and (first is None or not first - 1 <= bound.year <= last + 1):
            raise QueryError(f"date {bound.isoformat()} is outside the indexed cables' dates ({first}–{last}); "
                             "choose a date in that range")
    if filters.origin:
        _check_value(store, Filters(origin=filters.origin), "origin", filters.origin, "origin")
    if filters.classification:
        _check_value(store, Filters(classification=filters.classification), "classification",
                     filters.classification, "classification")
    for tag in filters.tags:
        _check_value(store, Filters(tags=(tag,)), "tag", tag, "tag")
    if filters.cable_id:
        _check_value(store, Filters(cable_id=filters.cable_id), "cable", filters.cable_id, "id")
    if filters.date_from or filters.date_to:
        dated = Filters(date_from=filters.date_from, date_to=filters.date_to)
        if not store.any_cable(store.where(dated)):
            _no_cable_dated(store, dated)
    return store.where(filters)


def _check_value(store: Store, alone: Filters, name: str, value: str, field: str) -> None:
    if store.any_cable(store.where(alone)):
        return
    known = store.distinct(field)
    # A value is also matched by its last words, so that "Moskow" finds "Embassy Moscow".
    lookup: dict[str, str] = {}
    for k in known:
        words = k.upper().split()
        for i in range(len(words)):
            lookup.setdefault(" ".join(words[i:]), k)
    close = list(dict.fromkeys(lookup[c] for c in difflib.get_close_matches(value.upper(), lookup, n=6,
                                                                             cutoff=0.6)))[:3]
    if close:
        hint = f"did you mean {', '.join(repr(c) for c in close)}?"
    else:
        hint = (f"{len(known)} {'value is' if len(known) == 1 else 'values are'} indexed: "
                f"{', '.join(known[:5])}{', …' if len(known) > 5 else ''}")
    raise QueryError(f"no indexed cable has {name} {value!r}; {hint}")


def _no_cable_dated(store: Store, dated: Filters) -> None:
    """A date range inside the indexed years can still fall between cables: say which dates are nearest."""
    start = (dated.date_from or date.min).isoformat()
    stop = (dated.date_to + timedelta(days=1)).isoformat() if dated.date_to else date.max.isoformat()
    before, after = store.nearest_dates(start, stop)
    asked = " ".join(f"{word} {bound.isoformat()}" for word, bound in
                     (("from", dated.date_from), ("to", dated.date_to)) if bound)
    nearest = " and ".join(d[:10] for d in (before, after) if d)
    raise QueryError(f"no indexed cable is dated {asked}; the nearest cables are dated {nearest}")
