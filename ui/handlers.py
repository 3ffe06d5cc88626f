"""What the UI's events do: each method takes component values, calls the Assistant, and returns new values.

No retrieval logic lives here: questions, filters, cables and LLM status all come from :class:`rag.Assistant`.
The chat's messages are kept in session state as our own HTML (see ui/render.py), never read back from the
browser, so nothing a client sends is ever shown unescaped.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import gradio as gr

from rag.assistant import Assistant, Mode
from rag.errors import CableChatError
from rag.models import Answer
from ui.export import Turn, conversation_markdown
from ui.render import api_markdown, cable_html, esc, message_html, notice_html, question_html, streaming_html
from ui.timeline import timeline_figure

__all__ = ["ANY", "EXAMPLES", "MODES", "Handlers"]

log = logging.getLogger(__name__)

MODES = {"Extractive": "extractive", "LLM": "llm"}
ANY = "Any"
# Questions a first-time visitor can click, each shown only when the index holds the cable that answers it.
EXAMPLES = (
    ("Who wants Kazakhstan to join the Missile Technology Control Regime?", "09ASTANA664"),
    ("When is the experts meeting in Paris?", "09MOSCOW2809"),
    ("What did Russia say about the space security dialogue?", "09MOSCOW2809"),
    ("How much did Karzai's palace give to Haiti after the January 2010 earthquake?", "10KABUL170"),
    ("Who did the Polisario Front write to in Spain asking for help with Morocco?", "06MADRID2809"),
    ("When did Oman's defence ministry turn down a US offer of a missile and air defence working group?",
     "10MUSCAT71"),
    ("How many illegal immigrants were arrested in Greece in 2008?", "09ATHENS1685"),
)
MAX_EXAMPLES = 4
_REF = re.compile(r"\s*([A-Z0-9]+)(?:\s*¶(\d+))?\s*", re.IGNORECASE)
# An LLM server's health is asked at most this often, however many visitors load the page.
STATUS_TTL_S = 30.0

Message = dict[str, str]


def _assistant_says(html: str) -> Message:
    return {"role": "assistant", "content": html}


def _notice_message(text: str, *, kind: str = "error") -> Message:
    return _assistant_says(f'<div class="cc-msg">{notice_html(text, kind=kind)}</div>')


def viewer_placeholder() -> str:
    return ('<div class="cc-viewer-empty"><b>No cable open</b>Click a citation chip in an answer to read '
            'the whole cable, opened at the cited paragraph.</div>')


class Handlers:
    """The event functions for one served Assistant, shared by every session."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.index_name = Path(str(assistant.stats()["index"])).name
        self._exports = Path(tempfile.mkdtemp(prefix="cablechat-exports-"))
        self._status: tuple[float, str] | None = None
        self._status_lock = threading.Lock()

    # -- page ----------------------------------------------------------------------------------------------

    def examples(self) -> list[str]:
        indexed = self.assistant.is_indexed([cable for _, cable in EXAMPLES])
        return [question for question, cable in EXAMPLES if cable in indexed][:MAX_EXAMPLES]

    def modes(self) -> list[str]:
        return list(MODES) if self.assistant.llm_configured else ["Extractive"]

    def initial_status(self) -> str:
        """The status line the page opens with; a configured server is asked only once the page has loaded."""
        if self.assistant.llm_configured:
            return self._status_html(None, "Checking the LLM server…")
        return self.llm_status()

    def llm_status(self) -> str:
        """The LLM server's status line as HTML, asked of the server at most every STATUS_TTL_S seconds."""
        if not self.assistant.llm_configured:
            return self._status_html(None, "LLM mode is off: set CABLECHAT_LLM_URL and restart to enable it.")
        with self._status_lock:
            if self._status is None or time.monotonic() - self._status[0] > STATUS_TTL_S:
                ok, line = self.assistant.llm_status()
                self._status = (time.monotonic(), self._status_html(ok, line))
            return self._status[1]

    @staticmethod
    def _status_html(ok: bool | None, line: str) -> str:
        state = {None: "cc-off", True: "cc-ok", False: "cc-down"}[ok]
        title = {None: "", True: "LLM server ready. ", False: "LLM server unavailable: "}[ok]
        return f'<div class="cc-status {state}"><span class="cc-dot"></span>{esc(title + line)}</div>'

    # -- asking --------------------------------------------------------------------------------------------

    def respond(self, message: str, chat: list[Message], turns: list[Turn], mode_label: str, origin: str,
                year_from: str, year_to: str, classification: str, tags: str,
                request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """Stream one answer into the chat. Yields (chat, chat state, turns, message box, timeline, export)."""
        question = (message or "").strip()
        if not question:
            chat = [*chat, _notice_message("Type a question first, for example about a person, place or event in "
                                           "the cables.", kind="info")]
            yield chat, chat, turns, "", gr.skip(), gr.skip()
            return
        mode = MODES.get(mode_label, "extractive")
        filters = {"origin": origin, "date_from": _year(year_from), "date_to": _year(year_to),
                   "classification": "" if classification == ANY else classification, "tags": tags}
        try:
            described = self.assistant.filters(**filters).describe()
        except CableChatError:
            described = " ".join(f"{k}:{v}" for k, v in filters.items() if v)  # shown as typed; the error follows
        chat = [*chat, {"role": "user", "content": question_html(question, filters=described, mode=mode_label)},
                _assistant_says('<div class="cc-msg"><div class="cc-thinking">Searching the cables…</div></div>')]
        yield chat, chat, turns, "", gr.skip(), gr.skip()
        try:
            stream = self.assistant.ask_stream(question, mode=cast(Mode, mode), history=_history(turns), **filters)
            for event in stream:
                chat = [*chat[:-1], _assistant_says(streaming_html(event.shown))]
                yield chat, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            answer = stream.answer()
        except CableChatError as exc:
            turn = Turn(question=question, filters=described, mode=mode_label, error=str(exc))
            chat = [*chat[:-1], _notice_message(_sentence(exc))]
        except Exception as exc:  # a bug must cost one answer, not the session: say so and keep the app running
            log.exception("answering %r failed", question)
            turn = Turn(question=question, filters=described, mode=mode_label, error=repr(exc))
            chat = [*chat[:-1], _notice_message(f"Something went wrong while answering ({type(exc).__name__}). "
                                                "The app is still running: try again or rephrase.")]
        else:
            turn = Turn(question=question, filters=described, mode=mode_label, answer=answer)
            hint = (f"No indexed cable matches all of these filters together ({described}); loosen one of them."
                    if described and not answer.hits else None)
            chat = [*chat[:-1], _assistant_says(message_html(answer, hint=hint))]
        turns = [*turns, turn]
        figure: Any = gr.skip()
        if turn.answer:
            drawn = timeline_figure(turn.answer)
            figure = gr.Plot(value=drawn, visible=drawn is not None)
        yield chat, chat, turns, gr.skip(), figure, self._export(turns, request)

    def api_ask(self, question: str, mode: str = "extractive", origin: str = "", year: str = "",
                classification: str = "", tags: str = "") -> Iterator[str]:
        """Answer a question: yields the answer's Markdown as it grows, citations inline as [09ASTANA664 ¶6].

        The Markdown is safe to render: HTML, links and images in cable text are escaped and show as text.

        Optional: mode (extractive or llm), origin, year (2009 or 2008-2009), classification, tags (comma separated).
        """
        try:
            stream = self.assistant.ask_stream(question or "", mode=cast(Mode, mode), origin=origin, year=year,
                                               classification=classification, tags=tags)
            for event in stream:
                yield api_markdown(event.shown)
            yield api_markdown(_api_text(stream.answer()))
        except CableChatError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def _export(self, turns: Sequence[Turn], request: gr.Request) -> Any:
        folder = self._exports / re.sub(r"\W", "", request.session_hash or "anonymous")
        folder.mkdir(exist_ok=True)
        path = folder / "cablechat-conversation.md"
        path.write_text(conversation_markdown(turns, index=self.index_name), encoding="utf-8")
        return gr.DownloadButton(value=str(path), interactive=True)

    # -- cable viewer --------------------------------------------------------------------------------------

    def open_cable(self, ref: str, turns: list[Turn]) -> str:
        """The whole cable a chip names, on its paragraph, with the quote that was cited from it marked.

        What is returned is wrapped in an element whose id names the reference (``cc-open-09ASTANA664-6``), so that
        the page can tell the viewer now shows what it asked for (ui/assets/app.js, ``ccReveal``).
        """
        match = _REF.fullmatch(ref or "")
        if not match:
            return notice_html(f"{ref!r} is not a cable citation; citations look like 09ASTANA664 ¶6.", kind="error")
        cable_id, number = match[1], int(match[2]) if match[2] else None
        anchor = f"cc-open-{cable_id}" + (f"-{number}" if number is not None else "")
        try:
            cable = self.assistant.cable(cable_id)
        except CableChatError as exc:
            return f'<div id="{anchor}">{notice_html(str(exc), kind="error")}</div>'
        missing = ""
        if number is not None and cable.paragraph(number) is None:
            numbers = [p.number for p in cable.paragraphs]
            missing = notice_html(f"{cable.id} has no ¶{number}; its paragraphs run from ¶{min(numbers)} to "
                                  f"¶{max(numbers)}. It is shown from the top." if numbers else
                                  f"{cable.id} has no paragraph text.", kind="notice")
        quote = _quote(turns, f"{cable.id} ¶{number}") if number is not None else None
        shown = cable_html(cable, focus=number, quote=quote, indexed_refs=self.assistant.is_indexed(cable.references),
                           referenced_by=self.assistant.referenced_by(cable.id))
        return f'<div id="{anchor}">{missing}{shown}</div>'

    # -- links: /?cable=09ASTANA664&p=11 and /?q=… ---------------------------------------------------------

    def link_cable(self, request: gr.Request) -> Any:
        """On page load: the cable a ``?cable=ID&p=N`` link names, opened at that paragraph (else nothing).

        Whatever it shows, cable or error, is wrapped in ``#cc-open-link`` for the page to bring on screen.
        """
        params = request.query_params
        cable_id = (params.get("cable") or "").strip()
        if not cable_id:
            return gr.skip()
        number = (params.get("p") or "").strip().lstrip("¶")
        if number and not number.isdigit():
            shown = notice_html(f"The link's paragraph p={number!r} is not a number (links look like "
                                "?cable=09ASTANA664&p=11): the cable is shown from the top.", kind="notice") + \
                self.open_cable(cable_id, [])
        else:
            shown = self.open_cable(f"{cable_id} ¶{number}" if number else cable_id, [])
        return f'<div id="cc-open-link">{shown}</div>'

    def link_question(self, chat: list[Message], turns: list[Turn], mode_label: str, origin: str, year_from: str,
                      year_to: str, classification: str, tags: str,
                      request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """On page load: asks the question a ``?q=…`` link carries, as if it had been typed (else nothing)."""
        question = (request.query_params.get("q") or "").strip()
        if not question:
            yield (gr.skip(),) * 6
            return
        yield from self.respond(question, chat, turns, mode_label, origin, year_from, year_to, classification, tags,
                                request)

def _year(value: str | None) -> str | None:
    return None if value in (None, "", ANY) else str(value)


def _history(turns: Sequence[Turn]) -> list[Message]:
    history: list[Message] = []
    for turn in turns:
        if turn.answer is not None:
            history += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer.text}]
    return history


def _quote(turns: Sequence[Turn], ref: str) -> str | None:
    for turn in reversed(turns):
        for citation in turn.answer.citations if turn.answer else ():
            if citation.ref == ref:
                return citation.quote
    return None


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def _api_text(answer: Answer) -> str:
    return f"{answer.text}\n\n_Note: {answer.notice}_" if answer.notice else answer.text
