"""A Codex rollout as a document: its turns (the user's prompts), the calls of each with their
outputs, the assistant's replies, and the history before a compaction, from the same rebuilt
conversations the checker judges (`codex.rebuild_rollout`).

The Responses API names a call by its `call_id`, not by a message index, so the map has no
`messages.N` (`TranscriptMap.api` is "responses"): hints say where a call's output is, and the
outline names each prompt by its words and time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from .codex import OUTPUT_KINDS, OUTPUT_OF, is_injected_context
from .conversation import Conversation
from .navigation import PROMPT_WORDS, Call, LineFetcher, Reply, Spot, Stretch, TranscriptMap, Turn, tool_summary, words
from .transcript import Entry

LOCAL_SHELL = "local_shell"


class _Content(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _Action(msgspec.Struct):
    command: list[str] | str | None = None


class _Item(msgspec.Struct):
    type: str | None = None
    role: str | None = None
    content: list[_Content] | str | None = None
    name: str | None = None
    arguments: str | None = None
    input: str | None = None
    action: _Action | None = None


class _RolloutLine(_Item):
    """A wrapped line (`payload` the item) or a bare one (the item itself)."""

    timestamp: str | None = None
    payload: _Item | None = None


_decode = msgspec.json.Decoder(_RolloutLine).decode


def _read(fetch: LineFetcher, e: Entry) -> tuple[_Item, str | None]:
    try:
        line = _decode(fetch(e.offset, e.length))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _Item(), e.timestamp
    return (line.payload if line.payload is not None else line), line.timestamp


def _text(item: _Item) -> str:
    content = item.content
    if isinstance(content, str):
        return content
    return " ".join(c.text or "" for c in content or () if c.text)


def _command(value: object) -> str | None:
    """A shell command as the user reads it: `["bash", "-lc", "npm test"]` is `npm test`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) >= 3 and value[-2] in ("-lc", "-c"):
            return str(value[-1])
        return " ".join(value)
    return None


def call_summary(item: _Item) -> tuple[str, str]:
    """The tool's name and what the call does: `shell ls`, `apply_patch *** Begin Patch`."""
    if item.type == "local_shell_call":
        cmd = _command(item.action.command if item.action else None)
        return LOCAL_SHELL, tool_summary(LOCAL_SHELL, {"command": cmd} if cmd else {})
    name = item.name or "(unnamed tool)"
    if item.type == "custom_tool_call":
        first = (item.input or "").strip().split("\n", 1)[0]
        return name, tool_summary(name, {"input": first} if first else {})
    try:
        args = json.loads(item.arguments) if item.arguments else {}
    except (ValueError, RecursionError):
        args = {}
    if not isinstance(args, dict):
        args = {}
    cmd = _command(args.get("command", args.get("cmd")))
    return name, tool_summary(name, {"command": cmd} if cmd else args)


def _calls(conv: Conversation, fetch: LineFetcher) -> list[Call]:
    calls: dict[str, Call] = {}
    ordered: list[Call] = []
    for e in conv.order:
        for b in e.blocks:
            if b.kind in OUTPUT_OF and b.tool_id:
                name, summary = call_summary(_read(fetch, e)[0])
                call = Call(b.tool_id, b.kind, name, summary, Spot(e.line, b.index), scope=conv.label)
                calls.setdefault(b.tool_id, call)
                ordered.append(call)
            elif b.kind in OUTPUT_KINDS and b.tool_id:
                known = calls.get(b.tool_id)
                if known is not None:
                    known.results.append(Spot(e.line, b.index))
    return ordered


def is_prompt(e: Entry, text: str) -> bool:
    return e.type == "user" and e.subtype == "user" and not is_injected_context(text)


def _turns(main: Conversation, fetch: LineFetcher, calls: list[Call]) -> list[Turn]:
    by_line = {c.use.line: c for c in calls}
    position = {id(m.entries[0]): n for n, m in enumerate(main.messages)}
    turns: list[Turn] = []
    current: Turn | None = None
    for e in main.order:
        if e.subtype in ("user", "assistant") and not e.blocks:
            item, when = _read(fetch, e)
            text = _text(item)
            if e.subtype == "user":
                if is_prompt(e, text):
                    current = Turn(Spot(e.line), words(text, PROMPT_WORDS) or "(empty prompt)",
                                   position.get(id(e), 0), when, e.line)
                    turns.append(current)
                continue
            if current is not None and text.strip():
                current.replies.append(Reply(e.line, words(text, PROMPT_WORDS)))
        if current is None:
            continue
        current.last_line = max(current.last_line, e.line)
        call = by_line.get(e.line)
        if call is not None and call.scope == main.label:
            current.calls.append(call)
    return turns


def build_rollout_map(conversations: Sequence[Conversation], fetch: LineFetcher,
                      boundaries: Sequence[Entry] = ()) -> TranscriptMap:
    """The map of a rollout whose rebuilt conversations are `conversations`."""
    main = next((c for c in conversations if c.kind == "main"), None)
    calls = _calls(main, fetch) if main is not None else []
    turns = _turns(main, fetch, calls) if main is not None else []
    for conv in conversations:
        if conv is not main:
            calls.extend(_calls(conv, fetch))
    stretches = sorted(
        (Stretch(c.label, min(e.line for e in c.order), max(e.line for e in c.order))
         for c in conversations if c is not main and c.order),
        key=lambda s: s.first_line)
    return TranscriptMap(turns, calls, [], [], {}, sorted(e.line for e in boundaries), stretches,
                         len(main.messages) if main is not None else 0, api="responses")
