"""``parse_cable`` on real cable text: the two seeds exactly, a table of the corpus's quirks (each row a snippet
copied from the shared corpus, trimmed), bad input, and the whole shared corpus.

Tests marked ``corpus`` use /work/shared and skip when it is absent; the rest carry their text with them.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from datetime import datetime
from itertools import pairwise

import pytest
from conftest import CORPUS, JSONL_GZ, SEEDS, needs_corpus, seed_texts
from test_loaders import load, utc

from rag.errors import CableParseError
from rag.loaders import NO_TEXT, LoadReport, load_cables
from rag.models import Cable, Paragraph
from rag.parser import MAX_CABLE_CHARS, parse_cable

DEV_QUESTIONS = CORPUS.parent / "eval" / "dev-questions.jsonl"
# What is left of a page-break line ("ASTANA 00000664 002 OF 003", "NEW DELHI 00009127 001.2 OF 006")
# wherever it stands: the eight-digit number and the page count are never cable text.
PAGE_BREAK = re.compile(r"\d{8}\s+\d{3}(?:\.\d+)?\s+OF\s+\d{3}\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def seeds() -> dict[str, Cable]:
    parsed = (parse_cable(p.read_text(encoding="utf-8"), source=str(p)) for p in sorted(SEEDS.glob("*.txt")))
    return {cable.id: cable for cable in parsed}


def numbers(cable: Cable) -> list[int]:
    return [p.number for p in cable.paragraphs]


# --- the seeds, exactly --------------------------------------------------------------------------------------


def test_astana_seed(seeds):
    cable = seeds["09ASTANA664"]
    assert numbers(cable) == list(range(1, 12))  # "11."-"18." are ¶1-¶8 with mangled pilcrows, then ¶9-¶11
    assert all(p.numbered and p.cable_id == "09ASTANA664" for p in cable.paragraphs)
    assert cable.date == utc(2009, 4, 17, 12, 8)
    assert (cable.origin, cable.classification, cable.signer) == (
        "Embassy Astana", "UNCLASSIFIED//SENSITIVE", "HOAGLAND")
    assert cable.tags == ("PGOV", "PREL", "TSPA", "SENV", "KNNP", "KZ")  # from the [PGOV](#) link form
    assert cable.subject == (
        "KAZAKHSTAN: KAZKOSMOS LAYS OUT SPACE AMBITIONS, REQUESTS SUPPORT FOR KAZAKHSTAN TO JOIN MTCR")
    assert cable.to == ("SECSTATE WASHDC",) and "AMEMBASSY BEIJING" in cable.info
    assert cable.references == ()

    six = cable.paragraph(6)
    assert "build a new launch site in the Russian Far East, Shaimagambetov said" in six.text
    assert not PAGE_BREAK.search(six.text) and "ASTANA" not in six.text
    assert cable.paragraph(8).text.endswith("hopes this will change.")
    assert "lease in 1994, and it included a provision" in cable.paragraph(3).text  # on after a blank line
    assert "on its own, without Russian participation" in cable.paragraph(10).text  # second page break
    assert cable.paragraph(11).text.endswith("END COMMENT.)")  # the signature is not paragraph text
    assert [p.marking for p in cable.paragraphs] == ["U"] + ["SBU"] * 10
    assert cable.paragraph(1).text == "Sensitive but unclassified. Not for Public Internet."
    assert [cable.paragraph(n).heading for n in (2, 3, 6, 7, 9)] == [
        None,
        "RENEGOTIATION OF RUSSIA-KAZAKHSTAN AGREEMENT ON BAIKONUR",
        "RENEGOTIATION OF RUSSIA-KAZAKHSTAN AGREEMENT ON BAIKONUR",
        "KAZKOSMOS WOULD LIKE TO HAVE COOPERATION WITH NASA",
        "PROJECTS STRUGGLING BECAUSE OF THE FINANCIAL CRISIS",
    ]
    assert six.ref == "09ASTANA664 ¶6"


def test_moscow_seed(seeds):
    cable = seeds["09MOSCOW2809"]
    assert numbers(cable) == [1, 2, 3, 4, 5]
    assert cable.date == utc(2009, 11, 18, 15, 1)
    assert (cable.origin, cable.signer) == ("Embassy Moscow", "BEYRLE")
    # REF A is an e-mail, kept as its text; REF B is a cable, resolved with the DTG's year.
    assert cable.references == ("JOINT SPACE OPERATIONS CENTER/KLEPP E-KMAIL 11/10/09", "09STATE116396")
    assert cable.tags == ("TSPA", "NASA", "TSPL", "PREL", "RS", "UNPUOS")
    assert cable.subject == "RUSSIAN REACTION TO NON-PAPER ON U.S.-RUSSIA SPACE SECURITY DIALOGUE"
    assert [p.heading for p in cable.paragraphs] == [
        "Summary",
        "GOR Treating Space Security Dialogue Very Seriously",
        "POC for Notifications",
        "Jan 20-21 Experts Meeting in Paris",
        "Familiarization Visits of Military Space Experts",
    ]
    assert [p.marking for p in cable.paragraphs] == ["U", "SBU", "SBU", "SBU", "SBU"]
    assert cable.paragraph(3).text.endswith("not given us any questions.")
    assert cable.paragraph(5).text == (
        "Klapovskiy promised to pass the suggestion to the relevant authorities and let us know.")


# --- the quirks, each from real text -------------------------------------------------------------------------

ASTANA_NUMBERING = """\
O 171208Z APR 09
FM AMEMBASSY ASTANA

UNCLAS SECTION 01 OF 03 ASTANA 000664

TAGS: [PGOV](#) [PREL](#) [TSPA](#) [SENV](#) [KNNP](#) [KZ](#)

SUBJECT: KAZAKHSTAN: KAZKOSMOS LAYS OUT SPACE AMBITIONS, REQUESTS
SUPPORT FOR KAZAKHSTAN TO JOIN MTCR

11. (U) Sensitive but unclassified. Not for Public Internet.

12. (SBU) SUMMARY. Kazakhstan's National Space Agency, KazKosmos, expects that Russia and Kazakhstan will sign an agreement this year to allow visits to the Baikonur cosmodrome for tourists.
END SUMMARY.

13. (SBU) Shaimagambetov noted that Russia and Kazakhstan signed the first Baikonur lease in 1994,

and it included a provision that the agreement could be extended.

14. (SBU) Shaimagambetov said both Russia and Kazakhstan have to maintain administrative facilities at Baikonur.

15. (SBU) Shaimagambetov noted that there is a Russia-Kazakhstan joint venture to build a new rocket launch site at Baikonur, called Baiterek.

16. (SBU) Regarding Russia's plans to build a new launch site in the
ASTANA 00000664 002 OF 003

Russian Far East, Shaimagambetov said KazKosmos fully understands Russia's interest in developing its own independent access to space.

17. (SBU) Shaimagambetov said that KazKosmos would like to enter into a cooperative partnership with NASA.

18. (SBU) At present, only a very small number of people are able to go to Baikonur, but Shaimagambetov

hopes this will change.

¶9. (SBU) Shaimagambetov enumerated a number of projects that KazKosmos was undertaking.

¶10. (SBU) Kazakhstan is working to improve life in the city of Baikonur, Shaimagambetov said. It is doing this on its own, without

ASTANA 00000664 003 OF 003

Russian participation, since Russia is only interested in exploiting the launch site.

¶11. (SBU) Shaimagambetov argued that Kazakhstan has worked actively in the realm of missile technology control.

HOAGLAND
"""

NEW_DELHI_HEADER_BREAK = """\
Friday, 02 December 2005, 12:54
C O N F I D E N T I A L SECTION 01 OF 06 NEW DELHI 009127
SIPDIS
SIPDIS
EO 12958 DECL: 11/30/2015
TAGS KISL, PGOV, KDEM, PINR, PTER, SCUL, IN
SUBJECT: INDIA’S DEMOCRACY AND ECONOMY MINIMIZE EXTREMIST
RECRUITMENT OF JUVENILES (C-CT5-00623)
REF: STATE 211901
NEW DELHI 00009127 001.2 OF 006
Classified By: POLCOUNS Geoffrey R. Pyatt for Reasons 1.4 (B, D)
¶1. (C) India’s over 150 million Muslim population is largely unattracted to extremism.
The Muslim Minority
-------------------
¶2. (C) According to India’s 1991 National Census, the Muslim population constitutes just under 15 percent of the country’s total.
"""

LONDON_REFLOWED = """\
UNCLAS E F T O SECTION 01 OF 02 LONDON 000021

SIPDIS NOFORN

TREASURY FOR HORTON, WINN NSC FOR HOVENIER, BRADLEY E.O. 12958: N/A

TAGS: ECON EINV IC NE UK

 SUBJECT: UK - UNHAPPY WITH ICELANDIC PRESIDENT'S DECISION ON ICESAVE, BUT NO OFFICIAL PROTEST - YET REF: REYKJAVIK 000003

1.(SBU/NF) Summary: The UK government did not anticipate that Iceland President Grimsson would block the legislation on Icesave. End Summary.

UK Reaction -----------

2.(U) In reaction to the announcement by the President of Iceland that he would not sign into law the Icesave bill passed by Iceland's parliament on December 30 and would instead refer the bill to a national referendum, Lord Myners, the financial services minister, said Iceland risked pariah status if voters rejected the loan repayment plan.

3.(U) On the eve of Grimsson's announcement, Chancellor of the Exchequer Darling had urged the Icelandic president to sign the legislation.

4.(SBU/NF) Treasury Head of Financial Services Strategy Gary Roberts told ECOUNS January 6 that the UK had not anticipated Grimsson's decision.

5.(SBU/NF) HMT officials said it would be difficult for the UK to support the next IMF review for Iceland if the decision on repayment were still unresolved.

The Terms ---------

6.(SBU/NF) Terms were "generous", with payments spread out over several years, a waiver of interest rate payments for seven years, and a 5.5 percent interest rate consistent with ten-year LONDON 00000021 002 OF 002 gilts. Moreover, UK terms were better than the Nordics, which had interest rates 200-300 basis points higher, he noted.
"""

CAIRO_NO_SPACE = """\
C O N F I D E N T I A L CAIRO 002133

E.O. 12958: DECL: 11/03/2019
TAGS: PREL MASS MOPS PTER PARM SU IR EG
SUBJECT: ASD VERSHBOW'S NOV 3 MEETING WITH FOREIGN MINISTER
ABOUL GHEIT

Classified By: Ambassador Margaret Scobey per 1.4 (b) and (d). -- (C) During a November 3 meeting with Assistant Secretary of Defense (ASD) for International Security Affairs Alexander Vershbow, Foreign Minister Aboul Gheit reviewed a broad range of regional security concerns from West Africa to Pakistan. END SUMMARY ---------------- Regional Threats ----------------
2.(C) Aboul Gheit began the meeting with an overview of the many regional security threats that concern Egypt.

3.(C) Aboul Gheit emphasized the need for a comprehensive solution to regional threats, saying that "a military solution will not suffice."
"""

SAN_JOSE_LETTERED = """\
UNCLAS SAN JOSE 000610

SENSITIVE
SIPDIS

E.O. 12958: N/A
TAGS: PREL OTRA OVIP KSEP UNGA CS
SUBJECT: COSTA RICA: 63RD UNGA HIGH-LEVEL ATTENDANCE AND
REQUESTS FOR MEETINGS

REF: STATE 72078

¶3. (SBU) We anticipate that Costa Rica would want to be
included on any broader Security Council meetings/briefings
with S or other key officials.

¶4. (SBU) GOCR attendees confirmed to date follow.

¶A. Attendance of the Head of State.

-- President Oscar Arias Sanchez.

¶B. Attendance of the Head of Government (same as above).

¶C. Attendance of the Foreign Minister.

¶E. Attendance of the Foreign Ministry official responsible
for IO affairs -- TBD.
CIANCHETTE
"""

HAGUE_REF_LIST = """\
C O N F I D E N T I A L THE HAGUE 000106

SIPDIS

E.O. 12958: DECL: 02/19/2020
TAGS: ECON EFIN PGOV PREL NL IC
SUBJECT: NETHERLANDS:  NEXT STEPS ON ICESAVE

REF: A. THE HAGUE 11
     ¶B. REYKJAVIK 13

Classified By: Acting Political-Economic Counselor Eric Falls for reaso
ns 1.4 (b) and (d).

¶1. (C) Summary:  The Government of the Netherlands (GONL)
believes the existing Dutch and British loan agreements with
Iceland will be resoundingly defeated in a March 6 Icelandic
referendum.  The Dutch offer likely will entail an &interest
holiday8 for part of the term of the loan, or changing the
current fixed interest rate to a floating one.
End summary.

¶2. (SBU) Nicole Bollen, Coordinator for Debt Issues at the
Dutch Ministry of Finance, briefed ECONOFF February 19 on
next steps in the Icesave case.
"""

BOGOTA_BACKSLASHES = r"""C O N F I D E N T I A L SECTION 01 OF 04 BOGOTA 011339 \
 \
SIPDIS \
 \
E.O. 12958: DECL: 10/29/2014 \
TAGS: EAID PGOV PHUM PINR PREL CO
SUBJECT: THE UN'S FUTURE IN COLOMBIA \
 \
REF: A) BOGOTA 11207 B) BOGOTA 11205 C) BOGOTA 10728 \
 \
Classified By: Ambassador William B. Wood, Reasons 1.4 (b) and (d) \
 \
¶1. (C) SUMMARY:  Ambassador met with UN special advisor on \
Colombia James LeMoyne at the latter's request on October 28 \
and 30. \
 \
------------------------------- \
NEW EU POLICY PAPER ON COLOMBIA \
------------------------------- \
 \
¶3. (C) LeMoyne said the EU position on the Colombian peace \
process was shifting. \
"""

ANKARA_PARTIAL_EXTRACT = """\
This record is a partial extract of the original cable. The full text of the original cable is not available.

201247Z Jan 04

C o n f i d e n t i a l section 01 of 04 ankara 000348

Sipdis

E.o. 12958: decl: 01/07/2014 Tags: prel, pgov, pins, tu Subject: turkish p.m. Erdogan goes to washington: how strong a leader in the face of strong challenges?

(U) Classified by Ambassador Eric Edelman; reasons: 1.5 (b,d).

¶1. (C) Summary: P.M. Erdogan expects Washington to focus on Cyprus, economic reform, and anti-terrorism cooperation among other issues. End summary.

¶2. (C) P.M. Erdogan appears to be riding a political high and uncommon luck as he prepares for his Jan. 28-29 visit to Washington.

Who are we dealing with?

¶5. (C) Charismatic, and possessing a common touch and phenomenal memory for faces and functions of thousands of party members across the country, Erdogan has a strong pragmatic core.
"""

STOCKHOLM_CUT_SHORT = """\
P 170724Z JUL 08
FM AMEMBASSY STOCKHOLM
TO RUEHC/SECSTATE WASHDC PRIORITY 3609

UNCLAS STOCKHOLM 000510

SENSITIVE
SIPDIS

EUR FOR NB

E.O. 12958: N/A
TAGS: EINT PTER PINR PGOV RU SW
SUBJECT: EUROPEAN COURT TO REVIEW SWEDEN'S SNOOP LAW;
RUSSIA A TARGET OF LAW

REF: STOCKHOLM 450

 SENSITIVE BUT UNCLASSIFIED--...

UNCLAS STOCKHOLM 000510 SENSITIVE SIPDIS EUR FOR NB E.O. 12958: N/A TAGS: EINT PTER PINR PGOV RU SW
"""

KABUL_CUT_SHORT = """\
P 261426Z OCT 09
FM AMEMBASSY KABUL

S E C R E T SECTION 01 OF 03 KABUL 003423

SIPDIS

E.O. 12958: DECL: 10/25/2019
TAGS: PGOV PHUM PREL KDEM AF
SUBJECT: AFGHANS WITH CODEL BURR ON ELECTIONS, SECURITY,
AND THE FUTURE

Classified By: Political Counselor Annie Pforzheimer, ...
"""

TRIPOLI_UNNUMBERED = """\
UNCLAS TRIPOLI 000320

SENSITIVE
SIPDIS

E.O. 12958: N/A
TAGS: ECON EFIN LY PGOV
SUBJECT: TRIPOLI RESPONSE TO FY09 PROHIBITION ON ASSISTANCE TO CENTRAL GOVERNMENTS WHOSE BUDGETS ARE NOT TRANSPARENT REF: STATE 00028885 (SBU) This is a response to the request for information on the transparency of Libya's budget. Replies are keyed to reftel: -Is the central government expected to receive or is it already receiving U.S. foreign assistance funding using FY 09 funds? Answer: Yes. STEVENS
"""

HAGUE_FROM_SIX = """\
UNCLAS SECTION 01 OF 02 THE HAGUE 001336

SENSITIVE
SIPDIS

E.O. 12958: N/A
TAGS: ECON ENRG EINV SENV KISL PINR NL
SUBJECT: NEW DUTCH ECONOMIC MINISTER SEEKS FURTHER U.S. -
NL COOPERATION

REF: THE HAGUE 325
THIS MESSAGE IS SENSITIVE BUT UNCLASSIFIED. PLEASE HANDLE
ACCORDINGLY.

XXXXXXXXXXXX

------------------
Climate Change....
------------------

¶6. (SBU) Van der Hoeven expressed concern over the U.S.
approach to climate change. Van der Hoeven agreed climate change was
a global problem and suggested that the U.S. and Dutch

THE HAGUE 00001336 002 OF 002

could cooperate on the matter.

-------------------------------------

XXXXXXXXXXXX


GALLAGHER
"""

STATE_PAREN_NUMBERS = """\
S E C R E T STATE 065820

EO 12958 DECL: 06/20/2018
TAGS PREL, MARR, MOPS, UG, CG, LY, ZI
SUBJECT: A/S FRAZER’S JUNE 13 MEETING WITH UGANDAN
PRESIDENT MUSEVENI

Classified By: Assistant Secretary Frazer for Reasons 1.4 (a) and (d)

1) (SBU) SUMMARY. On June 13, Assistant Secretary for African Affairs Jendayi Frazer met with Ugandan President Museveni in Fort Leavenworth, Kansas. END SUMMARY.

DRC ACTION AGAINST THE LRA

---------------------------

2) (S) President Museveni said the DRC has not actively attempted to end the LRA threat to the region.

¶10. (U) Tripoli minimize considered.

RICE
"""

# (text, cable id passed in as the loader does or None, [(number, text fragment)] for every paragraph, other fields)
QUIRKS = [
    pytest.param(ASTANA_NUMBERING, None, [
        (1, "Sensitive but unclassified."), (2, "SUMMARY. Kazakhstan's National Space Agency"),
        (3, "lease in 1994, and it included a provision"), (4, "administrative facilities"), (5, "Baiterek"),
        (6, "launch site in the Russian Far East, Shaimagambetov said"), (7, "partnership with NASA"),
        (8, "Shaimagambetov hopes this will change."), (9, "enumerated"),
        (10, "on its own, without Russian participation"), (11, "missile technology control."),
    ], {"id": "09ASTANA664", "signer": "HOAGLAND", "tags": ("PGOV", "PREL", "TSPA", "SENV", "KNNP", "KZ")},
        id="mangled-pilcrows-page-breaks-and-blank-line-continuations"),
    pytest.param(NEW_DELHI_HEADER_BREAK, "05NEWDELHI9127", [
        (1, "India’s over 150 million Muslim population is largely unattracted to extremism."),
        (2, "According to India’s 1991 National Census"),
    ], {"references": ("05STATE211901",),
        "subject": "INDIA’S DEMOCRACY AND ECONOMY MINIMIZE EXTREMIST RECRUITMENT OF JUVENILES (C-CT5-00623)"},
        id="page-break-in-the-header-area-and-ruled-heading"),
    pytest.param(LONDON_REFLOWED, "10LONDON21", [
        (1, "Summary: The UK government did not anticipate"), (2, "Lord Myners"), (3, "Darling"),
        (4, "Gary Roberts"), (5, "IMF review"), (6, "consistent with ten-year gilts. Moreover, UK terms"),
    ], {"references": ("10REYKJAVIK3",), "tags": ("ECON", "EINV", "IC", "NE", "UK"),
        "subject": "UK - UNHAPPY WITH ICELANDIC PRESIDENT'S DECISION ON ICESAVE, BUT NO OFFICIAL PROTEST - YET"},
        id="reflowed-fields-sharing-a-line-and-inline-page-break"),
    pytest.param(CAIRO_NO_SPACE, "09CAIRO2133", [
        (0, "During a November 3 meeting with Assistant Secretary of Defense"),
        (2, "Aboul Gheit began the meeting"), (3, "a military solution will not suffice."),
    ], {}, id="numbers-without-space-and-lead-after-classified-by"),
    pytest.param(SAN_JOSE_LETTERED, "08SANJOSE610", [
        (3, "We anticipate that Costa Rica"),
        (4, ("follow. A. Attendance of the Head of State. -- President Oscar Arias Sanchez. "
             "B. Attendance of the Head of Government")),
    ], {"references": ("08STATE72078",), "signer": "CIANCHETTE"}, id="lettered-sub-items-stay-in-their-paragraph"),
    pytest.param(HAGUE_REF_LIST, "10THEHAGUE106", [
        (1, 'The Dutch offer likely will entail an "interest holiday" for part of the term'),
        (2, "Nicole Bollen, Coordinator for Debt Issues"),
    ], {"references": ("10THEHAGUE11", "10REYKJAVIK13")}, id="pilcrowed-ref-list-is-no-paragraph-and-amp-8-quotes"),
    pytest.param(BOGOTA_BACKSLASHES, "04BOGOTA11339", [
        (1, "SUMMARY: Ambassador met with UN special advisor on Colombia James LeMoyne at the latter's request"),
        (3, "LeMoyne said the EU position on the Colombian peace process was shifting."),
    ], {"references": ("04BOGOTA11207", "04BOGOTA11205", "04BOGOTA10728"), "date": None},
        id="backslash-line-endings"),
    pytest.param(ANKARA_PARTIAL_EXTRACT, "04ANKARA348", [
        (1, "Summary: P.M. Erdogan expects Washington"), (2, "riding a political high"),
        (5, "Charismatic, and possessing a common touch"),
    ], {"classification": "CONFIDENTIAL", "tags": ("PREL", "PGOV", "PINS", "TU"), "date": utc(2004, 1, 20, 12, 47),
        "subject": "turkish p.m. Erdogan goes to washington: how strong a leader in the face of strong challenges?"},
        id="partial-extract-lower-cased-and-spaced"),
    pytest.param(STOCKHOLM_CUT_SHORT, None, [], {
        "id": "08STOCKHOLM510", "references": ("08STOCKHOLM450",), "classification": "UNCLASSIFIED//SENSITIVE",
        "tags": ("EINT", "PTER", "PINR", "PGOV", "RU", "SW"),
        "subject": "EUROPEAN COURT TO REVIEW SWEDEN'S SNOOP LAW; RUSSIA A TARGET OF LAW"},
        id="cut-short-release-drops-its-broken-line-and-header-repeat"),
    pytest.param(KABUL_CUT_SHORT, None, [], {
        "id": "09KABUL3423", "subject": "AFGHANS WITH CODEL BURR ON ELECTIONS, SECURITY, AND THE FUTURE",
        "classification": "SECRET"}, id="cut-short-release-with-nothing-but-header"),
    pytest.param(TRIPOLI_UNNUMBERED, "09TRIPOLI320", [
        (1, "This is a response to the request for information on the transparency of Libya's budget."),
    ], {"references": ("09STATE28885",), "signer": "STEVENS"}, id="no-numbers-one-reflowed-line"),
    pytest.param(HAGUE_FROM_SIX, "07THEHAGUE1336", [
        (0, "XXXXXXXXXXXX"),
        (6, "suggested that the U.S. and Dutch could cooperate on the matter. XXXXXXXXXXXX"),
    ], {"signer": "GALLAGHER", "references": ("07THEHAGUE325",)}, id="release-withholding-paragraphs-before-6"),
    pytest.param(STATE_PAREN_NUMBERS, "08STATE65820", [
        (1, "SUMMARY. On June 13"), (2, "President Museveni said the DRC"),
    ], {"signer": "RICE"}, id="paragraphs-numbered-1)-2)"),
]


@pytest.mark.parametrize(("text", "cable_id", "expected", "fields"), QUIRKS)
def test_quirk(text, cable_id, expected, fields):
    cable = parse_cable(text, source="snippet", cable_id=cable_id)
    assert numbers(cable) == [n for n, _ in expected]
    for paragraph, (_, fragment) in zip(cable.paragraphs, expected):
        assert fragment in paragraph.text, (paragraph.number, paragraph.text)
        assert not PAGE_BREAK.search(paragraph.text) and "\\" not in paragraph.text
        assert paragraph.text == " ".join(paragraph.text.split())
    for name, value in fields.items():
        assert getattr(cable, name) == value, name


def test_quirk_details():
    """What the table's fragments do not show: markings, headings and the unnumbered flag."""
    london = parse_cable(LONDON_REFLOWED, cable_id="10LONDON21")
    assert [(p.marking, p.heading) for p in london.paragraphs] == [
        ("SBU/NF", None), ("U", "UK Reaction"), ("U", "UK Reaction"), ("SBU/NF", "UK Reaction"),
        ("SBU/NF", "UK Reaction"), ("SBU/NF", "The Terms")]
    cairo = parse_cable(CAIRO_NO_SPACE, cable_id="09CAIRO2133")
    assert [p.heading for p in cairo.paragraphs] == [None, "Regional Threats", "Regional Threats"]
    delhi = parse_cable(NEW_DELHI_HEADER_BREAK, cable_id="05NEWDELHI9127")
    assert delhi.paragraph(1).text.endswith("extremism.") and delhi.paragraph(2).heading == "The Muslim Minority"
    hague = parse_cable(HAGUE_FROM_SIX, cable_id="07THEHAGUE1336")
    assert hague.paragraph(6).heading == "Climate Change...."
    (tripoli,) = parse_cable(TRIPOLI_UNNUMBERED, cable_id="09TRIPOLI320").paragraphs
    assert (tripoli.numbered, tripoli.marking, tripoli.text.endswith("Answer: Yes.")) == (False, "SBU", True)
    state = parse_cable(STATE_PAREN_NUMBERS, cable_id="08STATE65820")
    assert state.paragraph(2).heading == "DRC ACTION AGAINST THE LRA"


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("Dear diary, nothing happened today.\nSee you tomorrow.\n", 1, "not a cable"),
        ("  \n\n", 1, "empty text"),
        ("\n\nC O N F I D E N T I A L SECTION 01 OF 04 BOGOTA 011339\n\n¶1. (C) SUMMARY: Ambassador met", 3,
         "cannot tell the cable's reference"),  # no DTG for the year, and no id handed in
    ],
)
def test_bad_input_raises_with_source_and_line(text, line, reason):
    with pytest.raises(CableParseError, match=reason) as caught:
        parse_cable(text, source="in.txt")
    assert (caught.value.source, caught.value.line) == ("in.txt", line)
    assert str(caught.value).startswith(f"in.txt:{line}: ")


def test_bytes_are_refused():
    with pytest.raises(CableParseError, match="decode bytes first"):
        parse_cable(b"UNCLAS ASTANA 000664")  # type: ignore[arg-type]


def test_a_text_longer_than_any_cable_is_refused():
    line = "The text goes on and on.\n"
    text = HEADER + line * (MAX_CABLE_CHARS // len(line) + 1)
    with pytest.raises(CableParseError, match=f"more than any cable holds \\({MAX_CABLE_CHARS:,} at most\\)"):
        parse_cable(text, source="huge.txt")


# --- numbering that is long, crafted or backwards --------------------------------------------------------------

HEADER = ("O 171208Z APR 09\nFM AMEMBASSY ASTANA\nTO SECSTATE WASHDC\nUNCLAS ASTANA 000664\n"
          "SUBJECT: NUMBERING\n\n")


def numbered(numbers: list[int]) -> str:
    return HEADER + "\n\n".join(f"{n}. (U) The paragraph numbered {n} here." for n in numbers) + "\n"


def parse_seconds(text: str) -> float:
    """CPU seconds of the fastest of three parses: other work on a busy machine does not count."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        parse_cable(text)
        best = min(best, time.process_time() - started)
    return best


def test_parse_time_grows_about_linearly_with_numbered_lines():
    """16,000 lines of "N." (1 to 999 over and over) took 6.8 s, and 4 times as many lines 14 times as long."""
    def lines(count: int) -> str:
        return HEADER + "\n".join(f"{i % 999 + 1}." for i in range(count)) + "\n"

    started = time.perf_counter()
    cable = parse_cable(lines(16_000))
    assert time.perf_counter() - started < 3.0
    assert cable.paragraphs[-1].number == 999
    short, long = parse_seconds(lines(4_000)), parse_seconds(lines(16_000))
    assert long <= 5 * short, (short, long)


@pytest.mark.parametrize(("numbers", "expected"), [
    pytest.param(list(range(1, 1201)), list(range(1, 1201)), id="past 999"),
    pytest.param(list(range(30, 0, -1)), list(range(30, 0, -1)), id="backwards"),
    pytest.param(list(range(5, 0, -1)), list(range(5, 0, -1)), id="backwards, short"),
    pytest.param([1, 2, 3, 2, 1], [1, 2, 3], id="up, then down: the count up wins a tie"),
])
def test_every_paragraph_keeps_the_cable_s_own_number(numbers, expected):
    cable = parse_cable(numbered(numbers))
    assert [p.number for p in cable.paragraphs] == expected
    for p in cable.paragraphs:  # never a number other than the one the cable wrote over that text
        assert p.text.startswith(f"The paragraph numbered {p.number} here."), p


def test_loader_warns_on_bad_input_notes_a_cut_short_release_and_goes_on(tmp_path, caplog):
    astana, _ = seed_texts()
    records = [
        {"id": "09KABUL3423", "header": "", "body": KABUL_CUT_SHORT},
        {"id": "X", "body": "Dear diary, nothing happened today."},
        {"id": "09ASTANA664", "body": astana},
    ]
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rag.loaders"):
        cables, report = load(path)
    assert [(c.id, len(c.paragraphs)) for c in cables] == [("09KABUL3423", 0), ("09ASTANA664", 11)]
    assert report.notes == [(f"{path}:1", NO_TEXT)]
    assert [source for source, _ in report.problems] == [f"{path}:2"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


# --- JSON --------------------------------------------------------------------------------------------------------


def cable_from_json(data: dict) -> Cable:
    return Cable(**{
        **data,
        **{name: tuple(data[name]) for name in ("to", "info", "tags", "references")},
        "date": datetime.fromisoformat(data["date"]) if data["date"] else None,
        "paragraphs": tuple(Paragraph(**p) for p in data["paragraphs"]),
    })


@pytest.mark.parametrize(("text", "cable_id"), [
    (ASTANA_NUMBERING, None), (KABUL_CUT_SHORT, None), (BOGOTA_BACKSLASHES, "04BOGOTA11339"),
])
def test_to_dict_round_trips_through_json(text, cable_id):
    cable = parse_cable(text, source="snippet", cable_id=cable_id)
    data = json.loads(json.dumps(cable.to_dict()))
    assert data == cable.to_dict()
    assert cable_from_json(data) == cable


# --- the whole shared corpus -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Cable], LoadReport]:
    report = LoadReport()
    return list(load_cables(JSONL_GZ, report=report)), report


def corpus_records() -> list[dict]:
    with gzip.open(JSONL_GZ, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def dev_questions() -> list[dict]:
    if not DEV_QUESTIONS.exists():
        return []
    with DEV_QUESTIONS.open(encoding="utf-8") as stream:
        return [q for q in map(json.loads, stream) if q.get("cable")]


@pytest.mark.corpus
@needs_corpus
def test_every_corpus_cable_loads_with_its_id(corpus):
    cables, report = corpus
    records = corpus_records()
    assert (report.loaded, report.skipped, report.problems) == (len(records), 0, []) == (6712, 0, [])
    assert [c.id for c in cables] == [r["id"] for r in records]
    assert all(p.cable_id == c.id for c in cables for p in c.paragraphs)
    # Cables with no paragraphs are releases the site cut short after the header (the loader used to skip
    # 55 of them), and the report notes each one.
    empty = {c.source for c in cables if not c.paragraphs}
    assert empty == {source for source, note in report.notes if note == NO_TEXT}
    cut_short = {f"{JSONL_GZ}:{n}" for n, r in enumerate(records, 1) if len(r["body"]) < 700}
    assert 55 <= len(empty) <= 60 and empty <= cut_short


@pytest.mark.corpus
@needs_corpus
def test_numbered_paragraphs_strictly_increase(corpus):
    cables, _ = corpus
    for cable in cables:
        numbered = [p.number for p in cable.paragraphs if p.numbered]
        assert all(a < b for a, b in pairwise(numbered)), (cable.id, numbered)


@pytest.mark.corpus
@needs_corpus
def test_no_page_break_survives(corpus):
    cables, _ = corpus
    survivors = [(c.id, p.number) for c in cables for p in c.paragraphs if PAGE_BREAK.search(p.text)]
    assert survivors == []


def squeezed(text: str) -> str:
    # Quote marks are dropped on both sides: the parser writes the site's "&...8" as '"', evidence may use “ ”.
    return " ".join(re.sub(r"[\"“”]", "", text).split()).lower()


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize("question", dev_questions(), ids=lambda q: f"{q['cable']}-{q['paragraph']}")
def test_dev_evidence_lies_in_the_gold_paragraph(corpus, question):
    cables, _ = corpus
    (cable,) = [c for c in cables if c.id == question["cable"]]
    paragraph = cable.paragraph(question["paragraph"])
    assert paragraph is not None, numbers(cable)
    assert squeezed(question["evidence"]) in squeezed(paragraph.text)
