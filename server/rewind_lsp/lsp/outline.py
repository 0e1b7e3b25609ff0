"""The outline of a transcript: one symbol per turn of the live conversation, its tool calls and
replies as children, compactions, and one group per stretch off the live conversation (rewound
branches, history before a compaction, subagent runs); folding ranges the same way, so a 100 MB
transcript folds to its prompts.

Past `TURNS_SHOWN` turns, only the latest are shown one by one and the earlier ones in at most
`GROUPS` symbols of consecutive turns: an outline of each of 500,000 turns took the server 6.5 s
to build and is more than an editor can show."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lsprotocol import types

from ..navigation import Call, TranscriptMap, Turn
from ..redact import redact

# (0-based line) -> the line's length in the client's position encoding.
LineLength = Callable[[int], int]

PAIRED = "✓"
UNPAIRED = "✗"
TURNS_SHOWN = 2_000
GROUPS = 100


def shown_turns(turns: list[Turn]) -> tuple[list[list[Turn]], list[Turn]]:
    """(the groups of the earlier turns, the turns shown one by one): every turn, ungrouped, up to
    `TURNS_SHOWN`; past it, the last `TURNS_SHOWN` and at most `GROUPS` groups of the others."""
    if len(turns) <= TURNS_SHOWN:
        return [], turns
    early = turns[:-TURNS_SHOWN]
    size = -(-len(early) // GROUPS)
    return [early[k:k + size] for k in range(0, len(early), size)], turns[-TURNS_SHOWN:]


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" if n == 1 else f"{n:,} {what}s"


def _group_symbol(group: list[Turn], first: int, length: LineLength) -> types.DocumentSymbol:
    """Turns `first`.. (1-based, as counted in the live conversation) as one symbol, no children."""
    unpaired = sum(not c.paired for t in group for c in t.calls)
    mark = f" {UNPAIRED}" if unpaired else ""
    calls = f", {_count(unpaired, 'unpaired call')}" if unpaired else ""
    return types.DocumentSymbol(
        name=f"turns {first:,}–{first + len(group) - 1:,}{mark}", kind=types.SymbolKind.Package,
        detail=f"lines {group[0].prompt.line:,}–{group[-1].last_line:,} · {_count(len(group), 'prompt')}{calls}",
        range=_range(group[0].prompt.line, group[-1].last_line, length),
        selection_range=_line(group[0].prompt.line, length),
    )


def _range(first: int, last: int, length: LineLength) -> types.Range:
    """Lines `first`..`last` (1-based), whole."""
    return types.Range(types.Position(first - 1, 0), types.Position(last - 1, length(last - 1)))


def _line(line: int, length: LineLength) -> types.Range:
    return _range(line, line, length)


def call_name(c: Call) -> str:
    mark = PAIRED if c.paired else UNPAIRED
    return redact(f"{c.summary} {mark}")


def _call_symbol(c: Call, length: LineLength, api: str) -> types.DocumentSymbol:
    result = "output" if api == "responses" else "result"  # each API's own word for the answer
    if c.paired:
        detail = f"{c.tool_id} · {result} line {c.results[0].line}"
    elif not c.results:
        detail = f"{c.tool_id} · no {result}"
    else:
        detail = f"{c.tool_id} · {len(c.results)} {result}s"
    last = max([c.use.line, *(r.line for r in c.results)])
    return types.DocumentSymbol(
        name=call_name(c), kind=types.SymbolKind.Function, detail=redact(detail),
        range=_range(c.use.line, last, length), selection_range=_line(c.use.line, length),
    )


def _turn_symbol(t: Turn, length: LineLength, api: str) -> types.DocumentSymbol:
    children = [
        types.DocumentSymbol(name=redact(r.text), kind=types.SymbolKind.String, detail="reply",
                             range=_line(r.line, length), selection_range=_line(r.line, length))
        for r in t.replies
    ]
    children.extend(_call_symbol(c, length, api) for c in t.calls)
    children.sort(key=lambda s: (s.selection_range.start.line, s.kind))
    when = f" · {t.timestamp}" if t.timestamp else ""
    # A rollout's calls are named by call_id; it has no `messages.N` to show.
    detail = (t.timestamp or "") if api == "responses" else f"messages.{t.message}{when}"
    return types.DocumentSymbol(
        name=redact(t.text), kind=types.SymbolKind.Event, detail=detail,
        range=_range(t.prompt.line, t.last_line, length), selection_range=_line(t.prompt.line, length),
        children=children or None,
    )


def document_symbols(m: TranscriptMap, length: LineLength) -> list[types.DocumentSymbol]:
    groups, turns = shown_turns(m.turns)
    symbols = [_group_symbol(g, 1 + k * len(groups[0]), length) for k, g in enumerate(groups)]
    symbols.extend(_turn_symbol(t, length, m.api) for t in turns)
    symbols.extend(
        types.DocumentSymbol(name="compaction", kind=types.SymbolKind.Namespace, detail=f"line {line}",
                             range=_line(line, length), selection_range=_line(line, length))
        for line in m.boundaries
    )
    symbols.extend(
        types.DocumentSymbol(name=redact(s.label), kind=types.SymbolKind.Module,
                             detail=f"lines {s.first_line}–{s.last_line}",
                             range=_range(s.first_line, s.last_line, length),
                             selection_range=_line(s.first_line, length))
        for s in m.stretches
    )
    symbols.sort(key=lambda s: s.range.start.line)
    return symbols


def folding_ranges(m: TranscriptMap) -> list[types.FoldingRange]:
    out: list[types.FoldingRange] = []

    def fold(first: int, last: int, kind: str | None = None) -> None:
        if last > first:
            out.append(types.FoldingRange(start_line=first - 1, end_line=last - 1, kind=kind))

    groups, turns = shown_turns(m.turns)
    for g in groups:
        fold(g[0].prompt.line, g[-1].last_line, types.FoldingRangeKind.Region)
    for t in turns:
        fold(t.prompt.line, t.last_line)
        for c in t.calls:
            fold(c.use.line, max([c.use.line, *(r.line for r in c.results)]))
    for s in m.stretches:
        fold(s.first_line, s.last_line, types.FoldingRangeKind.Region)
    out.sort(key=lambda f: (f.start_line, -f.end_line))
    return out


def workspace_symbols(query: str, maps: Iterable[tuple[str, TranscriptMap]], limit: int = 500
                      ) -> list[types.WorkspaceSymbol]:
    """Prompts of the given sessions whose text holds `query` (case-insensitive; all for "")."""
    q = query.casefold()
    out: list[types.WorkspaceSymbol] = []
    for uri, m in maps:
        for t in m.turns:
            text = redact(t.text)  # matched as shown: a query finds no secret the name hides
            if q in text.casefold():
                out.append(types.WorkspaceSymbol(
                    name=text, kind=types.SymbolKind.Event,
                    location=types.Location(uri, types.Range(types.Position(t.prompt.line - 1, 0),
                                                             types.Position(t.prompt.line - 1, 0))),
                    container_name=uri.rsplit("/", 1)[-1],
                ))
                if len(out) >= limit:
                    return out
    return out
