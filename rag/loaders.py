"""Load cables from whatever form they come in, streaming, and never stop on bad input.

``load_cables(path)`` accepts:

- a cable text file in the seeds' form (``.txt`` or no extension): routing header + body, one cable;
- JSON lines, plain or ``.gz``, in the shared corpus form (``id``, ``created``, ``header``, ``body``, ...);
- the Cablegate ``cables.csv`` dump (``.csv``, or ``.csv.gz``): 8 quoted fields, backslash escapes;
- a cablegate site page (``.html``/``.htm``): the two ``<pre>`` blocks plus the page's metadata;
- a folder: every file above found recursively, in sorted order; hidden entries and other extensions are
  left alone. A file named explicitly with another extension is sniffed from its first bytes.

Where a container's metadata and the parsed text disagree, this is who wins (:func:`merge`):

- ``id``: the record's. It is the canonical published reference, the one citations and tests compare.
  It is handed to the parser (so texts that cannot yield an id, partial extracts and old telegrams, still
  parse) and every paragraph's ``cable_id`` carries it.
- ``date``: the text's DTG (``O 241051Z FEB 10``, UTC). The record's date is the fallback only, in UTC like
  the DTG: cables.csv's time and that of a raw row inside a page body are kept whole; the page's
  ``created`` keeps date and hour only, since the site printed the hour where the minutes belong.
- ``origin`` and ``classification``: the record's when present (the site's normalised forms, such as
  "Embassy Abu Dhabi" and SECRET//NOFORN), else the text's.
- ``tags`` and ``references``: the record's when non-empty (site tag links, cables.csv reference ids),
  else the text's.
- ``subject``: the text's SUBJECT line; the record's (the page title, a stray trailing ``\\`` or ``<br>``
  removed) only when the text has none.

A cable whose release holds no paragraph text (the site cut it short after the header) loads with zero
paragraphs, and the report notes it (:data:`NO_TEXT`).

Bad input (empty, binary, not a cable, JSON that is not JSON, a truncated row) is skipped and the load goes
on. Each skip is logged as a warning on the ``rag.loaders`` logger and recorded, with its source (path, and
line for files holding many cables) and the reason, in the :class:`LoadReport` the caller passed. Invalid
UTF-8 is decoded with replacement characters; such cables load, with a note.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.errors import CableParseError
from rag.formats import (
    Record,
    Skip,
    read_cables_csv,
    read_html_page,
    read_jsonl,
    read_text_file,
)
from rag.models import Cable
from rag.parser import parse_cable

__all__ = ["NO_TEXT", "LoadReport", "detect_format", "load_cables", "merge"]

log = logging.getLogger(__name__)
# Skips are recorded in the LoadReport, which callers print. Without a handler of its own, a program that configures
# no logging would print each warning a second time through logging's last-resort handler.
log.addHandler(logging.NullHandler())

_READERS = {"text": read_text_file, "jsonl": read_jsonl, "csv": read_cables_csv, "html": read_html_page}
_SUFFIXES = (
    ((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz"), "jsonl"),
    ((".csv", ".csv.gz"), "csv"),
    ((".html", ".htm"), "html"),
    ((".txt",), "text"),
)
NO_TEXT = "no paragraph text after the header (the release was cut short): zero paragraphs"
_CSV_START = re.compile(rb'\s*"\d+","')
_SUBJECT_JUNK = re.compile(r"(?:\s*(?:\\|<br\s*/?>))+\s*\Z", re.I)


@dataclass
class LoadReport:
    """What a load did. Pass one in, read it when the iterator is exhausted."""

    loaded: int = 0
    skipped: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (source, reason), one per skip
    notes: list[tuple[str, str]] = field(default_factory=list)  # (source, note) about cables that loaded

    def summary(self) -> str:
        return f"loaded {self.loaded} cables, skipped {self.skipped}"


def load_cables(path: str | os.PathLike[str], *, report: LoadReport | None = None) -> Iterator[Cable]:
    """Yield every cable under ``path`` (a file or a folder), one at a time.

    Raises FileNotFoundError at once when ``path`` does not exist; everything found wrong later is skipped
    and recorded in ``report``.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(
            f"cannot load cables from {str(root)!r}: no such file or folder; pass a cable .txt, .jsonl(.gz), "
            ".csv or .html file, or a folder holding them"
        )
    return _load(root, report if report is not None else LoadReport())


def detect_format(path: Path) -> str | None:
    """``"text"``, ``"jsonl"``, ``"csv"`` or ``"html"`` from the file name; None for a name we do not read."""
    name = path.name.lower()
    for suffixes, fmt in _SUFFIXES:
        if name.endswith(suffixes):
            return fmt
    return "text" if not path.suffix else None


def merge(cable: Cable, record: Record) -> Cable:
    """The parsed cable with the record's metadata applied by the precedence in this module's docstring."""
    cable_id = record.id or cable.id
    paragraphs = cable.paragraphs
    if cable_id != cable.id:
        paragraphs = tuple(replace(p, cable_id=cable_id) for p in paragraphs)
    subject = cable.subject or (_SUBJECT_JUNK.sub("", record.subject) if record.subject else None)
    return replace(
        cable,
        id=cable_id,
        paragraphs=paragraphs,
        date=cable.date or record.date,
        origin=record.origin or cable.origin,
        classification=record.classification or cable.classification,
        subject=subject or None,
        tags=record.tags or cable.tags,
        references=record.references or cable.references,
        source=record.source,
    )


def _load(root: Path, report: LoadReport) -> Iterator[Cable]:
    for item in _items(root):
        if isinstance(item, Skip):
            _skip(report, item.source, item.reason)
            continue
        cable = _parse(item, report)
        if cable is not None:
            report.loaded += 1
            yield cable


def _items(root: Path) -> Iterator[Record | Skip]:
    if root.is_file():
        yield from _file_items(root, detect_format(root) or _sniff(root))
        return
    unreadable: list[OSError] = []  # os.walk reports a folder it cannot list here, and goes on
    for folder, dirs, files in os.walk(root, onerror=unreadable.append):
        yield from _unreadable_folders(unreadable)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            fmt = detect_format(path)
            if fmt is None or name.startswith("."):
                log.debug("not a cable file, left alone: %s", path)
                continue
            yield from _file_items(path, fmt)
    yield from _unreadable_folders(unreadable)


def _unreadable_folders(errors: list[OSError]) -> Iterator[Skip]:
    while errors:
        err = errors.pop(0)
        yield Skip(str(err.filename), f"cannot read the folder: {err.strerror or err}")


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            head = stream.read(512).lstrip()
    except OSError:
        return "text"  # the reader will hit the same error and report it
    if head.startswith(b"{"):
        return "jsonl"
    if _CSV_START.match(head):
        return "csv"
    return "html" if head.lower().startswith((b"<!doctype html", b"<html")) else "text"


def _file_items(path: Path, fmt: str) -> Iterator[Record | Skip]:
    found = False
    try:
        for item in _READERS[fmt](path):
            found = True
            yield item
    except OSError as err:
        yield Skip(str(path), f"cannot read the file: {err.strerror or err}")
        return
    if not found:
        yield Skip(str(path), f"empty file: no cable records in this {fmt} file")


def _parse(record: Record, report: LoadReport) -> Cable | None:
    try:
        cable = parse_cable(record.text, source=record.source, cable_id=record.id)
    except CableParseError as err:
        where = f" (line {err.line} of the cable text)" if err.line is not None else ""
        _skip(report, record.source, f"{_named(record)}{err.reason}{where}")
        return None
    except Exception as err:  # noqa: BLE001 - a parser bug on one odd cable must not end a 250,000-cable load
        log.debug("parser failed on %s", record.source, exc_info=True)
        _skip(report, record.source, f"{_named(record)}parser failed ({type(err).__name__}: {err}); a parser bug")
        return None
    for note in (*record.notes, *(() if cable.paragraphs else (NO_TEXT,))):
        report.notes.append((record.source, note))
        log.warning("%s: %s; loaded anyway", record.source, note)
    return merge(cable, record)


def _named(record: Record) -> str:
    return f"{record.id}: " if record.id else ""


def _skip(report: LoadReport, source: str, reason: str) -> None:
    report.skipped += 1
    report.problems.append((source, reason))
    log.warning("skipped %s: %s", source, reason)
