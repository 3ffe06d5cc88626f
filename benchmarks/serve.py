"""The served chat: time to ready, time to the first streamed answer text, and many users at once.

    python benchmarks/serve.py [--index DIR] [--users 20] [--seconds 60] [--starts 2]
    python benchmarks/serve.py --rss-rounds 5 --users 30 --seconds 20 [--index DIR]

1. ``cablechat serve --index DIR`` is started as a person would start it, ``--starts`` times, and timed until
   the page answers HTTP 200 (goal ≤ 8 s). The real model is loaded, as in use.
2. First streamed token: ``gradio_client`` submits each question to ``/ask`` and times the first partial
   answer it receives (goal ≤ 300 ms in extractive mode).
3. ``--users`` clients, each in its own thread with its own connection, ask in a loop for ``--seconds``:
   errors (goal 0), answers per second, and latency p50/p95 of whole answers.
4. With ``--rss-rounds N`` instead of 2 and 3: N rounds of ``--users`` clients for ``--seconds`` each, printing after
   each round the server's resident memory, its threads and its open handles on ``cables.sqlite``. Goal: every
   round after the first within 10% of the first (issue 11: a connection per ended worker thread was kept, and
   RSS went 347, 791, 929, 1,000, 1,055 MB).

The index is index/cablegate when it has been built; otherwise the seeds are indexed with the real model into a
temporary folder (not timed), and the report says which was used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# gradio_client phones home unless both this and its analytics_enabled argument say no; the Hugging Face hub
# library it imports reads its own switch at import.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from gradio_client import Client

from rag.metrics import percentile

SEED_QUESTIONS = ("Who wants Kazakhstan to join the Missile Technology Control Regime?",
                  "When is the experts meeting in Paris?",
                  "What did KazKosmos ask of the United States regarding the MTCR?",
                  "Who leases the Baikonur cosmodrome and until when?",
                  "What did the Russian MFA say about notifications of space conjunctions?")
DEV_QUESTIONS = ROOT.parent / "shared" / "eval" / "dev-questions.jsonl"
READY_TIMEOUT_S = 180
# A person waits this long for an answer before giving up; gradio_client's own default (20 s) is shorter than
# the worst waits on a loaded two-core machine, and its give-ups would count as server errors.
CLIENT_TIMEOUT_S = 120.0


def choose_index(requested: Path | None) -> tuple[Path, str]:
    """The index to serve and a line saying which it is."""
    if requested:
        return requested, f"{requested} (given)"
    corpus = ROOT / "index" / "cablegate"
    if (corpus / "manifest.json").exists():
        return corpus, f"{corpus.relative_to(ROOT)} (the corpus index)"
    folder = Path(tempfile.mkdtemp(prefix="cablechat-bench-")) / "seeds"
    subprocess.run([sys.executable, "-m", "rag.cli", "index", str(ROOT / "seeds"), "--index", str(folder)],
                   cwd=ROOT, check=True, capture_output=True)
    return folder, f"a seeds index built for this run at {folder} (index/cablegate is not built)"


def questions_for(index: Path) -> list[str]:
    if "cablegate" in str(index) and DEV_QUESTIONS.exists():
        rows = [json.loads(line) for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [row["question"] for row in rows][:40]
    return list(SEED_QUESTIONS)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(index: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``cablechat serve``; returns the process and the seconds until its page answered."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(f"cablechat serve exited with {process.returncode}: "
                             f"{process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"cablechat serve was not ready after {READY_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def connect(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": CLIENT_TIMEOUT_S})


def first_tokens(url: str, questions: Sequence[str]) -> list[float]:
    """Milliseconds from submitting each question to the first partial answer received."""
    client = connect(url)
    client.predict(questions[0], api_name="/ask")  # warm: the first query pays for lazy imports and caches
    times = []
    for question in questions:
        started = time.perf_counter()
        job = client.submit(question, api_name="/ask")
        for partial in job:
            if partial:
                times.append((time.perf_counter() - started) * 1000)
                break
        job.result()
    return times


def load(url: str, questions: Sequence[str], users: int, seconds: float) -> dict[str, object]:
    """``users`` clients asking in a loop for ``seconds``: answers, errors, latencies."""
    clients = [connect(url) for _ in range(users)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def user(n: int) -> None:
        asked = n
        while time.perf_counter() < deadline:
            question = questions[asked % len(questions)]
            asked += 1
            started = time.perf_counter()
            try:
                text = clients[n].predict(question, api_name="/ask")
                failure = None if isinstance(text, str) and text else f"empty answer to {question!r}"
            except Exception as exc:  # noqa: BLE001 - every failure counts, whatever raised it
                failure = f"{type(exc).__name__}: {exc}"
            with lock:
                if failure:
                    errors.append(failure)
                else:
                    latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {"users": users, "seconds": round(elapsed, 1), "answers": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "answers_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": _round(percentile(latencies, 50)), "p95_ms": _round(percentile(latencies, 95)),
            "max_ms": _round(max(latencies, default=None))}


def server_memory(pid: int, database: Path) -> dict[str, float]:
    """The server's resident memory (MB), its threads, and its open handles on the index's database."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    target, handles = str(database.resolve()), 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            handles += os.readlink(fd) == target
        except OSError:
            pass  # closed while we looked
    return {"rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1), "threads": int(status["Threads"]),
            "sqlite_handles": handles}


def rss_rounds(url: str, pid: int, index: Path, questions: Sequence[str], rounds: int, users: int,
               seconds: float) -> list[dict[str, object]]:
    """``rounds`` rounds of load, each followed by the server's memory, printed as it comes."""
    results = []
    for number in range(1, rounds + 1):
        load_result = load(url, questions, users, seconds)
        memory = server_memory(pid, index / "cables.sqlite")
        results.append({"round": number, **memory, "answers": load_result["answers"],
                        "errors": load_result["errors"]})
        print(f"round {number}: RSS {memory['rss_mb']:.0f} MB, {memory['threads']} threads, "
              f"{memory['sqlite_handles']} handles on cables.sqlite; {load_result['answers']} answers, "
              f"{load_result['errors']} errors", flush=True)
    first = results[0]["rss_mb"]
    worst = max((abs(r["rss_mb"] - first) / first for r in results[1:]), default=0.0)  # type: ignore[operator]
    print(f"RSS after the first round within {worst:.1%} of the first (goal ≤ 10%)")
    return results


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="index to serve (default: index/cablegate, else the seeds)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--starts", type=int, default=2, help="how many times to time the start (default 2)")
    parser.add_argument("--rss-rounds", type=int, default=0,
                        help="instead of the first-token and load figures, this many rounds of --users clients for "
                             "--seconds each, with the server's memory after each (default 0: not run)")
    args = parser.parse_args(argv)

    index, which = choose_index(args.index)
    questions = questions_for(index)
    print(f"index: {which}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    starts = []
    for _ in range(args.starts - 1):
        process, seconds = start(index, free_port())
        starts.append(seconds)
        stop(process)
    port = free_port()
    process, seconds = start(index, port)
    starts.append(seconds)
    print(f"serve → ready: {', '.join(f'{s:.2f} s' for s in starts)} (goal ≤ 8 s)")
    url = f"http://127.0.0.1:{port}/"
    if args.rss_rounds:
        try:
            print(f"server before any question: {server_memory(process.pid, index / 'cables.sqlite')}")
            rounds = rss_rounds(url, process.pid, index, questions, args.rss_rounds, args.users, args.seconds)
            print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
            print(json.dumps({"index": str(index), "rss_rounds": rounds}))
        finally:
            stop(process)
        return 0
    try:
        tokens = first_tokens(url, questions[:20])
        print(f"first streamed token: p50 {percentile(tokens, 50):.0f} ms, p95 {percentile(tokens, 95):.0f} ms, "
              f"max {max(tokens):.0f} ms over {len(tokens)} questions (goal ≤ 300 ms)")
        result = load(url, questions, args.users, args.seconds)
        print(f"{result['users']} users for {result['seconds']} s: {result['answers']} answers, {result['errors']} "
              f"errors (goal 0), {result['answers_per_s']} answers/s, latency p50 {result['p50_ms']} ms, "
              f"p95 {result['p95_ms']} ms, max {result['max_ms']} ms")
        for error in result["first_errors"]:  # type: ignore[attr-defined]
            print(f"  error: {error}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
        print(json.dumps({"index": str(index), "ready_s": [round(s, 2) for s in starts],
                          "first_token_ms": {"p50": _round(percentile(tokens, 50)),
                                             "p95": _round(percentile(tokens, 95))}, "load": result}))
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
