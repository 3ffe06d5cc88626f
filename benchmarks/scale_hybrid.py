"""Hybrid search at Cablegate's full size: 2.5 M paragraphs, today's FTS5 BM25 beside tantivy's, in one run.

    python benchmarks/scale_hybrid.py [--n 2500000] [--dir DIR --keep] [--passes 1] [--embedder fake]
    python benchmarks/scale_hybrid.py --n 100000     # a quick check: about 10 minutes on 2 busy cores
    # 2.5 M as measured (benchmarks/README.md): build once, then search the scaled folder, FTS5 on 5 questions
    python benchmarks/scale_hybrid.py --embedder fake --dir D --keep     # the build: an hour under load
    python benchmarks/scale_hybrid.py --embedder fake --dir D --reuse --folders scaled --baseline-questions 5 \
        --baseline-filtered 0

Two index folders are built the way ``cablechat index`` builds one (rows through :class:`rag.store.Store`, FTS5
included, vectors through :class:`rag.vectors.VectorFile`, FAISS through :func:`rag.vectors.build_faiss`, a
manifest), then the tantivy index (:mod:`rag.lexical_tantivy`) from the same store:

- *corpus*: the 6,712 real cables (57,392 paragraphs), ``--corpus``;
- *scaled*: the same cables plus synthetic ones up to ``--n`` paragraphs in all, recombined from the corpus's own
  sentences with names and numbers varied (``benchmarks/scale_corpus.py`` says how).

Vectors: one per paragraph (its first window; a real build embeds every window). A corpus paragraph's vector is
the real one, read from the corpus index (``--corpus-index``, built with ``cablechat index``), and questions are
embedded by that index's model; a synthetic paragraph's is **synthetic**: the mean of the real vectors of the corpus
paragraphs it borrowed sentences from, plus noise (cosine about 0.8 to that mean). With ``--embedder fake`` every
vector is :class:`rag.embed.FakeEmbedder`'s instead (no corpus index needed; dense and hybrid recall then mean
little, and FAISS searches with nprobe ``NPROBE_FAKE``, as clustered vectors would).

The build runs in this process; the searches in a child process (``--reuse``), so that the search's memory is its
own. A build writes ``build.json`` beside the folders with its phases' seconds and memory, which the search's report
includes.

Searched through the Searcher, as the CLI and UI search, with each engine in turn: the dev questions and the
natural and unanswerable ones (``--questions``), k=10. Recall@5 on the answerable dev questions for BM25 and
hybrid on both folders (the goal: no drop with tantivy on the corpus folder; with the distractors in, what
remains). Latency: a first pass over the questions ("cold": every query word's document frequency is counted
then, as for a question never asked before), then ``--passes`` warm passes of BM25 and of hybrid, then hybrid
filtered to the year of each answerable question's gold cable. Memory per phase as in ``benchmarks/scale.py``.
Goal (issue 14): hybrid p95 ≤ 100 ms and peak memory ≤ 3 GB for search at 2.5 M paragraphs, no drop in dev
recall on the corpus index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import GiB, Memory
from scale_corpus import Recombiner

from rag.assistant import Assistant
from rag.embed import Embedder, FakeEmbedder, load_embedder
from rag.evaluate import Question, load_questions
from rag.index import DATABASE, FAISS, VECTORS, Manifest
from rag.writer import embedding_text
from rag.lexical_tantivy import FOLDER, TantivyLexicalIndex
from rag.loaders import load_cables
from rag.metrics import first_rank, percentile
from rag.models import Cable
from rag.query import make_filters
from rag.retrieval import Searcher
from rag.store import Store, context_line
from rag.vectors import VectorFile, build_faiss

SHARED = ROOT.parent / "shared"
ENGINES = ("fts5", "tantivy")
FOLDERS = ("corpus", "scaled")
COMMIT_CABLES = 2000
# FakeEmbedder's hashed vectors do not cluster, so tuning nprobe for recall ends at a scan of every IVF list
# (nprobe 8,192 at 2.5 M: a second a query); clustered vectors tune to 8 at this size (benchmarks/scale.py), and
# that is what real embeddings search with.
NPROBE_FAKE = 8
NOISE = 0.45  # per-dimension noise × sqrt(dim) added to a synthetic paragraph's mean vector


def corpus_vectors(paragraphs: list[tuple[str, int, str]], args: argparse.Namespace) -> tuple[np.ndarray, Embedder]:
    """One vector per corpus paragraph ((cable id, number, embedding text), in order) and the query embedder."""
    if args.embedder == "fake":
        embedder = FakeEmbedder(dim=384)
        return embedder.embed([text for _, _, text in paragraphs]), embedder
    manifest = Manifest.read(args.corpus_index)
    db = sqlite3.connect(f"file:{args.corpus_index / DATABASE}?mode=ro", uri=True)
    first = dict(((c, n), r) for c, n, r in db.execute(
        "SELECT c.id, p.number, min(v.rowid) FROM vectors v JOIN paragraphs p ON p.rowid = v.paragraph "
        "JOIN cables c ON c.rowid = p.cable GROUP BY p.rowid"))
    db.close()
    missing = [(c, n) for c, n, _ in paragraphs if (c, n) not in first]
    if missing:
        raise SystemExit(f"{args.corpus_index} lacks {len(missing)} corpus paragraphs (e.g. {missing[:3]}); build it "
                         f"whole: cablechat index {args.corpus} --index {args.corpus_index}")
    rows = VectorFile(args.corpus_index / VECTORS, manifest.dim).rows([first[(c, n)] for c, n, _ in paragraphs])
    return rows, load_embedder(manifest.model, backend=manifest.embed_backend)


def build(folder: Path, corpus: Sequence[Cable], vectors: np.ndarray, recombiner: Recombiner | None, synthetic: int,
          model: str, rng: np.random.Generator, nprobe: int | None = None) -> dict[str, int]:
    """An index folder of ``corpus`` and ``synthetic`` recombined paragraphs, FTS5 and FAISS included."""
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(folder / DATABASE, create=True)
    store.log_paragraph_changes()
    file = VectorFile(folder / VECTORS, vectors.shape[1])
    pending: list[np.ndarray] = []
    row = 0

    def commit() -> None:
        nonlocal pending
        if pending:
            file.append(np.concatenate(pending))
            pending = []
        store.set_meta(vectors_committed=str(row))
        store.commit()

    def add(cable: Cable, rows: np.ndarray) -> None:
        nonlocal row
        paragraphs = store.add_cable(cable)
        store.add_vectors([(row + i, p, f"{row + i:x}") for i, p in enumerate(paragraphs)])
        pending.append(rows)
        row += len(paragraphs)

    store.begin()
    store.set_meta(model=model, dim=str(vectors.shape[1]))
    at = 0
    for number, cable in enumerate(corpus, 1):
        add(cable, vectors[at:at + len(cable.paragraphs)])
        at += len(cable.paragraphs)
        if number % COMMIT_CABLES == 0:
            commit()
            store.begin()
    if recombiner is not None:
        for number, made in enumerate(recombiner.cables(synthetic, taken={c.id for c in corpus}), 1):
            mean = np.stack([vectors[list(s)].mean(axis=0) for s in made.sources])
            noisy = mean / np.linalg.norm(mean, axis=1, keepdims=True) + rng.standard_normal(
                mean.shape, dtype=np.float32) * np.float32(NOISE / np.sqrt(mean.shape[1]))
            add(made.cable, noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
            if number % COMMIT_CABLES == 0:
                commit()
                store.begin()
    commit()
    counts = store.counts()
    store.close()
    import faiss

    index, described = build_faiss(file, np.arange(row, dtype=np.int64))
    if nprobe is not None and "nprobe" in described:
        described = {**described, "nprobe": nprobe, "nprobe_tuned": described["nprobe"]}
    faiss.write_index(index, str(folder / FAISS))
    Manifest(model=model, dim=vectors.shape[1], fingerprint="scale-hybrid",
             counts={k: counts[k] for k in ("cables", "paragraphs", "vectors")},
             built_at=datetime.now(UTC).isoformat(timespec="seconds"), faiss=described).write(folder)
    return counts


def build_lexical(folder: Path) -> int:
    store = Store(folder / DATABASE, create=True)
    try:
        return TantivyLexicalIndex(folder, lambda: store, 0).sync(store)
    finally:
        store.close()


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(searcher: Searcher, questions: Sequence[Question], years: dict[str, int], passes: int,
            filtered: int | None = None) -> dict[str, object]:
    """Recall@5 of BM25 and hybrid on the answerable questions, and latencies (ms) per kind of search."""
    found: dict[str, list[int | None]] = {"bm25": [], "hybrid": []}
    took: dict[str, list[float]] = {"bm25 cold": [], "bm25": [], "hybrid": [], "hybrid, year filter": []}
    for q in questions:
        took["bm25 cold"].append(timed(lambda: searcher.search(q.question, k=10, method="bm25")))
    for number in range(passes):
        for method in ("bm25", "hybrid"):
            for q in questions:
                hits: list = []
                took[method].append(timed(lambda: hits.extend(searcher.search(q.question, k=10, method=method))))
                if number == 0 and q.answerable:
                    found[method].append(first_rank([h.ref for h in hits], q.golds))
    for q in questions[:filtered]:
        if q.cable in years:
            year = make_filters(year=years[q.cable])
            took["hybrid, year filter"].append(timed(lambda: searcher.search(q.question, k=10, filters=year)))
    recall = {m: float(np.mean([r is not None and r <= 5 for r in ranks])) for m, ranks in found.items()}
    return {"recall@5": recall, "latency": took}


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_500_000, help="paragraphs in the scaled index (default 2,500,000)")
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cablegate-6712.jsonl.gz")
    parser.add_argument("--corpus-index", type=Path, default=ROOT / "index" / "cablegate")
    parser.add_argument("--embedder", choices=("corpus-index", "fake"), default="corpus-index")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    parser.add_argument("--passes", type=int, default=1, help="warm passes over the questions (default 1)")
    parser.add_argument("--reuse", action="store_true", help="search the folders in --dir as built before")
    parser.add_argument("--folders", nargs="+", choices=FOLDERS, default=list(FOLDERS), help="which to search")
    parser.add_argument("--baseline-questions", type=int, metavar="N",
                        help="search the scaled folder with FTS5 for the first N questions only (default: all); "
                             "at 2.5 M paragraphs an FTS5 query takes seconds")
    parser.add_argument("--baseline-filtered", type=int, default=3, metavar="N",
                        help="FTS5 filtered to a year on the first N questions only (default 3): at 57,392 "
                             "paragraphs one such query took 40 s")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the built folders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)

    root = args.dir or Path(tempfile.mkdtemp(prefix="cablechat-scale-hybrid-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.reuse:
            search_all(args, root)
            return 0
        build_all(args, root)
        # Searched by a process of its own, so that its memory is the search's, not the build's as well.
        child = [sys.executable, __file__, "--reuse", "--dir", str(root), "--embedder", args.embedder,
                 "--corpus-index", str(args.corpus_index), "--questions", str(args.questions),
                 "--passes", str(args.passes), "--baseline-filtered", str(args.baseline_filtered),
                 *(["--baseline-questions", str(args.baseline_questions)] if args.baseline_questions else []),
                 *(["--save", str(args.save)] if args.save else [])]
        return subprocess.call(child)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(root, ignore_errors=True)


class Phases:
    """Seconds and peak memory (rag's scale.Memory) of named phases."""

    def __init__(self) -> None:
        self.memory = Memory()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, call: Callable[[], object]) -> object:
        self.memory.phase = name
        started = time.perf_counter()
        result = call()
        self.seconds[name] = time.perf_counter() - started
        peak = self.memory.peaks.get(name, {})
        print(f"{name}: {self.seconds[name]:.1f} s, peak RSS {peak.get('VmRSS', 0) / GiB:.2f} GiB", file=sys.stderr,
              flush=True)
        return result


def build_all(args: argparse.Namespace, root: Path) -> None:
    """Both folders, and ``build.json`` beside them: each phase's seconds and peak memory."""
    phases = Phases()
    corpus = phases.run("load corpus", lambda: [c for c in load_cables(args.corpus) if c.paragraphs])
    recombiner = phases.run("sentence templates", lambda: Recombiner(corpus, seed=args.seed))
    paragraphs = [(c.id, p.number, embedding_text(context_line(c, p), p.text)) for c in corpus for p in c.paragraphs]
    vectors, embedder = phases.run("corpus vectors", lambda: corpus_vectors(paragraphs, args))
    rng = np.random.default_rng(args.seed + 1)
    counts = {}
    for name in FOLDERS:
        counts[name] = phases.run(f"{name}: SQLite with FTS5, vectors, FAISS", lambda: build(
            root / name, corpus, vectors, recombiner if name == "scaled" else None,
            max(0, args.n - len(paragraphs)) if name == "scaled" else 0, embedder.name, rng,
            NPROBE_FAKE if args.embedder == "fake" else None))
        phases.run(f"{name}: tantivy", lambda: build_lexical(root / name))
    phases.memory.stop()
    (root / "build.json").write_text(json.dumps({
        "seconds": phases.seconds, "peaks": phases.memory.peaks, "counts": counts,
        "invented": len(recombiner.invented)}))


def search_all(args: argparse.Namespace, root: Path) -> None:
    """Every engine on both folders; the report, the build's figures (``build.json``) included."""
    phases = Phases()
    built = json.loads((root / "build.json").read_text())
    embedder = corpus_vectors([], args)[1]
    questions = load_questions(args.questions)
    results: dict[tuple[str, str], dict[str, object]] = {}
    for name in args.folders:
        with Assistant(root / name, embedder=embedder) as assistant:
            index = assistant.index
            years = {q.cable: cable.date.year for q in questions if q.cable and
                     (cable := index.store.cable(q.cable, paragraphs=False)) is not None and cable.date}
            for engine in ENGINES:
                searcher = (assistant.searcher if engine == "fts5" else Searcher(index, embedder, lexical=(
                    TantivyLexicalIndex(root / name, lambda: index.store, built["counts"][name]["paragraphs"]))))
                baseline = engine == "fts5" and name == "scaled"
                asked = questions[:args.baseline_questions] if baseline and args.baseline_questions else questions
                results[name, engine] = phases.run(f"{name}: search, {engine}", lambda: measure(
                    searcher, asked, years, args.passes, args.baseline_filtered if engine == "fts5" else None))
                results[name, engine]["questions"] = len(asked)
    phases.memory.stop()
    seconds = {**built["seconds"], **phases.seconds}
    peaks = {**built["peaks"], **phases.memory.peaks}
    if args.save:
        args.save.write_text(json.dumps({"counts": built["counts"], "seconds": seconds, "peaks": peaks,
                                         "results": {f"{n} {e}": r for (n, e), r in results.items()}}))
    report(args, root, built, seconds, peaks, results, len(questions))
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} "
          "CPUs: other processes share these timings")


def report(args: argparse.Namespace, root: Path, built: dict, seconds: dict[str, float],
           peaks: dict[str, dict[str, int]], results: dict[tuple[str, str], dict[str, object]], queries: int) -> None:
    counts = built["counts"]
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; scaled: {counts['scaled']['cables']:,} cables, "
          f"{counts['scaled']['paragraphs']:,} paragraphs ({counts['corpus']['paragraphs']:,} real); "
          f"{built['invented']:,} invented names used; vectors: "
          f"{'FakeEmbedder' if args.embedder == 'fake' else 'real for corpus paragraphs, synthetic for the others'}; "
          f"{queries} questions, {args.passes} warm passes\n")
    print("| phase | seconds | peak RSS GiB | peak anonymous GiB | peak file pages GiB |")
    print("|---|---:|---:|---:|---:|")
    for phase, peak in peaks.items():
        took = seconds.get(phase)
        print(f"| {phase} | {'' if took is None else f'{took:.1f}'} | {peak['VmRSS'] / GiB:.2f} | "
              f"{peak['RssAnon'] / GiB:.2f} | {peak['RssFile'] / GiB:.2f} |")
    print("\n| folder | cables.sqlite (FTS5 inside) GiB | lexical/ (tantivy) GiB | vectors.f32 GiB | faiss.index GiB |")
    print("|---|---:|---:|---:|---:|")
    for name in FOLDERS:
        sizes = [disk(root / name / part) / GiB for part in (DATABASE, FOLDER, VECTORS, FAISS)]
        print(f"| {name} | " + " | ".join(f"{s:.2f}" for s in sizes) + " |")
    print("\n| folder | engine | BM25 recall@5 | hybrid recall@5 | " +
          " | ".join(f"{kind} p50 / p95 ms" for kind in results[next(iter(results))]["latency"]) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(results[next(iter(results))]["latency"]))
    for (name, engine), result in results.items():
        recall, latency = result["recall@5"], result["latency"]
        cells = [f"{percentile(v, 50):.1f} / {percentile(v, 95):.1f}" if v else "not run" for v in latency.values()]
        label = f"{engine} (baseline)" if engine == "fts5" else engine
        whole = result["questions"] == queries
        scores = (f"{recall['bm25']:.3f} | {recall['hybrid']:.3f}" if whole
                  else f"– | – (latency: first {result['questions']} questions)")
        print(f"| {name} | {label} | {scores} | " + " | ".join(cells) + " |")
    if ("scaled", "tantivy") in results and ("scaled", "fts5") in results:
        print(f"\ngoal hybrid p95 ≤ 100 ms at {counts['scaled']['paragraphs']:,} paragraphs: tantivy "
              f"{percentile(results['scaled', 'tantivy']['latency']['hybrid'], 95):.1f} ms, FTS5 "
              f"{percentile(results['scaled', 'fts5']['latency']['hybrid'], 95):.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
