"""``parse_cable``: one raw cable as text in, one :class:`~rag.models.Cable` out. Pure, no I/O.

A paragraph number we print must be the cable's own, so numbering is decided from the sequence the
cable gives, not from each line alone: ``11.`` is ¶1 with its pilcrow mangled into a ``1`` when ¶1 is
what comes next, and ¶11 when ¶10 came before it.

Text before ¶1 that is not header (a summary, a rationale run on after "Classified By") is kept as
paragraph number 0, the *lead*. A cable that numbers no paragraph yields its text blocks numbered in
reading order with ``numbered=False``.

A cable may have no paragraphs at all. The site released some cables cut short (about 60 in the shared
corpus, e.g. 08STOCKHOLM510, 09KABUL3423): the body is the header fields and a first line broken off with "...",
then the header again run onto one line. The repeat is dropped, and so is a short broken-off line left
alone after the fields: in every such corpus cable it is a clipped field or handling line ("Classified
By: Politica...", "SENSITIVE BUT UNCLASSIFIED--..."), never text. Numbered text that survives ("¶1. (C)
On...") is kept. A cable left with nothing still loads, with zero paragraphs: its id, date, subject, tags
and references are real and findable, and inventing a paragraph would give a citation nothing to quote.
The loader notes each such cable in its report.
"""

from __future__ import annotations

import re

from .errors import CableParseError
from .addressees import normalise_origin, parse_addressees
from .header import (
    drop_header_repeat,
    find_classification_line,
    find_date,
    find_dtg,
    find_fields,
    full_year,
    parse_references,
    reference_of,
    routing_field,
)
from .models import Cable, Paragraph
from .numbering import Marker, paragraph_markers

__all__ = ["MAX_CABLE_CHARS", "normalise_text", "parse_cable"]

# A guard, not a measure: the longest corpus cable has 66,387 characters. Parsing is linear in the text (a
# 1,000,000-character numbered text takes about half a second), so this bounds what one record can cost a build.
MAX_CABLE_CHARS = 8_000_000

_PAGE_BREAK = re.compile(
    r"^[ \t]*[A-Za-z][A-Za-z .'()/-]*[ \t]+\d{6,8}[ \t]+\d{3}(?:\.\d+)?[ \t]+(?:OF|of)[ \t]+\d{3}[ \t]*$\n?",
    re.MULTILINE,
)
_BREAK_TAIL = r"\d{8}\s+\d{3}(?:\.\d+)?\s+OF\s+\d{3}\b"
_OLD_PAGE_HEADER = re.compile(
    r"^[ \t]*PAGE \d{2}\s.*$\n?|^[ \t]*(?:UNCLASSIFIED|CONFIDENTIAL|SECRET)[ \t]*$\n?", re.MULTILINE)
_CABLE_ENDS = re.compile(r"^[ \t]*=+\s*CABLE ENDS\s*=+[ \t]*$", re.IGNORECASE | re.MULTILINE)
# The site put its pilcrow on lettered items as well as numbers ("¶B. ANKARA 8252"); the cable wrote "B.".
_LETTER_PILCROW = re.compile(r"¶[ \t]*(?=\(?[A-Za-z][.)][ \t])")
# The site wrote opening and closing quotation marks as ``&`` and ``8``: ``security &clean up8``.
_AMP_QUOTE = re.compile(r"&(?=[A-Za-z(])((?:[^&\n]|\n(?![ \t]*\n)){1,300}?[^\s\d&])8(?=[\s.,;:)?!'-]|$)")
_MARKING = re.compile(
    r"^\(\s*(?P<marking>(?:U|SBU|C|S|TS|FOUO|CONFIDENTIAL|SECRET|UNCLASSIFIED)"
    r"(?:\s*/{1,2}\s*[A-Z][A-Z ]{0,20}?)*)\s*\)\s*:?\s*",
    re.IGNORECASE,
)
_HEADER_NOISE = re.compile(
    r"^\s*(?:\(U\)\s*)?(?:SIPDIS|NOFORN|SENSITIVE|EXDIS|NODIS|LIMDIS|CORRECTED COPY|\W*)\s*$", re.IGNORECASE
)
_RULE_LINE = re.compile(r"^[ \t]*[-=_]{3,}[-=_ \t]*$", re.MULTILINE)
_NAME_WORD = r"(?:(?:van|de|von|del|da|le)[ \t])?(?!XX)[A-Z][A-Za-z'-]+"
# The signature: the cable's last line, or in reflowed text its last word(s) after a sentence's end.
_SIGNATURE = re.compile(
    rf"\n[ \t]*(?P<line>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,2}})[ \t]*\.?[ \t]*\Z"
    rf"|(?:[.!?)\"':]|(?i:\bend\s+comment)\.?|XXXX)[ \t]+(?P<inline>{_NAME_WORD}(?:[ \t]+{_NAME_WORD})?)[ \t]*\Z"
)
_NOT_NAMES = frozenset(
    "END COMMENT SUMMARY NOTE CONCLUSION BACKGROUND TEXT CABLE SENSITIVE UNCLASSIFIED CONFIDENTIAL SECRET "
    "NOFORN SIPDIS MINIMIZE CONSIDERED NONE TAGS SUBJECT REF DECL QUOTE UNQUOTE AND THE OF FOR TO IN ON".split()
)
# What the site or an archive left after the signature: quote marks, backslashes, "NNNN", archive trailers
# ("2004ROME02926 - Classification: CONFIDENTIAL"), "</table>", dots on a line of their own.
_TAIL_JUNK = re.compile(
    r"(?:\s+|[\"\\>,]|(?<=\n)\.+|</table>|NNNN|End Cable Text|\*{3,}"
    r"|\d{4}[A-Z]+\d+ - (?:Classification: )?[A-Z/ ]+)*+\Z"
)
_DASH_HEADING = re.compile(r"-{3,}\s*([^-\s][^\n]{0,100}?)\s*-{3,}\s*$")


def parse_cable(text: str, *, source: str | None = None, cable_id: str | None = None) -> Cable:
    """Parse one cable: routing header (optional), classification line, fields, paragraphs, signer.

    ``cable_id`` is the reference when the caller knows it (a corpus record's id, a CSV row's); it wins
    over the one read from the text, which old telegrams and partial extracts cannot always give.

    Raises :class:`CableParseError` (with ``.source`` and ``.line``) for text that is not a cable.
    """
    if not isinstance(text, str):
        raise CableParseError(f"expected the cable as str, got {type(text).__name__}; decode bytes first",
                              source=source)
    if len(text) > MAX_CABLE_CHARS:
        raise CableParseError(f"{len(text):,} characters, more than any cable holds ({MAX_CABLE_CHARS:,} at most): "
                              "several cables run together, or not a cable", source=source, line=1)
    text = normalise_text(text)
    if not text.strip():
        raise CableParseError("empty text: no cable to parse", source=source, line=1)
    if text.count("\ufffd") > max(20, len(text) // 20) or re.search(r"[\x00-\x08\x0e-\x1f]", text):
        raise CableParseError("binary or undecodable text: not a cable", source=source, line=1)

    text = drop_header_repeat(text)
    line = find_classification_line(text)
    dtg = find_dtg(text[: line.end]) if line else None
    dtg = dtg or find_date(text[:4000])
    if line is None and dtg is None and not re.search(r"^\s*SUBJ(?:ECT)?\s*:", text, re.M | re.I):
        raise CableParseError(
            "no classification line (e.g. 'UNCLAS ASTANA 000664'), date-time group (e.g. 'O 171208Z APR 09') "
            "or SUBJECT line: this text is not a cable", source=source, line=1)

    routing = text[: line.end] if line else ""
    body_start = line.end if line else 0
    cable_id = cable_id or reference_of(line, dtg, routing)
    if cable_id is None:
        raise CableParseError(
            "cannot tell the cable's reference: the classification line lacks post and number "
            "(e.g. 'UNCLAS ASTANA 000664')", source=source, line=_line_of(text, body_start))
    text = text[:body_start] + _remove_inline_page_breaks(text[body_start:], (line and line.post) or cable_id)

    markers = paragraph_markers(text, body_start)
    preamble_end = markers[0].start if markers else len(text)
    fields = find_fields(text[body_start:preamble_end])
    lead_start = body_start + fields.end
    if not markers:
        lead_start = _end_of_header_block(text, lead_start)
    paragraphs, signer = _split_paragraphs(text, lead_start, markers, cable_id)

    classification = None
    if line:
        classification = "//".join((line.level, *line.caveats))
    return Cable(
        id=cable_id,
        date=dtg,
        origin=normalise_origin(routing_field(routing, "FM")),
        classification=classification,
        subject=fields.subject,
        paragraphs=paragraphs,
        to=parse_addressees(routing_field(routing, "TO", block=True) or ""),
        info=parse_addressees(routing_field(routing, "INFO", block=True) or ""),
        tags=fields.tags,
        references=parse_references(fields.ref, year=dtg.year if dtg else _year_of(cable_id)),
        signer=signer,
        source=source,
    )


def normalise_text(text: str) -> str:
    """Undo transport damage that is not the cable's: line endings, page-break lines, quote substitutes,
    the site's pilcrows on lettered items."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    lines = text.split("\n")
    # cables.csv rows pasted into a body end every line with a backslash; no cable line ends with one.
    text = "\n".join(line[:-1] if line.endswith("\\") else line for line in lines)
    text = _PAGE_BREAK.sub("", text)
    text = _OLD_PAGE_HEADER.sub("", text)
    text = _CABLE_ENDS.sub("", text)
    text = _LETTER_PILCROW.sub("", text)
    return _AMP_QUOTE.sub(r'"\1"', text)


def _remove_inline_page_breaks(body: str, post: str) -> str:
    # Reflowed texts keep page-break lines inside sentences ("...anyone with the NAC NEW DELHI 00009527
    # 005 OF 005 has asked..."). The number is always eight digits, but not always this cable's (08MOSCOW1519
    # breaks as MOSCOW 00002237), and the post is cut to ten characters ("BUENOS AIR 00000118 002 OF 006") or
    # glued to a redaction ("XXXXXXXXXXXXLONDON"): match the post's first letters, spaced as they come.
    if not re.search(_BREAK_TAIL, body, re.IGNORECASE):
        return body
    letters = re.sub(r"[^A-Za-z]", "", re.sub(r"^\d\d|\d+$", "", post))[:8]
    post_pattern = r"\s?".join(letters) + r"[A-Za-z]*" if letters else r"(?!)"
    # A break whose post is garbled ("09SECTION02OF03QRIPOLI583" breaks as TRIPOLI) takes one word with it.
    pattern = rf"[ \t]*(?:{post_pattern}|(?-i:\b[A-Z][A-Z.'-]*))?\s*{_BREAK_TAIL}[ \t]*"
    return re.sub(pattern, " ", body, flags=re.IGNORECASE)


def _split_paragraphs(text: str, lead_start: int, markers: list[Marker],
                      cable_id: str) -> tuple[tuple[Paragraph, ...], str | None]:
    chunks: list[tuple[int, str]] = []
    lead = text[lead_start: markers[0].start if markers else len(text)]
    if markers:
        chunks.append((0, lead))
        for marker, following in zip(markers, [*markers[1:], None]):
            chunks.append((marker.number, text[marker.end: following.start if following else len(text)]))
    elif not (lead.rstrip().endswith("..") and len(_squeeze(lead)) <= 80):
        chunks.extend((0, block) for block in re.split(r"\n[ \t]*\n", lead))

    chunks, signer = _take_signer(chunks)
    paragraphs: list[Paragraph] = []
    heading: str | None = None
    counter = 0
    for i, (number, raw) in enumerate(chunks):
        # A heading stands between paragraphs: none ends the last, and an unnumbered text has none.
        ends = not markers or i == len(chunks) - 1
        body, next_heading = (raw, None) if ends else _take_trailing_heading(raw, lead=number == 0)
        marking, clean = _take_marking(_squeeze(_RULE_LINE.sub("", body)))
        if markers and number == 0:
            clean = _strip_header_noise(clean)
        if clean:
            if not markers:
                counter += 1
            paragraphs.append(Paragraph(
                cable_id=cable_id,
                number=number if markers else counter,
                text=clean,
                marking=marking,
                heading=heading if markers and number else None,
                numbered=bool(markers),
            ))
        heading = next_heading or heading
    return tuple(paragraphs), signer


def _take_trailing_heading(chunk: str, *, lead: bool = False) -> tuple[str, str | None]:
    """Split off a section heading standing at the end of a chunk, before the next paragraph number.

    A heading is a short block of its own (blank line before it), or a title between dash rules in
    reflowed text; a block that ends like a sentence is the paragraph's own continuation unless boxed in
    rules ("---\nClimate Change....\n---"). The lead may be a heading and nothing else ("Summary" over
    ¶1): then it is one when ruled off or at most three words.
    """
    ruled = re.search(r"[-=_]{3,}[-=_\s]*\Z", chunk)
    boxed = re.search(r"[-=_]{3,}[-=_ \t]*\n[^\n]+\n[ \t]*[-=_]{3,}[-=_\s]*\Z", chunk)
    chunk = _RULE_LINE.sub("", chunk).rstrip()
    dashed = _DASH_HEADING.search(chunk)
    if dashed:
        return chunk[: dashed.start()], _unruled(dashed.group(1)) or None
    # A ruled-off title needs no blank line above it: "...such groups.\nThe Muslim Minority\n-------".
    blocks = re.split(r"\n[ \t]*\n" if not ruled else r"\n[ \t]*\n|\n(?=[^\n]*\Z)", chunk)
    candidate = _unruled(blocks[-1])
    if lead:  # "(C) SUMMARY" over ¶1
        candidate = _take_marking(candidate)[1]
    if len(blocks) < 2 and not (lead and (ruled or len(candidate.split()) <= 3)):
        return chunk, None
    if (0 < len(candidate) <= 100 and len(candidate.split()) <= 14
            and (boxed or not re.search(r"[.,;:\"')]$", candidate)) and re.match(r"[\"'(]?[A-Z0-9]", candidate)
            and not _MARKING.match(candidate) and not _HEADER_NOISE.match(candidate)
            and not re.fullmatch(r"X{4,}", candidate)):
        return "\n\n".join(blocks[:-1]), candidate
    return chunk, None


def _unruled(heading: str) -> str:
    return _squeeze(re.sub(r"[-=_]{3,}", " ", heading))


def _take_signer(chunks: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], str | None]:
    """The signer's name from the end of the last chunk, and the chunks without it (and what trails it)."""
    if not chunks:
        return chunks, None
    number, last = chunks[-1]
    # Only the last few hundred characters can hold the signature; scanning a whole paragraph is wasted work.
    text = last[: _TAIL_JUNK.search(last, max(0, len(last) - 400)).start()]
    m = _SIGNATURE.search("\n" + text)
    if not m:
        return chunks, None
    group = "line" if m["line"] else "inline"
    words = m[group].split()
    name = " ".join(w for i, w in enumerate(words) if w.upper() not in map(str.upper, words[:i]))  # "CRETZ Cretz"
    before = text[: m.start(group) - 1].rstrip()
    own_line_ok = not before or before[-1] in ".!?)\"':;-=_*/>" or before.endswith("XXXX") or (
        name.isupper() and re.search(r"[a-z]", before[before.rfind("\n") + 1:]))
    if set(name.upper().split()) & _NOT_NAMES or (m["line"] and not own_line_ok):
        return chunks, None
    return [*chunks[:-1], (number, before)], name


def _take_marking(text: str) -> tuple[str | None, str]:
    m = _MARKING.match(text)
    if not m:
        return None, text
    return re.sub(r"\s+", "", m.group("marking")).upper(), text[m.end():].strip()


def _strip_header_noise(lead: str) -> str:
    # What is left of the preamble after the fields: handling lines ("SIPDIS", "(U)") are not lead text.
    lead = re.sub(r"^(?:\(\s*[A-Z/]{1,6}\s*\)\s*|SIPDIS\s*|NOFORN\s*|[-=_\s]+)+", "", lead, flags=re.I)
    return "" if _HEADER_NOISE.match(lead) or len(lead) < 3 else lead


def _end_of_header_block(text: str, at: int) -> int:
    """Past handling lines after the fields, for cables without numbers whose text starts at a blank line."""
    gap = re.compile(r"\n[ \t]*\n")
    while True:
        m = gap.search(text, at)
        if not m:
            return at
        block = text[at: m.start()]
        if block.strip() and not _HEADER_NOISE.match(block) and not re.match(
                r"\s*(?:[A-Z/ ]+\s+FOR\b|PASS\b|FOR\b)", block):
            return at
        at = m.end()


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _year_of(cable_id: str) -> int | None:
    # Without a DTG the reference's two digits are the year ("05SANJOSE2038"), which bare REF items share.
    return full_year(int(cable_id[:2])) if cable_id[:2].isdigit() else None


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
