"""The chat in a real browser: Debian's chromium driven by Playwright against a server started here.

Every request the page makes is recorded, and each test ends by checking that all of them went to this machine.
Needs /usr/bin/chromium (the Debian package; never `playwright install`); skipped cleanly without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ui import EVIL_QUESTION, KAZAKHSTAN, PARIS, served, ui_index

from rag.assistant import Assistant
from rag.embed import FakeEmbedder

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync"]
ANSWERED = """n => {
  const messages = document.querySelectorAll('#cc-chat .cc-msg');
  return messages.length > n && !messages[messages.length - 1].querySelector('.cc-thinking, .cc-streaming');
}"""

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


class Visit:
    """The app open in one page, with every request and dialog the page causes recorded.

    One page serves the whole module, because loading the app costs seconds on a busy two-core machine;
    ``fresh`` starts each test on a new conversation with no filters, as a first visit would.
    """

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("#cc-input textarea")

    def fresh(self) -> None:
        self.page.get_by_role("button", name="New chat").click()
        self.page.get_by_role("button", name="Clear filters").click()
        self.page.wait_for_function("""() => !document.querySelector('#cc-chat .cc-msg')
            && document.querySelector('#cc-origin input, #cc-origin textarea').value === ''""")

    def ask(self, question: str) -> Any:
        """Type ``question``, press Enter, wait for the finished reply; returns the reply's element."""
        before = self.page.locator("#cc-chat .cc-msg").count()
        self.page.fill("#cc-input textarea", question)
        self.page.press("#cc-input textarea", "Enter")
        self.page.wait_for_function(ANSWERED, arg=before, timeout=30_000)
        return self.page.locator("#cc-chat .cc-msg").last

    def set_filter(self, elem_id: str, value: str) -> None:
        self.page.fill(f"#{elem_id} input, #{elem_id} textarea", value)

    def open_chip(self, chip: Any) -> Any:
        """Click a citation chip and wait for the viewer to show its cable; returns the viewer."""
        cable_id = chip.inner_text().split(" ")[0]
        chip.click()
        self.page.wait_for_function(
            "id => document.querySelector('#cc-viewer .cc-cable-id')?.textContent === id", arg=cable_id,
            timeout=15_000)
        return self.page.locator("#cc-viewer")

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]


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


def test_answer_streams_cites_and_opens_the_cable_at_the_paragraph(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    page.evaluate("""() => new MutationObserver(() => {
        if (document.querySelector('#cc-chat .cc-streaming')) window.ccSawStreaming = true;
    }).observe(document.querySelector('#cc-chat'), {subtree: true, childList: true, characterData: true})""")
    reply = visit.ask(KAZAKHSTAN)
    assert page.evaluate("window.ccSawStreaming === true"), "the answer did not arrive in pieces"
    assert reply.locator(".cc-sources .cc-source").count() >= 1
    assert reply.locator(".cc-source mark").count() >= 1
    page.wait_for_selector("#cc-timeline img")
    shot = tmp_path / "answered-chat.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    chip = reply.locator(".cc-answer a.cc-cite").first
    ref = chip.inner_text()
    assert ref.startswith("09ASTANA664 ¶")
    viewer = visit.open_chip(chip)
    focus = viewer.locator(".cc-para.cc-focus")
    assert focus.get_attribute("id") == f"cc-para-{ref.split('¶')[1]}"
    page.wait_for_timeout(300)  # the viewer scrolls after it renders
    box, para = viewer.bounding_box(), focus.bounding_box()
    assert box and para and box["y"] <= para["y"] < box["y"] + box["height"], "the cited paragraph is not in view"
    assert focus.locator("mark").count() == 1
    page.screenshot(path=str(tmp_path / "cable-viewer.png"))

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


def test_cable_markup_is_shown_as_text_and_runs_nothing(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    reply = visit.ask(EVIL_QUESTION)
    chip = reply.locator("a.cc-cite", has_text="10TELAVIV999").first
    viewer = visit.open_chip(chip)
    page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "markup-cable.png"))
    text = viewer.inner_text()
    assert "<script>window.__pwned = 'script'</script>" in text
    assert "<img src=x onerror=" in text and "![zebra](http://127.0.0.1:9/zebra.png)" in text
    assert "<<ISRAEL>> ZEBRA MARKUP <strong>BOLD</strong>" in text
    assert "<script>" in reply.inner_text() or "<img" in reply.inner_text()
    assert page.evaluate("window.__pwned === undefined")
    for made in ("script", "img[src='x']", "a[href^='javascript']"):
        assert page.locator(f"#cc-chat {made}, #cc-viewer {made}").count() == 0, made
    assert not visit.dialogs and not any("zebra.png" in u or u.endswith("/x") for u in visit.requests)


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
