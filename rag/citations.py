"""Citations in an LLM reply: find them in whatever form the model wrote, keep only retrieved ones, check them.

A citation key is ``citation_key(cable_id, n)`` (``09ASTANA664 ¶6``), written in answers as ``[09ASTANA664 ¶6]``.
Models drift from that form (``para 6``, ``(09ASTANA664, ¶6)``, ``[09ASTANA664 ¶3-5]``, ``#6``, ``P6``,
``09ASTANA664-6``, lower-case ids, keys glued to words), so :func:`clean_citations` reads them all and rewrites each
as one canonical bracket per key. Keys the model was not shown are removed and reported: a citation the reader
cannot check is worse than none.

:func:`check_reply` then splits the cleaned answer into sentences and asks of each whether the paragraphs it
cites share its words (:func:`support_score`), a cheap lexical test, not entailment.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rag.models import Citation, Hit, citation_key
from rag.text import WORD, names, numbers, overlap, stem

__all__ = [
    "SUPPORT_THRESHOLD",
    "CheckedReply",
    "Cleaned",
    "Sentence",
    "check_reply",
    "clean_citations",
    "sentence_spans",
    "split_sentences",
    "support_score",
]

SUPPORT_THRESHOLD = 0.5
"""Share of a sentence's content words its cited paragraphs must contain for the sentence to count as supported."""

# A share this small of a sentence's words in one of its paragraphs means that citation rides on its neighbour.
_MIN_SHARE = 0.2
# "¶1-400" is a slip, not 400 citations; longer ranges keep only their ends.
_MAX_RANGE = 50
_MAX_QUOTE = 300

# Small models write ids in lower case now and then ("09astana664"); keys are upper-cased when read.
_CABLE = r"(?<![A-Za-z0-9])\d{2}[A-Za-z]+\d+(?![A-Za-z0-9])"
_MARK = r"(?i:¶¶?|§§?|paragraphs?\b|paras?\b\.?|pars?\b\.?|pp?\.)"
# Small models also write "09ASTANA664 #6", "09ASTANA664 P6" and "09ASTANA664-6". These marks count only after a
# cable id: alone, "(P5)" is the Security Council's five, "#1" a rank and "-6" a number. Other spellings stay prose
# and are not counted as citations.
_ID_MARK = r"(?:\#|P|-)(?=\d)"
_NUMS = r"\d+(?:\s*(?:-|–|—|(?i:to|through)\b)\s*\d+)?"

# One token of what may sit inside a citation bracket; anything else means the bracket is prose.
_TOKEN = re.compile(
    rf"(?P<cable>{_CABLE})|(?P<mark>{_MARK})|(?P<id_mark>{_ID_MARK})"
    r"|(?P<lo>\d+)(?:\s*(?:-|–|—|(?i:to|through)\b)\s*(?P<hi>\d+))?(?![A-Za-z0-9])"
    r"|(?P<of>(?i:of|in)\b)"
    r"|(?P<sep>[\s,;:&]+|(?i:and|see|also|cf|cables?|sources?|ref)\b\.?)"
)
_SQUARE = re.compile(r"\[\[?(?P<body>[^\[\]\n]*)\]\]?")
_PAREN = re.compile(r"\((?P<body>[^()\n]*)\)")
# Citations outside brackets need a paragraph mark, so prose like "in 2009 Astana" is never taken for one.
_MORE = rf"\s*(?:,|;|&|(?i:and)\b)\s*(?:{_MARK}\s*{_NUMS}|{_NUMS}(?=[ \t]*(?:$|[\n\].,;:)!?&¶]|(?i:and)\b)))"
_PROSE = re.compile(
    rf"(?P<body>{_CABLE}(?:\s*,?\s*{_MARK}\s*|\s*,?\s*{_ID_MARK}){_NUMS}(?:{_MORE})*"
    rf"|{_MARK}\s*{_NUMS}(?:{_MORE})*\s+(?i:of|in)\s+(?:(?i:cable)\s+)?{_CABLE})"
)
_CANONICAL = re.compile(r"\[(\d{2}[A-Z]+\d+) ¶(\d+)\]")
_RUN_GAP = re.compile(r"[ \t,;]*")
# Markdown emphasis that opens right before a citation, as in "**[09ASTANA664 ¶6]**": no space goes after it.
_OPENER = re.compile(r"(?:^|(?<=[\s(\[]))([*_]{1,3})$")


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A reply with citations rewritten: ``kept`` keys (first-seen order) stay, ``dropped`` were removed.

    A dropped entry is a key (``09ASTANA664 ¶9``), a cable id cited without a paragraph, or ``¶4`` when no
    cable was named anywhere before it.
    """

    text: str
    kept: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Group:
    start: int
    end: int
    refs: tuple[tuple[str | None, int], ...]  # (cable id or None when the group named none, paragraph)
    bare: tuple[str, ...]  # cable ids cited without a paragraph


def _expand(lo: str, hi: str | None) -> list[int]:
    first, last = int(lo), int(hi) if hi else int(lo)
    if first <= last and last - first <= _MAX_RANGE:
        return list(range(first, last + 1))
    return [first, last]


def _parse_group(body: str, start: int, end: int, *, square: bool) -> _Group | None:
    """Read a bracket's contents (or a prose match) as citations; ``None`` when it is not one."""
    refs: list[tuple[str | None, int]] = []
    bare: list[str] = []
    cable: str | None = None
    cable_cited = True
    pending: list[int] = []  # numbers before any cable: "¶6 of 09ASTANA664", or a bare "(¶6)"
    after_of = marked = False
    pos = 0
    while pos < len(body):
        token = _TOKEN.match(body, pos)
        if token is None or token.end() == pos:
            return None
        pos = token.end()
        if token["cable"]:
            if not cable_cited and cable:
                bare.append(cable)
            cable, cable_cited = token["cable"].upper(), False
            if after_of and pending:
                refs.extend((cable, n) for n in pending)
                pending, cable_cited = [], True
        elif token["mark"] or (token["id_mark"] and cable):
            marked = True
        elif token["id_mark"]:
            return None
        elif token["lo"]:
            numbers = _expand(token["lo"], token["hi"])
            if cable is None:
                pending.extend(numbers)
            else:
                refs.extend((cable, n) for n in numbers)
                cable_cited = True
        after_of = bool(token["of"]) or (after_of and bool(token["sep"]))
    if cable and not cable_cited:
        bare.append(cable)
    refs.extend((None, n) for n in pending)
    if not (refs and (marked or cable)) and not (square and bare):
        return None
    return _Group(start, end, tuple(refs), tuple(bare))


def _find_groups(text: str) -> list[_Group]:
    groups: list[_Group] = []

    def add(pattern: re.Pattern[str], *, square: bool) -> None:
        # Earlier finds win, so "([09ASTANA664 ¶6])" is read by its square bracket, not its parenthesis.
        taken = [(g.start, g.end) for g in groups]
        for m in pattern.finditer(text):
            if not any(s < m.end() and m.start() < e for s, e in taken):
                group = _parse_group(m["body"], m.start(), m.end(), square=square)
                if group:
                    groups.append(group)

    add(_SQUARE, square=True)
    add(_PAREN, square=False)
    add(_PROSE, square=False)
    return sorted(groups, key=lambda g: g.start)


def _runs(text: str, groups: list[_Group]) -> list[list[_Group]]:
    """Groups with only spaces, commas or semicolons between them, which become one run of brackets."""
    runs: list[list[_Group]] = []
    for group in groups:
        if runs and _RUN_GAP.fullmatch(text, runs[-1][-1].end, group.start):
            runs[-1].append(group)
        else:
            runs.append([group])
    return runs


def _splice(out: str, text: str, end: int, replacement: str) -> tuple[str, int]:
    """Append ``replacement`` where a citation run was, with exactly one space before it (none after an opener)."""
    out = out.rstrip(" \t")
    if out.endswith("(") and text.startswith(")", end):  # "([X ¶9])" would leave "()" behind
        out, end = out[:-1].rstrip(" \t"), end + 1
    opener = _OPENER.search(out)
    if opener and not replacement and text.startswith(opener.group(1), end):  # "**[X ¶9]**" would leave "****"
        out, end, opener = out[:opener.start()].rstrip(" \t"), end + len(opener.group(1)), None
    at_line_start = not out or out.endswith("\n")
    if replacement:
        return out + ("" if at_line_start or opener else " ") + replacement, end
    if at_line_start:  # nothing left before it on the line, so the gap after it goes too
        end = len(text) - len(text[end:].lstrip(" \t"))
    return out, end


def clean_citations(raw: str, valid: Collection[str]) -> Cleaned:
    """Rewrite every citation in ``raw`` as ``[cable ¶n]``, keeping only keys in ``valid``.

    ``valid`` is any collection of keys, e.g. ``{hit.ref: hit for hit in hits}`` or a set of refs.
    Duplicates within one run of adjacent citations collapse to one; the rest of the text is left as written.
    """
    kept: dict[str, None] = {}
    dropped: dict[str, None] = {}
    last_cable: str | None = None
    out, pos = "", 0
    for run in _runs(raw, _find_groups(raw)):
        keys: dict[str, None] = {}
        for group in run:
            for cable, number in group.refs:
                cable = cable or last_cable
                key = citation_key(cable, number) if cable else f"¶{number}"
                (keys if key in valid else dropped)[key] = None
                last_cable = cable or last_cable
            for cable in group.bare:
                dropped[cable] = None
                last_cable = cable
        kept.update(keys)
        out, pos = _splice(out + raw[pos:run[0].start], raw, run[-1].end, " ".join(f"[{k}]" for k in keys))
    return Cleaned(out + raw[pos:], tuple(kept), tuple(dropped))


# -- sentences ---------------------------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "u.s mr mrs ms dr gen lt col maj capt adm amb sen rep gov pres st no nos vol e.g i.e vs approx est "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_END = re.compile(r"[.!?][\"'”’)]*\s+(?=[\"“'(\[]*[A-Z0-9])")
_LEADING = re.compile(rf"(?:\s*{_CANONICAL.pattern})+")


_FINISHED = re.compile(r"[.!?:][\"'”’)*_]*$")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a cleaned answer: ``text`` as written (citations inside it included), its ``keys``.

    ``start`` is where ``text`` begins in the answer; ``end`` is where the sentence ends with the citations that
    follow it (``Leased. [09ASTANA664 ¶6]``), which is where a mark about it goes.
    """

    text: str
    keys: tuple[str, ...]
    start: int = 0
    end: int = 0

    @property
    def claim(self) -> str:
        """The words without citations, which is what the cited paragraphs must support."""
        return " ".join(_CANONICAL.sub(" ", self.text).split())

    @property
    def finished(self) -> bool:
        """Whether it ends as a sentence does (``.``, ``!``, ``?``, ``:``), not cut off mid-way."""
        return bool(_FINISHED.search(_CANONICAL.sub("", self.text).rstrip()))


def sentence_spans(text: str, *, lines: bool) -> list[tuple[int, int]]:
    """Sentence spans; ``lines`` makes every newline a boundary (Markdown lists), else only blank lines do."""
    spans: list[tuple[int, int]] = []
    for block in re.finditer(r"[^\n]+" if lines else r"(?:[^\n]|\n(?!\s*\n))+", text):
        start = block.start()
        for end in _END.finditer(text, block.start(), block.end()):
            words = text[start:end.start()].split()
            word = words[-1].lower().lstrip("(\"'“") if words else ""
            if word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", word):
                continue  # "U.S. officials", "Gen. Ivanov", "John F. Kennedy" end no sentence
            spans.append((start, end.start() + len(end.group().rstrip())))
            start = end.end()
        spans.append((start, block.end()))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of a cleaned answer with the keys each carries, where each lies in ``text``.

    Citations that open a sentence (``... Baikonur. [09ASTANA664 ¶6] Next ...``) belong to the one before.
    """
    found: list[tuple[int, int, int, list[str]]] = []  # start, end of text, end with citations, keys
    for start, end in sentence_spans(text, lines=True):
        lead = _LEADING.match(text, start, end)
        if lead and found:
            first, last, _, keys = found[-1]
            keys.extend(citation_key(c, int(n)) for c, n in _CANONICAL.findall(lead.group()))
            found[-1] = (first, last, lead.end(), keys)
            start = lead.end()
        body = text[start:end]
        if re.search(r"\w", _CANONICAL.sub("", body)):  # not a bare run of citations or a "---" rule
            first = start + len(body) - len(body.lstrip())
            last = start + len(body.rstrip())
            found.append((first, last, last, [citation_key(c, int(n)) for c, n in _CANONICAL.findall(body)]))
    return [Sentence(text[first:last], tuple(dict.fromkeys(keys)), first, end)
            for first, last, end, keys in found]


# -- support -----------------------------------------------------------------------------------------------

def support_score(sentence: str, paragraph_text: str) -> float:
    """How far ``paragraph_text`` supports ``sentence``, 0..1: the share of its content words found there.

    A number or a name in the sentence that the paragraph lacks makes it 0: those are what models invent.
    """
    # A cable id written out in prose ("the Astana cable 09ASTANA664 says") is neither a number nor a name.
    claim = re.sub(_CABLE, " ", _CANONICAL.sub(" ", sentence))
    if not numbers(claim) <= numbers(paragraph_text):
        return 0.0
    stems = {stem(w) for w in WORD.findall(paragraph_text)}
    if any(stem(name) not in stems for name in names(claim)):
        return 0.0
    return overlap(claim, paragraph_text)


# -- checking a whole reply --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedReply:
    """A reply made safe to show: citations cleaned and each checked against the paragraph it names.

    ``sentences`` are those of ``text``; ``supported`` says for each whether the paragraphs it cites support it.
    ``unsupported`` holds the texts of those with no citation or with too little support.
    """

    text: str
    citations: tuple[Citation, ...]
    dropped: tuple[str, ...]
    unsupported: tuple[str, ...]
    sentences: tuple[Sentence, ...] = ()
    supported: tuple[bool, ...] = ()

    def marked(self, mark: str = " ⚠") -> str:
        """``text`` with ``mark`` after each unsupported sentence and its citations, placed by position."""
        ends = [s.end for s, ok in zip(self.sentences, self.supported, strict=True) if not ok]
        pieces, at = [], 0
        for end in ends:
            pieces += [self.text[at:end], mark]
            at = end
        return "".join(pieces) + self.text[at:]


def _quote(paragraph_text: str, claims: Sequence[str]) -> str:
    """The paragraph's sentence closest to the claims, verbatim (cut at a word if very long)."""
    spans = sentence_spans(paragraph_text, lines=False) or [(0, len(paragraph_text))]

    def closeness(span: tuple[int, int]) -> float:
        # A shared number pins the sentence better than any share of common words.
        part = paragraph_text[span[0]:span[1]]
        return max(overlap(c, part) + len(numbers(c) & numbers(part)) for c in claims)

    start, end = max(spans, key=closeness)
    quote = paragraph_text[start:end].strip()
    if len(quote) > _MAX_QUOTE:
        quote = quote[:_MAX_QUOTE].rsplit(None, 1)[0]
    return quote


def _evidence(hit: Hit) -> str:
    """The paragraph and the facts the prompt showed beside it (cable, section heading), which the model may repeat."""
    cable = hit.cable
    date = f"{cable.date:%Y-%m-%d, %d %B %Y}" if cable.date else ""  # as the prompt shows it, and as prose
    return "\n".join(part for part in (hit.paragraph.text, hit.paragraph.heading, cable.subject, cable.origin, date)
                     if part)


def check_reply(text: str, hits: Sequence[Hit], *, threshold: float = SUPPORT_THRESHOLD) -> CheckedReply:
    """Clean ``text``'s citations against ``hits`` and mark each as supported or not by its paragraph.

    One :class:`Citation` per kept key, in first-cited order; it is ``supported`` when every sentence citing
    it is supported by the paragraphs that sentence cites and this paragraph carries part of it.
    """
    by_key = {hit.ref: hit for hit in hits}
    cleaned = clean_citations(text, by_key)
    claims: dict[str, list[str]] = {key: [] for key in cleaned.kept}
    supported: dict[str, bool] = dict.fromkeys(cleaned.kept, True)
    sentences = split_sentences(cleaned.text)
    verdicts: list[bool] = []
    for sentence in sentences:
        claim = sentence.claim
        joined = "\n".join(_evidence(by_key[key]) for key in sentence.keys)
        ok = bool(sentence.keys) and support_score(claim, joined) >= threshold
        verdicts.append(ok)
        for key in sentence.keys:
            claims[key].append(claim)
            own_share = overlap(claim, by_key[key].paragraph.text)
            supported[key] = supported[key] and ok and own_share >= _MIN_SHARE
    citations = tuple(
        Citation(
            cable_id=by_key[key].paragraph.cable_id,
            paragraph=by_key[key].paragraph.number,
            quote=_quote(by_key[key].paragraph.text, claims[key] or [""]),
            subject=by_key[key].cable.subject,
            date=by_key[key].cable.date,
            supported=supported[key],
        )
        for key in cleaned.kept
    )
    unsupported = tuple(s.text for s, ok in zip(sentences, verdicts, strict=True) if not ok)
    return CheckedReply(cleaned.text, citations, cleaned.dropped, unsupported, tuple(sentences), tuple(verdicts))
