"""Answers people can trust, on the index a new user meets first (seeds/): plain questions answered with the
paragraph that holds the fact, questions the cables cannot answer refused with a reason, and the rerank seam."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from rag.answerable import Anchor, Subject, anchors, find_subject
from rag.answer_kind import asked_words, asks, focus, gives
from rag.assistant import Assistant
from rag.embed import FakeEmbedder
from rag.extractive import judge
from rag.index import open_index
from rag.models import Cable, Hit, Paragraph
from rag.rerank import FakeReranker, SentenceReranker

# (question, the paragraph the answer must cite first, words the answer must hold)
ANSWERABLE = [
    ("What did KazKosmos ask of the United States?", "09ASTANA664 ¶11", ["Missile Technology Control Regime"]),
    ("What did Klapovskiy thank the U.S. for?", "09MOSCOW2809 ¶3", ["space near approaches"]),
    ("What joint center did the Russians suggest for tracking satellites?", "09MOSCOW2809 ¶3",
     ["Center for Predicting the Situation in Space"]),
    ("How long does Russia's lease on Baikonur run?", "09ASTANA664 ¶3", ["2050"]),
    ("When is the experts meeting in Paris?", "09MOSCOW2809 ¶4", ["Jan 20-21"]),
    ("Who signed the agreement to extend the Baikonur lease until 2050?", "09ASTANA664 ¶3", ["Nazarbayev", "Putin"]),
    ("What did KazKosmos ask the United States to support?", "09ASTANA664 ¶11", ["Missile Technology Control"]),
    ("Who wants Kazakhstan to join the Missile Technology Control Regime?", "09ASTANA664 ¶11", ["Kazakhstan"]),
    ("What is Baiterek?", "09ASTANA664 ¶5", ["launch site"]),
    ("What fuel will the Angara booster use?", "09ASTANA664 ¶5", ["less toxic fuel"]),
    ("Why does Kazakhstan want tourists at Baikonur?", "09ASTANA664 ¶8", ["tourism"]),
    ("What kind of partnership does KazKosmos want with NASA?", "09ASTANA664 ¶7", ["NASA"]),
    ("What did Klapovskiy promise to do about the familiarization visits?", "09MOSCOW2809 ¶5", ["pass the suggestion"]),
    ("Who is Vladimir Yermakov?", "09MOSCOW2809 ¶2", ["Military-Strategic Issues"]),
    ("Which country will build a satellite factory with Kazakhstan in Astana?", "09ASTANA664 ¶9", ["France"]),
]

# (question, words of the reason the refusal gives)
UNANSWERABLE = [
    ("How many people were killed in the Maguindanao massacre?", "No indexed cable mentions Maguindanao"),
    ("What did Obama say about Iran's nuclear programme in 2015?", "No indexed cable mentions 2015."),
    ("What is the best recipe for chocolate cake?", "unrelated topics"),
    ("How many satellites does Kazakhstan own?", "give no figure"),
    ("Who won the 2014 Baikonur marathon?", "2014"),
]


@pytest.mark.real_model
@pytest.mark.parametrize(("question", "ref", "words"), ANSWERABLE, ids=[q for q, _, _ in ANSWERABLE])
def test_a_plain_question_about_the_seeds_is_answered_from_the_paragraph_that_holds_it(real_assistant, question,
                                                                                         ref, words):
    answer = real_assistant.ask(question)
    assert not answer.abstained, answer.text
    assert answer.citations[0].ref == ref, answer.text
    for word in words:
        assert word.lower() in answer.text.lower(), answer.text
    for citation in answer.citations:  # every quote is the cable's own words
        assert citation.quote in real_assistant.cable(citation.cable_id).paragraph(citation.paragraph).text


@pytest.mark.real_model
@pytest.mark.parametrize(("question", "reason"), UNANSWERABLE, ids=[q for q, _ in UNANSWERABLE])
def test_a_question_the_seeds_cannot_answer_is_refused_with_its_reason(real_assistant, question, reason):
    answer = real_assistant.ask(question)
    assert answer.abstained, answer.text
    assert not answer.citations
    assert reason in answer.text, answer.text
    assert "Nearest cables" in answer.text


@pytest.mark.real_model
def test_llm_mode_refuses_on_the_same_evidence_before_calling_any_server(real_assistant):
    from rag.llm import LLMConfig

    # Port 9 (discard) has no server: had the question been sent, the answer would say LLM mode failed.
    dead = LLMConfig(url="http://127.0.0.1:9/v1", model="none")
    with Assistant(real_assistant.index.folder, embedder=real_assistant.embedder, llm=dead) as assistant:
        answer = assistant.ask("How many people were killed in the Maguindanao massacre?", mode="llm")
    assert answer.abstained
    assert "No indexed cable mentions Maguindanao" in answer.text
    assert "LLM mode failed" not in (answer.notice or "")


def test_the_rerank_stage_decides_the_lead_through_its_seam(seeds_index: Path):
    # The same question, two injected rerankers: the answer cites whatever paragraph the reranker puts first.
    for ref in ("09ASTANA664 ¶8", "09ASTANA664 ¶10"):
        with Assistant(seeds_index, embedder=FakeEmbedder(), reranker=FakeReranker([ref])) as assistant:
            answer = assistant.ask("What does Kazakhstan plan for the city of Baikonur?")
        assert not answer.abstained, answer.text
        assert answer.citations[0].ref == ref
        assert answer.hits[0].ref == ref


@pytest.mark.parametrize(("question", "expected"), [
    ("How many people were killed in the November 2009 Maguindanao massacre?", ["November 2009", "Maguindanao"]),
    # Common words, capitalised or not, are no anchor: "Embassy", "Queen", "Brazil", "wary".
    ("What did Embassy The Hague report about the Queen's Day attack in Apeldoorn?", ["Hague", "Apeldoorn"]),
    ("Why was Haiti wary of joining the US-Brazil ethanol initiative?", ["Haiti"]),
    ("What did the Black Saturday bushfires destroy?", ["bushfires"]),
    ("What did the minister say?", []),
    ("Roughly how many Marines went to Lashkar Gah?", ["Marines", "Lashkar", "Gah"]),
])
def test_anchors_are_the_distinctive_words_of_a_question(question, expected):
    assert [a.text for a in anchors(question)] == expected


@pytest.mark.parametrize(("question", "reason"), [
    ("How many people died in the Maguindanao massacre?", "No indexed cable mentions Maguindanao."),
    ("What did Shaimagambetov say about Grigoropoulos?", "No indexed cable mentions Grigoropoulos."),
    ("What did Klapovskiy say about Baiterek?", "No indexed cable mentions Baiterek together with Klapovskiy."),
    ("What will Baikonur look like in 2050?", None),  # 2050 is past the cables, but ¶3 names it
    ("What did KazKosmos plan for 2031?", "No indexed cable mentions 2031."),
])
def test_the_subject_must_be_in_the_index(seeds_index: Path, question, reason):
    index = open_index(seeds_index)
    try:
        subject = find_subject(question, index.store, years=index.store.year_range())
    finally:
        index.close()
    if reason is None:
        assert subject.reason() is None
    else:
        assert subject.reason().startswith(reason), subject.reason()


@pytest.mark.parametrize(("question", "sentence", "gives_it"), [
    ("How many people died?", "On April 15, officials met in 2009.", False),  # a day and a year are no count
    ("How many people died?", "At least 57 people died.", True),
    ("How many people died?", "Dozens of people died.", True),
    ("How long does the lease run?", "The lease runs until 2050.", True),
    ("When is the meeting?", "The meeting is on Jan 20-21.", True),
    ("When is the meeting?", "The meeting will be substantive.", False),
    ("Who signed it?", "Nazarbayev and Putin signed it.", True),
    ("Who signed it?", "It was signed with great ceremony.", False),
])
def test_a_sentence_gives_the_kind_of_fact_asked_for(question, sentence, gives_it):
    assert gives(asks(question), sentence, asked_words(question)) is gives_it


def test_a_near_miss_is_refused_with_what_the_cables_lack(seeds_index: Path):
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        answer = assistant.ask("How many satellites does Kazakhstan own?")
    assert answer.abstained
    assert "The cables discuss Kazakhstan but give no figure for what is asked." in answer.text


@pytest.mark.parametrize(("question", "kind"), [
    ("How many people died?", "number"),
    ("According to a specialist who spoke in Ashgabat in 2010, how many Iranians receive methadone?", "number"),
    ("How sharp were the images when they complained to the embassy?", None),  # "when" here asks nothing
    ("What did KazKosmos ask of the United States when they met?", None),
    ("Which expelled US diplomat did Correa name?", "name"),
    ("Who was the Russian ambassador who pushed Iceland?", "name"),
    ("In what year was Kim Jong-il designated?", "date"),
    ("When the consul pressed Modi, what case did he point to?", None),
    ("How long does the lease run?", "length"),
])
def test_the_question_word_that_opens_a_clause_says_what_is_asked(question, kind):
    assert asks(question) == kind


def _found(*names: str) -> Subject:
    """A subject whose anchors, ``names``, the index holds (nothing narrowing it to some cables)."""
    return Subject(tuple(Anchor(name, "name") for name in names), (), None)


def _hits(*paragraphs: tuple[str, int, str], year: int = 2009) -> list[Hit]:
    """Retrieved paragraphs (cable, number, text), best first, of cables from ``year``."""
    return [Hit(Paragraph(cable, number, text), Cable(cable, datetime(year, 3, 1), "Embassy Dushanbe",
                                                      "UNCLASSIFIED", "Russian base", ()), 1.0)
            for cable, number, text in paragraphs]


@pytest.mark.parametrize(("question", "hits", "lead"), [
    # A figure the question names is one of its words: "201st" tells the two commanders apart.
    ("Who commanded the 201st base?",
     _hits(("06DUSHANBE1", 2, "The commander of the base, General Petrov, met us."),
           ("06DUSHANBE1", 4, "Colonel Ivanov commanded the 201st base.")),
     "06DUSHANBE1 ¶4"),
    # Cables spell a name out once, then use its acronym: the acronym stands for the words it abbreviates.
    ("Who heads the National Confederation of Industries?",
     _hits(("06SAOPAULO2", 2, "The National Confederation of Industries (CNI) represents federations of states."),
           ("06SAOPAULO2", 7, "Armando Monteiro heads the CNI.")),
     "06SAOPAULO2 ¶7"),
])
def test_the_reranker_reads_figures_and_acronyms_as_the_question_words_they_are(question, hits, lead):
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, hits)
    assert ranked[0].hit.ref == lead


def test_a_sentence_is_read_with_the_one_before_it():
    hits = _hits(("06SAOPAULO2", 7, "Lula has few backers among business leaders. One is Armando Monteiro."),
                 ("06SAOPAULO3", 2, "Business leaders met Governor Alckmin."))
    question = "Who is one of Lula's few backers among business leaders?"
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, hits)
    verdict = judge(question, ranked, _found("Lula"), calibration=None, cosine=1.0)
    assert verdict.chosen[0].text == "One is Armando Monteiro."


def test_once_the_lead_gives_what_is_asked_another_cable_adds_no_rival_answer():
    question = "How many passports did the police find on Xiahong?"
    hits = _hits(("07SANJOSE132", 4, "The police found 33 passports on her."),
                 ("09SANJOSE389", 2, "The police found 12 passports in a raid."))
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, hits)
    verdict = judge(question, ranked, _found("Xiahong"), calibration=None, cosine=1.0)
    assert [e.hit.ref for e in verdict.chosen] == ["07SANJOSE132 ¶4"]


def test_the_cables_that_hold_the_whole_subject_answer_before_a_closer_paraphrase_elsewhere():
    question = "Whose diary did the prosecutors use in the Sledgehammer case?"
    hits = _hits(("10ANKARA150", 9, "Prosecutors used the diary of General Ozkok in the earlier case."),
                 ("10ANKARA294", 2, "The case rests on a diary attributed to Admiral Ornek."))
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, hits)
    assert ranked[0].hit.cable.id == "10ANKARA150"
    held = frozenset({"10ANKARA294"})  # only it holds the subject (say, Sledgehammer and February 2010)
    ranked = sorted(ranked, key=lambda r: r.hit.cable.id not in held)  # as the Assistant orders them
    verdict = judge(question, ranked, _found("Sledgehammer"), calibration=None, cosine=1.0, held=held)
    assert [e.hit.ref for e in verdict.chosen] == ["10ANKARA294 ¶2"]


def test_a_cable_from_the_year_a_question_names_is_preferred():
    question = "Who commanded the base in 2006?"
    text = "Colonel Ivanov commanded the base."
    hits = _hits(("05DUSHANBE1", 2, text), year=2005) + _hits(("06DUSHANBE2", 4, text), year=2006)
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, hits)
    assert ranked[0].hit.ref == "06DUSHANBE2 ¶4"


@pytest.mark.parametrize(("text", "answered"), [
    ("The mutiny was against army officers. Nearly 50 army officers were killed.", True),
    ("The mutiny was against army officers. In all 57 of them were killed.", True),  # "them": the sentence before
    ("The mutiny was against army officers. The press wrote about it. The two missions agreed to meet.", False),
])
def test_a_count_must_be_of_what_the_question_counts(text, answered):
    question = "How many army officers were killed in the Pilkhana mutiny?"
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, _hits(("09DHAKA1", 3, text)))
    verdict = judge(question, ranked, _found("Pilkhana"), calibration=None, cosine=1.0)
    assert verdict.answerable is answered, verdict.reason


@pytest.mark.parametrize(("question", "counted"), [
    ("How many suspect bank accounts did he hand over?", {"suspec", "bank", "accoun"}),
    ("How many satellites does Kazakhstan own?", {"satell"}),  # not Kazakhstan: it owns them
    ("How many of the detainees were freed?", {"detain"}),
    ("How much did the consortium bid?", set()),  # money goes unsaid
])
def test_a_count_is_of_the_words_after_how_many(question, counted):
    assert focus(question) == counted


def test_a_figure_from_a_sentence_about_something_else_is_no_answer():
    # The cables mention the cake, and a figure about people liking something else: a near miss, not an answer.
    question = "How many people like El Materi's chocolate cake?"
    hits = _hits(("09TUNIS516", 12, "After dinner he served fresh fruit and chocolate cake."),
                 ("05SANTIAGO2541", 7, "Some 45 percent of people like the candidate."))
    rare = {"chocol": 5.0, "cake": 5.0}
    ranked = SentenceReranker(idf=lambda term: rare.get(term, 1.0), embed=None).rerank(question, hits)
    verdict = judge(question, ranked, _found("Materi"), calibration=None, cosine=1.0)
    assert not verdict.answerable and "no figure" in verdict.reason


@pytest.mark.parametrize(("text", "answered"), [
    ("On April 15 they signed the lease for the launch site.", False),  # a date, of something else
    ("The moon landing happened on July 20.", True),
])
def test_a_question_with_no_distinctive_word_needs_its_words_in_the_answer(text, answered):
    question = "When did the moon landing happen?"
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(question, _hits(("09ASTANA664", 3, text)))
    verdict = judge(question, ranked, Subject((), (), None), calibration=None, cosine=1.0)
    assert verdict.answerable is answered, verdict.reason


def test_a_near_miss_names_the_subject_by_its_names_not_its_dates():
    question = "How many army officers were killed in Dhaka in the February 2009 Bangladesh mutiny?"
    ranked = SentenceReranker(idf=lambda term: 1.0, embed=None).rerank(
        question, _hits(("09DHAKA482", 3, "The mutiny in Dhaka was against the army officers of Bangladesh.")))
    subject = Subject((Anchor("Dhaka", "name"), Anchor("February 2009", "month"), Anchor("Bangladesh", "name")), (),
                      None)
    verdict = judge(question, ranked, subject, calibration=None, cosine=1.0)
    assert verdict.reason == "The cables discuss Dhaka and Bangladesh but give no figure for what is asked."
