"""Who sent a cable and to whom: routing lines such as ``RUEHC/SECSTATE WASHDC IMMEDIATE 5197`` made readable."""

from __future__ import annotations

import re

__all__ = ["normalise_origin", "parse_addressees"]

_ORIGIN_PREFIXES = (
    ("AMEMBASSY", "Embassy"),
    ("AMCONSUL", "Consulate"),
    ("USMISSION", "US Mission"),
    ("USINT", "US Interests Section"),
    ("USDEL", "US Delegation"),
    ("USLO", "US Liaison Office"),
)
_KEEP_UPPER = frozenset({"USUN", "USNATO", "USEU", "USOSCE", "UNVIE", "AIT", "RPO", "REO", "PRT", "US", "USDA"})
_ROUTING_CODE = re.compile(r"^[A-Z0-9]+/")
_PRECEDENCE = re.compile(r"\s+(?:IMMEDIATE|PRIORITY|ROUTINE|FLASH|NIACT)?\s*\d*$")


def _addressee(line: str) -> str:
    """A routing line without its station code and its precedence and serial number."""
    return _PRECEDENCE.sub("", _ROUTING_CODE.sub("", line.strip())).strip()


def normalise_origin(fm: str | None) -> str | None:
    """``AMEMBASSY ASTANA`` → ``Embassy Astana``, ``SECSTATE WASHDC`` → ``Secretary of State``."""
    if not fm:
        return None
    fm = _addressee(re.sub(r"//.*$", "", _ROUTING_CODE.sub("", fm.strip().upper())))
    if fm.startswith("SECSTATE"):
        return "Secretary of State"
    for prefix, name in _ORIGIN_PREFIXES:
        if fm.startswith(prefix + " "):
            return f"{name} {_title(fm[len(prefix) + 1:])}"
    return _title(fm) or None


def _title(place: str) -> str:
    return " ".join(w if w in _KEEP_UPPER else w.capitalize() for w in place.split())


def parse_addressees(block: str) -> tuple[str, ...]:
    """``RUEHC/SECSTATE WASHDC IMMEDIATE 5197`` → ``SECSTATE WASHDC``, one per line."""
    return tuple(dict.fromkeys(a for a in map(_addressee, block.splitlines()) if a))
