"""rag.citations as tables: raw reply → (cleaned text, kept keys, dropped keys); sentences; support."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from rag.citations import check_reply, clean_citations, split_sentences, support_score
from rag.models import Cable, Hit, Paragraph

A, M = "09ASTANA664", "09MOSCOW2809"
VALID = frozenset({f"{A} ¶0", f"{A} ¶3", f"{A} ¶4", f"{A} ¶5", f"{A} ¶6", f"{M} ¶1", f"{M} ¶4",
                   "66BUENOSAIRES2481 ¶2", "09STATE116396 ¶1"})

CLEAN_CASES = [
    # canonical form passes through untouched
    ("Leased [09ASTANA664 ¶6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Lead [09ASTANA664 ¶0].", "Lead [09ASTANA664 ¶0].", [f"{A} ¶0"], []),
    ("Old [66BUENOSAIRES2481 ¶2] and [09STATE116396 ¶1].", "Old [66BUENOSAIRES2481 ¶2] and [09STATE116396 ¶1].",
     ["66BUENOSAIRES2481 ¶2", "09STATE116396 ¶1"], []),
    # other spellings of one key
    ("Leased 09ASTANA664 ¶6.", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 para 6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 para. 6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 Paragraph 6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 ¶ 6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 §6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased (09ASTANA664, ¶6).", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased (09ASTANA664 paragraph 6).", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [Cable 09ASTANA664, paragraph 6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [Source: 09ASTANA664 ¶6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased (see 09ASTANA664 ¶6).", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [¶6 of 09ASTANA664].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Per paragraph 6 of 09ASTANA664, it is leased.", "Per [09ASTANA664 ¶6], it is leased.", [f"{A} ¶6"], []),
    ("Leased [[09ASTANA664 ¶6]].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    # small models' spellings: "#6", "P6", "-6" after the id, lower-case ids
    ("Leased [09ASTANA664 #6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664, #6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664 P6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09ASTANA664-6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased [09astana664 ¶6].", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased (09astana664 #6).", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased 09ASTANA664 #6 and 09MOSCOW2809-4.", "Leased [09ASTANA664 ¶6] and [09MOSCOW2809 ¶4].",
     [f"{A} ¶6", f"{M} ¶4"], []),
    ("Leased [09ASTANA664 #9].", "Leased.", [], [f"{A} ¶9"]),
    # Markdown emphasis around a citation keeps its shape
    ("Leased **[09ASTANA664 ¶6]**.", "Leased **[09ASTANA664 ¶6]**.", [f"{A} ¶6"], []),
    ("Leased *[09ASTANA664 ¶6]*.", "Leased *[09ASTANA664 ¶6]*.", [f"{A} ¶6"], []),
    ("**Leased**[09ASTANA664 ¶6].", "**Leased** [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Leased **[09ASTANA664 ¶9]** now.", "Leased now.", [], [f"{A} ¶9"]),
    ("Leased ([09ASTANA664 ¶6]).", "Leased [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    # glued to words and punctuation
    ("Baikonur[09ASTANA664 ¶6].", "Baikonur [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Baikonur.[09ASTANA664 ¶6] Next.", "Baikonur. [09ASTANA664 ¶6] Next.", [f"{A} ¶6"], []),
    ("Baikonur   [09ASTANA664 ¶6].", "Baikonur [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    # several keys in one bracket
    ("Costs [09ASTANA664 ¶3, ¶4].", "Costs [09ASTANA664 ¶3] [09ASTANA664 ¶4].", [f"{A} ¶3", f"{A} ¶4"], []),
    ("Costs [09ASTANA664 ¶3, 4].", "Costs [09ASTANA664 ¶3] [09ASTANA664 ¶4].", [f"{A} ¶3", f"{A} ¶4"], []),
    ("Costs [09ASTANA664 paras. 3 and 4].", "Costs [09ASTANA664 ¶3] [09ASTANA664 ¶4].",
     [f"{A} ¶3", f"{A} ¶4"], []),
    ("Costs [09ASTANA664 ¶3; 09MOSCOW2809 ¶4].", "Costs [09ASTANA664 ¶3] [09MOSCOW2809 ¶4].",
     [f"{A} ¶3", f"{M} ¶4"], []),
    ("Costs [09ASTANA664 ¶6], [09MOSCOW2809 ¶4].", "Costs [09ASTANA664 ¶6] [09MOSCOW2809 ¶4].",
     [f"{A} ¶6", f"{M} ¶4"], []),
    ("09ASTANA664 ¶3, 4 and ¶5 agree.", "[09ASTANA664 ¶3] [09ASTANA664 ¶4] [09ASTANA664 ¶5] agree.",
     [f"{A} ¶3", f"{A} ¶4", f"{A} ¶5"], []),
    # ranges expand, keeping only what was retrieved
    ("Costs [09ASTANA664 ¶3-4].", "Costs [09ASTANA664 ¶3] [09ASTANA664 ¶4].", [f"{A} ¶3", f"{A} ¶4"], []),
    ("Costs [09ASTANA664 ¶3–5].", "Costs [09ASTANA664 ¶3] [09ASTANA664 ¶4] [09ASTANA664 ¶5].",
     [f"{A} ¶3", f"{A} ¶4", f"{A} ¶5"], []),
    ("Costs [09ASTANA664 ¶¶4 to 7].", "Costs [09ASTANA664 ¶4] [09ASTANA664 ¶5] [09ASTANA664 ¶6].",
     [f"{A} ¶4", f"{A} ¶5", f"{A} ¶6"], [f"{A} ¶7"]),
    ("Costs 09ASTANA664 ¶1-3.", "Costs [09ASTANA664 ¶3].", [f"{A} ¶3"], [f"{A} ¶1", f"{A} ¶2"]),
    # duplicates collapse within a run, not across sentences
    ("Costs [09ASTANA664 ¶6][09ASTANA664 ¶6].", "Costs [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("Costs [09ASTANA664 ¶6, ¶6] [09ASTANA664 ¶6].", "Costs [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    ("A [09ASTANA664 ¶6]. B [09ASTANA664 ¶6].", "A [09ASTANA664 ¶6]. B [09ASTANA664 ¶6].", [f"{A} ¶6"], []),
    # keys that were not retrieved are removed, and so is the gap before them
    ("Costs rose [09ASTANA664 ¶9].", "Costs rose.", [], [f"{A} ¶9"]),
    ("Costs rose [09ASTANA664 ¶9] and fell [09ASTANA664 ¶6].", "Costs rose and fell [09ASTANA664 ¶6].",
     [f"{A} ¶6"], [f"{A} ¶9"]),
    ("Costs [09ASTANA664 ¶9, ¶6].", "Costs [09ASTANA664 ¶6].", [f"{A} ¶6"], [f"{A} ¶9"]),
    ("Costs [10KABUL1 ¶2; 09MOSCOW2809 ¶1].", "Costs [09MOSCOW2809 ¶1].", [f"{M} ¶1"], ["10KABUL1 ¶2"]),
    ("Costs rose ([09ASTANA664 ¶9]).", "Costs rose.", [], [f"{A} ¶9"]),
    ("[09ASTANA664 ¶9] Costs rose.", "Costs rose.", [], [f"{A} ¶9"]),
    ("- Costs [09ASTANA664 ¶6]\n- [10KABUL1 ¶2] Rose\n", "- Costs [09ASTANA664 ¶6]\n- Rose\n", [f"{A} ¶6"],
     ["10KABUL1 ¶2"]),
    ("Costs rose [09ASTANA664].", "Costs rose.", [], [A]),
    ("Costs [09ASTANA664 ¶6, 09MOSCOW2809].", "Costs [09ASTANA664 ¶6].", [f"{A} ¶6"], [M]),
    # a paragraph without a cable takes the cable cited before it; with none before, it cannot be checked
    ("It said so [09ASTANA664 ¶3] and (¶4).", "It said so [09ASTANA664 ¶3] and [09ASTANA664 ¶4].",
     [f"{A} ¶3", f"{A} ¶4"], []),
    ("It said so [09ASTANA664 ¶3]. Later (paragraph 5) too.",
     "It said so [09ASTANA664 ¶3]. Later [09ASTANA664 ¶5] too.", [f"{A} ¶3", f"{A} ¶5"], []),
    ("Costs rose (¶4).", "Costs rose.", [], ["¶4"]),
    # prose, numbers and markings that only look like citations stay as written
    ("The cable (09ASTANA664) says so.", "The cable (09ASTANA664) says so.", [], []),
    ("In 2009 (2012) it [3] rose.", "In 2009 (2012) it [3] rose.", [], []),
    ("Marked (SBU) and (U).", "Marked (SBU) and (U).", [], []),
    ("Ranked #1 (P5) in 2009-10 and (24x7).", "Ranked #1 (P5) in 2009-10 and (24x7).", [], []),
    ("Pages 10-12 and **bold** stay.", "Pages 10-12 and **bold** stay.", [], []),
    ("Costs (as 09ASTANA664 ¶6 notes) rose.", "Costs (as [09ASTANA664 ¶6] notes) rose.", [f"{A} ¶6"], []),
    ("09ASTANA664 ¶3, 4 officials agree.", "[09ASTANA664 ¶3], 4 officials agree.", [f"{A} ¶3"], []),
    ("No citations at all.", "No citations at all.", [], []),
    ("", "", [], []),
]


@pytest.mark.parametrize(("raw", "text", "kept", "dropped"), CLEAN_CASES)
def test_clean_citations(raw: str, text: str, kept: list[str], dropped: list[str]) -> None:
    cleaned = clean_citations(raw, VALID)
    assert (cleaned.text, list(cleaned.kept), list(cleaned.dropped)) == (text, kept, dropped)


def test_clean_citations_accepts_a_mapping_of_keys() -> None:
    paragraph = Paragraph(A, 6, "text")
    assert clean_citations("X [09ASTANA664 ¶6] [09ASTANA664 ¶7].", {paragraph.ref: paragraph}).kept == (f"{A} ¶6",)


SENTENCE_CASES = [
    ("Leased [09ASTANA664 ¶6]. Costly [09ASTANA664 ¶4].",
     [("Leased [09ASTANA664 ¶6].", [f"{A} ¶6"]), ("Costly [09ASTANA664 ¶4].", [f"{A} ¶4"])]),
    # a citation right after the period belongs to the sentence before it
    ("Leased. [09ASTANA664 ¶6] Costly. [09ASTANA664 ¶4] [09MOSCOW2809 ¶1]",
     [("Leased.", [f"{A} ¶6"]), ("Costly.", [f"{A} ¶4", f"{M} ¶1"])]),
    ("Leased.\n[09ASTANA664 ¶6]\nCostly.", [("Leased.", [f"{A} ¶6"]), ("Costly.", [])]),
    # abbreviations and initials end no sentence
    ("The U.S. Embassy met Gen. Ivanov [09MOSCOW2809 ¶1]. Fine.",
     [("The U.S. Embassy met Gen. Ivanov [09MOSCOW2809 ¶1].", [f"{M} ¶1"]), ("Fine.", [])]),
    # Markdown list items are sentences of their own
    ("Two points:\n- Tourism [09ASTANA664 ¶5]\n- Costs [09ASTANA664 ¶4]",
     [("Two points:", []), ("- Tourism [09ASTANA664 ¶5]", [f"{A} ¶5"]), ("- Costs [09ASTANA664 ¶4]", [f"{A} ¶4"])]),
    ("Both [09ASTANA664 ¶3] agree [09ASTANA664 ¶4]!", [("Both [09ASTANA664 ¶3] agree [09ASTANA664 ¶4]!",
                                                       [f"{A} ¶3", f"{A} ¶4"])]),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), SENTENCE_CASES)
def test_split_sentences(text: str, expected: list[tuple[str, list[str]]]) -> None:
    sentences = split_sentences(text)
    assert [(s.text, list(s.keys)) for s in sentences] == expected
    for sentence in sentences:
        after = sentence.start + len(sentence.text)
        assert text[sentence.start:after] == sentence.text and sentence.end >= after
        # between the sentence and its end, only the citations that trail it
        assert not re.sub(r"\[\d{2}[A-Z]+\d+ ¶\d+\]", "", text[after:sentence.end]).strip()


@pytest.mark.parametrize(("text", "finished"), [
    ("Leased until 2050 [09ASTANA664 ¶6].", True),
    ("Leased until 2050. [09ASTANA664 ¶6]", True),
    ("Is it leased?", True),
    ("Two points:", True),
    ("**Leased until 2050.**", True),
    ("Leased until 2050 [09ASTANA664 ¶6]", False),
    ("Leased until 20", False),
    ("- Tourism [09ASTANA664 ¶5]", False),
])
def test_a_sentence_knows_whether_it_was_finished(text: str, finished: bool) -> None:
    (sentence,) = split_sentences(text)
    assert sentence.finished is finished


# Real paragraphs of 09ASTANA664 (seeds/000_cd6aacf7c7c258ff.txt).
P4 = ("Shaimagambetov said both Russia and Kazakhstan have to maintain administrative facilities at Baikonur, "
      "support military units and law-enforcement agencies that provide security there, and fund the presence of "
      "other state agencies. In addition, there are costs associated with improving infrastructure at the site and "
      "funding pension obligations for those who work there. Ensuring ecological safety at Baikonur, with spent "
      "rocket fuel contaminating parts of the site, also entails costs.")
P5 = ("Shaimagambetov noted that there is a Russia-Kazakhstan joint venture to build a new rocket launch site at "
      "Baikonur, called Baiterek, which is designed to launch Russia's newest Angara heavy-launch boosters. The "
      "Angara booster will use a less toxic fuel than Russia's existing Proton booster. The Baiterek project is "
      "supposed to be completed by 2012, though it is only at the design stage now.")
P7 = ("Shaimagambetov said that KazKosmos would like to enter into a cooperative partnership with NASA. He said "
      "Kazakhstan has no direct experience in space flight or exploration and, thus, could benefit immensely from "
      "NASA's experience. Kazakhstan has sent two cosmonauts into space, and had hoped to send one of its two "
      "current candidate cosmonauts to the International Space Station in late 2009.")

SUPPORT_CASES = [
    ("The Baiterek launch site at Baikonur is due to be completed by 2012.", P5, True),
    ("Baiterek will launch Russia's Angara boosters, which use a less toxic fuel than the Proton.", P5, True),
    ("Kazakhstan and Russia share the costs of security, pensions and ecological safety at Baikonur.", P4, True),
    ("KazKosmos wants a cooperative partnership with NASA [09ASTANA664 ¶7].", P7, True),
    ("Kazakhstani officials say maintaining Baikonur is costly.", P4, True),
    ("Cable 09ASTANA664 says the Baiterek project is due by 2012.", P5, True),
    # a number the paragraph lacks
    ("The Baiterek launch site at Baikonur is due to be completed by 2015.", P5, False),
    # a name the paragraph lacks
    ("KazKosmos wants a partnership with the European Space Agency.", P7, False),
    ("KazKosmos wants a cooperative partnership with NASA.", P4, False),
    # words the paragraph lacks
    ("The new city hospital and kindergarten are being built.", P4, False),
    ("", P4, False),
]


@pytest.mark.parametrize(("sentence", "paragraph", "supported"), SUPPORT_CASES)
def test_support_score(sentence: str, paragraph: str, supported: bool) -> None:
    score = support_score(sentence, paragraph)
    assert 0.0 <= score <= 1.0
    assert (score >= 0.5) is supported, score


def _hits() -> list[Hit]:
    cable = Cable(id=A, date=datetime(2009, 4, 17, 12, 8), origin="Embassy Astana", classification="UNCLASSIFIED",
                  subject="KAZAKHSTAN: KAZKOSMOS LAYS OUT SPACE AMBITIONS", paragraphs=())
    return [Hit(Paragraph(A, n, text), cable, 1.0 / n) for n, text in ((4, P4), (5, P5), (7, P7))]


def test_check_reply_cleans_checks_and_quotes_verbatim() -> None:
    reply = ("The Baiterek site is due by 2012 [09ASTANA664 para 5]. KazKosmos wants a partnership with NASA."
             "[09ASTANA664 ¶7][09ASTANA664 ¶7] Russia pays Kazakhstan $115 million a year [09ASTANA664 ¶4]. "
             "Tourism is growing [09ASTANA664 ¶8]. Nobody disputes this.")
    checked = check_reply(reply, _hits())
    assert checked.text == ("The Baiterek site is due by 2012 [09ASTANA664 ¶5]. KazKosmos wants a partnership with "
                            "NASA. [09ASTANA664 ¶7] Russia pays Kazakhstan $115 million a year [09ASTANA664 ¶4]. "
                            "Tourism is growing. Nobody disputes this.")
    assert checked.dropped == (f"{A} ¶8",)
    assert [(c.ref, c.supported) for c in checked.citations] == [(f"{A} ¶5", True), (f"{A} ¶7", True),
                                                                 (f"{A} ¶4", False)]
    paragraphs = {4: P4, 5: P5, 7: P7}
    for citation in checked.citations:
        assert citation.quote and citation.quote in paragraphs[citation.paragraph]
        assert citation.subject == "KAZAKHSTAN: KAZKOSMOS LAYS OUT SPACE AMBITIONS"
        assert citation.date == datetime(2009, 4, 17, 12, 8)
    assert checked.citations[0].quote.startswith("The Baiterek project is supposed to be completed by 2012")
    assert checked.citations[1].quote.startswith("Shaimagambetov said that KazKosmos would like")
    assert checked.unsupported == ("Russia pays Kazakhstan $115 million a year [09ASTANA664 ¶4].",
                                   "Tourism is growing.", "Nobody disputes this.")


MARK_CASES = [
    # a repeated unsupported sentence is marked where each copy stands
    ("Tourism is growing. The Baiterek site is due by 2012 [09ASTANA664 ¶5]. Tourism is growing.",
     "Tourism is growing. ⚠ The Baiterek site is due by 2012 [09ASTANA664 ¶5]. Tourism is growing. ⚠"),
    # a fragment cut off mid-word, whose letters also stand inside earlier words
    ("The KAZAKHSTAN site is due by 2012 [09ASTANA664 ¶5]. KAZAKH",
     "The KAZAKHSTAN site is due by 2012 [09ASTANA664 ¶5]. KAZAKH ⚠"),
    ("The Baiterek site on the U.S.-RUSSIA list is due by 2012 [09ASTANA664 ¶5]. Dialogue on U.",
     "The Baiterek site on the U.S.-RUSSIA list is due by 2012 [09ASTANA664 ¶5]. Dialogue on U. ⚠"),
    # the mark follows the citations that trail a sentence, and a list item's line
    ("Tourism is growing. [09ASTANA664 ¶4] Baiterek is due by 2012. [09ASTANA664 ¶5]",
     "Tourism is growing. [09ASTANA664 ¶4] ⚠ Baiterek is due by 2012. [09ASTANA664 ¶5]"),
    ("Facts:\n- Baiterek is due by 2012 [09ASTANA664 ¶5]\n- Tourism grows [09ASTANA664 ¶5]\n",
     "Facts: ⚠\n- Baiterek is due by 2012 [09ASTANA664 ¶5]\n- Tourism grows [09ASTANA664 ¶5] ⚠\n"),
]


@pytest.mark.parametrize(("reply", "marked"), MARK_CASES)
def test_marks_go_after_each_unsupported_sentence_by_position(reply: str, marked: str) -> None:
    checked = check_reply(reply, _hits())
    assert checked.marked() == marked
    assert len(checked.sentences) == len(checked.supported)
    assert checked.unsupported == tuple(s.text for s, ok in zip(checked.sentences, checked.supported, strict=True)
                                        if not ok)


def test_check_reply_marks_a_citation_whose_paragraph_carries_none_of_the_sentence() -> None:
    reply = "KazKosmos wants a cooperative partnership with NASA [09ASTANA664 ¶7] [09ASTANA664 ¶4]."
    checked = check_reply(reply, _hits())
    assert [(c.ref, c.supported) for c in checked.citations] == [(f"{A} ¶7", True), (f"{A} ¶4", False)]
    assert checked.unsupported == ()


def test_check_reply_lets_a_sentence_use_the_cable_date_and_subject_it_was_shown() -> None:
    reply = ("In April 2009 KazKosmos said Baiterek is supposed to be completed by 2012 [09ASTANA664 ¶5]. "
             "The Embassy Astana cable of 2009-04-17 says Baiterek is only at the design stage [09ASTANA664 ¶5].")
    checked = check_reply(reply, _hits())
    assert [(c.ref, c.supported) for c in checked.citations] == [(f"{A} ¶5", True)]
    assert checked.unsupported == ()
