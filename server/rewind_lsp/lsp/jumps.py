"""Between the two halves of a tool call: definition (from a result to its tool_use), references
(from a tool_use to its results, more than one being itself a finding), and highlights of both.
The same for a server_tool_use and its `*_tool_result`."""

from __future__ import annotations

from collections.abc import Callable

from lsprotocol import types

from .. import locate
from ..navigation import Call, Spot, TranscriptMap
from .positions import char_index, units

LineText = Callable[[int], str]  # 1-based line -> its decoded text


class Jumps:
    def __init__(self, m: TranscriptMap, text: LineText, encoding: str) -> None:
        self.m, self.text, self.encoding = m, text, encoding

    def span(self, spot: Spot) -> tuple[int, int]:
        """Character offsets of the block (the whole line when it cannot be placed)."""
        text = self.text(spot.line)
        path = self.m.block_path(spot)
        where = locate.span(text, path) if path is not None else None
        return where if where is not None else (0, len(text))

    def range(self, spot: Spot) -> types.Range:
        text = self.text(spot.line)
        start, end = self.span(spot)
        return types.Range(types.Position(spot.line - 1, units(text[:start], self.encoding)),
                           types.Position(spot.line - 1, units(text[:end], self.encoding)))

    def at(self, pos: types.Position) -> tuple[Call, Spot] | None:
        """The call whose block is under the cursor, and that block; on a line of one call, that call."""
        line = pos.line + 1
        calls = self.m.calls_on(line)
        if not calls:
            return None
        char = char_index(self.text(line), pos.character, self.encoding)
        halves = [(c, s) for c in calls for s in (c.use, *c.results) if s.line == line]
        for c, s in halves:
            start, end = self.span(s)
            if start <= char < end:
                return c, s
        return halves[0] if len({id(c) for c, _ in halves}) == 1 else None

    def _location(self, uri: str, spot: Spot) -> types.Location:
        return types.Location(uri, self.range(spot))

    def definition(self, uri: str, pos: types.Position) -> list[types.Location]:
        hit = self.at(pos)
        return [self._location(uri, hit[0].use)] if hit is not None else []

    def references(self, uri: str, pos: types.Position, include_declaration: bool) -> list[types.Location]:
        hit = self.at(pos)
        if hit is None:
            return []
        call = hit[0]
        spots = ([call.use] if include_declaration else []) + list(call.results)
        return [self._location(uri, s) for s in spots]

    def highlights(self, pos: types.Position) -> list[types.DocumentHighlight]:
        hit = self.at(pos)
        if hit is None:
            return []
        call = hit[0]
        return [types.DocumentHighlight(self.range(call.use), types.DocumentHighlightKind.Write)] + [
            types.DocumentHighlight(self.range(r), types.DocumentHighlightKind.Read) for r in call.results
        ]
