"""Whether the chat UI can listen on a host and port, said before anything slow starts (no gradio import here).

Checked the way the server itself binds (``SO_REUSEADDR``, as uvicorn does), so a port that a stopped server left
in TIME_WAIT counts as free, and one that another program listens on counts as taken.
"""

from __future__ import annotations

import errno
import socket

from rag.errors import ServeError

__all__ = ["PORTS", "check_port", "free_port_after"]

PORTS = range(1, 65536)


def _bind(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def free_port_after(host: str, port: int, tries: int = 50) -> int | None:
    """The first port above ``port`` that ``host`` can listen on now, or None among the next ``tries``."""
    for candidate in range(port + 1, min(port + 1 + tries, PORTS.stop)):
        try:
            _bind(host, candidate)
        except OSError:
            continue
        return candidate
    return None


def check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError`, saying why and what to choose instead, unless ``host:port`` can be listened on."""
    if port not in PORTS:
        raise ServeError(f"{port} is not a port number: choose one from 1 to 65535 with --port, e.g. --port 7860",
                         host=host, port=port)
    try:
        _bind(host, port)
    except OSError as exc:
        raise _unusable(host, port, exc) from None


def _unusable(host: str, port: int, exc: OSError) -> ServeError:
    if exc.errno == errno.EADDRINUSE:
        other = free_port_after(host, port)
        instead = f"e.g. --port {other}, which is free now" if other else "e.g. --port 8080"
        why = (f"port {port} on {host} is already in use (another CableChat or another program is listening "
               f"there); stop it, or choose another port with --port, {instead}")
    elif exc.errno == errno.EACCES:
        why = (f"port {port} on {host} needs administrator rights on this machine; choose a port above 1023 "
               "with --port, e.g. --port 7860")
    else:
        why = (f"cannot listen on {host} port {port} ({exc.strerror or exc}); check --host (an address of this "
               "machine, e.g. 127.0.0.1) and --port")
    return ServeError(why, host=host, port=port)
