"""The chat UI without a browser: rendering is inert, the event handlers answer and fail gracefully, and the
served app answers ``gradio_client`` on ``/ask``, several users at once, without reaching outside the machine.

Helpers here (``ui_index``, ``served``, ``EVIL_CABLE``) are shared with tests/test_browser.py.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from openai_stub_server import Script, StubServer, closed_port_url

from rag.assistant import Assistant
from rag.embed import FakeEmbedder
from rag.errors import ServeError
from rag.indexer import build_index
from rag.llm import LLMConfig
from rag.models import Answer

gr = pytest.importorskip("gradio")
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from ui.app import build_app, serve
from ui.export import Turn, conversation_markdown
from ui.handlers import ANY, Handlers
from ui.ports import check_port
from ui.render import answer_html, api_markdown, cable_html, esc, message_html
from ui.timeline import timeline_figure

# gradio's queue calls pandas in a way pandas 3 deprecates; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):DeprecationWarning")
SEEDS = Path(__file__).resolve().parents[1] / "seeds"
KAZAKHSTAN = "Who wants Kazakhstan to join the Missile Technology Control Regime?"
PARIS = "When is the experts meeting in Paris?"
# A cable whose text and header carry markup of every kind a renderer might run. Its markdown image points at a
# closed loopback port, so even a failing test sends nothing off the machine.
# One unbroken 20,000-character word, as a pasted blob or a base64 attachment would be: it must wrap, never widen.
LONG_TOKEN = "Z" * 20_000
EVIL_CABLE = f"""VZCZCXRO0001
OO RUEHWEB
DE RUEHTV #0999/01 0451200
ZNY CCCCC ZZH
O 141200Z FEB 10
FM AMEMBASSY TEL AVIV
TO RUEHC/SECSTATE WASHDC IMMEDIATE 1234
INFO RUEHJM/AMCONSUL JERUSALEM 0001

C O N F I D E N T I A L TEL AVIV 000999

SIPDIS

E.O. 12958: DECL: 02/14/2020
TAGS: [PREL](#) [KWBG](#) [IS](#)

SUBJECT: <<ISRAEL>> ZEBRA MARKUP <strong>BOLD</strong>

REF: 09ASTANA664

Classified By: Ambassador for reasons 1.4 (b) and (d).

1. (C) The zebra delegation said <script>window.__pwned = 'script'</script> during the orchard talks.<br>Then left.

2. (C) The zebra delegation also showed <img src=x onerror="window.__pwned='img'"> and a markdown image
![zebra](http://127.0.0.1:9/zebra.png) with $x^2$ math, **stars** and [a link](javascript:window.__pwned='link').

3. (C) The zebra ledger, <a href="javascript:window.__pwned='anchor'">open it</a>, ran to LEDGER{LONG_TOKEN}
without a break.
"""
EVIL_QUESTION = "What did the zebra delegation say during the orchard talks?"


def ui_index(folder: Path) -> Path:
    """The seeds and the markup cable, indexed with the fake embedder (fast, deterministic)."""
    sources = folder / "cables"
    sources.mkdir(parents=True)
    for seed in SEEDS.glob("*.txt"):
        (sources / seed.name).write_text(seed.read_text(encoding="utf-8"), encoding="utf-8")
    (sources / "evil.txt").write_text(EVIL_CABLE, encoding="utf-8")
    build_index([sources], folder / "index", embedder=FakeEmbedder())
    return folder / "index"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(url: str, **options: Any) -> Client:
    """A gradio_client without its telemetry (on unless both the argument and GRADIO_ANALYTICS_ENABLED say off)."""
    return Client(url, verbose=False, analytics_enabled=False, **options)


@contextmanager
def served(assistant: Assistant, auth: tuple[str, str] | None = None) -> Iterator[str]:
    """The app for ``assistant`` served in this process on a free local port; yields its URL."""
    port = free_port()
    app = serve(assistant, port=port, auth=auth, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ui_index(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="module")
def assistant(index_dir: Path) -> Iterator[Assistant]:
    with Assistant(index_dir, embedder=FakeEmbedder()) as opened:
        yield opened


@pytest.fixture(scope="module")
def url(assistant: Assistant) -> Iterator[str]:
    with served(assistant) as address:
        yield address


def run(handlers: Handlers, message: str, *, turns: list[Turn] | None = None, mode: str = "Extractive",
        origin: str = "", year_from: str = ANY, year_to: str = ANY, classification: str = ANY,
        tags: str = "") -> list[tuple[Any, ...]]:
    """Every value ``respond`` yields for one message."""
    return list(handlers.respond(message, [], turns or [], mode, origin, year_from, year_to, classification, tags,
                                 gr.Request(session_hash="test")))


def last_message(frames: list[tuple[Any, ...]]) -> str:
    """The last chat message's HTML with character references decoded, as the browser would read it."""
    return html.unescape(str(frames[-1][0][-1]["content"]))


# -- rendering -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "<<Israel>>",
                                  "![x](http://127.0.0.1:9/x.png)", "[a](javascript:alert(1))", "$x^2$", "**b**"])
def test_escaped_text_holds_no_markup(text: str) -> None:
    shown = esc(text)
    assert not any(c in shown for c in "<>[]()$*\"'`"), shown


def test_answer_markdown_becomes_chips_and_quotes() -> None:
    shown = answer_html("**09ASTANA664**, Embassy Astana:\n\n> KazKosmos asked <b>us</b>. [09ASTANA664 ¶2]")
    assert '<a class="cc-cite" href="#cc-09ASTANA664&#45;2"' in shown
    assert "<strong>09ASTANA664</strong>" in shown and "<blockquote>" in shown
    assert "&#60;b&#62;us&#60;/b&#62;" in shown and "<b>" not in shown
    assert "\n\n" not in shown  # one HTML block, so the chat's Markdown renderer leaves it alone


def test_cable_view_escapes_every_field(assistant: Assistant) -> None:
    cable = assistant.cable("10TELAVIV999")
    shown = cable_html(cable, focus=2, quote=None, indexed_refs={"09ASTANA664"}, referenced_by=["09XYZ1"])
    for raw in ("<script>", "<img", "<strong>", "<<", "![zebra]", "javascript:"):
        assert raw not in shown
    assert 'id="cc-para-2"' in shown and "cc-focus" in shown
    assert 'href="#cc-09ASTANA664"' in shown and 'href="#cc-09XYZ1"' in shown


def test_sources_highlight_the_quote(assistant: Assistant) -> None:
    answer = assistant.ask(KAZAKHSTAN)
    shown = message_html(answer)
    assert 'class="cc-sources"' in shown
    assert shown.count("<mark>") == len(answer.citations) >= 1
    assert esc(answer.citations[0].quote) in shown


def test_timeline_draws_the_cited_cables(assistant: Assistant) -> None:
    figure = timeline_figure(assistant.ask(KAZAKHSTAN))
    assert figure is not None
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert "09ASTANA664" in labels


# -- handlers ------------------------------------------------------------------------------------------------


def test_answer_streams_then_settles_with_sources_and_export(assistant: Assistant) -> None:
    frames = run(Handlers(assistant), KAZAKHSTAN)
    assert len(frames) >= 3  # the question at once, then streamed text, then the finished answer
    assert "cc-streaming" in str(frames[1][0][-1]["content"])
    final = last_message(frames)
    assert "cc-cite" in final and "cc-sources" in final
    turns = frames[-1][2]
    assert turns[0].answer.citations
    export = Path(frames[-1][5].value["path"])
    text = export.read_text(encoding="utf-8")
    assert f"## 1. {KAZAKHSTAN}" in text and "## References" in text and "[09ASTANA664 ¶" in text


def test_filters_apply_and_show_on_the_question(assistant: Assistant) -> None:
    frames = run(Handlers(assistant), PARIS, origin="Moscow", year_from="2009", year_to="2009")
    question = html.unescape(str(frames[-1][0][-2]["content"]))
    assert "origin:Moscow" in question and "from:2009-01-01" in question
    turn = frames[-1][2][-1]
    assert turn.answer and {c.cable_id for c in turn.answer.citations} == {"09MOSCOW2809"}


@pytest.mark.parametrize(("message", "options", "expected"), [
    ("", {}, "Type a question first"),
    ("x" * 10_000, {}, "10,000 characters"),
    (PARIS, {"origin": "Narnia"}, "No indexed cable has origin 'Narnia'"),
    (PARIS, {"tags": "NOSUCHTAG"}, "No indexed cable has tag"),
    (PARIS, {"year_from": "2010", "year_to": "2009"}, "date range runs backwards"),
    (PARIS, {"origin": "Moscow", "year_from": "2010"}, "No indexed cable matches all of these filters together"),
])
def test_bad_input_gets_a_clear_message(assistant: Assistant, message: str, options: dict[str, str],
                                        expected: str) -> None:
    handlers = Handlers(assistant)
    frames = run(handlers, message, **options)
    shown = last_message(frames)
    assert expected in shown and any(f"cc-{kind}" in shown for kind in ("error", "info", "notice"))
    assert "cc-sources" in last_message(run(handlers, KAZAKHSTAN))  # and the next question is answered


def test_llm_mode_with_the_server_down_falls_back_and_says_so(index_dir: Path) -> None:
    config = LLMConfig(url=closed_port_url(), model="stub-model", connect_timeout=1, read_timeout=2)
    with Assistant(index_dir, embedder=FakeEmbedder(), llm=config) as down:
        handlers = Handlers(down)
        assert handlers.modes() == ["Extractive", "LLM"]
        assert "cc-down" in handlers.llm_status()
        shown = last_message(run(handlers, KAZAKHSTAN, mode="LLM"))
    assert "LLM mode failed" in shown and "cc-notice" in shown and "cc-cite" in shown


def test_llm_mode_streams_the_model_reply(index_dir: Path) -> None:
    reply = "KazKosmos asked for U.S. support for Kazakhstan to join the MTCR [09ASTANA664 ¶2]."
    with StubServer(Script(text=reply, chunk=6)) as stub, \
            Assistant(index_dir, embedder=FakeEmbedder(), llm=LLMConfig(url=stub.url, model="stub-model")) as up:
        handlers = Handlers(up)
        assert "cc-ok" in handlers.llm_status()
        frames = run(handlers, KAZAKHSTAN, mode="LLM")
    assert "LLM" in str(frames[-1][0][-2]["content"])
    assert sum("cc-streaming" in str(f[0][-1]["content"]) for f in frames) >= 3
    assert 'href="#cc-09ASTANA664-2"' in last_message(frames)


def test_without_a_server_only_extractive_is_offered(assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CABLECHAT_LLM_URL", raising=False)
    handlers = Handlers(assistant)
    assert handlers.modes() == ["Extractive"]
    assert "LLM mode is off" in handlers.llm_status()


def test_open_cable_focuses_the_paragraph_and_links_references(assistant: Assistant) -> None:
    answer = assistant.ask(KAZAKHSTAN)
    citation = answer.citations[0]
    turns = [Turn(question=KAZAKHSTAN, filters="", mode="Extractive", answer=answer)]
    shown = Handlers(assistant).open_cable(citation.ref, turns)
    assert f'class="cc-para cc-focus" id="cc-para-{citation.paragraph}"' in shown
    assert f"<mark>{esc(citation.quote)}</mark>" in shown
    assert 'href="#cc-10TELAVIV999"' in shown  # the markup cable's REF names 09ASTANA664
    assert "is not in the index" in Handlers(assistant).open_cable("99NOWHERE1 ¶1", [])


def test_export_lists_each_cited_paragraph_once(assistant: Assistant) -> None:
    answer = assistant.ask(KAZAKHSTAN)
    turns = [Turn(KAZAKHSTAN, "", "Extractive", answer), Turn(KAZAKHSTAN, "origin:Astana", "Extractive", answer),
             Turn("x" * 3000, "", "Extractive", error="too long")]
    text = conversation_markdown(turns, index="seeds")
    assert text.count("## References") == 1
    assert text.count(f"- **[{answer.citations[0].ref}]**") == 1
    assert "*mode: Extractive, filters: origin:Astana*" in text and "> Not answered: too long" in text


def test_export_renders_cable_markup_as_text(assistant: Assistant) -> None:
    answer = assistant.ask(EVIL_QUESTION)
    turns = [Turn("<img src=x onerror=alert(1)> [x](javascript:y)?", "", "Extractive", answer)]
    shown = render_markdown(conversation_markdown(turns, index="ui"))
    assert not re.search(r"<(script|img|a)\b", shown) and "href=" not in shown, shown
    assert "[10TELAVIV999 ¶" in shown and "<img src=x onerror=alert(1)>" in html.unescape(shown)


def test_build_app_needs_no_server(assistant: Assistant) -> None:
    app = build_app(assistant)
    names = {dep.api_name for dep in app.fns.values() if dep.api_name}
    assert "ask" in names


# -- served ------------------------------------------------------------------------------------------------


def test_client_ask_returns_a_cited_answer(url: str) -> None:
    asker = client(url)
    text = asker.predict(KAZAKHSTAN, api_name="/ask")
    assert "[09ASTANA664 ¶" in text
    job = asker.submit(PARIS, "extractive", "Moscow", api_name="/ask")
    outputs = list(job)
    assert len(outputs) >= 2 and outputs[-1].startswith(outputs[0][:20]) and "[09MOSCOW2809 ¶" in outputs[-1]


def test_client_bad_question_raises_the_message(url: str) -> None:
    with pytest.raises(AppError, match="no words to search for"):
        client(url).predict("?!", api_name="/ask")


def test_a_slow_question_does_not_block_others(index_dir: Path) -> None:
    """An LLM question hangs on a silent server; another user's question is answered meanwhile."""
    with ExitStack() as llm_server:
        stub = llm_server.enter_context(StubServer(Script(behaviour="hang", hang_s=120)))
        config = LLMConfig(url=stub.url, model="stub-model", read_timeout=120)
        with Assistant(index_dir, embedder=FakeEmbedder(), llm=config) as slow, served(slow) as address:
            hanging = client(address).submit(KAZAKHSTAN, "llm", api_name="/ask")
            time.sleep(0.5)
            quick = client(address).predict(PARIS, api_name="/ask")
            assert "[09MOSCOW2809 ¶" in quick and not hanging.done()
            llm_server.close()  # the LLM server goes away: the slow question falls back to an extractive answer
            assert "LLM mode failed" in hanging.result(timeout=60)


def test_sign_in_is_required_when_auth_is_set(assistant: Assistant) -> None:
    with served(assistant, auth=("ana", "s3cret")) as address:
        with pytest.raises(AuthenticationError):
            client(address)
        answer = client(address, auth=("ana", "s3cret")).predict(KAZAKHSTAN, api_name="/ask")
    assert "[09ASTANA664 ¶" in answer


def test_serving_reaches_nothing_outside_this_machine(assistant: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the app and answer through it while every name looked up and every connection made is recorded.

    Names matter as much as connections: with no network, a call home fails at the lookup and never connects.
    """
    reached: list[Any] = []
    lock = threading.Lock()
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def recording_connect(self: socket.socket, address: Any) -> Any:
        with lock:
            reached.append(address[0] if isinstance(address, tuple) else address)
        return connect(self, address)

    def recording_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            reached.append(host.decode() if isinstance(host, bytes) else host)
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(socket, "getaddrinfo", recording_lookup)
    with served(assistant) as address:
        assert "[09ASTANA664 ¶" in client(address).predict(KAZAKHSTAN, api_name="/ask")
    local = ("127.", "::1", "localhost")
    outside = [a for a in reached if isinstance(a, str) and not a.startswith(local) and not a.startswith("/")]
    assert reached and not outside, outside


def test_answer_text_round_trips_through_api(assistant: Assistant) -> None:
    answer = assistant.ask(KAZAKHSTAN)
    streamed = list(Handlers(assistant).api_ask(KAZAKHSTAN))
    assert isinstance(answer, Answer) and streamed[-1] == api_markdown(answer.text)
    assert rendered_text(streamed[-1]) == rendered_text(answer.text)  # the same words, only made inert


def test_client_ask_returns_markdown_that_renders_no_markup(url: str) -> None:
    """A client rendering the documented Markdown shows the cable's markup as text and runs none of it."""
    text = client(url).predict(EVIL_QUESTION, api_name="/ask")
    shown = render_markdown(text)
    assert "[10TELAVIV999 ¶" in text and "<script>" not in text
    assert not re.search(r"<(script|img|a|iframe)\b", shown) and "href=" not in shown, shown
    assert "<script>window.__pwned = 'script'</script>" in html.unescape(shown)


@pytest.mark.parametrize("cable_text", [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[a link](javascript:alert(1))",
    "![zebra](http://127.0.0.1:9/zebra.png)",
    "<javascript:alert(1)>",
    "&lt;script&gt; and &#106;avascript:",
    "\\[a](javascript:alert(1))",
    "[09ASTANA664 ¶6](javascript:alert(1))",
    "`<b>` and ``[x](javascript:y)``",
])
def test_api_markdown_makes_cable_markup_inert(cable_text: str) -> None:
    answer = f"**10TELAVIV999**, Embassy Tel Aviv:\n\n> {cable_text} [10TELAVIV999 ¶1]"
    shown = render_markdown(api_markdown(answer))
    assert not re.search(r"<(script|img|a)\b", shown) and "href=" not in shown, shown
    assert "<strong>10TELAVIV999</strong>" in shown and "<blockquote>" in shown
    assert cable_text in html.unescape(re.sub(r"<[^>]+>", "", shown)).replace("\n", " ")


def test_api_markdown_stops_a_cable_defining_where_citations_link() -> None:
    """A cable line shaped like a link definition for a citation must not turn the answer's citations into links."""
    answer = "> [09ASTANA664 ¶6]: javascript:alert(1)\n\nKazKosmos asked for support [09ASTANA664 ¶6]."
    shown = render_markdown(api_markdown(answer))
    assert "href=" not in shown and "[09ASTANA664 ¶6]" in shown


def render_markdown(text: str) -> str:
    """``text`` as a CommonMark renderer that passes HTML through (markdown-it's commonmark preset) shows it."""
    markdown_it = pytest.importorskip("markdown_it")
    return str(markdown_it.MarkdownIt("commonmark").render(text))


def rendered_text(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", render_markdown(text)))


def test_classification_offers_the_index_values_only(assistant: Assistant) -> None:
    app = build_app(assistant)
    dropdown = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "cc-classification")
    offered = [value for _, value in dropdown.choices]
    assert offered == [ANY, *assistant.filter_values("classification")]
    assert sorted(offered[1:]) == ["CONFIDENTIAL", "UNCLASSIFIED//SENSITIVE"]


def test_sources_show_the_heading_and_a_link_to_the_paragraph(assistant: Assistant) -> None:
    answer = assistant.ask(PARIS, origin="Moscow")
    shown = html.unescape(message_html(answer))
    cited = {c.ref: c for c in answer.citations}
    assert "09MOSCOW2809 ¶4" in cited
    assert '<div class="cc-source-heading">Jan 20-21 Experts Meeting in Paris</div>' in shown
    assert 'href="?cable=09MOSCOW2809&p=4"' in shown


def test_the_viewer_repeats_a_section_heading_out_of_sight(assistant: Assistant) -> None:
    seed = assistant.cable("09MOSCOW2809")
    heading = "Jan 20-21 Experts Meeting in Paris"
    # The seeds give each heading one paragraph; a real section often runs to several.
    section = tuple(replace(p, heading=heading) if p.number in (4, 5) else p for p in seed.paragraphs)
    cable = replace(seed, paragraphs=section)
    second = cable_html(cable, focus=5, quote=None, indexed_refs=set(), referenced_by=[])
    assert f'id="cc-para-5"><div class="cc-para-heading">{esc(heading)}</div>' in second
    first = cable_html(cable, focus=4, quote=None, indexed_refs=set(), referenced_by=[])
    assert "cc-para-heading" not in first  # its heading is the section line right above it


@pytest.mark.parametrize(("ref", "expected"), [
    ("09ASTANA664 ¶11", 'id="cc-open-09ASTANA664-11"'),
    ("09ASTANA664", 'id="cc-open-09ASTANA664"'),
    ("09ASTANA664 ¶99", "09ASTANA664 has no ¶99; its paragraphs run from ¶"),
    ("99NOWHERE1 ¶1", "is not in the index"),
    ("<script>", "is not a cable citation"),
])
def test_open_cable_says_what_it_opened(assistant: Assistant, ref: str, expected: str) -> None:
    shown = Handlers(assistant).open_cable(ref, [])
    assert expected in html.unescape(shown) and "<script>" not in shown


def test_serve_on_a_taken_port_says_which_and_what_to_choose(assistant: Assistant) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=rf"port {port} on 127.0.0.1 is already in use.*--port (\d+)") as caught:
            serve(assistant, port=port, block=False)
    suggested = int(re.search(r"--port (\d+), which is free now", str(caught.value))[1])
    check_port("127.0.0.1", suggested)  # the port it suggests can be listened on
    app = serve(assistant, port=suggested, block=False)
    try:
        assert "[09ASTANA664 ¶" in client(f"http://127.0.0.1:{suggested}/").predict(KAZAKHSTAN, api_name="/ask")
    finally:
        app.close()
