"""Synthetic cables for scale benchmarks, made from the real corpus's own sentences.

A synthetic paragraph is a run of one to three consecutive sentences of a random corpus paragraph, then another
run from another, until it is as long as a corpus paragraph drawn at random. Names and numbers are varied as they
are copied, so that the vocabulary keeps growing with the archive as a real one's does (Heaps' law):

- a *name* is a word the corpus writes capitalised inside sentences and never in lower case ("Karzai",
  "Brasilia", "Leroy"); each name met is kept with probability ``KEEP_NAME``, else replaced by an invented one.
  Invented names are numbered by rank; paragraph i draws rank ``floor(pool * u**3)`` with u uniform and
  ``pool = NAME_POOL * sqrt(i + 1)``, so a few invented names are common, most are rare, and new ones keep
  appearing: the pool is about 625,000 names at 2.44 M paragraphs.
- a *number* is replaced by another of as many digits with probability ``CHANGE_NUMBER``.

Cables hold 1–19 paragraphs (10 on average, as the full release's 251,287 cables and ~2.5 M paragraphs do); their
dates run from 1966 to 2010, most of them in the last decade as in Cablegate; their origins are the corpus's
posts and invented ones (270 in all, Zipf-weighted); subject, classification and tags are a random corpus
cable's, the subject's names varied too. Every synthetic paragraph records the corpus paragraphs it borrowed
from, so that a benchmark can give it a vector near theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from rag.models import Cable, Paragraph

__all__ = ["Recombiner", "SyntheticCable"]

KEEP_NAME, CHANGE_NUMBER, NAME_POOL = 0.5, 0.7, 400.0
POSTS = 270
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z]+|\d+")
_SYLLABLES = ("ba be bi bo du fa fe ga go ha ja ka ke ko la le li lo ma me mi mo na ne ni no pa pe po ra re ri ro "
              "sa se si so ta te ti to va ve vi za zo zu kar len mir tan").split()


@dataclass(frozen=True, slots=True)
class SyntheticCable:
    cable: Cable
    sources: tuple[tuple[int, ...], ...]  # per paragraph, indices of the corpus paragraphs it borrowed from


def invented_name(rank: int) -> str:
    """A pronounceable word unique to ``rank``, at least three syllables, so none is a corpus word."""
    digits, value = [], rank + len(_SYLLABLES) ** 2
    while value:
        value, digit = divmod(value, len(_SYLLABLES))
        digits.append(_SYLLABLES[digit])
    return "".join(digits).capitalize()


class Recombiner:
    def __init__(self, cables: Sequence[Cable], *, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.corpus = [c for c in cables if c.paragraphs]
        self.names = _names(p.text for c in self.corpus for p in c.paragraphs)
        # Per corpus paragraph, its sentences as (pieces, slots): pieces[i] for i in slots is a name or a number.
        self.paragraphs: list[list[tuple[list[str], list[int]]]] = []
        self.lengths: list[int] = []
        for cable in self.corpus:
            for paragraph in cable.paragraphs:
                self.paragraphs.append([self._template(s) for s in _SENTENCE.split(paragraph.text) if s.strip()])
                self.lengths.append(len(paragraph.text))
        origins = sorted({c.origin for c in self.corpus if c.origin})
        invented = [f"Embassy {invented_name(10_000_000 + i)}" for i in range(max(0, POSTS - len(origins)))]
        self.origins = origins + invented
        weights = 1 / np.arange(1, len(self.origins) + 1) ** 0.9
        self.origin_weights = weights / weights.sum()
        self.rng.shuffle(self.origins)
        years = np.arange(1966, 2011)
        self.years = years
        year_weights = 0.02 + np.exp((years - 2010) / 2.5)
        self.year_weights = year_weights / year_weights.sum()
        self.done = 0  # synthetic paragraphs made so far: the invented-name pool grows with it
        self.invented: set[int] = set()

    def _template(self, sentence: str) -> tuple[list[str], list[int]]:
        pieces: list[str] = []
        slots: list[int] = []
        last = 0
        for match in _TOKEN.finditer(sentence):
            word = match.group()
            if word.isdigit() or word.lower() in self.names:
                pieces.append(sentence[last:match.start()])
                slots.append(len(pieces))
                pieces.append(word)
                last = match.end()
        pieces.append(sentence[last:])
        return pieces, slots

    def _fill(self, pieces: list[str], slots: list[int]) -> str:
        if not slots:
            return "".join(pieces)
        out = list(pieces)
        draws = self.rng.random((len(slots), 2))
        pool = NAME_POOL * np.sqrt(self.done + 1)
        for slot, (change, u) in zip(slots, draws):
            word = out[slot]
            if word.isdigit():
                if change < CHANGE_NUMBER:
                    low = 10 ** (len(word) - 1) if len(word) > 1 else 0
                    out[slot] = str(int(self.rng.integers(low, 10 ** len(word))))
            elif change >= KEEP_NAME:
                rank = int(pool * u**3)
                self.invented.add(rank)
                name = invented_name(rank)
                out[slot] = name.upper() if word.isupper() else name
        return "".join(out)

    def paragraph(self) -> tuple[str, tuple[int, ...]]:
        """A synthetic paragraph's text and the corpus paragraphs it borrowed from."""
        target = self.lengths[int(self.rng.integers(len(self.lengths)))]
        sentences: list[str] = []
        sources: list[int] = []
        size = 0
        while size < target:
            source = int(self.rng.integers(len(self.paragraphs)))
            own = self.paragraphs[source]
            if not own:
                continue
            start = int(self.rng.integers(len(own)))
            for pieces, slots in own[start:start + int(self.rng.integers(1, 4))]:
                sentences.append(self._fill(pieces, slots))
                size += len(sentences[-1])
            sources.append(source)
        self.done += 1
        return " ".join(sentences), tuple(sources)

    def cables(self, paragraphs: int, *, taken: set[str]) -> Iterator[SyntheticCable]:
        """Synthetic cables holding ``paragraphs`` paragraphs in all; ids avoid those in ``taken``."""
        made = number = 0
        while made < paragraphs:
            count = min(int(self.rng.integers(1, 20)), paragraphs - made)
            model = self.corpus[int(self.rng.integers(len(self.corpus)))]
            year = int(self.rng.choice(self.years, p=self.year_weights))
            date = datetime(year, 1, 1) + timedelta(days=int(self.rng.integers(365)), minutes=int(self.rng.integers(1440)))
            origin = self.origins[int(self.rng.choice(len(self.origins), p=self.origin_weights))]
            post = re.sub(r"[^A-Z]", "", origin.upper().removeprefix("EMBASSY ").removeprefix("CONSULATE "))[:12]
            cable_id = f"{year % 100:02d}{post or 'POST'}{100_000 + number}"
            number += 1
            if cable_id in taken:
                continue
            texts, sources = zip(*(self.paragraph() for _ in range(count)))
            subject = self._fill(*self._template(model.subject)).upper() if model.subject else None
            cable = Cable(id=cable_id, date=date, origin=origin, classification=model.classification,
                          subject=subject, tags=model.tags,
                          paragraphs=tuple(Paragraph(cable_id, i + 1, t) for i, t in enumerate(texts)))
            made += count
            yield SyntheticCable(cable, sources)


def _names(texts: Iterator[str]) -> frozenset[str]:
    """Lower-cased words written capitalised inside sentences and never in lower case, at least twice."""
    capital: dict[str, int] = {}
    lower: set[str] = set()
    for text in texts:
        if text.isupper():
            continue  # an all-capitals paragraph says nothing about which words are names
        for sentence in _SENTENCE.split(text):
            for i, match in enumerate(_TOKEN.finditer(sentence)):
                word = match.group()
                if word.islower():
                    lower.add(word)
                elif i and word[0].isupper() and word[1:].islower():
                    capital[word.lower()] = capital.get(word.lower(), 0) + 1
    return frozenset(w for w, n in capital.items() if n >= 2 and w not in lower)
