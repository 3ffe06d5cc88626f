"""LLM mode end to end against a real OpenAI-compatible stub server on 127.0.0.1 (tests/openai_stub_server.py):
typed stream events, checked answers, the refusal first, cut-off replies, the deadline, the server's context, every
failure falling back to the extractive answer, and ``cablechat ask --mode llm``. A real model: tests/test_real_llm.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from openai_stub_server import Script, StubServer, closed_port_url

from rag.assistant import Assistant
from rag.cli import main
from rag.embed import FakeEmbedder
from rag.errors import LLMError
from rag.llm import LLMConfig
from rag.prompt import NO_ANSWER
from rag.stream import TextEvent

MTCR_QUESTION = "What did KazKosmos ask of the United States regarding the MTCR?"
UNANSWERABLE = "What was the death toll of the 2009 Maguindanao massacre?"
GOOD = ("KazKosmos asked for U.S. support for Kazakhstan to join the Missile Technology Control Regime "
        "[09ASTANA664 ¶2]. Shaimagambetov said Kazakhstan is seeking U.S. support to join the Missile Technology "
        "Control Regime [09ASTANA664 ¶11].")
INVENTED = " Russia will leave Baikonur in 2015 [09ASTANA664 ¶12] [10KABUL1 ¶2]."
UNSUPPORTED = " The experts meeting in Paris is on Jan 20-21 [09ASTANA664 ¶11]."


@contextmanager
def llm_assistant(index: Path, script: Script, *, url: str | None = None, read_timeout: float = 10.0,
                  **config: float) -> Iterator[tuple[Assistant, StubServer]]:
    with StubServer(script) as server:
        llm = LLMConfig(url=url or server.url, model="stub-model", read_timeout=read_timeout, connect_timeout=2,
                        **config)
        with Assistant(index, embedder=FakeEmbedder(), llm=llm) as assistant:
            yield assistant, server


def ask(index: Path, script: Script, question: str = MTCR_QUESTION, **config: float):
    with llm_assistant(index, script, **config) as (assistant, server):
        return assistant.ask(question, mode="llm"), server.requests


# -- the stream ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("behaviour", "streams"), [("reply", [True]), ("no_stream", [True, False])])
def test_llm_answer_streams_typed_text_events_then_the_answer(seeds_index, behaviour, streams):
    with llm_assistant(seeds_index, Script(text=GOOD, behaviour=behaviour, chunk=12)) as (assistant, server):
        stream = assistant.ask_stream(MTCR_QUESTION, mode="llm")
        assert stream.result is None
        events = list(stream)
        answer = stream.answer()
    assert all(isinstance(e, TextEvent) for e in events) and {e.kind for e in events} == {"extend"}
    assert len(events) > (5 if behaviour == "reply" else 0)
    assert "".join(e.text for e in events) == GOOD == events[-1].shown == stream.shown
    assert all(GOOD.startswith(e.shown) for e in events)
    assert (answer.mode, answer.text, answer.notice, answer.unsupported, answer.abstained) == (
        "llm", GOOD, None, (), False)
    assert [(c.ref, c.supported) for c in answer.citations] == [("09ASTANA664 ¶2", True), ("09ASTANA664 ¶11", True)]
    assert [r["stream"] for r in server.requests] == streams
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "[09ASTANA664 ¶11]" in prompt and MTCR_QUESTION in prompt
    assert json.loads(json.dumps(answer.to_dict())) == answer.to_dict()
    assert list(stream) == events and stream.answer() is answer  # a finished stream replays


def test_the_checked_answer_replaces_the_raw_reply_as_the_last_event(seeds_index):
    with llm_assistant(seeds_index, Script(text=GOOD + INVENTED)) as (assistant, _):
        stream = assistant.ask_stream(MTCR_QUESTION, mode="llm")
        events = list(stream)
    *raw, last = events
    assert [e.kind for e in raw] == ["extend"] * len(raw) and raw[-1].shown == GOOD + INVENTED
    assert last.kind == "replace" and last.text == last.shown == stream.answer().text
    assert "10KABUL1" not in last.shown


def test_extractive_answers_stream_as_extensions(seeds_index):
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        stream = assistant.ask_stream("When is the experts meeting in Paris?")
        events = list(stream)
    assert len(events) > 2 and {e.kind for e in events} == {"extend"}
    assert "".join(e.text for e in events) == events[-1].shown == stream.answer().text


def test_a_stream_closed_early_stops_reading_the_server(seeds_index):
    script = Script(text=GOOD, behaviour="drip", interval_s=0.05, hang_s=60)
    with llm_assistant(seeds_index, script) as (assistant, _):
        before = set(threading.enumerate())
        stream = assistant.ask_stream(MTCR_QUESTION, mode="llm")
        first = next(iter(stream))
        (reader,) = [t for t in threading.enumerate() if t.name == "llm-stream" and t not in before]
        stream.close()
        reader.join(timeout=10)  # it leaves at the server's next word, closing the connection
        assert not reader.is_alive()
    assert first.kind == "extend" and stream.result is None


def test_a_stream_that_failed_raises_its_error_again(seeds_index, monkeypatch):
    monkeypatch.delenv("CABLECHAT_LLM_URL", raising=False)
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        stream = assistant.ask_stream(MTCR_QUESTION, mode="llm")
        for _ in range(2):
            with pytest.raises(LLMError, match="not configured"):
                stream.answer()
    assert stream.result is None


# -- checking the reply ------------------------------------------------------------------------------------


def test_invented_citations_are_removed_and_noted(seeds_index):
    answer, _ = ask(seeds_index, Script(text=GOOD + INVENTED))
    assert "¶12" not in answer.text and "10KABUL1" not in answer.text
    assert answer.text.startswith(GOOD)
    assert [c.ref for c in answer.citations] == ["09ASTANA664 ¶2", "09ASTANA664 ¶11"]
    assert "Removed citations of paragraphs the model was not shown: 09ASTANA664 ¶12, 10KABUL1 ¶2." in answer.notice
    # Left without a citation, the invented sentence is unsupported too.
    assert answer.unsupported == ("Russia will leave Baikonur in 2015.",)
    assert answer.text.endswith("Russia will leave Baikonur in 2015. ⚠")


def test_sentence_its_paragraph_does_not_support_is_marked(seeds_index):
    answer, _ = ask(seeds_index, Script(text=GOOD + UNSUPPORTED))
    (sentence,) = answer.unsupported
    assert "experts meeting in Paris" in sentence
    assert f"{sentence} ⚠" in answer.text and answer.text.count("⚠") == 1
    assert "1 sentence(s) are not supported" in answer.notice
    assert [(c.ref, c.supported) for c in answer.citations] == [("09ASTANA664 ¶2", True), ("09ASTANA664 ¶11", False)]


def test_repeated_unsupported_sentences_are_each_marked_where_they_stand(seeds_index):
    answer, _ = ask(seeds_index, Script(text=UNSUPPORTED.strip() + " " + GOOD + UNSUPPORTED))
    sentence = UNSUPPORTED.strip()
    assert answer.text == f"{sentence} ⚠ {GOOD} {sentence} ⚠"


def test_marks_the_model_writes_itself_are_not_kept(seeds_index):
    answer, _ = ask(seeds_index, Script(text=GOOD.replace("[09ASTANA664 ¶2].", "[09ASTANA664 ¶2]. ⚠") + UNSUPPORTED))
    assert answer.text == f"{GOOD}{UNSUPPORTED} ⚠" and answer.text.count("⚠") == len(answer.unsupported) == 1


@pytest.mark.parametrize(("reply", "words"), [
    ("The moon base opens in 2031 [09ASTANA664 ¶11]. Tourists will fly to Mars [09ASTANA664 ¶2].",
     "No sentence of the model's reply is supported by the paragraphs it cites (it wrote “The moon base opens"),
    (NO_ANSWER, "The model found no answer in the paragraphs it was shown"),
    ("   ", "The model sent an empty reply"),
])
def test_a_reply_with_nothing_supported_gives_way_to_the_extractive_answer(seeds_index, reply, words):
    answer, _ = ask(seeds_index, Script(text=reply))
    assert answer.mode == "extractive" and not answer.abstained and answer.citations
    assert words in answer.notice and answer.notice.endswith("so this is the extractive answer.")


def test_the_prompt_shows_each_paragraphs_section_heading(seeds_index):
    _, requests = ask(seeds_index, Script(text=GOOD), "When is the experts meeting in Paris?")
    prompt = requests[0]["messages"][-1]["content"]
    block = prompt[prompt.index("[09MOSCOW2809 ¶4]"):]
    assert block.split("\n")[1] == "Section: Jan 20-21 Experts Meeting in Paris"


# -- refusal first -----------------------------------------------------------------------------------------


def test_a_question_the_extractive_judge_refuses_is_never_sent(seeds_index):
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        extractive = assistant.ask(UNANSWERABLE)
    answer, requests = ask(seeds_index, Script(text=GOOD), UNANSWERABLE)
    assert extractive.abstained and answer.abstained and requests == []
    assert answer.text == extractive.text and "not sent to the LLM" in answer.notice


# -- cut-off replies: the token limit and the deadline -----------------------------------------------------


def test_a_reply_cut_by_the_token_limit_keeps_its_finished_supported_sentences(seeds_index):
    answer, _ = ask(seeds_index, Script(text=GOOD + " Shaimagambetov also said that KAZAKH", finish="length"))
    assert (answer.mode, answer.text, answer.unsupported) == ("llm", GOOD, ())
    assert "cut off at its limit of 300 tokens" in answer.notice and "finished sentences" in answer.notice


def test_a_reply_cut_before_a_supported_sentence_gives_way_to_the_extractive_answer(seeds_index):
    answer, _ = ask(seeds_index, Script(text="KazKosmos asked for U.S. support for Kazakh", finish="length"))
    assert answer.mode == "extractive" and answer.citations
    assert "cut off at its limit of 300 tokens before it finished a sentence" in answer.notice
    assert "“KazKosmos asked for U.S. support for Kazakh”" in answer.notice


def test_a_server_streaming_forever_is_cut_at_the_deadline(seeds_index):
    script = Script(text=GOOD, behaviour="drip", interval_s=0.5, hang_s=120)
    started = time.monotonic()
    answer, _ = ask(seeds_index, script, deadline=3.0)
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed
    assert (answer.mode, answer.text) == ("llm", GOOD)  # the " More More" tail never finished a sentence
    assert "still writing after 3 s (CABLECHAT_LLM_DEADLINE)" in answer.notice


def test_the_deadline_holds_through_the_api(seeds_index):
    from test_ui import client, served

    script = Script(text=GOOD, behaviour="drip", interval_s=0.5, hang_s=120)
    with llm_assistant(seeds_index, script, deadline=3.0) as (assistant, _), served(assistant) as address:
        api = client(address)
        started = time.monotonic()
        text = api.predict(MTCR_QUESTION, "llm", api_name="/ask")
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    assert "[09ASTANA664 ¶11]" in text and "More" not in text and "CABLECHAT_LLM_DEADLINE" in text


def test_a_server_silent_past_the_deadline_gives_the_extractive_answer(seeds_index):
    started = time.monotonic()
    answer, _ = ask(seeds_index, Script(behaviour="hang", hang_s=120), deadline=1.5, read_timeout=60)
    assert time.monotonic() - started < 5
    assert answer.mode == "extractive" and "had not begun its reply after 1.5 s" in answer.notice


# -- the server's context ----------------------------------------------------------------------------------


def test_a_prompt_the_server_refuses_as_too_long_is_refitted_to_the_size_it_names(seeds_index):
    with llm_assistant(seeds_index, Script(text=GOOD, context_tokens=2500), context_tokens=8192) as (assistant, server):
        first = assistant.ask(MTCR_QUESTION, mode="llm")
        second = assistant.ask(MTCR_QUESTION, mode="llm")
    assert (first.mode, first.text) == (second.mode, second.text) == ("llm", GOOD)
    sizes = [sum(len(m["content"]) for m in r["messages"]) for r in server.requests]
    assert len(sizes) == 3 and sizes[1] < sizes[0] and sizes[2] == sizes[1]  # learned once, kept for the next
    assert assistant.llm.context_tokens == 2500


def test_a_context_the_prompt_cannot_fit_falls_back_with_the_real_fix(seeds_index):
    answer, requests = ask(seeds_index, Script(text=GOOD, context_tokens=420), context_tokens=2048)
    assert answer.mode == "extractive" and len(requests) == 1
    assert "context of 420 tokens" in answer.notice and "--n_ctx" in answer.notice
    assert "CABLECHAT_LLM_CONTEXT" in answer.notice and ".." not in answer.notice


# -- failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "down", "words"), [
    (Script(text=GOOD, behaviour="hang", hang_s=20), False, "sent nothing for 1 s"),
    (Script(text=GOOD, behaviour="stall", hang_s=20), False, "sent nothing for 1 s"),
    (Script(behaviour="error", status=500), False, "answered HTTP 500: stub failure: out of memory"),
    (Script(behaviour="malformed"), False, "not an OpenAI chat completion"),
    (Script(), True, "cannot reach"),
], ids=["hang", "stall", "500", "malformed", "down"])
def test_llm_failure_falls_back_to_the_extractive_answer(seeds_index, script, down, words):
    url = closed_port_url() if down else None
    with llm_assistant(seeds_index, script, url=url, read_timeout=1.0) as (assistant, _):
        started = time.monotonic()
        answer = assistant.ask(MTCR_QUESTION, mode="llm")
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert answer.mode == "extractive" and not answer.abstained and answer.citations
    assert answer.notice.startswith("LLM mode failed, so this is the extractive answer.")
    assert words in answer.notice


def test_llm_mode_without_a_configured_server_says_so(seeds_index, monkeypatch):
    monkeypatch.delenv("CABLECHAT_LLM_URL", raising=False)
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        assert not assistant.llm_configured
        with pytest.raises(LLMError, match="LLM mode is not configured: set CABLECHAT_LLM_URL"):
            assistant.ask(MTCR_QUESTION, mode="llm")


# -- the command line --------------------------------------------------------------------------------------

STUB_REPLY = ("Kazakhstan is seeking U.S. support to join the Missile Technology Control Regime, the MTCR support "
              "[09ASTANA664 ¶11]. KazKosmos also plans a Moon base [09ASTANA664 ¶99].")


def test_cli_ask_in_llm_mode_prints_the_checked_answer_a_note_and_sources(seeds_index, monkeypatch, capsys):
    with StubServer(Script(text=STUB_REPLY)) as server:
        monkeypatch.setenv("CABLECHAT_LLM_URL", server.url)
        monkeypatch.setenv("CABLECHAT_LLM_MODEL", "stub-model")
        status = main(["ask", MTCR_QUESTION, "--mode", "llm", "--index", str(seeds_index)])
    out, err = capsys.readouterr()
    assert status == 0 and server.requests
    assert "¶99" not in out and "KazKosmos also plans a Moon base. ⚠" in out
    assert out.startswith("Kazakhstan is seeking U.S. support to join the Missile Technology Control Regime")
    assert "\nSources:\n  [09ASTANA664 ¶11] 2009-04-17 KAZAKHSTAN: KAZKOSMOS" in out
    assert err.startswith("note: Removed citations of paragraphs the model was not shown: 09ASTANA664 ¶99.")
    assert "1 sentence(s) are not supported" in err


def test_cli_ask_in_llm_mode_without_a_server_says_it_is_not_configured(seeds_index, monkeypatch, capsys):
    monkeypatch.delenv("CABLECHAT_LLM_URL", raising=False)
    status = main(["ask", MTCR_QUESTION, "--mode", "llm", "--index", str(seeds_index)])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert "LLM mode is not configured: set CABLECHAT_LLM_URL" in err and "Traceback" not in err

