"""``cablechat``: parse, index, search, ask, eval and serve from a shell.

The CLI parses arguments, calls the library, maps errors to messages and prints: readable text by default,
JSON lines with ``--json``. Heavy modules are imported inside the commands so ``cablechat --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.errors import CableChatError

__all__ = ["main"]

EXIT_USAGE, EXIT_ERROR = 2, 1


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _filter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (also typed inline: origin:Moscow year:2009 tag:TSPA)")
    group.add_argument("--origin", help="origin contains this, e.g. Moscow or 'Embassy Abu Dhabi'")
    group.add_argument("--year", help="a year or a range, e.g. 2009 or 2008-2009")
    group.add_argument("--from", dest="date_from", help="from this date: 2009, 2009-04 or 2009-04-17")
    group.add_argument("--to", dest="date_to", help="up to and including this date")
    group.add_argument("--classification", help="UNCLASSIFIED, CONFIDENTIAL, SECRET, or a caveat like NOFORN")
    group.add_argument("--tag", dest="tags", action="append", help="a TAGS code, e.g. TSPA; repeat for several")
    group.add_argument("--cable", dest="cable_id", help="only this cable, e.g. 09ASTANA664")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = ("origin", "year", "date_from", "date_to", "classification", "tags", "cable_id")
    return {n: getattr(args, n) for n in names if getattr(args, n)}


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=Path, help="index folder (default: $CABLECHAT_INDEX or ./index)")


def _assistant(args: argparse.Namespace) -> Any:
    from rag.assistant import Assistant
    from rag.embed import load_embedder

    model = getattr(args, "model", None)
    return Assistant(args.index, embedder=load_embedder(model) if model else None)


# -- commands ---------------------------------------------------------------------------------------------


def cmd_parse(args: argparse.Namespace) -> int:
    from rag.loaders import LoadReport, load_cables

    report = LoadReport()
    for cable in load_cables(args.path, report=report):
        if args.json:
            _print_json(cable.to_dict())
        else:
            when = cable.date.strftime("%Y-%m-%d %H:%MZ") if cable.date else "no date"
            print(f"{cable.id}\t{when}\t{cable.origin or '-'}\t{len(cable.paragraphs)} paragraphs\t{cable.subject or '-'}")
    print(report.summary(), file=sys.stderr)
    for source, reason in report.problems:
        print(f"  skipped {source}: {reason}", file=sys.stderr)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from rag.embed import load_embedder
    from rag.index import default_index_dir
    from rag.indexer import build_index
    from rag.loaders import LoadReport

    for path in args.paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"cannot index {str(path)!r}: no such file or folder")
    report = LoadReport()
    folder = args.index or default_index_dir()
    summary = build_index(args.paths, folder, embedder=load_embedder(args.model, backend=args.backend),
                          progress=not args.json and sys.stderr.isatty() or args.progress, report=report)
    if args.json:
        _print_json({"index": str(folder), **summary.to_dict()})
    else:
        for source, reason in report.problems[:20]:
            print(f"skipped {source}: {reason}", file=sys.stderr)
        if len(report.problems) > 20:
            print(f"... and {len(report.problems) - 20} more skipped", file=sys.stderr)
        print(f"{folder}: {summary.summary()}")
        print(f"vector index: {summary.faiss.get('type')} (recall@10 {summary.faiss.get('recall@10')})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _assistant(args) as assistant:
        query = " ".join(args.query)
        hits = assistant.search(query, k=args.k, method=args.method, **_filters(args))
        passing = assistant.count(query, **_filters(args)) if not hits else 0
    if not hits:
        why = ("no indexed cable passes these filters together; loosen one" if not passing
               else f"none of the {passing} cables that pass the filters has paragraph text")
        print(f"no paragraph matches: {why}", file=sys.stderr)
    for rank, hit in enumerate(hits, 1):
        if args.json:
            _print_json({"rank": rank, "ref": hit.ref, **hit.to_dict()})
            continue
        cable = hit.cable
        when = f"{cable.date:%Y-%m-%d}" if cable.date else "undated"
        ranks = " ".join(f"{m}#{r}" for m, r in sorted(hit.ranks.items()))
        print(f"{rank:>2}. {hit.ref}  {when}  {cable.origin or ''}  score {hit.score:.4f} ({ranks})")
        print(f"    {cable.subject or ''}")
        text = hit.paragraph.text
        print(f"    {text[:300]}{'…' if len(text) > 300 else ''}\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.models import Answer

    with _assistant(args) as assistant:
        answer, streamed = None, ""
        for event in assistant.ask_stream(" ".join(args.question), k=args.k, mode=args.mode, **_filters(args)):
            if isinstance(event, Answer):
                answer = event
            elif not args.json and args.mode == "llm":
                print(event[len(streamed):], end="", flush=True)  # the LLM's reply as it arrives
                streamed = event
    assert answer is not None
    if args.json:
        _print_json(answer.to_dict())
        return 0
    if answer.notice:
        print(f"{chr(10) if streamed else ''}note: {answer.notice}", file=sys.stderr)
    if answer.text != streamed:
        # Extractive answers, and LLM replies whose citations checking changed, are printed whole.
        print(f"\n\nChecked answer:\n{answer.text}" if streamed else answer.text)
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            when = f"{c.date:%Y-%m-%d}" if c.date else "undated"
            mark = "" if c.supported else "  (not supported by its paragraph)"
            print(f"  [{c.ref}] {when} {c.subject or ''}{mark}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rag.evaluate import evaluate, load_questions, plot_recall

    questions = load_questions(args.questions)
    with _assistant(args) as assistant:
        result = evaluate(assistant, questions, k=args.k, progress=not args.json and sys.stderr.isatty())
    if args.details:
        args.details.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in result.details))
    if args.plot:
        plot_recall(result, args.plot)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.table())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rag.index import MANIFEST, default_index_dir

    folder = args.index or default_index_dir()
    seeds = Path("seeds")
    if args.index is None and not (folder / MANIFEST).exists() and seeds.is_dir():
        from rag.embed import load_embedder
        from rag.indexer import build_index

        print(f"no index at {folder}: building it from {seeds}/ first", file=sys.stderr)
        print(build_index([seeds], folder, embedder=load_embedder(args.model)).summary(), file=sys.stderr)
    from ui.app import serve

    args.index = folder
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.auth and (len(auth or ()) != 2 or not all(auth or ())):
        raise CableChatError(f"--auth {args.auth!r} must be USER:PASS, both non-empty")
    serve(_assistant(args), host=args.host, port=args.port, auth=auth)
    return 0


# -- wiring -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cablechat", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    sub = command("parse", cmd_parse, "parse cables and print each one's id, date, origin, paragraphs, subject")
    sub.add_argument("path", type=Path, help="a cable file (.txt, .jsonl[.gz], .csv, .html) or a folder")
    sub.add_argument("--json", action="store_true", help="one JSON object per cable, paragraphs included")

    sub = command("index", cmd_index, "add cables to an index (incremental; resumes an interrupted build)")
    sub.add_argument("paths", nargs="+", type=Path, help="cable files or folders")
    _index_option(sub)
    sub.add_argument("--model", help="sentence-transformers model name or folder (default: $CABLECHAT_MODEL or "
                                     "the packaged all-MiniLM-L6-v2)")
    sub.add_argument("--backend", choices=["torch", "torch-bf16", "onnx", "onnx-int8"],
                     help="how to run the model (default: onnx on a CPU, torch on a GPU)")
    sub.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    sub.add_argument("--json", action="store_true", help="print the build summary as JSON")

    sub = command("search", cmd_search, "search paragraphs: BM25, dense, or both fused")
    sub.add_argument("query", nargs="+")
    _index_option(sub)
    sub.add_argument("--k", type=int, default=10, help="how many paragraphs (default 10)")
    sub.add_argument("--method", choices=["hybrid", "dense", "bm25"], default="hybrid")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="one JSON object per hit")
    _filter_options(sub)

    sub = command("ask", cmd_ask, "answer a question with citations to cable paragraphs")
    sub.add_argument("question", nargs="+")
    _index_option(sub)
    sub.add_argument("--mode", choices=["extractive", "llm"], default="extractive",
                     help="extractive (default, local) or llm (CABLECHAT_LLM_URL, CABLECHAT_LLM_MODEL)")
    sub.add_argument("--k", type=int, default=8, help="paragraphs retrieved (default 8)")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="the whole Answer as one JSON object")
    _filter_options(sub)

    sub = command("eval", cmd_eval, "measure retrieval and answers on questions with gold paragraphs")
    sub.add_argument("questions", type=Path, help="JSON lines: question, cable, paragraph, answer, evidence, also")
    _index_option(sub)
    sub.add_argument("--k", type=int, default=10, help="depth for recall and MRR (default 10)")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="one JSON object with every figure")
    sub.add_argument("--details", type=Path, help="write one JSON line per question (misses, what was retrieved)")
    sub.add_argument("--plot", type=Path, help="write a PNG of recall@k for bm25, dense and hybrid")

    sub = command("serve", cmd_serve, "serve the chat UI (builds ./index from ./seeds first when missing)")
    _index_option(sub)
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    sub.add_argument("--port", type=int, default=7860)
    sub.add_argument("--auth", help="require USER:PASS to log in")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (CableChatError, FileNotFoundError) as exc:
        print(f"cablechat {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"cablechat {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
