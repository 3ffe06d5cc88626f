"""Every error CableChat raises on purpose, as one tree, so callers can catch as widely as they need::

    CableChatError
    ├── CableParseError        text that is not a cable (has .source and .line)
    ├── IndexError_            the index directory cannot be used
    │   ├── IndexMissingError      no index at that path
    │   ├── IndexCorruptError      half-written or unreadable index
    │   ├── IndexMismatchError     built with another model or dimension than the embedder given
    │   └── IndexBusyError         another process is building it (has .pid)
    ├── NothingToIndexError    the inputs of a build hold no cable (has .paths)
    ├── QueryError             a question or filter that cannot be searched
    ├── ServeError             the chat UI cannot listen where it was asked to (has .host and .port)
    └── LLMError               the LLM server failed (unreachable, timeout, HTTP error), or none is configured
        └── LLMContextError        the prompt does not fit the server's context (has .url and .limit)

Messages say what was wrong, the value, and the fix.
"""

from __future__ import annotations

__all__ = [
    "CableChatError",
    "CableParseError",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexError_",
    "IndexMismatchError",
    "IndexMissingError",
    "LLMContextError",
    "LLMError",
    "NothingToIndexError",
    "QueryError",
    "ServeError",
]


class CableChatError(Exception):
    """Base of every error CableChat raises on purpose."""


class CableParseError(CableChatError):
    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = ":".join(str(part) for part in (source, line) if part is not None)
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message
        self.source = source
        self.line = line


class IndexError_(CableChatError):
    """The index directory cannot be used. (Named with a trailing underscore to leave the builtin alone.)"""

    def __init__(self, message: str, *, folder: object = None) -> None:
        super().__init__(message)
        self.folder = folder


class IndexMissingError(IndexError_):
    pass


class IndexCorruptError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    pass


class IndexBusyError(IndexError_):
    """``pid``: the process holding the folder's build lock."""

    def __init__(self, message: str, *, folder: object = None, pid: int | None = None) -> None:
        super().__init__(message, folder=folder)
        self.pid = pid


class NothingToIndexError(CableChatError):
    """``paths``: the inputs given; ``skipped``: how many records or files in them were skipped."""

    def __init__(self, message: str, *, paths: tuple[str, ...] = (), skipped: int = 0) -> None:
        super().__init__(message)
        self.paths = paths
        self.skipped = skipped


class QueryError(CableChatError):
    pass


class ServeError(CableChatError):
    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class LLMError(CableChatError):
    pass


class LLMContextError(LLMError):
    """``limit``: the server's context size in tokens, when its answer (or the configuration) said it."""

    def __init__(self, message: str, *, url: str | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.limit = limit
