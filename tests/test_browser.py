"""The chat in a real browser: Debian's chromium driven by Playwright against a server started here.

Every request the page makes is recorded, and each test ends by checking that all of them went to this machine.
Screenshots of each screen size go to benchmarks/out/browser/ (ignored by git), to be looked at.
Needs /usr/bin/chromium (the Debian package; never `playwright install`); skipped cleanly without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from test_ui import EVIL_QUESTION, KAZAKHSTAN, LONG_TOKEN, PARIS, served, ui_index

from rag.assistant import Assistant
from rag.embed import FakeEmbedder

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "browser"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync"]
# A projector or small laptop, a common laptop, a phone.
SIZES = {"1024x768": (1024, 768), "1280x720": (1280, 720), "390x844": (390, 844)}
# The reply is finished, and so is gradio's event: until then gradio drops a next question (the page is marked
# cc-answering meanwhile), so a test that asks again as soon as the text is complete would lose its question.
ANSWERED = """n => {
  const messages = document.querySelectorAll('#cc-chat .cc-msg');
  return messages.length > n && !messages[messages.length - 1].querySelector('.cc-thinking, .cc-streaming')
    && !document.documentElement.classList.contains('cc-answering');
}"""
# The cited paragraph as the reader sees it, or null while it is not on screen: inside the viewport and the
# viewer's visible box (below the cable's pinned id bar), and not covered by anything. A paragraph taller than the
# viewer cannot be seen whole: then its quoted sentence must be, or, opened by a link (no quote), its start.
CITED_IN_VIEW = """() => {
  const viewer = document.getElementById('cc-viewer');
  const para = viewer?.querySelector('.cc-focus');
  const pinned = viewer?.querySelector('.cc-cable-top');
  if (!para || !pinned) return null;
  const box = viewer.getBoundingClientRect();
  const top = Math.max(0, box.top, pinned.getBoundingClientRect().bottom);
  const bottom = Math.min(window.innerHeight, box.bottom);
  const left = Math.max(0, box.left), right = Math.min(window.innerWidth, box.right);
  const whole = para.getBoundingClientRect().height <= bottom - top;
  const mark = para.querySelector('mark');
  const target = whole || !mark ? para : mark;
  const r = target.getBoundingClientRect();
  const end = whole || mark ? r.bottom : r.top + 40;
  if (r.top < top - 1 || end > bottom + 1 || r.left < left - 1 || r.right > right + 1) return null;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + Math.min(r.height / 2, 8));
  if (!para.contains(hit)) return null;
  return {shown: whole ? 'paragraph' : mark ? 'quote' : 'start', id: para.id, top: r.top, bottom: r.bottom};
}"""
# The last question and the first line of its answer, both inside the chat's visible box.
QUESTION_IN_VIEW = """() => {
  const chat = document.querySelector('#cc-chat .bubble-wrap') || document.getElementById('cc-chat');
  const questions = chat.querySelectorAll('.cc-q');
  const answers = chat.querySelectorAll('.cc-msg');
  if (!questions.length || !answers.length) return false;
  const box = chat.getBoundingClientRect();
  const q = questions[questions.length - 1].getBoundingClientRect();
  const a = answers[answers.length - 1].getBoundingClientRect();
  const top = Math.max(0, box.top), bottom = Math.min(window.innerHeight, box.bottom);
  return q.top >= top - 1 && q.bottom <= bottom + 1 && a.top >= q.bottom && a.top + 24 <= bottom;
}"""
NOT_WIDER = "() => document.documentElement.scrollWidth <= window.innerWidth"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
              pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):DeprecationWarning")]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Assistant(ui_index(tmp_path_factory.mktemp("browser")), embedder=FakeEmbedder()) as assistant, \
            served(assistant) as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def screenshot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


class Visit:
    """The app open in one tab, with every request and dialog the page causes recorded.

    ``Visit(browser, url)`` opens a fresh tab in a fresh browser context, as a first visit or a shared link would.
    The tests at the default size share one (loading the app costs seconds on a busy two-core machine); ``fresh``
    starts each of them on a new conversation with no filters.
    """

    def __init__(self, browser: Any, url: str, *, size: tuple[int, int] = (1440, 900), **options: Any) -> None:
        self.context = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True,
                                           **options)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#cc-input textarea")

    def fresh(self) -> None:
        """A new conversation and no filters, each waited for by the change the server's reply makes.

        Waiting only for an empty chat and empty filters would pass at once when they already were, and the
        reply, arriving later, would then wipe what the test does next (the filter test's flakiness).
        """
        page = self.page
        if page.locator("#cc-chat .cc-q, #cc-chat .cc-msg, #cc-viewer .cc-cable, #cc-viewer .cc-error").count():
            page.get_by_role("button", name="New chat").click()
            page.wait_for_function("""() => !document.querySelector('#cc-chat .cc-q, #cc-chat .cc-msg')
                && document.querySelector('#cc-viewer .cc-viewer-empty')""")
        self.set_filter("cc-origin", "(clearing)")  # the clear's reply is the only thing that can empty it again
        page.get_by_role("button", name="Clear filters").click()
        page.wait_for_function("() => document.querySelector('#cc-origin input, #cc-origin textarea').value === ''")

    def ask(self, question: str) -> Any:
        """Type ``question``, press Enter, wait for the finished reply; returns the reply's element."""
        before = self.page.locator("#cc-chat .cc-msg").count()
        self.page.fill("#cc-input textarea", question)
        self.page.press("#cc-input textarea", "Enter")
        try:
            self.page.wait_for_function(ANSWERED, arg=before, timeout=30_000)
        except sync_api.TimeoutError:
            shot = screenshot(self.page, "failed-ask")
            raise AssertionError(f"no finished reply to {question[:80]!r} in 30 s; the chat shows "
                                 f"{self.page.locator('#cc-chat').inner_text()[-400:]!r}, the box holds "
                                 f"{self.page.input_value('#cc-input textarea')[:80]!r}; see {shot}") from None
        return self.page.locator("#cc-chat .cc-msg").last

    def set_filter(self, elem_id: str, value: str) -> None:
        box = f"#{elem_id} input, #{elem_id} textarea"
        self.page.fill(box, value)
        self.page.wait_for_function(f"v => document.querySelector('{box}').value === v", arg=value)

    def open_chip(self, chip: Any) -> Any:
        """Click a citation chip and wait for the viewer to show its cable; returns the viewer."""
        cable_id = chip.inner_text().split(" ")[0]
        chip.click()
        self.page.wait_for_function(
            "id => document.querySelector('#cc-viewer .cc-cable-id')?.textContent === id", arg=cable_id,
            timeout=15_000)
        return self.page.locator("#cc-viewer")

    def cited_in_view(self) -> dict[str, Any]:
        """Wait until the viewer's cited paragraph (or, in a long one, its quote) is on screen; say which."""
        return dict(self.page.wait_for_function(CITED_IN_VIEW, timeout=15_000).json_value())

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]

    def close(self) -> None:
        outside = self.outside()
        self.context.close()
        assert not outside, f"the page reached outside this machine: {outside}"


@pytest.fixture(scope="module")
def opened(browser: Any, url: str) -> Iterator[Visit]:
    page = Visit(browser, url)
    yield page
    page.context.close()


@pytest.fixture
def visit(opened: Visit) -> Iterator[Visit]:
    opened.fresh()
    yield opened
    assert not opened.outside(), f"the page reached outside this machine: {opened.outside()}"


def test_answer_streams_cites_and_opens_the_cable_at_the_paragraph(visit: Visit) -> None:
    page = visit.page
    page.evaluate("""() => new MutationObserver(() => {
        if (document.querySelector('#cc-chat .cc-streaming')) window.ccSawStreaming = true;
    }).observe(document.querySelector('#cc-chat'), {subtree: true, childList: true, characterData: true})""")
    reply = visit.ask(KAZAKHSTAN)
    assert page.evaluate("window.ccSawStreaming === true"), "the answer did not arrive in pieces"
    assert reply.locator(".cc-sources .cc-source").count() >= 1
    assert reply.locator(".cc-source mark").count() >= 1
    page.wait_for_selector("#cc-timeline img")
    assert screenshot(page, "1440x900-answered").stat().st_size > 10_000

    chip = reply.locator(".cc-answer a.cc-cite").first
    ref = chip.inner_text()
    assert ref.startswith("09ASTANA664 ¶")
    viewer = visit.open_chip(chip)
    assert visit.cited_in_view()["id"] == f"cc-para-{ref.split('¶')[1]}"
    assert viewer.locator(".cc-para.cc-focus mark").count() == 1
    screenshot(page, "1440x900-cable-viewer")

    referenced_by = viewer.locator("a.cc-cite", has_text="10TELAVIV999")
    visit.open_chip(referenced_by)
    assert "ZEBRA MARKUP" in viewer.locator(".cc-cable-subject").inner_text()
    assert viewer.locator("a.cc-cite", has_text="09ASTANA664").count() == 1  # its REF, back again


def test_filter_is_applied_to_the_next_question_and_shown_on_it(visit: Visit) -> None:
    visit.set_filter("cc-origin", "Moscow")
    reply = visit.ask(PARIS)
    question = visit.page.locator("#cc-chat .cc-q").last
    assert "origin:Moscow" in question.inner_text()
    cited = {chip.split(" ")[0] for chip in reply.locator(".cc-answer a.cc-cite").all_inner_texts()}
    assert cited == {"09MOSCOW2809"}


def test_classification_offers_only_the_index_values(visit: Visit) -> None:
    visit.page.locator("#cc-classification input").click()
    options = visit.page.locator("ul[role='listbox'] li")
    options.first.wait_for()
    offered = sorted(text.replace("✓", "").strip() for text in options.all_inner_texts())
    assert offered == ["Any", "CONFIDENTIAL", "UNCLASSIFIED//SENSITIVE"]
    visit.page.keyboard.press("Escape")


def test_cable_markup_is_shown_as_text_and_runs_nothing(visit: Visit) -> None:
    page = visit.page
    reply = visit.ask(EVIL_QUESTION)
    chip = reply.locator("a.cc-cite", has_text="10TELAVIV999").first
    viewer = visit.open_chip(chip)
    visit.cited_in_view()
    screenshot(page, "1440x900-markup-cable")
    text = viewer.inner_text()
    assert "<script>window.__pwned = 'script'</script>" in text
    assert "<img src=x onerror=" in text and "![zebra](http://127.0.0.1:9/zebra.png)" in text
    assert "<<ISRAEL>> ZEBRA MARKUP <strong>BOLD</strong>" in text
    assert "<script>" in reply.inner_text() or "<img" in reply.inner_text()
    assert page.evaluate("window.__pwned === undefined")
    for made in ("script", "img[src='x']", "a[href^='javascript']"):
        assert page.locator(f"#cc-chat {made}, #cc-viewer {made}").count() == 0, made
    assert not visit.dialogs and not any("zebra.png" in u or u.endswith("/x") for u in visit.requests)


def test_long_unbroken_text_wraps_instead_of_widening_the_page(visit: Visit) -> None:
    page = visit.page
    visit.ask(f"What did the zebra ledger run to? {LONG_TOKEN}")
    visit.set_filter("cc-origin", "O" * 20_000)
    assert "No indexed cable has origin" in visit.ask("What did the zebra ledger run to?").inner_text()
    assert page.evaluate(NOT_WIDER), page.evaluate("document.documentElement.scrollWidth")
    page.evaluate("window.ccRef = '10TELAVIV999 ¶3'; document.getElementById('cc-open').click()")
    assert visit.cited_in_view()["id"] == "cc-para-3"
    assert LONG_TOKEN[:1000] in page.locator("#cc-viewer .cc-focus").inner_text().replace("\n", "")
    assert page.evaluate(NOT_WIDER), page.evaluate("document.documentElement.scrollWidth")
    screenshot(page, "1440x900-long-token")


def test_bad_input_gets_a_message_and_the_app_keeps_working(visit: Visit) -> None:
    assert "Type a question first" in visit.ask("").inner_text()
    assert "10,000 characters" in visit.ask("w" * 10_000).inner_text()
    visit.set_filter("cc-origin", "Narnia")
    assert "No indexed cable has origin 'Narnia'" in visit.ask(PARIS).inner_text()
    visit.page.get_by_role("button", name="Clear filters").click()
    visit.page.wait_for_function("() => document.querySelector('#cc-origin input, #cc-origin textarea').value === ''")
    assert visit.ask(KAZAKHSTAN).locator(".cc-answer a.cc-cite").count() >= 1


def test_example_question_and_export(visit: Visit) -> None:
    page = visit.page
    page.locator("#cc-chat").get_by_text(KAZAKHSTAN).first.click()
    page.wait_for_function(ANSWERED, arg=0, timeout=30_000)
    with page.expect_download() as download:
        page.locator("#cc-export").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert f"## 1. {KAZAKHSTAN}" in text and "## References" in text and "[09ASTANA664 ¶" in text


# -- every screen size, each in a fresh tab ----------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
def test_a_chip_puts_the_cited_paragraph_on_screen(browser: Any, url: str, size: str) -> None:
    visit = Visit(browser, url, size=SIZES[size])
    page = visit.page
    try:
        visit.ask(KAZAKHSTAN)
        reply = visit.ask(PARIS)
        # The chat stays on the question just asked and the start of its answer, not on the answer's end.
        assert page.evaluate(QUESTION_IN_VIEW), "the question and the start of its answer are not in view"
        screenshot(page, f"{size}-answered")
        chip = reply.locator(".cc-answer a.cc-cite").first
        ref = chip.inner_text()
        chip.click()
        shown = visit.cited_in_view()
        assert shown["id"] == f"cc-para-{ref.split('¶')[1]}"
        assert page.evaluate(NOT_WIDER)
        screenshot(page, f"{size}-chip-clicked")
        if page.evaluate("document.documentElement.classList.contains('cc-drawer-open')"):
            page.get_by_role("button", name="Close the cable viewer").click()
            page.wait_for_function("() => !document.documentElement.classList.contains('cc-drawer-open')")
            assert page.locator("#cc-chat .cc-q").last.is_visible()
    finally:
        visit.close()


@pytest.mark.parametrize("size", ["1280x720", "390x844"])
def test_a_link_opens_the_cable_at_its_paragraph_in_a_fresh_tab(browser: Any, url: str, size: str) -> None:
    visit = Visit(browser, f"{url}?cable=09ASTANA664&p=11", size=SIZES[size])
    try:
        assert visit.cited_in_view()["id"] == "cc-para-11"
        screenshot(visit.page, f"{size}-link-opened")
    finally:
        visit.close()


@pytest.mark.parametrize(("query", "says"), [
    ("cable=09ASTANA664&p=99", "09ASTANA664 has no ¶99"),
    ("cable=09ASTANA664&p=eleven", "is not a number"),
    ("cable=99NOWHERE1&p=1", "is not in the index"),
    ("cable=" + quote("<img src=x onerror=window.__pwned=1>"), "is not a cable citation"),
])
def test_a_broken_link_says_what_is_wrong_on_screen(browser: Any, url: str, query: str, says: str) -> None:
    visit = Visit(browser, f"{url}?{query}", size=SIZES["390x844"])
    try:
        visit.page.wait_for_function("() => document.documentElement.classList.contains('cc-drawer-open')")
        notice = visit.page.locator("#cc-viewer .cc-error, #cc-viewer .cc-notice").first
        assert says in notice.inner_text() and notice.is_visible()
        assert visit.page.evaluate("window.__pwned === undefined")
    finally:
        visit.close()


def test_a_link_asks_its_question_in_a_fresh_tab(browser: Any, url: str) -> None:
    visit = Visit(browser, f"{url}?q={quote(PARIS)}")
    try:
        visit.page.wait_for_function(ANSWERED, arg=0, timeout=30_000)
        assert visit.page.locator("#cc-chat .cc-q-text").last.inner_text() == PARIS
        assert visit.page.locator("#cc-chat .cc-answer a.cc-cite", has_text="09MOSCOW2809").count() >= 1
    finally:
        visit.close()
    markup = "<img src=x onerror=window.__pwned=1> who?"
    visit = Visit(browser, f"{url}?q={quote(markup)}")
    try:
        visit.page.wait_for_function(ANSWERED, arg=0, timeout=30_000)
        assert visit.page.locator("#cc-chat .cc-q-text").last.inner_text() == markup
        assert visit.page.evaluate("window.__pwned === undefined") and not visit.dialogs
    finally:
        visit.close()


def test_sources_offer_a_link_that_opens_the_paragraph_in_a_fresh_tab(browser: Any, url: str) -> None:
    visit = Visit(browser, url, permissions=["clipboard-read", "clipboard-write"])
    try:
        source = visit.ask(PARIS).locator(".cc-source").first
        assert "Jan 20-21 Experts Meeting in Paris" in source.locator(".cc-source-heading").inner_text()
        link = source.locator("a.cc-link")
        ref = source.locator("a.cc-cite").inner_text()
        link.click()
        visit.page.wait_for_function("() => document.querySelector('a.cc-link.cc-copied')")
        copied = visit.page.evaluate("navigator.clipboard.readText()")
        cable_id, number = ref.split(" ¶")
        assert copied == f"{url}?cable={cable_id}&p={number}"
        assert visit.page.locator("#cc-viewer .cc-viewer-empty").count() == 1  # copying opened nothing
    finally:
        visit.close()
    shared = Visit(browser, copied, size=SIZES["1024x768"])
    try:
        assert shared.cited_in_view()["id"] == f"cc-para-{number}"
    finally:
        shared.close()
