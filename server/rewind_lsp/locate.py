"""Find where a value sits inside one JSON line, so a finding points at the exact block.

The standard decoder gives no positions. This scanner walks only along the requested path
and skips every other value without decoding it, so locating a block is cheap even on long
lines. It is called only for lines that have a finding.
"""

from __future__ import annotations

import json.decoder
import re
from bisect import bisect_left
from collections.abc import Callable

# The standard library's string scanner (C speed); typeshed does not declare it.
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"[^,\]}\s]*")

PathItem = str | int


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


# The standard library's C scanner: one call reads a whole value (building it, in C) and says where
# it ends. Every entry line is valid JSON, so this is the common path; a value it refuses is
# walked by `_skip_lenient`, as before, so what it finds is the same.
_scan_once: Callable[[str, int], tuple[object, int]] = json.decoder.JSONDecoder(strict=False).scan_once  # type: ignore[attr-defined]


def _skip(text: str, i: int) -> int:
    """Index just past the JSON value starting at `i`."""
    try:
        return _scan_once(text, i)[1]
    except (StopIteration, ValueError, RecursionError):
        return _skip_lenient(text, i)


def _skip_lenient(text: str, i: int) -> int:
    """`_skip` for a value the standard scanner refuses, character by character."""
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


def element_spans(text: str, path: list[PathItem]) -> list[tuple[int, int]]:
    """The (start, end) of every element of the array at `path`, walking it once.

    `element_spans(text, path)[k]` is `span(text, [*path, k])` wherever that is not None, and the
    list stops where `span` would start answering None (no array there, or a value that does not
    end): placing N blocks of one line costs one walk of it, not N.
    """
    try:
        i, _ = _find(text, 0, path)
    except (ValueError, KeyError, IndexError, RecursionError):
        return []
    out: list[tuple[int, int]] = []
    if text[i] != "[":
        return out
    i = _ws(text, i + 1)
    n = len(text)
    try:
        while i < n and text[i] != "]":
            i = _ws(text, i)  # as `_find` does for the path's last step
            end = _skip(text, i)
            out.append((i, end))
            i = _ws(text, end)
            if i < n and text[i] == ",":
                i = _ws(text, i + 1)
    except (ValueError, RecursionError):
        pass
    return out


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


class Columns:
    """Character offsets of one line's text turned into UTF-16 (and UTF-8) columns, for many offsets.

    A character above U+FFFF counts two UTF-16 units; every other counts one. So the UTF-16 column
    is the offset plus the astral characters before it: nothing to count on an ASCII line, and a
    binary search of their places otherwise, instead of encoding the prefix once per offset.
    The UTF-8 column is the offset plus the extra bytes of the non-ASCII characters before it.
    """

    __slots__ = ("_extra", "_text", "_wide", "astral", "length")

    def __init__(self, text: str) -> None:
        self.length = len(text)
        self._text = text
        self.astral = [] if text.isascii() else [m.start() for m in _ASTRAL.finditer(text)]
        self._wide: list[int] | None = None  # places of non-ASCII characters, found on first use
        self._extra: list[int] = []  # extra UTF-8 bytes up to and including each of them

    def _index(self, char_index: int) -> int:
        """The offset as a slice reads it: `text[:char_index]` ends there."""
        return min(char_index, self.length) if char_index >= 0 else max(self.length + char_index, 0)

    def utf16(self, char_index: int) -> int:
        """`len(text[:char_index].encode("utf-16-le")) // 2`."""
        i = self._index(char_index)
        return i + bisect_left(self.astral, i) if self.astral else i

    def utf8(self, char_index: int) -> int:
        """`len(text[:char_index].encode("utf-8"))`."""
        i = self._index(char_index)
        if self._wide is None:
            self._wide, total = [], 0
            if not self._text.isascii():
                for m in _NON_ASCII.finditer(self._text):
                    c = ord(m.group())
                    total += 1 if c < 0x800 else 2 if c < 0x10000 else 3
                    self._wide.append(m.start())
                    self._extra.append(total)
        k = bisect_left(self._wide, i)
        return i + (self._extra[k - 1] if k else 0)
