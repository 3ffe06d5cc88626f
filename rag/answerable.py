"""Whether the indexed cables hold a question's subject, decided from the index's own vocabulary, not from scores.

A question names its *subject* with a few distinctive words, its *anchors*: names ("Maguindanao", "KazKosmos"),
rare words ("bushfires"), and years. Common English is no anchor: a reworded question says "turn down" where the
cable wrote "rejected", but it cannot rename Maguindanao. Rarity is judged against general English (wordfreq's Zipf
scale, where 3 is about once per million words), never against the index, so an anchor means the same on 2
cables as on 250,000.

Two checks, each of which refuses with a reason a reader can act on (:meth:`Subject.reason`):

1. **Subject absent.** An anchor no indexed paragraph holds: "No indexed cable mentions Maguindanao." A year is
   absent only when no paragraph names it and it lies outside the indexed cables' years.
2. **Subject not together.** The rare names (Zipf under ``RARE_ZIPF``) must stand together in one cable, with each
   year the question names (a cable dated in that year or later can report on it; one naming the year holds it
   too): "No indexed cable mentions Spanair and 2008 together with Barajas." A year after the newest cable must
   stand with every name the question gives, as only a cable naming it can speak of it.

Common names ("Korean", "Mexican") are left out of the second check: a cable about Korea may write "ROK". The kind
of fact asked for is checked later, on the sentences (rag.extractive); a question with no anchor at all is judged
by meaning against :class:`Calibration`, measured on the index in use.

How the constants were chosen, on the dev sets (61 original, 20 reworded and 12 in-range unanswerable questions
over the 6,712-cable index; benchmarks/README.md): with ``NAME_ZIPF`` 4.5, ``RARE_ZIPF`` 3.0 and prefix matching
(:attr:`Anchor.match`), no answerable question has an absent anchor or fails the together check, while the
checks refuse the questions whose subject the corpus lacks. Phrases of several capitalised words were tried as
anchors and dropped: questions name people with titles and possessives the cables do not ("Congressman Robert
Wexler", "Spain's Sacyr"), and 12 answerable questions were refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from rag.text import STOPWORDS, YEAR

if TYPE_CHECKING:
    from rag.store import Store

__all__ = ["NULL_QUESTIONS", "Anchor", "Calibration", "Subject", "anchors", "find_subject", "load_word_frequencies"]

NAME_ZIPF = 4.5
RARE_ZIPF = 3.0
# A question's first word is capitalised anyway: there it is a name only when rarer than this ("Oman" 3.4 is,
# "Roughly" 3.9 is not).
FIRST_WORD_ZIPF = 3.5
NARROW_PARAGRAPHS = 5_000
_QUESTION_WORDS = frozenset("who whom whose what which when where why how is are was were do does did can could "
                            "should would will has have had according roughly about".split())
_MONTH_NAMES = frozenset("january february march april may june july august september october november december "
                         "jan feb mar apr jun jul aug sep sept oct nov dec".split())
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|\b\d{4}\b")
_MONTH_NUMBERS = {m: i for i, m in enumerate("january february march april may june july august september october "
                                              "november december".split(), 1)}
_MONTH_YEAR = re.compile(rf"\b({'|'.join(_MONTH_NUMBERS)})\s+(?:\d{{1,2}},?\s+)?({YEAR.pattern})", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


def load_word_frequencies() -> None:
    """Load wordfreq's English list now (a second or more), so that the first question does not wait for it."""
    _zipf("the")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A distinctive word of a question: a ``name`` (capitalised), a rare ``word``, a ``year``, or a ``month`` of
    a year ("March 2010").

    ``zipf``: how common the word is in English (wordfreq), the rarer the more it identifies a subject.
    """

    text: str
    kind: str
    zipf: float = 0.0

    @property
    def match(self) -> str:
        """The FTS5 query that finds it in a paragraph or its context line: the word as the porter tokenizer stems
        it ("Boeing", "rudely"), or its first seven tenths, so that "Mexican" finds "Mexico", "Uzbek"
        "Uzbekistan" and "Abduvaliyev" the cable's "Abduvaliev"."""
        if self.kind == "year":
            return f'"{self.text}"'
        if self.kind == "month":
            month, year = self.text.lower().split()
            return f'NEAR("{month}" "{year}", 3)'
        word = self.text.lower()
        forms = [f'"{word}"', f'"{word[:max(6, math.ceil(0.7 * len(word)))]}"*']
        if self.kind == "word":  # a compound is written solid, hyphenated or open: "plainclothes", "plain clothes"
            forms += [f'"{word[:cut]} {word[cut:]}"' for cut in range(3, len(word) - 2)
                      if _zipf(word[:cut]) >= RARE_ZIPF and _zipf(word[cut:]) >= RARE_ZIPF]
        return " OR ".join(forms)

    @property
    def year(self) -> int | None:
        return int(self.text.split()[-1]) if self.kind in ("year", "month") else None

    @property
    def dated(self) -> bool:
        return self.kind in ("year", "month")

    @property
    def start(self) -> str:
        """The first day of a year or month anchor, ISO: a cable dated on or after it can report on it."""
        if self.kind == "month":
            month, year = self.text.lower().split()
            return f"{year}-{_MONTH_NUMBERS[month]:02d}-01"
        return f"{self.text}-01-01"

    @property
    def rare_name(self) -> bool:
        """A name rare enough that a cable about the subject must say it: "Spanair", "Yazicioglu", not "Korean",
        which a cable about Korea may write "ROK"."""
        return self.kind == "name" and self.zipf < RARE_ZIPF


def anchors(question: str) -> list[Anchor]:
    """The question's anchors, in the order the question gives them."""
    found: dict[str, Anchor] = {}
    question = question.replace("’", "'")
    months = {m.group(2): m for m in _MONTH_YEAR.finditer(question)}
    for position, token in enumerate(_TOKEN.findall(question)):
        if YEAR.fullmatch(token):
            month = months.get(token)
            text = f"{month.group(1).capitalize()} {token}" if month else token
            found.setdefault(text, Anchor(text, "month" if month else "year"))
            continue
        for part in re.split(r"[-']", re.sub(r"'s?$", "", token)):
            lower = part.lower()
            if len(part) < 2 or lower in STOPWORDS or lower in _QUESTION_WORDS or lower in _MONTH_NAMES:
                continue
            zipf = _zipf(lower)
            if part[0].isupper() and zipf < NAME_ZIPF and not (position == 0 and zipf >= FIRST_WORD_ZIPF):
                found.setdefault(lower, Anchor(part, "name", zipf))
            elif part.islower() and len(part) > 3 and zipf < RARE_ZIPF:
                found.setdefault(lower, Anchor(part, "word", zipf))
    return list(found.values())


@dataclass(frozen=True, slots=True)
class Subject:
    """What the index holds of a question's anchors.

    ``absent``: anchors no paragraph holds. ``cables``: rowids of the cables that hold the subject (every rare
    name, and each year), None when nothing narrows it. ``missing_together``: when no cable holds them all, the
    anchor that failed.
    """

    anchors: tuple[Anchor, ...]
    absent: tuple[Anchor, ...]
    cables: frozenset[int] | None
    missing_together: Anchor | None = None
    together: tuple[Anchor, ...] = ()

    def reason(self) -> str | None:
        """Why the cables cannot answer, or None when the subject is there."""
        if self.absent:
            return f"No indexed cable mentions {_join([a.text for a in self.absent])}."
        if self.cables is not None and not self.cables:
            others = [a.text for a in self.together if a != self.missing_together]
            missing = self.missing_together
            if missing is not None and missing.dated:
                return (f"No indexed cable from {missing.text} or later, nor any naming that {missing.kind}, "
                        f"mentions {_join(others, 'and')}.")
            return f"No indexed cable mentions {_join(others, 'and')} together with {missing.text if missing else ''}."
        return None


def find_subject(question: str, store: Store, *, years: tuple[int | None, int | None]) -> Subject:
    """Look the question's anchors up in the index behind ``store``."""
    found = tuple(anchors(question))
    if not found:
        return Subject((), (), None)
    first, last = years
    in_range = {a for a in found if a.dated and first is not None and first <= a.year <= last}
    absent = tuple(a for a in found if a not in in_range and not store.fts_count(a.match, limit=1))
    if absent:
        return Subject(found, absent, frozenset())
    # A year after the newest cable can only be held by a cable that names it beside every name asked about; a
    # year in range, beside the rare names only (the common ones a cable may write otherwise). A name in more
    # than NARROW_PARAGRAPHS paragraphs narrows nothing worth the time it takes.
    late = [a for a in found if a.dated and a not in in_range]
    counts = {a: store.fts_count(a.match, limit=NARROW_PARAGRAPHS + 1) for a in found
              if a.kind == "name" and (late or a.rare_name)}
    names = [a for a in counts if counts[a] <= NARROW_PARAGRAPHS]
    if not names and not late:
        return Subject(found, (), None)
    together = tuple(sorted(names, key=counts.__getitem__)) + tuple(a for a in found if a.dated)
    cables: set[int] | None = None
    for anchor in together:
        if anchor.dated:
            if cables is None and anchor in in_range:
                continue  # every cable of those years could speak of it: nothing to narrow
            holding = store.cables_dated_from(anchor.start, within=cables)
            earlier = sorted(cables - holding) if cables is not None else None
            if earlier is None or len(earlier) > 500:
                holding |= store.fts_cables(anchor.match, limit=NARROW_PARAGRAPHS)
            elif earlier:  # a few cables dated before it may still name it: read them rather than rank the year
                holding |= store.cables_saying(anchor.text.lower().split(), within=earlier)
            if cables is not None:
                holding &= cables
        else:
            holding = store.fts_cables(anchor.match, within=sorted(cables) if cables and len(cables) <= 500 else None)
            if cables is not None:
                holding &= cables
        if not holding:
            return Subject(found, (), frozenset(), anchor, together)
        cables = holding
    return Subject(found, (), frozenset(cables) if cables is not None else None, None, together)


NULL_QUESTIONS = (
    "What is the best recipe for chocolate chip cookies?",
    "How do I change a flat tyre on a bicycle?",
    "Who won the football world cup final?",
    "What is the boiling point of water at high altitude?",
    "How many moons does Jupiter have?",
    "Which actor starred in the science fiction film about dinosaurs?",
    "How do you knit a wool scarf for winter?",
    "What are the rules of chess for castling?",
    "When do cherry trees blossom in spring?",
    "How long should I boil an egg?",
    "What is the plot of the latest superhero movie?",
    "How do I fix a leaking kitchen tap?",
    "Which video game console sold the most units?",
    "What songs did the rock band play at the concert?",
    "How do plants make food through photosynthesis?",
    "What is the best way to train a puppy?",
)


@dataclass(frozen=True, slots=True)
class Calibration:
    """How close the index's best paragraph comes to questions about unrelated topics (``NULL_QUESTIONS``).

    The cosine of a question's best paragraph means little alone: it rises with the size and breadth of the index.
    Against this index's own off-topic ceiling it says whether a question found its subject at all.
    """

    null_cosines: tuple[float, ...]

    @classmethod
    def measure(cls, best_cosine: Callable[[Sequence[str]], Sequence[float]]) -> Calibration:
        return cls(tuple(sorted(float(c) for c in best_cosine(NULL_QUESTIONS))))

    @property
    def ceiling(self) -> float:
        """The off-topic ceiling: the second-highest null cosine, so that one lucky match does not set it."""
        return self.null_cosines[-2] if len(self.null_cosines) > 1 else (self.null_cosines or (0.0,))[-1]


def _join(items: Sequence[str], conjunction: str = "or") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}" if items else ""
