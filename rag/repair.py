"""Mend an index from what is intact, as :func:`rag.check.check_index` found it: run by every build before it adds
anything (rag.indexer), so ``cablechat index --index DIR``, with no cables to add, is the repair command.

- rows past the committed ones (a build killed between writing vectors and committing them) are cut off;
- vector rows lost (a cut or deleted ``vectors.f32``) or written over are embedded again from the paragraph text
  the database holds, and their block's checksum recorded again; a row of a replaced cable, whose text is gone, is
  zeroed and marked so that no later build reuses it (nothing searches it);
- rows that carry no checksum (an index built before checksums) get one;
- FAISS and the manifest are rebuilt by the build's end whenever any of this happened, or they were found wrong.

A lost database cannot be mended here: it is the only copy of the cables' text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rag.check import CheckReport
from rag.errors import IndexCorruptError
from rag.index import rebuild_command, recorded_build
from rag.store import Store
from rag.vectors import VectorFile, block_digest

__all__ = ["repair"]

# Rows per checksum recorded for rows that had none.
_ADOPT_ROWS = 4096


def repair(report: CheckReport, store: Store, vectors: VectorFile,
           texts_of: Callable[[Store, Sequence[int]], dict[int, dict[str, str]]],
           embed: Callable[[list[str]], np.ndarray]) -> list[str]:
    """Mend the vector file and its checksums as ``report`` found them; what was done, one line each.

    ``texts_of(store, paragraph rowids)`` gives each paragraph's embedded texts by their hash (rag.indexer), and
    ``embed`` embeds texts with the index's own model.
    """
    done: list[str] = []
    committed = int(store.meta("vectors_committed") or 0)
    if report.extra_rows:
        vectors.truncate(committed)
        done.append(f"cut {report.extra_rows:,} uncommitted rows off {vectors.path.name}")
    if report.damaged:
        if len(vectors) < committed:
            vectors.truncate(committed)  # lost rows read as zeros until they are written again below
        embedded = forgotten = 0
        for first, rows in report.damaged:
            e, f = _rederive(store, vectors, first, rows, texts_of, embed)
            embedded, forgotten = embedded + e, forgotten + f
        what = f"{embedded:,} vector rows embedded again from the database's text"
        done.append(what + (f", {forgotten:,} rows of replaced cables zeroed and never reused" if forgotten else ""))
    if report.unchecked:
        first, rows = report.unchecked
        store.begin()
        for start in range(first, first + rows, _ADOPT_ROWS):
            count = min(_ADOPT_ROWS, first + rows - start)
            store.add_block(start, count, vectors.digest(start, count))
        store.commit()
        done.append(f"checksums recorded for rows {first:,} to {first + rows - 1:,}")
    return done


def _rederive(store: Store, vectors: VectorFile, first: int, rows: int,
              texts_of: Callable[[Store, Sequence[int]], dict[int, dict[str, str]]],
              embed: Callable[[list[str]], np.ndarray]) -> tuple[int, int]:
    entries = store.vector_range(first, first + rows)
    texts = texts_of(store, sorted({p for _, p, _ in entries if p is not None}))
    block = np.zeros((rows, vectors.dim), dtype=np.float32)
    wanted: list[tuple[int, str]] = []
    dead: list[int] = []
    for row, paragraph, text_hash in entries:
        if paragraph is None:
            dead.append(row)
            continue
        text = texts.get(paragraph, {}).get(text_hash)
        if text is None:
            folder = vectors.path.parent
            raise IndexCorruptError(
                f"vector row {row} of {vectors.path} is damaged, and the text it embedded cannot be found in the "
                f"database again (another CableChat version cut paragraphs differently); build the same cables into "
                f"a new folder: `{rebuild_command(folder, recorded_build(folder)[1])}`", folder=folder)
        wanted.append((row, text))
    if wanted:
        block[[row - first for row, _ in wanted]] = embed([text for _, text in wanted])
    vectors.write_rows(first, block)
    store.begin()
    store.forget_vectors(dead)
    store.add_block(first, rows, block_digest(block))
    store.commit()
    return len(wanted), len(dead)
