"""Write the dev-subset corpus: every cable the dev questions cite as gold, and a fixed sample of the others.

    python benchmarks/dev_subset.py [--out dev-subset.jsonl] [--others 600] [--seed 7]
    cablechat index dev-subset.jsonl --index index/dev-subset
    python benchmarks/ask.py --index index/dev-subset --questions ../shared/eval/dev-natural.jsonl

An index of it builds in minutes where the whole corpus takes about 25 on 2 cores, and every dev question's gold
paragraph is in it among 600 distractors: the answer layer (rag.rerank, rag.extractive, rag.answerable) was tuned
on it. Retrieval is easier than over all 6,712 cables, so figures on it are an upper bound for those; the subject
checks of rag.answerable look words up in the index, so their refusals are measured on the whole corpus.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cablegate-6712.jsonl.gz")
    parser.add_argument("--questions", type=Path, nargs="+",
                        default=[SHARED / "eval" / "dev-questions.jsonl", SHARED / "eval" / "dev-natural.jsonl"])
    parser.add_argument("--out", type=Path, default=Path("dev-subset.jsonl"))
    parser.add_argument("--others", type=int, default=600, help="cables besides the gold ones (default 600)")
    parser.add_argument("--seed", type=int, default=7, help="the sample's seed (default 7)")
    args = parser.parse_args(argv)

    gold: set[str] = set()
    for path in args.questions:
        for line in path.read_text(encoding="utf-8").splitlines():
            question = json.loads(line)
            gold.update(c for c in [question.get("cable"), *(a[0] for a in question.get("also") or [])] if c)
    with gzip.open(args.corpus, "rt", encoding="utf-8") as stream:
        lines = stream.readlines()
    ids = [json.loads(line)["id"] for line in lines]
    kept = [line for line, cable in zip(lines, ids) if cable in gold]
    others = [line for line, cable in zip(lines, ids) if cable not in gold]
    kept += random.Random(args.seed).sample(others, min(args.others, len(others)))
    args.out.write_text("".join(kept), encoding="utf-8")
    print(f"{args.out}: {len(kept)} cables ({len(kept) - min(args.others, len(others))} gold)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
