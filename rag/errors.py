"""Every error CableChat raises on purpose, as one tree, so callers can catch as widely as they need::

    CableChatError
    ├── CableParseError        text that is not a cable (has .source and .line)
    ├── IndexError_            the index directory cannot be used
    │   ├── IndexMissingError      no index at that path
    │   ├── IndexCorruptError      half-written or unreadable index
    │   └── IndexMismatchError     built with another model or dimension than the embedder given
    ├── QueryError             a question or filter that cannot be searched
    └── LLMError               the LLM server failed (unreachable, timeout, HTTP error)

Messages say what was wrong, the value, and the fix.
"""

from __future__ import annotations

__all__ = [
    "CableChatError",
    "CableParseError",
    "IndexCorruptError",
    "IndexError_",
    "IndexMismatchError",
    "IndexMissingError",
    "LLMError",
    "QueryError",
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


class IndexMissingError(IndexError_):
    pass


class IndexCorruptError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    pass


class QueryError(CableChatError):
    pass


class LLMError(CableChatError):
    pass
