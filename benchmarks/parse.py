"""Parsing speed and what the parser finds, over the whole corpus, beside a naive regex paragraph splitter.

    python benchmarks/parse.py [--corpus FILE] [--limit N]

Three timings over the same records: reading alone (gunzip + JSON, :func:`rag.formats.read_jsonl`), CableChat's
parser (:func:`rag.parser.parse_cable` + :func:`rag.loaders.merge`, what indexing pays per cable on top of reading),
and the baseline, a splitter anyone would write first: cut the text wherever a line starts with ``N.`` or ``¶N.``.
Both parse the texts already in memory, so their ratio is the parser's cost alone.

A cable that takes the parser longer than ``--cable-limit`` seconds is stopped, listed, and left out of the rate:
one pathological text (a regular expression backtracking without end) would otherwise hang the whole run, and
finding such texts is what this benchmark is for.

Then corpus-wide checks that tell a parser regression at a glance: paragraphs found, cables with numbered
paragraphs, with a lead (¶0), with none; cables that number a paragraph twice (a citation ``¶N`` would be
ambiguous); how often the naive splitter finds the same numbers; and whether every dev question's gold paragraph
exists.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.formats import Record, read_jsonl
from rag.loaders import merge
from rag.models import Cable
from rag.parser import parse_cable

SHARED = ROOT.parent / "shared"
NAIVE = re.compile(r"^[ \t]*¶?(\d{1,3})\.[ \t]", re.MULTILINE)


def naive_split(text: str) -> dict[int, str]:
    """Paragraph number → text, cutting at every line that starts with a number and a full stop."""
    found = list(NAIVE.finditer(text))
    return {int(m.group(1)): text[m.end():nxt.start() if nxt else len(text)].strip()
            for m, nxt in zip(found, [*found[1:], None])}


class _TooSlow(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _TooSlow


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cablegate-6712.jsonl.gz")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "dev-questions.jsonl")
    parser.add_argument("--limit", type=int, help="only the first N cables (a quick check)")
    parser.add_argument("--cable-limit", type=float, default=10.0, help="seconds one cable may take (default 10)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    records = list(itertools.islice((r for r in read_jsonl(args.corpus) if isinstance(r, Record)), args.limit))
    read_s = time.perf_counter() - started
    megabytes = sum(len(r.text) for r in records) / 1e6

    cables: list[Cable] = []
    failed = 0
    slow: dict[str, float] = {}
    took: dict[str, float] = {}
    parse_s = 0.0
    signal.signal(signal.SIGALRM, _stop)
    for record in records:
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.cable_limit)
        try:
            cables.append(merge(parse_cable(record.text, source=record.source, cable_id=record.id), record))
        except _TooSlow:
            slow[record.id or record.source] = time.perf_counter() - started
            continue
        except Exception:  # noqa: BLE001 - counted, as the loader would skip it
            failed += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took[record.id or record.source] = time.perf_counter() - started
        parse_s += took[record.id or record.source]

    started = time.perf_counter()
    naive = [naive_split(r.text) for r in records]
    naive_s = time.perf_counter() - started

    n = len(records)
    parsed = n - len(slow)
    print(f"{n} cables, {megabytes:.1f} MB of text, from {args.corpus.name}\n")
    print("| step | seconds | cables/s | MB/s | × baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in (("read (gunzip + JSON)", read_s), ("CableChat parser", parse_s),
                          ("baseline: naive regex split", naive_s)):
        ratio = f"{naive_s / seconds:.3f}" if name != "read (gunzip + JSON)" else ""
        count = parsed if name == "CableChat parser" else n
        print(f"| {name} | {seconds:.2f} | {count / seconds:,.0f} | {megabytes * count / n / seconds:.1f} | {ratio} |")

    paragraphs = sum(len(c.paragraphs) for c in cables)
    numbered = sum(any(p.numbered and p.number > 0 for p in c.paragraphs) for c in cables)
    lead = sum(any(p.number == 0 for p in c.paragraphs) for c in cables)
    empty = sum(not c.paragraphs for c in cables)
    twice = [c.id for c in cables if len({p.number for p in c.paragraphs}) != len(c.paragraphs)]
    blank = sum(not p.text.strip() for c in cables for p in c.paragraphs)
    agree = sum({p.number for p in c.paragraphs if p.numbered and p.number > 0} == set(split)
                for c, split in zip(cables, naive))
    refs = {p.ref for c in cables for p in c.paragraphs}
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    golds = [f"{q['cable']} ¶{q['paragraph']}" for q in questions if q.get("cable")]
    print("\n| check | value |\n|---|---:|")
    for name, value in (
        ("cables parsed", f"{len(cables)} ({failed} failed)"),
        (f"cables stopped after {args.cable_limit:g} s", f"{len(slow)} {sorted(slow)[:5] if slow else ''}".strip()),
        ("slowest cables (s)", ", ".join(f"{c} {took[c]:.2f}" for c in sorted(took, key=took.get, reverse=True)[:3])),
        ("paragraphs", f"{paragraphs:,} ({paragraphs / max(len(cables), 1):.1f} a cable)"),
        ("paragraphs by the naive splitter", f"{sum(len(s) for s in naive):,}"),
        ("cables with numbered paragraphs", f"{numbered} ({numbered / max(len(cables), 1):.1%})"),
        ("cables with a lead ¶0", f"{lead}"),
        ("cables with no paragraph", f"{empty}"),
        ("cables numbering a paragraph twice", f"{len(twice)} {twice[:5] if twice else ''}".strip()),
        ("empty paragraphs", f"{blank}"),
        ("naive splitter finds the same numbers", f"{agree} ({agree / max(len(cables), 1):.1%})"),
        ("dev gold paragraphs found", f"{sum(g in refs for g in golds)}/{len(golds)}"),
    ):
        print(f"| {name} | {value} |")
    print(f"\nload average {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min) on {os.cpu_count()} CPUs: "
          "other processes share these timings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
