"""Readers for the four corpus formats, each turning a file into :class:`Record` items (or :class:`Skip`).

A reader does no cable parsing: it finds the raw cable text (routing header + body) and whatever metadata
the container carries, and says what was wrong with anything it cannot read. The big formats (JSON lines,
``cables.csv``) are read a line at a time, so memory stays flat whatever the file size.

Decoding is UTF-8 with ``errors="replace"``: invalid bytes become U+FFFD and the record carries a note.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, NamedTuple

__all__ = [
    "Record",
    "Row",
    "Skip",
    "decode",
    "page_record",
    "read_cables_csv",
    "read_html_page",
    "read_jsonl",
    "read_text_file",
    "unwrap_row",
]

INVALID_UTF8 = "invalid UTF-8 replaced with U+FFFD"
# A cables.csv row longer than this without its closing quote is garbage, not a cable: give up on it rather
# than hold the rest of a 1.7 GB file in memory.
MAX_ROW_CHARS = 8_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """Raw cable text for the parser, plus what the container knows about it (None/() where nothing)."""

    source: str
    text: str
    id: str | None = None
    date: datetime | None = None
    origin: str | None = None
    classification: str | None = None
    subject: str | None = None
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Skip(NamedTuple):
    source: str
    reason: str


def decode(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """UTF-8 text and the notes to attach (one when bytes had to be replaced)."""
    try:
        return raw.decode("utf-8"), ()
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), (INVALID_UTF8,)


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _clean(value: object) -> str | None:
    """A metadata string, or None for anything empty or not a string."""
    return (value.strip() or None) if isinstance(value, str) else None


def _site_date(value: object) -> datetime | None:
    """``YYYY-MM-DD HH:MM`` (UTC) as the site prints it, minutes dropped: the site put the hour there."""
    text = _clean(value)
    try:
        return datetime.strptime(text[:13], "%Y-%m-%d %H").replace(tzinfo=timezone.utc) if text else None
    except ValueError:
        return None


# --- text files --------------------------------------------------------------------------------------------


def read_text_file(path: Path) -> Iterator[Record | Skip]:
    """One cable per file, as in ``seeds/``: the whole file is the raw text."""
    raw = path.read_bytes()
    if not raw.strip():
        yield Skip(str(path), "empty file: a cable text file needs the routing header and body")
    elif b"\0" in raw[:8192]:
        yield Skip(str(path), "binary file (NUL bytes): not cable text")
    else:
        text, notes = decode(raw)
        yield Record(source=str(path), text=text, notes=notes)


# --- JSON lines (the shared corpus) ------------------------------------------------------------------------

_CONTINUATION = re.compile(r"\\\n")
# Where the row's text field ends: an (escaped) tab before another field, or the next row's number.
_ROW_END = re.compile(r"\\?\t|\n+\d+\t")
_ROW_TAIL = re.compile(r"\s*(?:\\v?\s*)?\Z")
_ROW_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
_ROW_REFS = re.compile(r"\d\d[A-Z][A-Z0-9]*\d(?:\|\d\d[A-Z][A-Z0-9]*\d)*")


class Row(NamedTuple):
    """What a raw cables.csv row inside a page body gives: the cable text and the row's own metadata."""

    text: str
    date: datetime | None
    references: tuple[str, ...]


def unwrap_row(body: str) -> Row | None:
    """The parts of a body that holds a raw tab-separated cables.csv row; None for any other body.

    Such a row (61 corpus cables) reads ``[row no] date id origin classification refs header <TAB> text``
    with every line ending in ``\\``; a few run on into a duplicate or the next row after another tab. We
    keep the text field without the line-end backslashes (the header is already the record's ``header``),
    and the row's date and references, which are exact where the page's are not.
    """
    first = body.partition("\n")[0]
    if "\t" not in first or not first.rstrip().endswith("\\"):
        return None
    prefix = first.split("\t")[:-1]
    header_and_text = body[len("\t".join(prefix)) + 1 :]
    _header, tab, text = header_and_text.partition("\t")
    text = text if tab else header_and_text
    end = _ROW_END.search(text)
    if end:
        text = text[: end.start()]
    dates = [f for f in prefix if _ROW_DATE.fullmatch(f[:16])]
    refs = prefix[-1] if _ROW_REFS.fullmatch(prefix[-1]) else ""
    return Row(
        text=_ROW_TAIL.sub("", _CONTINUATION.sub("\n", text)),
        date=datetime.strptime(dates[0][:16], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc) if dates else None,
        references=tuple(refs.split("|")) if refs else (),
    )


def _site_record(source: str, data: dict[str, object], notes: tuple[str, ...]) -> Record | Skip:
    """A record in the corpus's JSON form (also what :func:`page_record` builds from a page)."""
    body = data.get("body")
    if not isinstance(body, str) or not body.strip():
        keys = ", ".join(sorted(data)) or "none"
        return Skip(source, f"no cable text: expected a non-empty 'body' string (keys: {keys})")
    header = data.get("header")
    row = unwrap_row(body)
    text = row.text if row else body
    text = f"{header}\n\n{text}" if isinstance(header, str) and header.strip() else text
    tags = data.get("tags_linked")
    return Record(
        source=source,
        text=text,
        id=_clean(data.get("id")),
        date=(row.date if row else None) or _site_date(data.get("created")),
        origin=_clean(data.get("origin")),
        classification=_clean(data.get("classification")),
        subject=_clean(data.get("subject_from_page_title")),
        tags=tuple(t for t in tags if isinstance(t, str) and t) if isinstance(tags, list) else (),
        references=row.references if row else (),
        notes=notes,
    )


def read_jsonl(path: Path) -> Iterator[Record | Skip]:
    """One JSON object per line, plain or gzip; blank lines are ignored."""
    lineno = 0
    try:
        with _open_binary(path) as stream:
            for lineno, raw in enumerate(stream, 1):
                if raw.strip():
                    yield _jsonl_line(f"{path}:{lineno}", raw)
    except (OSError, EOFError) as err:
        yield Skip(str(path), f"unreadable after line {lineno} ({err}); the rest is lost: is the file complete?")


def _jsonl_line(source: str, raw: bytes) -> Record | Skip:
    if b"\0" in raw:
        return Skip(source, "binary data (NUL bytes) where a JSON line was expected")
    text, notes = decode(raw)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return Skip(source, f"not JSON ({err.msg} at column {err.colno}): {text[:60].strip()!r}")
    if not isinstance(data, dict):
        return Skip(source, f"JSON {type(data).__name__}, expected an object with 'header' and 'body'")
    return _site_record(source, data, notes)


# --- the cablegate site's HTML pages ------------------------------------------------------------------------

_PRE = re.compile(r"<pre>(.*?)</pre>", re.S)
_SITE_LINK = re.compile(
    r"<a (?:href=['\"]/tag/[^'\"]*['\"]|id=['\"]par\d+['\"] href=['\"]#par\d+['\"])>(.*?)</a>", re.S
)
_TAG_LINK = re.compile(r"<a href=['\"]/tag/[^'\"]*['\"]>(.*?)</a>", re.S)
_CHAR_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,6})|([0-9]{1,7}));")
_TABLE = re.compile(r"<table class=['\"]cable['\"]>(.*?)</table>", re.S)
_META_LINK = re.compile(r"<a href=['\"]/(cable|date|classification|origin)/[^'\"]*['\"][^>]*>([^<]*)</a>")
_TITLE = re.compile(r"<h3>Viewing cable ([^,<]+),(.*?)</h3>", re.S)


def _char(match: re.Match[str]) -> str:
    code = int(match[1], 16) if match[1] else int(match[2])
    return chr(code) if 0 < code <= 0x10FFFF else match[0]


def _pre_text(block: str) -> str:
    # Only numeric references are decoded: the pages leave raw '&' and '<' in the text, so '&amp;' there may
    # be a cable's own characters (SOURCE.md).
    return _CHAR_REF.sub(_char, _SITE_LINK.sub(r"\1", block))


def page_record(page: str, *, source: str, notes: tuple[str, ...] = ()) -> Record | Skip:
    """The cable on one cablegate page: the two ``<pre>`` blocks (header, body) and the page's metadata."""
    blocks = _PRE.findall(page)
    if not blocks:
        return Skip(source, "no <pre> cable text: not a cablegate cable page")
    *head, body = blocks[:2]
    table = _TABLE.search(page)
    meta: dict[str, str] = {}
    for kind, value in _META_LINK.findall(table[1] if table else ""):
        meta.setdefault(kind, value)
    title = _TITLE.search(page)
    data = {
        "id": meta.get("cable") or (title[1] if title else None),
        "created": meta.get("date"),
        "classification": meta.get("classification"),
        "origin": meta.get("origin"),
        "subject_from_page_title": title[2] if title else None,
        "tags_linked": _TAG_LINK.findall(body),
        "header": _pre_text(head[0]) if head else None,
        "body": _pre_text(body),
    }
    return _site_record(source, data, notes)


def read_html_page(path: Path) -> Iterator[Record | Skip]:
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        yield Skip(str(path), "binary file (NUL bytes): not an HTML page")
        return
    page, notes = decode(raw)
    yield page_record(page, source=str(path), notes=notes)


# --- the Cablegate cables.csv dump -------------------------------------------------------------------------

# cables.csv is not RFC 4180: quotes inside fields are backslash-escaped (\" \'), fields span lines, and the
# csv module would need a global field_size_limit change and cannot resynchronise after a broken row.
_ROW_START = re.compile(r'"\d+","[^"\\\n]{0,40}","')
_QUOTE_OR_ESCAPE = re.compile(r'\\.|"', re.S)
_FIELD = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"(,|\r?\n|$)', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)
_CSV_FIELDS = 8


def read_cables_csv(path: Path) -> Iterator[Record | Skip]:
    """Rows of ``cables.csv``: 8 quoted fields, no header row (row no, date, id, origin, classification,
    pipe-separated references, header, text)."""
    try:
        with _open_binary(path) as stream:
            yield from _csv_rows(str(path), _numbered_lines(stream))
    except (OSError, EOFError) as err:
        yield Skip(str(path), f"unreadable ({err}); rows after this point are lost: is the file complete?")


def _numbered_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, str, bool]]:
    for lineno, raw in enumerate(stream, 1):
        try:
            yield lineno, raw.decode("utf-8"), False
        except UnicodeDecodeError:
            yield lineno, raw.decode("utf-8", errors="replace"), True


def _csv_rows(path: str, lines: Iterable[tuple[int, str, bool]]) -> Iterator[Record | Skip]:
    parts: list[str] = []  # lines of the row being read
    size = start = 0
    in_quote = replaced = False
    lineno = 0
    junk: int | None = None  # first line of text outside any row; 0 while dropping an oversized row's rest
    for lineno, line, bad in lines:
        starts_row = line.startswith('"') and _ROW_START.match(line) is not None
        if parts and in_quote and starts_row:
            yield Skip(f"{path}:{start}", f"truncated row: no closing quote before the next row at line {lineno}")
            parts = []
        if not parts:
            if not starts_row:
                if junk is None and line.strip():
                    junk = lineno
                continue
            if junk:
                yield _junk(path, junk, lineno - 1)
            junk, start, size, in_quote, replaced = None, lineno, 0, False, False
        parts.append(line)
        size += len(line)
        replaced = replaced or bad
        if '"' in line:  # most lines of a text field have none: skip the scan
            for token in _QUOTE_OR_ESCAPE.finditer(line):
                if token[0] == '"':
                    in_quote = not in_quote
        if in_quote and size > MAX_ROW_CHARS:
            yield Skip(f"{path}:{start}", f"row runs past {MAX_ROW_CHARS:,} characters without its closing quote")
            parts, junk = [], 0
        elif not in_quote:
            yield _csv_record(f"{path}:{start}", "".join(parts), replaced)
            parts = []
    if parts:
        yield Skip(f"{path}:{start}", "truncated row: the file ends inside a quoted field")
    elif junk:
        yield _junk(path, junk, lineno)


def _junk(path: str, first: int, last: int) -> Skip:
    expected = "a cables.csv row starts with its quoted row number and date: \"1\",\"12/28/1966 18:48\","
    return Skip(f"{path}:{first}", f"lines {first}-{last} are not cables.csv rows; {expected}")


def _split_row(row: str) -> list[str] | None:
    fields: list[str] = []
    pos = 0
    while True:
        match = _FIELD.match(row, pos)
        if not match:
            return None
        fields.append(_ESCAPE.sub(r"\1", match[1]))
        pos = match.end()
        if match[2] != ",":
            return fields if not row[pos:].strip() else None


def _csv_record(source: str, row: str, replaced: bool) -> Record | Skip:
    fields = _split_row(row)
    if fields is None:
        return Skip(source, f"malformed row, expected comma-separated double-quoted fields: {row[:60]!r}")
    if len(fields) != _CSV_FIELDS:
        return Skip(source, f"row has {len(fields)} fields, expected {_CSV_FIELDS}: {row[:60]!r}")
    _number, created, cable_id, origin, classification, references, header, text = fields
    try:
        date = datetime.strptime(created.strip(), "%m/%d/%Y %H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        date = None
    return Record(
        source=source,
        text=f"{header}\n\n{text}" if header.strip() else text,
        id=_clean(cable_id),
        date=date,
        origin=_clean(origin),
        classification=_clean(classification),
        references=tuple(ref.strip() for ref in references.split("|") if ref.strip()),
        notes=(INVALID_UTF8,) if replaced else (),
    )
