"""Find where a value sits inside one JSON line, so a finding points at the exact block.

The standard decoder gives no positions. This scanner walks only along the requested path
and skips every other value without decoding it, so locating a block is cheap even on long
lines. It is called only for lines that have a finding.
"""

from __future__ import annotations

import json.decoder
import re
from collections.abc import Callable

# The standard library's string scanner (C speed); typeshed does not declare it.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"[^,\]}\s]*")

PathItem = str | int


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _skip(text: str, i: int) -> int:
    """Index just past the JSON value starting at `i`."""
    c = text[i] if i < len(text) else ""
    if c == '"':
        return scanstring(text, i + 1)[1]
    if c in "{[":
        depth = 0
        n = len(text)
        while i < n:
            c = text[i]
            if c == '"':
                i = scanstring(text, i + 1)[1]
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise ValueError("unterminated value")
    m = _SCALAR.match(text, i)
    assert m is not None
    if m.end() == i:
        raise ValueError(f"unexpected character at {i}")
    return m.end()


def _find(text: str, i: int, path: list[PathItem]) -> tuple[int, int]:
    i = _ws(text, i)
    if not path:
        return i, _skip(text, i)
    head, rest = path[0], path[1:]
    if isinstance(head, str):
        if text[i] != "{":
            raise ValueError("not an object")
        i = _ws(text, i + 1)
        found: tuple[int, int] | None = None
        while i < len(text) and text[i] != "}":
            key, i = scanstring(text, i + 1)
            i = _ws(text, i)
            i = _ws(text, i + 1)  # past ':'
            if key == head:
                # Later duplicates win, as in JSON.parse: a first one without the path is no error.
                try:
                    found = _find(text, i, rest)
                except (ValueError, KeyError, IndexError):
                    found = None
            i = _ws(text, _skip(text, i))
            if i < len(text) and text[i] == ",":
                i = _ws(text, i + 1)
        if found is None:
            raise KeyError(head)
        return found
    if text[i] != "[":
        raise ValueError("not an array")
    i = _ws(text, i + 1)
    index = 0
    while i < len(text) and text[i] != "]":
        if index == head:
            return _find(text, i, rest)
        i = _ws(text, _skip(text, i))
        if i < len(text) and text[i] == ",":
            i = _ws(text, i + 1)
        index += 1
    raise IndexError(head)


def span(text: str, path: list[PathItem]) -> tuple[int, int] | None:
    """(start, end) character offsets of the value at `path`, or None when it is not there."""
    try:
        return _find(text, 0, path)
    except (ValueError, KeyError, IndexError, RecursionError):
        return None
