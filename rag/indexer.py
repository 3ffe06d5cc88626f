"""Build, extend or repair an index: ``build_index(paths, index_dir, embedder=...)``.

Incremental: a cable already stored with the same fingerprint is skipped, one with a changed text is replaced,
and a text whose embedding the index already holds (a replaced cable's unchanged paragraph, boilerplate repeated
across cables) is copied instead of embedded again.

The same cable twice in one build (two copies of a file, a cable in both a .jsonl and a cables.csv): the first copy
read wins, inputs taken in the order given, a folder's files in sorted order, a file's records in order. Later copies
are left out, each reported once (:class:`rag.writer.Duplicate`), saying when its text differs which version was kept. Across
builds, the newer build's text replaces the stored one.

One build at a time: :class:`IndexWriter` holds the folder's build lock (rag.lock) from start to end; a second build
is refused with the PID of the first.

Consistent or not reported: before adding anything, a build checks the whole index (rag.check) and mends what it
can (rag.repair): FAISS from the vectors, vectors from the database's text, the manifest from the database. So
``build_index([], folder)`` (``cablechat index --index DIR``) is the repair. A build that wrote anything checks the
index again at its end, and raises rather than report a build that is not whole.

Crash-safe: cables are written in batches. Each batch's vectors are appended to ``vectors.f32`` and fsynced, then
the batch's rows, the block's checksum and the new count of committed vector rows are committed in one SQLite
transaction. A build killed anywhere leaves at most some uncommitted vector rows, which the next build truncates,
and no manifest, so nothing loads the half-built index; running the same command again resumes where it stopped.

A build whose inputs hold no cable fails (:class:`~rag.errors.NothingToIndexError`) and leaves no index behind
where there was none.

The writing itself is rag.writer's :class:`~rag.writer.IndexWriter`; this module reads the inputs, batches them
and reports.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.embed import Embedder
from rag.errors import NothingToIndexError
from rag.loaders import LoadReport, load_cables
from rag.models import Cable
from rag.store import Store, cable_fingerprint

from rag.writer import LISTED, Duplicate, IndexWriter

__all__ = ["BATCH_CABLES", "BuildSummary", "build_index", "end_build"]

BATCH_CABLES = 32

@dataclass(frozen=True, slots=True)
class BuildSummary:
    added: int
    replaced: int
    skipped: int
    cables: int
    paragraphs: int
    vectors: int
    embedded: int
    reused: int
    seconds: float
    load: dict[str, Any]
    faiss: dict[str, Any]
    duplicates: int = 0
    duplicate_list: tuple[Duplicate, ...] = ()
    repaired: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duplicate_list"] = [d.to_dict() for d in self.duplicate_list]
        return data

    def summary(self) -> str:
        rate = f", {self.embedded / self.seconds:.1f} windows/s" if self.embedded and self.seconds else ""
        twice = f", {self.duplicates} duplicate{'s' * (self.duplicates != 1)} left out" if self.duplicates else ""
        return (f"{self.added} cables added, {self.replaced} replaced, {self.skipped} unchanged{twice}; index holds "
                f"{self.cables} cables, {self.paragraphs} paragraphs, {self.vectors} vectors "
                f"({self.embedded} embedded, {self.reused} reused{rate}) in {self.seconds:.1f}s")


def _batches(cables: Iterable[Cable], size: int) -> Iterator[list[Cable]]:
    batch: list[Cable] = []
    for cable in cables:
        batch.append(cable)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_index(paths: Sequence[str | os.PathLike[str]], index_dir: str | os.PathLike[str], *,
                embedder: Embedder, progress: bool = False, report: LoadReport | None = None,
                batch_cables: int = BATCH_CABLES, on_batch: Callable[[int], None] | None = None,
                lexical: str | None = None) -> BuildSummary:
    """Add the cables found under ``paths`` to the index in ``index_dir`` (created if missing), mending it first.

    No ``paths``: only mend an existing index. ``progress`` shows a bar on stderr. ``report`` receives what the
    loader skipped. ``on_batch`` is called with the number of cables written after each committed batch.
    ``lexical``: the BM25 engine, "fts5" or "tantivy" (rag.lexical_tantivy); default: the one the index has.
    """
    started = time.perf_counter()
    report = report if report is not None else LoadReport()
    with IndexWriter(Path(index_dir), embedder, repair_only=not paths, lexical=lexical) as writer:
        bar = _bar(_work(paths, writer.store) if progress else 0, progress)
        written = 0
        for path in paths:
            for n, batch in enumerate(_batches(load_cables(path, report=report), batch_cables)):
                if n == 0:
                    writer.note_input(path)
                todo = writer.select(batch)
                if todo:
                    writer.write(todo)
                    written += len(todo)
                    bar.update(len(todo))
                    bar.set_postfix_str(f"{writer.embedded + writer.reused} windows", refresh=False)
                    if on_batch:
                        on_batch(written)
        bar.close()
        return end_build(writer, report, paths, started)


def end_build(writer: IndexWriter, report: LoadReport, paths: Sequence[str | os.PathLike[str]],
              started: float) -> BuildSummary:
    """The end of a build, single-process or on Ray, once every input is read: the finished index's summary, or
    NothingToIndexError when the inputs held no cable (a new index removed, an existing one as it was)."""
    if paths and not report.loaded:
        if writer.created:
            writer.abandon()
        else:
            writer.finish()  # what the check at open mended, if anything, is finished all the same
        raise _nothing(paths, report, writer.folder, writer.created)
    described = writer.finish()
    counts = writer.store.counts()
    return BuildSummary(
        added=writer.added, replaced=writer.replaced, skipped=writer.unchanged, cables=counts["cables"],
        paragraphs=counts["paragraphs"], vectors=counts["vectors"], embedded=writer.embedded, reused=writer.reused,
        seconds=round(time.perf_counter() - started, 2),
        load={"loaded": report.loaded, "skipped": report.skipped, "problems": report.problems[:LISTED]},
        faiss=described, duplicates=writer.duplicate_count, duplicate_list=tuple(writer.duplicates),
        repaired=tuple(writer.repaired),
    )


def _work(paths: Sequence[str | os.PathLike[str]], store: Store) -> int:
    """How many cables a build will write: a first, cheap pass (parsing only), so the bar can show an ETA."""
    fingerprints: dict[str, str] = {}
    for path in paths:
        for cable in load_cables(path):
            fingerprints.setdefault(cable.id, cable_fingerprint(cable))  # the first copy is the one written
    stored = store.fingerprints(list(fingerprints)) if fingerprints else {}
    return sum(stored.get(i) != f for i, f in fingerprints.items())


def _nothing(paths: Sequence[str | os.PathLike[str]], report: LoadReport, folder: Path,
             created: bool) -> NothingToIndexError:
    named = ", ".join(str(p) for p in paths)
    why = f"{report.skipped} skipped, each said above" if report.skipped else "no cable file in them"
    kept = "no index was made" if created else f"the index {folder} is as it was"
    return NothingToIndexError(
        f"found no cable in {named} ({why}); nothing was indexed and {kept}. Pass cable files: text files in the "
        "seeds' form, .jsonl(.gz), the Cablegate cables.csv or cablegate .html pages, or folders of them",
        paths=tuple(str(p) for p in paths), skipped=report.skipped)


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="cable", disable=not enabled or total == 0, file=sys.stderr, dynamic_ncols=True,
                desc="indexing")
