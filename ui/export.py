"""A conversation as one Markdown file: each question with what it was asked with, each answer as the library
wrote it (citations inline), then every cited paragraph once in a reference list.

Text from cables and users goes through :func:`ui.render.api_markdown`, as the ``ask`` API's does, so a Markdown
viewer opening the file shows a cable's ``<script>`` or ``[link](javascript:…)`` as text and runs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rag.models import Answer, Citation
from ui.render import api_markdown as md

__all__ = ["Turn", "conversation_markdown"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange in a session: what was asked, with which filters and mode, and the answer or the error."""

    question: str
    filters: str
    mode: str
    answer: Answer | None = None
    error: str | None = None


def _reference(citation: Citation, origin: str | None) -> str:
    when = f"{citation.date:%-d %B %Y}" if citation.date else "undated"
    where = f"{md(origin)}, " if origin else ""
    subject = f" — {md(citation.subject)}" if citation.subject else ""
    return f"- **[{citation.ref}]** {where}{when}{subject}. “{md(citation.quote)}”"


def conversation_markdown(turns: Sequence[Turn], *, index: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# CableChat conversation", "", f"Exported {stamp} from the index `{index}`.", ""]
    cited: dict[str, tuple[Citation, str | None]] = {}
    for n, turn in enumerate(turns, 1):
        lines += [f"## {n}. {md(' '.join(turn.question.split()))}", ""]
        asked = f"mode: {turn.mode}" + (f", filters: {turn.filters}" if turn.filters else "")
        lines += [f"*{md(asked)}*", ""]
        if turn.answer is None:
            lines += [f"> Not answered: {md(turn.error or '')}", ""]
            continue
        if turn.answer.notice:
            lines += [f"> Note: {md(turn.answer.notice)}", ""]
        lines += [md(turn.answer.text), ""]
        origins = {hit.cable.id: hit.cable.origin for hit in turn.answer.hits}
        for citation in turn.answer.citations:
            cited.setdefault(citation.ref, (citation, origins.get(citation.cable_id)))
    if cited:
        lines += ["## References", "", *(_reference(c, origin) for c, origin in cited.values()), ""]
    return "\n".join(lines)
