"""Answers, sources and whole cables as HTML for the chat and the cable viewer.

Safety rule: every piece of text that comes from a cable, a model or a user goes through :func:`esc` before it
is placed between our own tags. Real cables contain ``<br>``, ``<<Israel>>`` and ``<strong>``, and the chat
component runs Markdown over what it is given, so ``esc`` also turns Markdown's and LaTeX's punctuation into
character references: the browser shows them as the characters, and no renderer reads them as syntax.
Our own markup is written without blank lines, so Markdown takes each message as one raw HTML block.

Nothing here imports gradio; the functions take library records and return strings, so tests can check them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from rag.models import Answer, Cable, Citation, Hit

__all__ = ["CITATION", "answer_html", "api_markdown", "cable_html", "esc", "header_html", "link_chip",
           "message_html", "notice_html", "paragraph_link", "question_html", "sources_html"]

CITATION = re.compile(r"\[(\d{2}[A-Z]+\d+) ¶(\d+)\]")
_ESCAPES = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'`*_[]()$\\~|#!{}+-=:^"})
_INLINE = re.compile(rf"{CITATION.pattern}|\*\*(?P<bold>.+?)\*\*|(?<![*\w])\*(?P<em>[^*\s][^*\n]*?)\*(?![*\w])"
                     r"|`(?P<code>[^`\n]+)`")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_HEADING = re.compile(r"^#{1,6}\s+")
EXCERPT_CHARS = 420
INFO_SHOWN = 4
QUESTION_SHOWN = 400
PILL_SHOWN = 80


def esc(text: str) -> str:
    """``text`` as inert HTML text: no tag, entity, Markdown or LaTeX in it can take effect."""
    return text.translate(_ESCAPES)


def cite_chip(cable_id: str, paragraph: int | None = None) -> str:
    """A clickable citation (or, without a paragraph, cable) chip; ui/assets/app.js opens it in the viewer."""
    ref = f"{cable_id} ¶{paragraph}" if paragraph is not None else cable_id
    anchor = f"{cable_id}-{paragraph}" if paragraph is not None else cable_id
    return f'<a class="cc-cite" href="#cc-{esc(anchor)}" title="Open {esc(ref)}">{esc(ref)}</a>'


def _inline(text: str) -> str:
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(esc(text[last:match.start()]))
        if match["bold"] is not None:
            out.append(f"<strong>{_inline(match['bold'])}</strong>")
        elif match["em"] is not None:
            out.append(f"<em>{_inline(match['em'])}</em>")
        elif match["code"] is not None:
            out.append(f"<code>{esc(match['code'])}</code>")
        else:
            out.append(cite_chip(match[1], int(match[2])))
        last = match.end()
    out.append(esc(text[last:]))
    return "".join(out)


def _blocks(lines: Sequence[str]) -> str:
    """A small, closed subset of Markdown: paragraphs, ``>`` quotes, lists, headings, bold, italics (a quote's
    section heading), code, citations."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith(">"):
            quoted = []
            while i < len(lines) and lines[i].lstrip().startswith(">"):
                quoted.append(re.sub(r"^\s*>\s?", "", lines[i]))
                i += 1
            out.append(f"<blockquote>{_blocks(quoted)}</blockquote>")
        elif _LIST_ITEM.match(line):
            items = []
            while i < len(lines) and _LIST_ITEM.match(lines[i]):
                items.append(f"<li>{_inline(_LIST_ITEM.sub('', lines[i]))}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif _HEADING.match(line):
            out.append(f'<p class="cc-h">{_inline(_HEADING.sub("", line))}</p>')
            i += 1
        else:
            para = []
            while (i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(">")
                   and not _LIST_ITEM.match(lines[i]) and not _HEADING.match(lines[i])):
                para.append(_inline(lines[i].strip()))
                i += 1
            out.append(f"<p>{'<br>'.join(para)}</p>")
    return "".join(out)


# What a Markdown renderer could turn into markup, in text that came from a cable, a model or a user: HTML (and
# entities), link and image brackets, link destinations, code spans, and escapes themselves. Backslash escapes
# and entities render as the plain characters in any CommonMark renderer.
_MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "[": "\\[",
                                   "]": "\\]", "(": "\\(", ")": "\\)", "`": "\\`"})
_QUOTE_MARKERS = re.compile(r"^[ \t]*(?:>[ \t]?)*")


def api_markdown(text: str) -> str:
    """An answer's Markdown made safe for any client that renders it (the ``ask`` API).

    The answer's own structure stays: ``>`` quote markers, ``**bold**`` and citations ``[09ASTANA664 ¶6]``.
    Everything else is inert, so a cable's ``<script>``, ``[link](javascript:…)`` or ``![image](…)`` renders as
    the text it is. A citation followed by ``:`` gets its colon escaped, so that a cable line
    ``[09ASTANA664 ¶6]: javascript:…`` cannot define where the citations of the answer link to.
    """
    lines = []
    for line in text.split("\n"):
        markers = _QUOTE_MARKERS.match(line)
        start = markers.end() if markers else 0
        out, last = [line[:start]], start
        for match in CITATION.finditer(line, start):
            out.append(line[last:match.start()].translate(_MARKDOWN_ESCAPES))
            out.append(match[0] + ("\\" if line.startswith(":", match.end()) else ""))
            last = match.end()
        out.append(line[last:].translate(_MARKDOWN_ESCAPES))
        lines.append("".join(out))
    return "\n".join(lines)


def answer_html(text: str) -> str:
    """An answer's Markdown (whole or a streamed prefix) as HTML with citation chips."""
    return _blocks(text.splitlines())


def long_date(when: datetime | None) -> str:
    return f"{when:%-d %B %Y}" if when else "undated"


def _classification(value: str | None) -> str:
    if not value:
        return ""
    level = value.split("//")[0].strip().lower().replace(" ", "-")
    return f'<span class="cc-class cc-class-{esc(level)}">{esc(value)}</span>'


def _highlighted(text: str, quote: str | None, *, excerpt: bool) -> str:
    """``text`` escaped with ``quote`` marked; an excerpt keeps the quote and some context either side."""
    start = text.find(quote) if quote else -1
    if start < 0:
        if excerpt and len(text) > EXCERPT_CHARS:
            return esc(text[:EXCERPT_CHARS].rsplit(" ", 1)[0]) + " …"
        return esc(text)
    end = start + len(quote or "")
    before, after = text[:start], text[end:]
    if excerpt:
        room = max(80, (EXCERPT_CHARS - (end - start)) // 2)
        if len(before) > room:
            before = "… " + before[-room:].split(" ", 1)[-1]
        if len(after) > room:
            after = after[:room].rsplit(" ", 1)[0] + " …"
    return f"{esc(before)}<mark>{esc(text[start:end])}</mark>{esc(after)}"


def _source_card(citation: Citation, hit: Hit | None) -> str:
    cable = hit.cable if hit else None
    meta = " · ".join(esc(part) for part in (long_date(citation.date or (cable.date if cable else None)),
                                               cable.origin if cable else None) if part)
    subject = citation.subject or (cable.subject if cable else None) or ""
    text = hit.paragraph.text if hit else citation.quote
    heading = hit.paragraph.heading if hit else None
    flag = "" if citation.supported else '<span class="cc-unsupported">not supported by its paragraph</span>'
    return (f'<div class="cc-source"><div class="cc-source-head">{cite_chip(citation.cable_id, citation.paragraph)}'
            f'{_classification(cable.classification if cable else None)}{flag}'
            f'{link_chip(citation.cable_id, citation.paragraph)}</div>'
            f'<div class="cc-source-meta">{meta}</div><div class="cc-source-subject">{esc(subject)}</div>'
            + (f'<div class="cc-source-heading">{esc(heading)}</div>' if heading else "") +
            f'<div class="cc-source-text">{_highlighted(text, citation.quote, excerpt=True)}</div></div>')


def paragraph_link(cable_id: str, paragraph: int) -> str:
    """The page's own link to one paragraph, relative to wherever the app is served: ``?cable=ID&p=N``."""
    return f"?cable={cable_id}&p={paragraph}"


def link_chip(cable_id: str, paragraph: int) -> str:
    """A link that opens this paragraph in a fresh tab; clicking it copies it instead (ui/assets/app.js)."""
    return (f'<a class="cc-link" href="{esc(paragraph_link(cable_id, paragraph))}" '
            f'title="Copy a link that opens {esc(cable_id)} at ¶{paragraph}">Copy link</a>')


def sources_html(answer: Answer) -> str:
    """The cited paragraphs, one card each, with the quoted words highlighted."""
    if not answer.citations:
        return ""
    hits = {hit.ref: hit for hit in answer.hits}
    cards = "".join(_source_card(c, hits.get(c.ref)) for c in answer.citations)
    count = len(answer.citations)
    return (f'<details class="cc-sources" open><summary>Sources · {count} paragraph{"s" * (count != 1)}</summary>'
            f"{cards}</details>")


def notice_html(text: str, *, kind: str = "notice") -> str:
    """A plain message in the chat: ``kind`` is notice (amber), error (red) or info (grey)."""
    icon = {"error": "!", "notice": "!", "info": "i"}[kind]
    return f'<div class="cc-{kind}"><span class="cc-icon">{icon}</span>{esc(text)}</div>'


def message_html(answer: Answer, *, hint: str | None = None) -> str:
    """The whole assistant message for a finished answer: notices, answer (or abstention), sources."""
    parts = [notice_html(text) for text in (hint, answer.notice) if text]
    if answer.abstained:
        parts.append(f'<div class="cc-abstain"><div class="cc-abstain-title">No answer in the indexed cables</div>'
                     f"{answer_html(answer.text)}</div>")
    else:
        parts.append(f'<div class="cc-answer">{answer_html(answer.text)}</div>')
    parts.append(sources_html(answer))
    return f'<div class="cc-msg">{"".join(parts)}</div>'


def streaming_html(text: str) -> str:
    return f'<div class="cc-msg"><div class="cc-answer cc-streaming">{answer_html(text)}</div></div>'


def question_html(question: str, *, filters: str, mode: str) -> str:
    """The user's message: the question as typed (long ones cut for display) and what it was asked with."""
    shown = _cut(question, QUESTION_SHOWN)
    pills = [f'<span class="cc-pill cc-pill-mode">{esc(mode)}</span>']
    pills += [f'<span class="cc-pill">{esc(_cut(part, PILL_SHOWN))}</span>' for part in _filter_parts(filters)]
    return (f'<div class="cc-q"><div class="cc-q-text">{esc(shown)}</div>'
            f'<div class="cc-pills">{"".join(pills)}</div></div>')


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _filter_parts(described: str) -> list[str]:
    return re.findall(r'\S+:"[^"]*"|\S+', described)


def _field(name: str, value: str) -> str:
    return f"<dt>{esc(name)}</dt><dd>{value}</dd>" if value else ""


def _ref_chips(ids: Iterable[str], indexed: set[str]) -> str:
    return "".join(cite_chip(i) if i in indexed else
                   f'<span class="cc-ref-off" title="not in this index">{esc(i)}</span>' for i in ids)


def cable_html(cable: Cable, *, focus: int | None, quote: str | None, indexed_refs: set[str],
               referenced_by: Sequence[str]) -> str:
    """The whole cable: header fields, who it references and who references it, then numbered paragraphs."""
    info = list(cable.info)
    info_text = esc(", ".join(info[:INFO_SHOWN])) + (f" and {len(info) - INFO_SHOWN} more"
                                                     if len(info) > INFO_SHOWN else "")
    fields = "".join((
        _field("Date", esc(f"{cable.date:%-d %B %Y, %H:%M}Z") if cable.date else "undated"),
        _field("From", esc(cable.origin or "")),
        _field("To", esc(", ".join(cable.to))),
        _field("Info", info_text),
        _field("Tags", "".join(f'<span class="cc-tag">{esc(t)}</span>' for t in cable.tags)),
        _field("Signed", esc(cable.signer or "")),
        _field("References", _ref_chips(cable.references, indexed_refs)),
        _field("Referenced by", _ref_chips(referenced_by, set(referenced_by))
               or '<span class="cc-ref-off">no indexed cable</span>'),
    ))
    paragraphs, heading = [], None
    for p in cable.paragraphs:
        opens_section = bool(p.heading) and p.heading != heading
        if opens_section:
            paragraphs.append(f'<div class="cc-section">{esc(p.heading or "")}</div>')
        heading = p.heading
        focused = p.number == focus
        number = "Lead" if p.number == 0 else f"¶{p.number}"
        marking = f'<span class="cc-marking">({esc(p.marking)})</span> ' if p.marking else ""
        body = _highlighted(p.text, quote, excerpt=False) if focused else esc(p.text)
        # The cited paragraph repeats its section's heading when the heading is out of sight above it.
        repeat = (f'<div class="cc-para-heading">{esc(p.heading)}</div>'
                  if focused and p.heading and not opens_section else "")
        paragraphs.append(f'<div class="cc-para{" cc-focus" * focused}" id="cc-para-{p.number}">{repeat}'
                          f'<span class="cc-pnum">{number}</span><div class="cc-ptext">{marking}{body}</div></div>')
    subject = esc(cable.subject or "(no subject)")
    return (f'<article class="cc-cable"><div class="cc-cable-top"><span class="cc-cable-id">{esc(cable.id)}</span>'
            f'{_classification(cable.classification)}</div><h3 class="cc-cable-subject">{subject}</h3>'
            f'<dl class="cc-fields">{fields}</dl><div class="cc-paras">{"".join(paragraphs)}</div></article>')


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def header_html(stats: dict[str, object]) -> str:
    """The page header: name, promise, and what the index holds."""
    first, last = stats.get("years") or [None, None]
    years = "no dates" if first is None else str(first) if first == last else f"{first}–{last}"
    figures = [(f"{stats.get('cables', 0):,}", "cables"), (f"{stats.get('paragraphs', 0):,}", "paragraphs"),
               (years, "date range")]
    cells = "".join(f'<div class="cc-stat"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in figures)
    building = stats.get("building")
    # An index still being built is served as far as its build had gone when the server started: say so.
    note = (f'<p class="cc-building">Still being built (process {esc(str(building["pid"]))}): '
            f'{_count(building["cables"], "cable")} indexed when this server started; restart it to see the rest.</p>'
            if isinstance(building, dict) else "")
    return (f'<header class="cc-header"><div class="cc-brand"><div class="cc-logo">✉</div><div><h1>CableChat</h1>'
            f'<p>Ask the diplomatic cables. Every claim cites its cable and paragraph.</p>{note}</div></div>'
            f'<div class="cc-stats">{cells}</div></header>')
