"""``cablechat``: parse, index, check, search, ask, eval and serve from a shell.

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
DESCRIPTION = "cablechat: parse, index, search, ask, eval and serve from a shell"


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _filter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (also typed inline: origin:Moscow year:2009 tag:TSPA)")
    group.add_argument("--origin", help="origin contains this, e.g. Moscow or 'Embassy Abu Dhabi' (default: any)")
    group.add_argument("--year", help="a year or a range, e.g. 2009 or 2008-2009 (default: any)")
    group.add_argument("--from", dest="date_from",
                       help="from this date: 2009, 2009-04 or 2009-04-17 (default: the first)")
    group.add_argument("--to", dest="date_to", help="up to and including this date (default: the last)")
    group.add_argument("--classification",
                       help="UNCLASSIFIED, CONFIDENTIAL, SECRET, or a caveat like NOFORN (default: any)")
    group.add_argument("--tag", dest="tags", action="append",
                       help="a TAGS code, e.g. TSPA; repeat for several (default: any)")
    group.add_argument("--cable", dest="cable_id", help="only this cable, e.g. 09ASTANA664 (default: every cable)")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = ("origin", "year", "date_from", "date_to", "classification", "tags", "cable_id")
    return {n: getattr(args, n) for n in names if getattr(args, n)}


def _port(value: str) -> int:
    from ui.ports import PORTS, free_port_after

    port = int(value) if value.strip().isdigit() else -1
    if port not in PORTS:
        free = free_port_after("127.0.0.1", 7859)
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number: choose one from 1 to 65535, e.g. "
                                         + (f"--port {free}, which is free now" if free else "--port 8080"))
    return port


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=Path, help="index folder (default: $CABLECHAT_INDEX or ./index)")


def _assistant(args: argparse.Namespace) -> Any:
    from rag.assistant import Assistant
    from rag.embed import load_embedder

    model = getattr(args, "model", None)
    assistant = Assistant(args.index, embedder=load_embedder(model) if model else None)
    building = assistant.index.building
    if building is not None:  # answers come from the cables committed so far: say so, beside the results
        print(f"note: the index in {assistant.index.folder} is {building.summary()}", file=sys.stderr)
    return assistant


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
    if not report.loaded:
        print(f"cablechat parse: found no cable in {args.path}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _listed(lines: Sequence[str], what: str, limit: int = 20) -> None:
    for line in lines[:limit]:
        print(f"{what} {line}", file=sys.stderr)
    if len(lines) > limit:
        print(f"... and {len(lines) - limit} more {what}", file=sys.stderr)


def cmd_index(args: argparse.Namespace) -> int:
    from rag.embed import load_embedder
    from rag.index import default_index_dir, recorded_build
    from rag.indexer import build_index
    from rag.loaders import LoadReport

    for path in args.paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"cannot index {str(path)!r}: no such file or folder")
    report = LoadReport()
    folder = args.index or default_index_dir()
    # An index is extended, or repaired, with the model it was built with unless --model names another.
    model = args.model or recorded_build(folder)[0]
    try:
        embedder = load_embedder(model, backend=args.backend)
        if args.ray is not None:
            from rag.distributed import build_index_ray

            summary = build_index_ray(args.paths, folder, embedder=embedder, address=args.ray or None,
                                      workers=args.ray_workers, gpus_per_worker=args.ray_gpus, report=report,
                                      lexical=args.lexical)
        else:
            summary = build_index(args.paths, folder, embedder=embedder,
                                  progress=not args.json and sys.stderr.isatty() or args.progress, report=report,
                                  lexical=args.lexical)
    finally:
        if not args.json:
            _listed([f"{source}: {reason}" for source, reason in report.problems], "skipped")
    if args.json:
        _print_json({"index": str(folder), **summary.to_dict()})
    else:
        _listed([d.line() for d in summary.duplicate_list], "duplicate")
        if summary.duplicates > len(summary.duplicate_list):
            print(f"... {summary.duplicates} duplicates in all", file=sys.stderr)
        _listed(list(summary.repaired), "repaired:")
        print(f"{folder}: {summary.summary()}")
        print(f"vector index: {summary.faiss.get('type')} (recall@10 {summary.faiss.get('recall@10')})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from rag.check import check_index
    from rag.index import default_index_dir

    report = check_index(args.index or default_index_dir())
    if args.json:
        _print_json(report.to_dict())
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else EXIT_ERROR


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
    # The model's raw reply is a draft: it goes to a terminal's stderr as it arrives, and stdout gets only the
    # checked answer, so what a pipe or a file receives never holds an invented citation.
    draft = args.mode == "llm" and not args.json and sys.stderr.isatty()
    drafted = False
    with _assistant(args) as assistant:
        stream = assistant.ask_stream(" ".join(args.question), k=args.k, mode=args.mode, **_filters(args))
        for event in stream:
            if draft and event.kind == "extend":
                print(f"{'' if drafted else 'LLM reply, unchecked: '}{event.text}", end="", file=sys.stderr,
                      flush=True)
                drafted = True
        answer = stream.answer()
    if drafted:
        print("\n", file=sys.stderr)
    if args.json:
        _print_json(answer.to_dict())
        return 0
    if answer.notice:
        print(f"note: {answer.notice}", file=sys.stderr)
    print(answer.text)
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

    from ui.ports import check_port

    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.auth and (len(auth or ()) != 2 or not all(auth or ())):
        raise CableChatError(f"--auth {args.auth!r} must be USER:PASS, both non-empty")
    check_port(args.host, args.port)  # a taken port is said at once, not after a build and a model load
    folder = args.index or default_index_dir()
    seeds = Path("seeds")
    if args.index is None and not (folder / MANIFEST).exists() and seeds.is_dir():
        from rag.embed import load_embedder
        from rag.indexer import build_index

        print(f"There is no index in {folder.resolve()} yet, so CableChat is building one from the sample cables "
              f"in {seeds.resolve()} first (once; about a minute).", file=sys.stderr)
        summary = build_index([seeds], folder, embedder=load_embedder(args.model), progress=sys.stderr.isatty())
        print(f"{folder.resolve()}: {summary.summary()}", file=sys.stderr)
    from ui.app import serve

    args.index = folder
    serve(_assistant(args), host=args.host, port=args.port, auth=auth)
    return 0


# -- wiring -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cablechat", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    sub = command("parse", cmd_parse, "parse cables and print each one's id, date, origin, paragraphs, subject")
    sub.add_argument("path", type=Path, help="a cable file (.txt, .jsonl[.gz], .csv, .html) or a folder")
    sub.add_argument("--json", action="store_true",
                     help="one JSON object per cable, paragraphs included (default: one line of text per cable)")

    sub = command("index", cmd_index, "add cables to an index (incremental; resumes an interrupted build; "
                                      "repairs a damaged index first)")
    sub.add_argument("paths", nargs="*", type=Path,
                     help="cable files or folders (default: none, only check the index and repair it)")
    _index_option(sub)
    sub.add_argument("--model", help="sentence-transformers model name or folder (default: the model the index was "
                                     "built with, else $CABLECHAT_MODEL, else the packaged all-MiniLM-L6-v2)")
    sub.add_argument("--backend", choices=["torch", "torch-bf16", "onnx", "onnx-int8"],
                     help="how to run the model (default: onnx on a CPU, torch on a GPU)")
    sub.add_argument("--progress", action="store_true",
                     help="show the progress bar even when not on a terminal (default: only on a terminal)")
    sub.add_argument("--json", action="store_true", help="print the build summary as JSON (default: as text)")
    sub.add_argument("--lexical", choices=["fts5", "tantivy"],
                     help="BM25 engine: SQLite FTS5, or tantivy, which stays fast at millions of paragraphs "
                          "(default: the one the index has; fts5 for a new index)")
    sub.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="parse and embed on Ray (pip install 'cablechat[ray]'): on the cluster at ADDRESS, e.g. auto "
                          "or ray://head:10001 (default: $RAY_ADDRESS, else a local cluster on this machine)")
    sub.add_argument("--ray-workers", type=int, metavar="N",
                     help="embedders in the Ray pool (default: as many as the cluster's CPUs, or GPUs, allow)")
    sub.add_argument("--ray-gpus", type=float, default=0.0, metavar="F",
                     help="GPUs per Ray embedder, e.g. 1 or 0.5; use with --backend torch (default 0: CPU workers)")

    sub = command("check", cmd_check, "check that an index is whole: counts, checksums, FAISS against the vectors; "
                                      "names the command that repairs what is not")
    _index_option(sub)
    sub.add_argument("--json", action="store_true", help="the report as one JSON object (default: as text)")

    sub = command("search", cmd_search, "search paragraphs: BM25, dense, or both fused")
    sub.add_argument("query", nargs="+")
    _index_option(sub)
    sub.add_argument("--k", type=int, default=10, help="how many paragraphs (default 10)")
    sub.add_argument("--method", choices=["hybrid", "dense", "bm25"], default="hybrid",
                     help="BM25, dense (embeddings), or both fused (default hybrid)")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="one JSON object per hit (default: text)")
    _filter_options(sub)

    sub = command("ask", cmd_ask, "answer a question with citations to cable paragraphs")
    sub.add_argument("question", nargs="+")
    _index_option(sub)
    sub.add_argument("--mode", choices=["extractive", "llm"], default="extractive",
                     help="extractive (default, local) or llm (CABLECHAT_LLM_URL, CABLECHAT_LLM_MODEL)")
    sub.add_argument("--k", type=int, default=8, help="paragraphs retrieved (default 8)")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="the whole Answer as one JSON object (default: text)")
    _filter_options(sub)

    sub = command("eval", cmd_eval, "measure retrieval and answers on questions with gold paragraphs")
    sub.add_argument("questions", type=Path, help="JSON lines: question, cable, paragraph, answer, evidence, also")
    _index_option(sub)
    sub.add_argument("--k", type=int, default=10, help="depth for recall and MRR (default 10)")
    sub.add_argument("--model", help=argparse.SUPPRESS)
    sub.add_argument("--json", action="store_true", help="one JSON object with every figure (default: a table)")
    sub.add_argument("--details", type=Path,
                     help="write one JSON line per question (misses, what was retrieved) to this file (default: none)")
    sub.add_argument("--plot", type=Path,
                     help="write a PNG of recall@k for bm25, dense and hybrid to this file (default: none)")

    sub = command("serve", cmd_serve, "serve the chat UI (builds ./index from ./seeds first when missing)")
    _index_option(sub)
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    sub.add_argument("--port", type=_port, default=7860, help="port to listen on, 1-65535 (default 7860)")
    sub.add_argument("--auth", help="require USER:PASS to sign in (default: no sign-in)")
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
