"""The rerank stage, between fusion and the answer: it re-orders the retrieved paragraphs and picks, in each, the
sentence that best answers the question.

The seam is :class:`Reranker`: given the question and more candidate paragraphs than an answer needs, return them
as :class:`Ranked`, best first, each with its sentences best first (``sentences[0]`` leads). A cross-encoder or
an LLM judge is one class: score each (question, sentence) pair with :func:`sentences_of`, and order.

:class:`SentenceReranker`, the default, scores every sentence by

- the IDF-weighted share of the question's words it holds, figures included ("the 201st base", "until 2050"), an
  acronym counting as the words it abbreviates where a retrieved paragraph spells it out (cables spell out once,
  then abbreviate); the words its cable's context line already covers, such as the country or the month, and those
  of the sentence before it (which its "he" or "one of them" continues) count half;
- whether its cable is dated in a year the question names (a cable reports the events of its own year; a later
  one that looks back is the weaker source);
- whether it holds what the question asks for (rag.answer_kind): a number for "how many", a date for "when", a
  name for "who";
- the rank retrieval gave its paragraph, its paragraph's cosine to the question (retrieval's, so free), and how
  much it adds that the question does not already say;
- for the ``MEANING_TOP`` best by those and the ``COVERAGE_TOP`` best by coverage alone, the cosine of its first
  ``MEANING_WORDS`` words to the question (embedding costs milliseconds a sentence on 2 cores, so not all of them;
  on the dev subset the openings chose as well as whole sentences, at a fraction of the time).

A paragraph scores as its best sentence, and a summary's sentence gives its place to the detail sentence of the
same cable that restates it (the detail is what to cite). Weights were tuned on the dev questions
(benchmarks/README.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from rag.answer_kind import asked_words, asks, holds_kind
from rag.citations import sentence_spans
from rag.models import Hit
from rag.store import context_line
from rag.text import STOPWORDS, WORD, YEAR, is_summary, stem

__all__ = ["Extract", "FakeReranker", "Ranked", "Reranker", "SentenceReranker", "question_terms", "sentences_of"]

LEXICAL, ANSWER_KIND, RANK, NOVELTY, MEANING, PARAGRAPH_MEANING = 1.0, 0.3, 0.3, 0.3, 1.0, 1.0
# The same-year weight: 0.3 on the corpus index gave the right paragraph to two more dev questions (a 2005 and a
# 2009 cable had led for events of 2006) and cost none; 0.5 let a 2004 Bogota cable answer a 2004 Beslan question
# that the cables do not hold (benchmarks/README.md).
DATED = 0.3
# A summary's sentences count this share (rag.text.is_summary): the detailed paragraph is the one to cite.
SUMMARY = 0.8
# The share of a summary sentence's words that a detail sentence must hold to stand in for it.
DETAIL_SHARE = 0.5
MEANING_TOP = 5
COVERAGE_TOP = 2
MEANING_WORDS = 40
# A word, or a figure as a question names one ("the 201st base", "until 2050", "Resolution 1325"): figures are
# among a question's most distinctive terms.
_TERM = re.compile(rf"{WORD.pattern}|\d+(?:[.,]\d+)*(?:st|nd|rd|th|s)?\b")
_HOW = re.compile(r"\bhow (?:many|much|long|far|old|big|large|high|often|soon)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Extract:
    """One sentence taken verbatim from a retrieved paragraph, with its score and the hit it came from."""

    text: str
    hit: Hit
    start: int  # where the sentence lies in the paragraph's text
    end: int
    score: float
    coverage: float


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate paragraph after reranking: its score and its sentences, best first."""

    hit: Hit
    score: float
    sentences: tuple[Extract, ...]

    @property
    def lead(self) -> Extract | None:
        return self.sentences[0] if self.sentences else None


class Reranker(Protocol):
    def rerank(self, question: str, hits: Sequence[Hit], *, vector: np.ndarray | None = None) -> list[Ranked]:
        """``hits`` re-ordered for ``question`` (``vector``: its embedding, when the caller has one)."""
        ...


def sentences_of(hit: Hit) -> list[tuple[int, int, str]]:
    """(start, end, text) of each sentence of a hit's paragraph worth quoting (three words or more)."""
    text = hit.paragraph.text
    found = []
    for start, end in sentence_spans(text, lines=False) or [(0, len(text))]:
        sentence = text[start:end].strip()
        if len(WORD.findall(sentence)) < 3:
            continue
        start = text.index(sentence, start)
        found.append((start, start + len(sentence), sentence))
    return found


def question_terms(text: str) -> list[str]:
    """The question's content words, stemmed, each once ("how many" asks; "many" is no word of its subject)."""
    text = _HOW.sub(" ", text)
    return list(dict.fromkeys(stem(w) for w in _TERM.findall(text) if len(w) > 2 and w.lower() not in STOPWORDS))



def _terms(text: str) -> set[str]:
    return {stem(w) for w in _TERM.findall(text)}


class SentenceReranker:
    """Lexical coverage, the kind of answer asked for, rank and meaning (see the module's docstring).

    ``idf`` weighs a stemmed word; ``embed`` embeds texts as the index did (question and sentences alike).
    """

    def __init__(self, *, idf: Callable[[str], float], embed: Callable[[list[str]], np.ndarray] | None) -> None:
        self.idf, self.embed = idf, embed

    def rerank(self, question: str, hits: Sequence[Hit], *, vector: np.ndarray | None = None) -> list[Ranked]:
        extracts = self.score(question, hits)
        if self.embed is not None and extracts:
            if vector is None:
                vector = self.embed([question])[0]
            # The best by score, and the best by coverage alone (a summary's sentence, weighed down, can hold the
            # question's words best): meaning decides among them.
            head = list({id(e): e for e in extracts[:MEANING_TOP]
                         + sorted(extracts, key=lambda e: -e.coverage)[:COVERAGE_TOP]}.values())
            cosines = self.embed([_opening(e.text) for e in head]) @ vector
            meant = {id(e): replace(e, score=round(e.score + MEANING * float(c), 4)) for e, c in zip(head, cosines)}
            extracts = sorted((meant.get(id(e), e) for e in extracts), key=lambda e: -e.score)
            extracts = _details_over_summaries(extracts)
        by_hit: dict[str, list[Extract]] = {}
        for extract in extracts:
            by_hit.setdefault(extract.hit.ref, []).append(extract)
        ranked = [Ranked(hit, by_hit[hit.ref][0].score if hit.ref in by_hit else 0.0, tuple(by_hit.get(hit.ref, ())))
                  for hit in dict((h.ref, h) for h in hits).values()]
        return sorted(ranked, key=lambda r: -r.score)

    def score(self, question: str, hits: Sequence[Hit]) -> list[Extract]:
        """Every sentence of ``hits`` scored without meaning, best first."""
        terms = question_terms(question)
        years = {int(y) for y in YEAR.findall(question)}
        weights = {t: self.idf(t) for t in terms}
        total = sum(weights.values()) or 1.0
        kind = asks(question)
        asked = asked_words(question)
        spelled_out = _acronyms(hits)
        extracts: list[Extract] = []
        for rank, hit in enumerate(hits):
            context = _terms(context_line(hit.cable, hit.paragraph))
            prior = 1.0 / math.sqrt(rank + 1)
            weight = SUMMARY if is_summary(hit.paragraph.text, hit.paragraph.heading) else 1.0
            dated = DATED if hit.cable.date is not None and hit.cable.date.year in years else 0.0
            previous: set[str] = set()
            for start, end, sentence in sentences_of(hit):
                words = _terms(sentence)
                for acronym, long in spelled_out.items():
                    if long <= words:
                        words.add(acronym)
                    elif acronym in words:
                        words |= long
                own = sum(weights[t] for t in terms if t in words)
                # A word the context line holds is covered for every sentence of that cable, and one the sentence
                # before holds is often what this one's "he" or "one" stands for: they count half in the score. Only
                # the context line's count in the coverage, which says what the sentence and its cable hold.
                from_context = sum(weights[t] for t in terms if t in context and t not in words)
                from_before = sum(weights[t] for t in terms if t in previous and t not in words and t not in context)
                previous = words
                coverage = (own + from_context) / total
                novelty = len(words - set(terms) - context) / max(1, len(words))
                score = weight * (LEXICAL * (own + 0.5 * (from_context + from_before)) / total + RANK * prior
                                  + NOVELTY * novelty + ANSWER_KIND * holds_kind(kind, sentence, asked)
                                  + PARAGRAPH_MEANING * hit.scores.get("dense", 0.0) + dated)
                extracts.append(Extract(sentence, hit, start, end, round(score, 4), round(coverage, 4)))
        extracts.sort(key=lambda e: -e.score)
        return extracts


def _details_over_summaries(extracts: list[Extract]) -> list[Extract]:
    """A summary sentence restates a detail paragraph of its own cable: when one retrieved holds most of the
    summary sentence's words, that detail sentence takes the summary's score (and its place), so the answer cites
    where the cable says it in full."""
    best = list(extracts)
    for position, summary in enumerate(extracts[:MEANING_TOP]):
        if not is_summary(summary.hit.paragraph.text, summary.hit.paragraph.heading):
            continue
        words = set(question_terms(summary.text))
        details = [(len(words & set(question_terms(e.text))) / max(1, len(words)), e) for e in extracts
                   if e.hit.cable.id == summary.hit.cable.id and e.hit.ref != summary.hit.ref
                   and not is_summary(e.hit.paragraph.text, e.hit.paragraph.heading)]
        share, detail = max(details, key=lambda d: d[0], default=(0.0, None))
        if detail is not None and share >= DETAIL_SHARE and detail.score < summary.score:
            best[best.index(detail)] = replace(detail, score=summary.score, coverage=max(detail.coverage,
                                                                                         summary.coverage))
            best[position] = replace(summary, score=round(summary.score * SUMMARY, 4))
    return sorted(best, key=lambda e: -e.score)


class FakeReranker:
    """Puts the paragraphs named in ``order`` (citation keys) first, in that order, each led by its first sentence:
    a reranker for tests of the stage's wiring."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)

    def rerank(self, question: str, hits: Sequence[Hit], *, vector: np.ndarray | None = None) -> list[Ranked]:
        position = {ref: i for i, ref in enumerate(self.order)}
        ordered = sorted(hits, key=lambda h: position.get(h.ref, len(position)))
        return [Ranked(hit, float(len(ordered) - i),
                       tuple(Extract(text, hit, start, end, 1.0, 1.0) for start, end, text in sentences_of(hit)))
                for i, hit in enumerate(ordered)]


def _opening(sentence: str) -> str:
    """A sentence's first ``MEANING_WORDS`` words: what it is about is said early, and the model's time grows
    with the square of the length (cables' sentences run to 80 words and more)."""
    words = sentence.split()
    return " ".join(words[:MEANING_WORDS])


_DEFINED = re.compile(r"((?:\b[A-Z][\w'’-]*\s+(?:(?:of|for|and|the|on|de|del)\s+)*){2,8})\(([A-Z][A-Za-z]{1,7})\)")


def _acronyms(hits: Sequence[Hit]) -> dict[str, frozenset[str]]:
    """Acronyms the retrieved paragraphs define, "Missile Technology Control Regime (MTCR)", as stems of both forms.

    A sentence that spells an acronym out answers a question that uses it, and cables spell out once, then abbreviate.
    """
    found: dict[str, frozenset[str]] = {}
    for hit in hits:
        for long, short in _DEFINED.findall(hit.paragraph.text):
            initials = "".join(w[0] for w in WORD.findall(long) if w[0].isupper())
            # In any order: a cable abbreviates "National Confederation of Industries" as Portuguese does, CNI.
            if Counter(short.upper()) <= Counter(initials.upper()):
                words = [w for w in WORD.findall(long) if w.lower() not in STOPWORDS][-len(short):]
                found[stem(short)] = frozenset(stem(w) for w in words)
    return found
