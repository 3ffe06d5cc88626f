"""Answers with citations (issue 4): extractive answers with the real model, Answer as JSON, follow-up questions,
and ``rag.ask``. LLM mode: tests/test_llm_mode.py (stub server) and tests/test_real_llm.py (a real model).
"""

from __future__ import annotations

import json

import pytest

import rag
import rag.api
from rag.assistant import Assistant
from rag.citations import sentence_spans
from rag.embed import FakeEmbedder
from rag.errors import IndexMissingError
from rag.extractive import Extract, compose

MTCR_QUESTION = "What did KazKosmos ask of the United States regarding the MTCR?"


@pytest.fixture(scope="module")
def seeds(seeds_index):
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        yield assistant


# -- extractive answers with the real model ----------------------------------------------------------------


@pytest.mark.real_model
@pytest.mark.parametrize(("question", "ref", "words"), [
    (MTCR_QUESTION, "09ASTANA664 ¶11", "Missile Technology Control Regime"),
    ("When is the experts meeting in Paris?", "09MOSCOW2809 ¶4", "Jan 20-21"),
])
def test_extractive_answer_cites_the_paragraph(real_assistant, question, ref, words):
    answer = real_assistant.ask(question)
    assert not answer.abstained and answer.mode == "extractive"
    assert ref in [c.ref for c in answer.citations] and f"[{ref}]" in answer.text
    assert words in answer.text


@pytest.mark.real_model
def test_question_about_2015_abstains(real_assistant):
    answer = real_assistant.ask("What will Russia and Kazakhstan decide about Baikonur in 2015?")
    assert answer.abstained and answer.citations == ()
    assert answer.text.startswith("The indexed cables do not answer this question.")
    assert "2015" in answer.text and "2009" in answer.text


# -- Answer as JSON; quotes ----------------------------------------------------------------------------------

QUESTIONS = [
    MTCR_QUESTION,
    "When is the experts meeting in Paris?",
    "When will the Baiterek launch site be completed?",
    "Who is Klapovskiy?",
    "What will happen at Baikonur in 2015?",
]


@pytest.mark.parametrize("question", QUESTIONS)
def test_answer_is_json_and_quotes_are_verbatim(seeds, question):
    answer = seeds.ask(question)
    data = answer.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["question"] == question and data["mode"] == "extractive"
    retrieved = {h.ref for h in answer.hits}
    for citation in answer.citations:
        paragraph = seeds.cable(citation.cable_id).paragraph(citation.paragraph)
        # Each sentence of the quote verbatim; the quote as a whole: see the test below.
        quoted = [citation.quote[start:end].strip() for start, end in sentence_spans(citation.quote, lines=False)]
        assert quoted and all(sentence in paragraph.text for sentence in quoted), citation.ref
        assert citation.ref in retrieved and f"[{citation.ref}]" in answer.text
    assert bool(answer.citations) is not answer.abstained


def test_quote_of_two_sentences_of_one_paragraph_is_verbatim(seeds):
    (hit,) = [h for h in seeds.search("Kazakhstan MTCR support", k=20) if h.ref == "09ASTANA664 ¶11"]
    text = hit.paragraph.text
    spans = [(text.index(text[a:b].strip(), a), text[a:b].strip()) for a, b in sentence_spans(text, lines=False)]
    extracts = [Extract(text=spans[i][1], hit=hit, start=spans[i][0], end=spans[i][0] + len(spans[i][1]), score=1.0,
                        coverage=1.0) for i in (0, 2)]
    _, citations = compose(extracts)
    assert [c.ref for c in citations] == ["09ASTANA664 ¶11"]
    quote = citations[0].quote
    assert quote in text and quote.startswith(spans[0][1]) and quote.endswith(spans[2][1])


# -- follow-up questions ---------------------------------------------------------------------------------

HISTORY = [{"role": "user", "content": "What did KazKosmos say about Baikonur?"},
           {"role": "assistant", "content": "KazKosmos expects visits to Baikonur by tourists [09ASTANA664 ¶2]."}]


@pytest.mark.parametrize("index", ["seeds_index", pytest.param("corpus_index", marks=pytest.mark.corpus)])
def test_follow_up_question_retrieves_from_the_earlier_topic(request, index):
    with Assistant(request.getfixturevalue(index), embedder=FakeEmbedder()) as assistant:
        answer = assistant.ask("and what about the MTCR?", history=HISTORY)
        alone = assistant.ask("and what about the MTCR?")
    assert answer.hits[0].cable.id == "09ASTANA664"
    assert answer.citations and {c.cable_id for c in answer.citations} == {"09ASTANA664"}
    assert [h.ref for h in answer.hits] != [h.ref for h in alone.hits]  # the history changed what was retrieved


# -- rag.ask -----------------------------------------------------------------------------------------------


def test_rag_ask_opens_the_index_once_and_reuses_it(seeds_index, monkeypatch):
    monkeypatch.setenv("CABLECHAT_INDEX", str(seeds_index))
    monkeypatch.delenv("CABLECHAT_MODEL", raising=False)
    monkeypatch.setattr(rag.api, "_open", {})
    first = rag.ask("When is the experts meeting in Paris?")
    (assistant,) = rag.api._open.values()
    try:
        second = rag.ask(MTCR_QUESTION)
        hits = rag.search("Baikonur tourism", k=3)
        # Another spelling of the same folder is the same index.
        third = rag.ask("When is the experts meeting in Paris?", index_dir=seeds_index / ".." / seeds_index.name)
        assert list(rag.api._open.values()) == [assistant] and rag.api._open[seeds_index.resolve()] is assistant
    finally:
        assistant.close()
    assert assistant.embedder.name == "fake-hash-64"  # the model the index records, loaded without being named
    assert "09MOSCOW2809 ¶4" in [c.ref for c in first.citations] and second.citations and len(hits) == 3
    assert third.text == first.text


def test_rag_ask_on_a_missing_index_opens_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CABLECHAT_INDEX", str(tmp_path / "none"))
    monkeypatch.setattr(rag.api, "_open", {})
    with pytest.raises(IndexMissingError, match="cablechat index"):
        rag.ask("When is the experts meeting in Paris?")
    assert rag.api._open == {}
