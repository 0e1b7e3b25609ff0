"""Columns in the client's position encoding (utf-8, utf-16 or utf-32 code units) and back."""

from __future__ import annotations

from lsprotocol import types


def units(text: str, encoding: str) -> int:
    """The length of `text` in the negotiated position encoding's units."""
    if text.isascii() or encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", errors="surrogatepass"))
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def char_index(line: str, character: int, encoding: str) -> int:
    """The index in `line` of the client's column `character` (clamped to the line)."""
    if line.isascii() or encoding == types.PositionEncodingKind.Utf32:
        return min(character, len(line))
    count = 0
    for i, c in enumerate(line):
        if count >= character:
            return i
        count += units(c, encoding)
    return len(line)
