"""One build at a time per index folder: ``BuildLock`` and :func:`build_holder`.

A build holds an exclusive ``flock`` on ``.build.lock`` in the folder for its whole length, with its PID written in
the file. The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a killed build
never leaves a folder locked: the file it leaves behind is stale, and the next build takes it over. A build that
finishes removes the file, so an unchanged index's folder holds the same files after a build as before.

Readers never take the lock (they would stall the build); :func:`build_holder` only asks whether one is held.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from rag.errors import IndexBusyError, IndexError_

__all__ = ["LOCK", "BuildLock", "build_holder"]

LOCK = ".build.lock"
# build_holder() holds a shared lock for a moment to test the file; a build that meets it retries this long.
_PROBE_WAIT_S = 1.0


class BuildLock:
    """The build lock of ``folder`` (which must exist). ``acquire`` refuses at once when another build holds it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + _PROBE_WAIT_S
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise IndexError_(f"cannot build in {self.path.parent}: {exc.strerror or exc}; a build needs to "
                                  "write in the index folder", folder=self.path.parent) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                if (pid is None or not _alive(pid)) and time.monotonic() < deadline:
                    time.sleep(0.02)  # a reader's probe, or a build that is ending: not a build to report
                    continue
                raise _busy(self.path.parent, pid) from None
            # The file may have been removed by the build that held it between our open and our lock: then this
            # lock is on a file nobody else will find, and the next build would take the new one. Start over.
            if not _same_file(fd, self.path):
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: whoever locks the old file next sees it is gone
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def build_holder(folder: Path) -> int | None:
    """The PID of the process building ``folder`` now (0 in the moment before it writes it), or None when no
    build runs there."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _busy(folder: Path, pid: int | None) -> IndexBusyError:
    who = f"process {pid}" if pid else "another process"
    stop = f" or stop it (`kill {pid}`; the next build resumes its work)" if pid else ""
    return IndexBusyError(
        f"index {folder} is being built by {who}; wait for that build to end{stop}, then run this command again",
        folder=folder, pid=pid)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
