"""``cablechat serve`` and ``cablechat --help`` as a user runs them: the real command in a subprocess.

A port that cannot be used, and an index that is missing, each get one clear line naming the value and a fix,
no traceback, a non-zero exit; and the fix the line suggests is run here and works. The fake embedder is chosen
through ``CABLECHAT_MODEL``, as a user would choose a model, so that building an index takes a second.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from test_index import paused_build  # noqa: F401 (a fixture: a build of the seeds stopped after one cable)

from rag.cli import build_parser

CABLECHAT = str(Path(sys.executable).with_name("cablechat"))
SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SERVE_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cablechat(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CABLECHAT_MODEL": "fake-hash-64", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([CABLECHAT, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=SERVE_TIMEOUT_S)


@contextmanager
def serving(*args: str, cwd: Path | None = None) -> Iterator[tuple[str, list[str]]]:
    """``cablechat serve ARGS`` running until it says where it serves; yields that URL and what its stderr got.

    stderr is a terminal (a pseudo-terminal here), as when a person runs the command, so progress bars show.
    """
    env = {**os.environ, "CABLECHAT_MODEL": "fake-hash-64", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    terminal, stderr = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([CABLECHAT, "serve", *args], stdout=subprocess.PIPE, stderr=stderr, text=True,
                               cwd=cwd, env=env)
    os.close(stderr)
    errors: list[str] = []

    def read() -> None:
        with suppress(OSError):  # EIO once the process has closed the terminal
            while chunk := os.read(terminal, 4096):
                errors.append(chunk.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    try:
        line = ""
        for line in process.stdout or ():
            if "CableChat is serving" in line:
                break
        match = re.search(r"at (http://\S+)", line)
        assert match, f"the server never said it was ready; stderr: {''.join(errors)}"
        errors.append(line)  # what it said on stdout when ready, last
        yield match[1], errors
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.close(terminal)


def assert_clear_failure(result: subprocess.CompletedProcess[str], code: int, *expected: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    return result.stderr


def suggested_port(message: str) -> int:
    return int(re.search(r"--port (\d+), which is free now", message)[1])  # type: ignore[index]


def test_help_shows_no_markup_and_every_option_says_its_default() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "``" not in parser.format_help()
    missing = [f"{name} {action.option_strings[0]}" for name, sub in commands.choices.items() for action in sub._actions
               if action.option_strings and action.help not in (argparse.SUPPRESS, None) and action.dest != "help"
               and "default" not in action.help]
    undocumented = [f"{name} {action.option_strings[0]}" for name, sub in commands.choices.items()
                    for action in sub._actions if action.option_strings and action.help is None]
    assert not missing and not undocumented, (missing, undocumented)


def test_a_busy_port_is_named_with_a_free_one_that_then_serves(seeds_index: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = assert_clear_failure(cablechat("serve", "--index", str(seeds_index), "--port", str(port)), 1,
                                       f"port {port} on 127.0.0.1 is already in use", "--port")
        with serving("--index", str(seeds_index), "--port", str(suggested_port(message))) as (url, _):
            assert urllib.request.urlopen(url, timeout=30).status == 200


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_number_out_of_range_is_refused_with_one_that_serves(seeds_index: Path, port: str) -> None:
    message = assert_clear_failure(cablechat("serve", "--index", str(seeds_index), f"--port={port}"), 2,
                                   f"'{port}' is not a port number: choose one from 1 to 65535")
    if port == "99999":  # the same suggestion for every value: run it once
        with serving("--index", str(seeds_index), "--port", str(suggested_port(message))) as (url, _):
            assert urllib.request.urlopen(url, timeout=30).status == 200


def test_a_missing_index_suggests_the_command_that_builds_it(tmp_path: Path) -> None:
    """Beside seeds/, the default ./index is built from the sample cables; any other folder from the user's own."""
    shutil.copytree(SEEDS, tmp_path / "seeds")
    message = assert_clear_failure(cablechat("ask", "Who wants Kazakhstan to join the MTCR?", cwd=tmp_path), 1,
                                   f"no index at {tmp_path / 'index'}")
    command = re.search(r"`(cablechat index seeds/ --index index)`", message)
    assert command, message
    assert cablechat(*shlex.split(command[1])[1:], cwd=tmp_path).returncode == 0

    corpus = tmp_path / "index" / "cablegate"
    message = assert_clear_failure(cablechat("serve", "--index", "index/cablegate", "--port", str(free_port()),
                                             cwd=tmp_path), 1, f"no index at {corpus}", "cables.csv")
    assert "seeds/" not in message
    command = re.search(r"`(cablechat index CABLES --index index/cablegate)`", message)
    assert command, message
    own_files = command[1].replace("CABLES", "seeds/")  # "a folder of your own cable text files"
    assert cablechat(*shlex.split(own_files)[1:], cwd=tmp_path).returncode == 0
    answered = cablechat("ask", "--index", "index/cablegate", "Who wants Kazakhstan to join the MTCR?", cwd=tmp_path)
    assert answered.returncode == 0 and "[09ASTANA664 ¶" in answered.stdout


def test_an_index_still_being_built_is_served_with_its_count(paused_build: tuple[object, Path]) -> None:
    """A build running in another process: serve what it has committed, and say so in the shell and on the page."""
    _, folder = paused_build
    with serving("--index", str(folder), "--port", str(free_port())) as (url, said):
        assert "(1 cable so far, still being built)" in said[-1]
        page = urllib.request.urlopen(f"{url}config", timeout=30).read().decode()
    assert "Still being built (process" in page and "1 cable indexed when this server started" in page


def test_serve_without_an_index_says_where_it_builds_one_and_shows_progress(tmp_path: Path) -> None:
    shutil.copytree(SEEDS, tmp_path / "seeds")
    with serving("--port", str(free_port()), cwd=tmp_path) as (url, errors):
        assert urllib.request.urlopen(url, timeout=30).status == 200
    said = "".join(errors)
    assert f"There is no index in {tmp_path / 'index'} yet" in said and str(tmp_path / "seeds") in said, said
    assert re.search(r"indexing: +100%\|", said), said  # the progress bar, at its end
    assert f"{tmp_path / 'index'}: " in said and "Traceback" not in said
