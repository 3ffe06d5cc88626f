"""The parts of a cable above its paragraphs: routing header, classification line and labelled fields.

Pure functions over strings. The routing header (``VZCZC…``, ``DE RUEHTA #0664/01``, the date-time
group, ``FM``/``TO``/``INFO``) and the body's preamble (classification line, ``E.O.``, ``TAGS``,
``SUBJECT``, ``REF``, ``Classified By``) come in many shapes, run together on one line in reflowed
texts, so each field is found by its label rather than by its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "ClassificationLine",
    "Fields",
    "drop_header_repeat",
    "find_classification_line",
    "find_date",
    "find_dtg",
    "find_fields",
    "full_year",
    "parse_references",
    "reference_of",
    "routing_field",
]

_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}

# ``O 171208Z APR 09``: precedence, day, hour, minute, Z, month, two-digit year. Partial extracts keep
# only ``201247Z Jan 04``.
_DTG = re.compile(
    r"\b(?:[ZOPRI]{1,2}\s+)?(\d{2})(\d{2})(\d{2})Z\s+(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\s+(\d{2}|\d{4})\b",
    re.IGNORECASE,
)

_LEVELS = (
    ("TOP SECRET", r"T\s?O\s?P\s+S\s?E\s?C\s?R\s?E\s?T"),
    ("CONFIDENTIAL", r"C\s?O\s?N\s?F\s?I\s?D\s?E\s?N\s?T\s?I\s?A\s?L"),
    ("SECRET", r"S\s?E\s?C\s?R\s?E\s?T"),
    ("UNCLASSIFIED", r"U\s?N\s?C\s?L\s?A\s?S(?:\s?S\s?I\s?F\s?I\s?E\s?D)?"),
)
_CLASSIFICATION = re.compile(
    r"^[ \t\",]*(?:\(U\)\s*|Cable dated:\s*[\dT:-]+)?(?P<level>" + "|".join(f"(?:{p})" for _, p in _LEVELS) + r")\b(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_POST_AND_NUMBER = re.compile(
    r"^(?:[/\s]*(?:NOFORN|SENSITIVE|SIPDIS|EXDIS|NODIS|LIMDIS|FOUO)\b)*"
    r"\s*(?:SECTION\s+\d+\s+OF\s+\d+\s+)?(?!SECTION\b)(?P<post>[A-Z][A-Z .'-]*?)\s+0*(?P<number>\d{1,7})(?!\d)",
    re.IGNORECASE,
)
_CAVEATS = ("NOFORN", "SENSITIVE", "EXDIS", "NODIS", "LIMDIS")


@dataclass(frozen=True, slots=True)
class ClassificationLine:
    level: str
    post: str | None
    number: int | None
    caveats: tuple[str, ...]
    end: int
    """Offset just past the line in the text it was found in."""


def find_dtg(text: str) -> datetime | None:
    """The first date-time group in ``text``, as an aware UTC datetime."""
    for m in _DTG.finditer(text):
        day, hour, minute, month, year = m.groups()
        whole = int(year) if len(year) == 4 else full_year(int(year))
        try:
            return datetime(whole, _MONTHS[month.upper()], int(day), int(hour), int(minute),
                            tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


_ISO_DATE = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d))?")


def find_date(text: str) -> datetime | None:
    """The DTG, or else the first ISO date (``Cable dated:2005-07-15T15:24:00``, a cables.csv row's date)."""
    found = find_dtg(text)
    if found:
        return found
    for m in _ISO_DATE.finditer(text):
        year, month, day, hour, minute = (int(g) if g else 0 for g in m.groups())
        try:
            return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def full_year(two_digits: int) -> int:
    """The year of a DTG's or a reference's two digits."""
    # The Cablegate release spans 1966–2010: a two-digit year above 50 is from the 1900s.
    return 1900 + two_digits if two_digits > 50 else 2000 + two_digits


def find_classification_line(text: str) -> ClassificationLine | None:
    """The body's classification line: ``UNCLAS SECTION 01 OF 03 ASTANA 000664``, ``C O N F I D E N T I A L
    CAIRO 002133``, lower-cased in partial extracts."""
    first: ClassificationLine | None = None
    for m in _CLASSIFICATION.finditer(text):
        rest = m.group("rest")
        if re.match(r"\s*(?:BY|//|[:(])", rest, re.IGNORECASE) and not re.match(r"\s*//\s*NOFORN", rest, re.I):
            continue
        post_number = _POST_AND_NUMBER.match(rest)
        post = number = None
        if post_number and not re.search(r"\bOF\s*$", post_number.group("post"), re.IGNORECASE):
            post = re.sub(r"\s+", " ", post_number.group("post")).strip().upper()
            number = int(post_number.group("number"))
        following = text[m.end(): m.end() + 120].upper()
        caveats = tuple(c for c in _CAVEATS if c in rest.upper() or re.search(rf"^\s*{c}\b", following, re.M))
        found = ClassificationLine(_level_of(m.group("level")), post, number, caveats, m.end())
        if post is not None:
            return found
        # Old telegrams repeat a bare "CONFIDENTIAL" above the line that names post and number.
        first = first or found
        if m.start() > 4000:
            break
    return first


# The one-line header repeat ending a release the site cut short: the classification line with its
# six-digit number, then E.O., then TAGS and their codes to the end of the line.
_HEADER_REPEAT = (
    re.compile(r"\b\d{6}\b"), re.compile(r"\bE\.\s?O\."), re.compile(r"\bTAGS\b:?(?:[ \t,]+[A-Z][A-Z0-9_]{1,7})+$"))


def drop_header_repeat(text: str) -> str:
    """``text`` without the one-line repeat of its header that ends a release the site cut short
    (08STOCKHOLM510): it is no text of the cable, and would read as a paragraph or as its fields."""
    cut = text.rstrip().rfind("\n")
    last = text[cut + 1:].strip()
    at = 0
    for part in _HEADER_REPEAT:
        m = part.search(last, at) if 0 < cut and len(last) < 700 else None
        if m is None:
            return text
        at = m.end()
    return text[:cut]


def routing_field(routing: str, label: str, *, block: bool = False) -> str | None:
    """``FM``'s value, or with ``block`` every line from ``TO``/``INFO`` until the next routing field."""
    m = re.search(rf"^{label}\s+(.+)$", routing, re.MULTILINE)
    if not m:
        return None
    if not block:
        return m.group(1).strip()
    stop = re.compile(r"^(?:INFO|BT|[A-Z ]*UNCLAS|[A-Z]\s?[A-Z]\s?[A-Z]\s|E\.O\.|TAGS|SUBJ)|^\s*$", re.M)
    end = stop.search(routing, m.end() + 1)
    return routing[m.start(1): end.start() if end else len(routing)]


def reference_of(line: ClassificationLine | None, dtg: datetime | None, routing: str) -> str | None:
    """The cable's reference, e.g. 09ASTANA664: DTG year, post and number (from the ``DE`` line if need be)."""
    number = line.number if line else None
    if number is None:
        de = re.search(r"^DE\s+\w+\s+#(\d+)", routing, re.MULTILINE)
        number = int(de.group(1)) if de else None
    if not line or not line.post or number is None or dtg is None:
        return None
    return f"{dtg.year % 100:02d}{line.post.replace(' ', '')}{number}"


def _level_of(matched: str) -> str:
    squeezed = re.sub(r"\s+", "", matched).upper()
    for name, _ in _LEVELS:
        if squeezed.startswith(name.replace(" ", "")) or (name == "UNCLASSIFIED" and squeezed == "UNCLAS"):
            return name
    return squeezed


_FIELD_LABELS = re.compile(
    r"(?P<label>\bE\.\s?O\.|\bTAGS\b|\bSUBJECT\b|\bSUBJ\b|\bREF(?:S|TELS?)?\b|\bREFERENCES?\b|\bCLASSIFIED\s+BY\b)\s*:?",
    re.IGNORECASE,
)
# Reflowed texts run the first paragraph straight on after the last field: "REF: STATE 146857 (U) Pol/Econ".
_VALUE_RUNS_INTO_TEXT = re.compile(r"\s\((?:U|SBU|C|S|S/NF|C/NF|SBU/NF)\)\s")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# A lettered item: "B. ANKARA 8252", "(C) San Jose 01692" – one short line with a number, not prose.
_LETTERED_ITEM = re.compile(r"\s*(?:¶\s*)?\(?([B-Z])[.)][ \t](?=[^\n]{0,80}?\d)(?![^\n]{100})")
# Reference items end in a number or date; a capitalised word then a lower-case one is prose.
_PROSE_AFTER_REFS = re.compile(r"(?<=[\d)])\s+(?=[A-Z][a-z]+,?\s+[a-z])")
# "1.4 (b) and (d).", "1.5 b,d", "1.4 B A ND D", "1.4 \nAND D", "1.4 and 1.5 (b)": letters a-h, "and", "&", "/", their
# parentheses, but never past a full stop or a blank line (the lead may run on: "1.4 (d). A senior official").
_REASONS_END = re.compile(
    r"\b1\.\s?[45](?:[(, \t]*\n?[(, \t]*(?:a\s?nd\b|[a-h](?![a-z])|&|/|\+|1\.\s?\d)\)?)*\)?\.?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Fields:
    eo: str | None
    tags: tuple[str, ...]
    subject: str | None
    ref: str | None
    classified_by: str | None
    end: int
    """Offset just past the last field's value: where lead text or paragraphs may begin."""


def find_fields(preamble: str) -> Fields:
    """Labelled fields in the text between the classification line and the first paragraph.

    A value runs to the next label or a blank line; ``Classified By`` ends with its reasons
    (``1.4 (b) and (d).``) because reflowed texts run the lead straight on after it.
    """
    labels = _header_labels(preamble)
    values: dict[str, str] = {}
    end = 0
    for i, m in enumerate(labels):
        stop = labels[i + 1].start() if i + 1 < len(labels) else len(preamble)
        name = _label_name(m.group("label"))
        at = m.end()
        while blank := _BLANK_LINE.search(preamble, at, stop):
            if name != "ref" or not _next_ref_item(preamble, m.end(), blank.end()):
                stop = blank.start()
                break
            at = blank.end()
        marking = _VALUE_RUNS_INTO_TEXT.search(preamble, m.end() + 3, stop)
        while name == "ref" and marking and _next_ref_item(preamble, m.end(), marking.start()):
            marking = _VALUE_RUNS_INTO_TEXT.search(preamble, marking.end() - 1, stop)
        if marking and name != "classified_by":
            stop = marking.start()
        if name == "ref":
            prose = _PROSE_AFTER_REFS.search(preamble, m.end(), stop)
            if prose and prose.start() - m.end() > 12:
                stop = prose.start()
        if name in ("tags", "eo"):
            line_end = preamble.find("\n", m.end())
            stop = min(stop, line_end if line_end != -1 else stop)
        if name == "subject":
            stop = min(stop, _after_lines(preamble, m.end(), 3))
        if name == "classified_by":
            reasons = _REASONS_END.search(preamble, m.end(), min(stop, m.end() + 400))
            if reasons:
                stop = reasons.end()
            elif "\n" in preamble[m.end():stop].strip():
                stop = m.end() + preamble[m.end():stop].strip().find("\n") + 1
        values.setdefault(name, _squeeze(preamble[m.end():stop]))
        end = max(end, stop)
    tags = tuple(t.upper() for t in re.findall(r"[A-Za-z][A-Za-z0-9_-]*", values.get("tags", "")))
    return Fields(
        eo=values.get("eo") or None,
        tags=tags,
        subject=values.get("subject") or None,
        ref=values.get("ref") or None,
        classified_by=values.get("classified_by") or None,
        end=end,
    )


def _next_ref_item(text: str, start: int, at: int) -> bool:
    # A REF list's items may stand apart ("REF: A. SAN JOSE 193\n\n B. SAN JOSE 180"), and its third may
    # read like a portion marking ("(C) SAN JOSE 01692"): an item lettered at ``at`` continues the list
    # when the letter before it lettered an item since ``start``.
    item = _LETTERED_ITEM.match(text, at)
    previous = chr(ord(item[1]) - 1) if item else None
    return bool(previous and re.search(rf"(?<!\w)\(?{previous}[.)]\s", text[start:at]))


def _header_labels(preamble: str) -> list[re.Match[str]]:
    # Fields stand together at the top; a label after a long stretch of prose belongs to the text
    # ("...with\nREF B points on USG concerns"), which matters where no paragraph number ends the preamble.
    labels: list[re.Match[str]] = []
    last = 0
    for m in _FIELD_LABELS.finditer(preamble):
        if not _label_starts_field(preamble, m):
            continue
        if m.start() - last > (1500 if not labels else 600):
            break
        labels.append(m)
        last = m.end()
    return labels


def _after_lines(text: str, at: int, lines: int) -> int:
    # A subject wraps over two or three lines at most; past that a reflowed body has run on.
    for _ in range(lines):
        nl = text.find("\n", at)
        if nl == -1:
            return len(text)
        at = nl + 1
    return at


def _label_starts_field(text: str, m: re.Match[str]) -> bool:
    # A label counts at the start of a line or after the previous value (reflowed texts), but not as a word
    # inside a sentence, e.g. "the SUBJECT of talks": those lack the colon.
    label = m.group("label").upper()
    has_colon = m.group(0).rstrip().endswith(":")
    line_start = text.rfind("\n", 0, m.start()) + 1
    at_line_start = not text[line_start:m.start()].strip(" \t(U)")
    if label.startswith("CLASSIFIED"):
        return True
    if label.startswith("REFTEL"):  # "Replies are keyed to reftel:" is prose
        return at_line_start and has_colon
    if label.startswith("E.") or has_colon:
        return True
    return at_line_start and m.group("label") in ("TAGS", "SUBJECT", "REF")


def _label_name(label: str) -> str:
    label = re.sub(r"\s+", " ", label.upper())
    if label.startswith("E."):
        return "eo"
    if label.startswith("REF"):
        return "ref"
    if label.startswith("CLASSIFIED"):
        return "classified_by"
    if label.startswith("SUBJ"):
        return "subject"
    return "tags"


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" :")


_REF_ID = re.compile(r"\b(\d{2})([A-Z]{3,}[A-Z]*)(\d{1,7})\b")
_REF_SPACED = re.compile(
    r"(?<![\w/])(?:(\d{2})\s+)?([A-Z]{3,}(?:\s[A-Z]{3,}){0,2})\s+0*(\d{2,7})\b(?![/.:-]\d)"
)
_NOT_POSTS = frozenset(
    "SECTION PARA PARAS PARAGRAPH AND THE REF REFS REFTEL OF TO FOR IN ON AT E-MAIL EMAIL MEMCON DATED "
    "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC JANUARY FEBRUARY MARCH APRIL JUNE JULY AUGUST "
    "SEPTEMBER OCTOBER NOVEMBER DECEMBER FAX TEL TELCON NOTE".split()
)


def parse_references(ref: str | None, *, year: int | None) -> tuple[str, ...]:
    """The items of a REF field, each as a cable id where it names one (``STATE 00116396`` with year 2009
    → ``09STATE116396``), else as its text (an e-mail, a memo, a meeting): nothing is guessed at."""
    if not ref:
        return ()
    found: list[str] = []
    for item in _REF_ITEM.split(ref):
        item = item.strip(" ,;")
        if not item:
            continue
        ids = _cable_ids_in(item, year)
        found.extend(ids or [item])
    return tuple(dict.fromkeys(found))


# Items are lettered "A)", "A.", "(A)" or "¶B.", each starting a new item.
_REF_ITEM = re.compile(r"(?:^|(?<=\s))(?:¶\s*)?\(?[A-Ha-h][.)](?=\s)")


def _cable_ids_in(item: str, year: int | None) -> list[str]:
    found = [f"{yy}{post}{int(number)}" for yy, post, number in _REF_ID.findall(item)]
    # "THE" opens many a phrase that is no post ("THE SECRETARY"), but one post's name: THE HAGUE.
    for yy, post, number in _REF_SPACED.findall(re.sub(r"\bTHE HAGUE\b", "THEHAGUE", item.upper())):
        words = post.split()
        while words and words[0] in _NOT_POSTS:
            words.pop(0)
        if not words or any(w in _NOT_POSTS for w in words):
            continue
        prefix = yy or (f"{year % 100:02d}" if year else None)
        if prefix:
            found.append(f"{prefix}{''.join(words)}{int(number)}")
    return found
