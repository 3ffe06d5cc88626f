"""Searching an index (issue 3): hybrid search with the real model, filters (keyword and inline) that return every
matching paragraph and nothing else, bad input answered with a message, and FAISS searches limited to some rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pytest
from conftest import SEEDS

from rag.assistant import Assistant
from rag.embed import FakeEmbedder
from rag.errors import IndexCorruptError, IndexMissingError, QueryError
from rag.index import MANIFEST
from rag.loaders import load_cables
from rag.models import Cable
from rag.query import Filters, make_filters, parse_query
from rag.vectors import VectorFile, build_faiss, search_faiss


@pytest.mark.real_model
def test_hybrid_search_finds_who_wants_kazakhstan_in_the_mtcr(real_assistant):
    hits = real_assistant.search("Who wants Kazakhstan to join the Missile Technology Control Regime?")
    assert hits[0].ref == "09ASTANA664 ¶11"
    assert set(hits[0].ranks) == {"dense", "bm25"}


# -- inline filters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "words", "filters"), [
    ("origin:Moscow year:2009 tag:TSPA classification:secret what did Russia say about space security?",
     "what did Russia say about space security?",
     Filters(origin="Moscow", date_from=date(2009, 1, 1), date_to=date(2009, 12, 31), classification="SECRET",
             tags=("TSPA",))),
    ('sanctions origin:"Abu Dhabi" from:2009-06 to:2010 cable:09astana664',
     "sanctions",
     Filters(origin="Abu Dhabi", date_from=date(2009, 6, 1), date_to=date(2010, 12, 31), cable_id="09ASTANA664")),
    ("year:2008-2009 tag:prel,phum tags:TSPA Iran", "Iran",
     Filters(date_from=date(2008, 1, 1), date_to=date(2009, 12, 31), tags=("PREL", "PHUM", "TSPA"))),
    ("Origin:Madrid CLASS:noforn Year:2004 troops", "troops",
     Filters(origin="Madrid", classification="NOFORN", date_from=date(2004, 1, 1), date_to=date(2004, 12, 31))),
    ("from:2008-02 to:2008-02 leap", "leap", Filters(date_from=date(2008, 2, 1), date_to=date(2008, 2, 29))),
    ("talks from:2009-04-17", "talks", Filters(date_from=date(2009, 4, 17))),
    ("to:2009-11 talks", "talks", Filters(date_to=date(2009, 11, 30))),
    ('origin:"The Hague"   tag:PREL   and  the ICC', "and the ICC", Filters(origin="The Hague", tags=("PREL",))),
    ("year:2009 from:2009-06 mid-year", "mid-year", Filters(date_from=date(2009, 6, 1), date_to=date(2009, 12, 31))),
    ("the 10:30 meeting in xorigin:Moscow", "the 10:30 meeting in xorigin:Moscow", Filters()),
    ("no filters at all", "no filters at all", Filters()),
])
def test_parse_query(text, words, filters):
    assert parse_query(text) == (words, filters)


@pytest.mark.parametrize(("options", "filters"), [
    (dict(year=2009), Filters(date_from=date(2009, 1, 1), date_to=date(2009, 12, 31))),
    (dict(year="2008-2009"), Filters(date_from=date(2008, 1, 1), date_to=date(2009, 12, 31))),
    (dict(tags="prel, phum PREL"), Filters(tags=("PREL", "PHUM"))),
    (dict(tags=["tspa", " "]), Filters(tags=("TSPA",))),
    (dict(classification=" secret ", cable_id=" 09astana664 ", origin="  "),
     Filters(classification="SECRET", cable_id="09ASTANA664")),
    (dict(date_from=date(2009, 4, 17), date_to="2009"),
     Filters(date_from=date(2009, 4, 17), date_to=date(2009, 12, 31))),
    (dict(origin="", year="", tags=None), Filters()),
])
def test_make_filters(options, filters):
    assert make_filters(**options) == filters


@pytest.mark.parametrize(("text", "words"), [
    ("year:2009-13 space", ["year '2009-13' is not a real date"]),
    ("from:2009-02-30 space", ["from '2009-02-30' is not a real date"]),
    ("from:yesterday space", ["from 'yesterday' is not a date", "2009-04-17"]),
    ("year:20x9 space", ["year '20x9' is not a date"]),
    ("to:2009-00 space", ["to '2009-00' is not a real date"]),
    ("from:2010 to:2009 space", ["runs backwards", "swap"]),
    ("year:2010-2008 space", ["runs backwards"]),
])
def test_bad_inline_dates_raise_query_error(text, words):
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert all(word in str(caught.value) for word in words), str(caught.value)


# -- filters on a slice of the corpus ----------------------------------------------------------------------

FILTERS: dict[str, tuple[dict[str, object], Callable[[Cable], bool]]] = {
    "origin": ({"origin": "Brasilia"}, lambda c: "brasilia" in (c.origin or "").lower()),
    "origin with a space": ({"origin": "the hague"}, lambda c: "the hague" in (c.origin or "").lower()),
    "year": ({"year": 2003}, lambda c: c.date.year == 2003),
    "years": ({"year": "2000-2002"}, lambda c: 2000 <= c.date.year <= 2002),
    "month": ({"date_from": "2004-06", "date_to": "2004-06"}, lambda c: (c.date.year, c.date.month) == (2004, 6)),
    "from a day": ({"date_from": "2004-11-15"}, lambda c: c.date.date() >= date(2004, 11, 15)),
    "tag": ({"tags": "MARR"}, lambda c: "MARR" in c.tags),
    "two tags": ({"tags": ["prel", "phum"]}, lambda c: {"PREL", "PHUM"} <= set(c.tags)),
    "level": ({"classification": "secret"}, lambda c: (c.classification or "").split("//")[0] == "SECRET"),
    "caveat": ({"classification": "noforn"}, lambda c: "NOFORN" in (c.classification or "")),
    "unclas": ({"classification": "unclas"}, lambda c: (c.classification or "").startswith("UNCLASSIFIED")),
    "cable": ({"cable_id": "09astana664"}, lambda c: c.id == "09ASTANA664"),
    "together": ({"origin": "Madrid", "year": 2004, "tags": "PREL"},
                 lambda c: "Madrid" in (c.origin or "") and c.date.year == 2004 and "PREL" in c.tags),
}
TERM = "government"


@pytest.fixture(scope="module")
def corpus(corpus_slice, corpus_index):
    """(assistant over the slice and seeds, the source cables by id) — the cables as loaded, not as stored."""
    cables = {c.id: c for path in (corpus_slice, SEEDS) for c in load_cables(path)}
    with Assistant(corpus_index, embedder=FakeEmbedder()) as assistant:
        yield assistant, cables


def term_matches(assistant: Assistant, term: str) -> set[str]:
    """Every paragraph whose text or context holds ``term`` (stemmed, as BM25 sees it), unfiltered."""
    rows = assistant.index.store.db.execute(
        "SELECT c.id, p.number FROM fts JOIN paragraphs p ON p.rowid = fts.rowid JOIN cables c ON c.rowid = p.cable "
        "WHERE fts MATCH ?", (f'"{term}"',))
    return {f"{cable_id} ¶{number}" for cable_id, number in rows}


@pytest.mark.corpus
@pytest.mark.parametrize("method", ["hybrid", "dense", "bm25"])
@pytest.mark.parametrize("name", FILTERS)
def test_every_hit_passes_the_filter(corpus, name, method):
    assistant, cables = corpus
    options, passes = FILTERS[name]
    hits = assistant.search(f"{TERM} policy", k=50, method=method, **options)
    assert hits
    for hit in hits:
        source = cables[hit.cable.id]
        assert passes(source), (hit.ref, source.origin, source.date, source.tags, source.classification)
        assert (hit.cable.origin, hit.cable.date, hit.cable.tags) == (source.origin, source.date, source.tags)


@pytest.mark.corpus
@pytest.mark.parametrize("name", FILTERS)
def test_a_filter_never_returns_fewer_hits_than_exist(corpus, name):
    assistant, cables = corpus
    options, passes = FILTERS[name]
    everywhere = term_matches(assistant, TERM)
    expected = {ref for ref in everywhere if passes(cables[ref.split(" ¶")[0]])}
    # k is just large enough: filtering a cut list of candidates (k or 100 of them) would come up short.
    assert 0 < len(expected) < len(everywhere) and len(everywhere) > 100
    assert {h.ref for h in assistant.search(TERM, k=len(expected), method="bm25", **options)} == expected
    # Dense search ranks every paragraph of the cables that pass.
    paragraphs = sum(len(c.paragraphs) for c in cables.values() if passes(c))
    assert len(assistant.search(TERM, k=20, method="dense", **options)) == min(20, paragraphs)
    assert len(assistant.search(TERM, k=len(expected), method="hybrid", **options)) == len(expected)


@pytest.mark.corpus
@pytest.mark.parametrize(("inline", "options"), [
    ("origin:Brasilia year:2004", {"origin": "Brasilia", "year": 2004}),
    ('origin:"The Hague" tag:PREL classification:confidential', {"origin": "The Hague", "tags": "PREL",
                                                                 "classification": "CONFIDENTIAL"}),
    ("from:2003-06 to:2004-02 tag:MARR", {"date_from": "2003-06", "date_to": "2004-02", "tags": ["MARR"]}),
])
def test_inline_filters_equal_keyword_filters(corpus, inline, options):
    assistant, _ = corpus
    typed = assistant.search(f"{TERM} {inline} elections", k=30)
    given = assistant.search(f"{TERM} elections", k=30, **options)
    assert typed and [(h.ref, h.score) for h in typed] == [(h.ref, h.score) for h in given]


# -- bad input ---------------------------------------------------------------------------------------------

BAD_INPUT = [
    ("", {}, ["no words to search for"]),
    ("the of and what is", {}, ["no words to search for"]),
    ("??? ... !!", {}, ["no words to search for"]),
    ("space", {"origin": "Moskow"}, ["no indexed cable has origin 'Moskow'", "did you mean 'Embassy Moscow'?"]),
    ("space origin:Paris", {}, ["no indexed cable has origin 'Paris'", "Embassy Astana, Embassy Moscow"]),
    ("space", {"tags": "TSPX"}, ["no indexed cable has tag 'TSPX'", "did you mean", "'TSPA'"]),
    ("space", {"tags": "ZZZZ"}, ["no indexed cable has tag 'ZZZZ'", "values are indexed: KNNP"]),
    ("space", {"cable_id": "09ASTANA665"}, ["no indexed cable has cable '09ASTANA665'", "'09ASTANA664'"]),
    ("space", {"classification": "top secret"}, ["classification 'TOP SECRET'", "UNCLASSIFIED//SENSITIVE"]),
    ("space year:2015", {}, ["2015-01-01 is outside the indexed cables' dates (2009–2009)"]),
    ("space", {"year": 1990}, ["1990-01-01 is outside"]),
    ("space year:2010", {}, ["no indexed cable is dated from 2010-01-01 to 2010-12-31", "2009-11-18"]),
    ("space from:2009-05 to:2009-10", {}, ["nearest cables are dated 2009-04-17 and 2009-11-18"]),
    ("space", {"date_from": "2009-02-30"}, ["not a real date"]),
]


@pytest.fixture(scope="module")
def seeds(seeds_index):
    with Assistant(seeds_index, embedder=FakeEmbedder()) as assistant:
        yield assistant


@pytest.mark.parametrize("call", ["search", "ask"])
@pytest.mark.parametrize(("query", "options", "words"), BAD_INPUT)
def test_bad_input_raises_query_error_with_a_fix(seeds, call, query, options, words):
    with pytest.raises(QueryError) as caught:
        getattr(seeds, call)(query, **options)
    assert all(word in str(caught.value) for word in words), str(caught.value)


@pytest.mark.parametrize(("k", "method"), [(0, "hybrid"), (1001, "hybrid"), (10, "fuzzy")])
def test_bad_search_options(seeds, k, method):
    with pytest.raises(QueryError, match="k must be|unknown search method"):
        seeds.search("space", k=k, method=method)


def test_search_on_a_missing_or_half_built_index(tmp_path, seeds_index, copy_index):
    with pytest.raises(IndexMissingError, match="build it from your cables with `cablechat index"):
        Assistant(tmp_path / "none", embedder=FakeEmbedder())
    folder = copy_index(seeds_index)
    (folder / MANIFEST).unlink()
    with pytest.raises(IndexCorruptError, match="half-built"):
        Assistant(folder, embedder=FakeEmbedder())


# -- FAISS searches limited to allowed rows ----------------------------------------------------------------


@pytest.fixture(scope="module")
def faiss_indexes(tmp_path_factory):
    """(vector file, {"Flat": exact index, "IVF": IVF index}) over the same 3,000 clustered vectors."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 32))
    points = centres[rng.integers(0, 30, 3000)] + 0.4 * rng.normal(size=(3000, 32))
    vectors = VectorFile(tmp_path_factory.mktemp("faiss") / "vectors.f32", 32)
    vectors.append((points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32))
    ids = np.arange(3000, dtype=np.int64)
    return vectors, {kind: build_faiss(vectors, ids, exact_limit=limit)[0]
                     for kind, limit in (("Flat", 10_000), ("IVF", 1000))}


@pytest.mark.parametrize("path", ["scan", "selector"])
@pytest.mark.parametrize("kind", ["Flat", "IVF"])
def test_search_faiss_returns_only_allowed_rows(faiss_indexes, kind, path):
    vectors, indexes = faiss_indexes
    every = vectors.rows(np.arange(3000))
    allowed = np.arange(5, 3000, 7, dtype=np.int64)
    # Exact where every allowed row is scored (a Flat index, or the scan); IVF with a selector probes some lists.
    least = 0.8 if kind == "IVF" and path == "selector" else 1.0
    for row in (10, 500, 2999):  # queries near rows that are not allowed themselves
        scores, ids = search_faiss(indexes[kind], every[row], 10, allowed=allowed,
                                   vectors=vectors if path == "scan" else None)
        assert len(ids) == 10 and set(ids.tolist()) <= set(allowed.tolist())
        assert list(scores) == sorted(scores, reverse=True)
        exact = allowed[np.argsort(-(every[allowed] @ every[row]))[:10]]
        overlap = len(set(ids.tolist()) & set(exact.tolist())) / 10
        assert overlap >= least
    assert [len(x) for x in search_faiss(indexes[kind], every[0], 10, allowed=np.zeros(0, np.int64),
                                         vectors=vectors if path == "scan" else None)] == [0, 0]
