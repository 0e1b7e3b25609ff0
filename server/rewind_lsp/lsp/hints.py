"""The API's view on every line (inlay hints) and "rewind to here" (code lenses).

A hint at the start of each line of the live conversation says which `messages.N` the API counts
it in; on a tool_use line it adds where the result is (`→ result line 812`) or that there is none.
Lines off the live conversation (rewound branches, history) get none.
"""

from __future__ import annotations

from lsprotocol import types

from ..navigation import Call, TranscriptMap
from ..redact import redact
from .outline import shown_turns

REPAIR_COMMAND = "rewind-lsp.repair"
REWIND_TO_COMMAND = "rewind-lsp.rewindTo"
REPAIR_TITLE = "Repair session (keeps everything)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _call_parts(calls: list[Call], line: int, answer: str) -> list[str]:
    """Where the answer of each call made on `line` is, in the API's word for it (result, output)."""
    parts: list[str] = []
    for c in calls:
        if c.use.line != line:
            continue
        if not c.results:
            parts.append(f"✗ {c.tool_id}: no {answer}")
        elif len(c.results) == 1:
            parts.append(f"→ {answer} line {c.results[0].line}")
        else:
            parts.append(f"✗ {c.tool_id}: {len(c.results)} {answer}s")
    return parts


def hint_label(m: TranscriptMap, line: int) -> str | None:
    """The hint of a 1-based line, or None off the live conversation. A Codex rollout's hint is on its
    call lines only: the Responses API names calls by call_id, not by messages.N."""
    if m.api == "responses":
        live = [c for c in m.calls_on(line) if c.scope == "main conversation"]
        return " ".join(_call_parts(live, line, "output")) or None
    n = m.message_of.get(line)
    if n is None:
        return None
    return " ".join([f"messages.{n}", *_call_parts(m.calls_on(line), line, "result")])


def inlay_hints(m: TranscriptMap, first: int, last: int) -> list[types.InlayHint]:
    """Hints for the 0-based lines `first`..`last` (the range the client asked for)."""
    out: list[types.InlayHint] = []
    for line in range(first + 1, last + 2):
        label = hint_label(m, line)
        if label is not None:
            out.append(types.InlayHint(position=types.Position(line - 1, 0), label=redact(label),
                                       padding_right=True))
    return out


def code_lenses(uri: str, m: TranscriptMap, drops: dict[int, int], broken: bool) -> list[types.CodeLens]:
    """`Rewind to here (drops N messages)` on each prompt `rewind --to` accepts (`drops`, from
    repair_plan.rewind_drops) among the turns the outline shows one by one (`outline.shown_turns`:
    the latest, past a few thousand); `Repair session (keeps everything)` once at the top of a broken
    file."""
    lenses: list[types.CodeLens] = []
    top = types.Range(types.Position(0, 0), types.Position(0, 0))
    if broken:
        lenses.append(types.CodeLens(top, types.Command(REPAIR_TITLE, REPAIR_COMMAND, arguments=[uri])))
    for t in shown_turns(m.turns)[1]:
        n = drops.get(t.prompt.line)
        if n is None:
            continue
        at = types.Range(types.Position(t.prompt.line - 1, 0), types.Position(t.prompt.line - 1, 0))
        lenses.append(types.CodeLens(at, types.Command(
            f"Rewind to here (drops {_plural(n, 'message')})", REWIND_TO_COMMAND, arguments=[uri, str(t.prompt.line)])))
    return lenses
