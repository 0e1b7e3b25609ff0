"""Codex CLI sessions ("rollouts"): read into the same entries and conversations as a Claude Code
transcript, so one validator (`validate`, with the Responses API's pairing rules) and one verdict
(`verdict`, exact places and severities) judge both.

A rollout is `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl`, one JSON object a line:
`{"timestamp", "type", "payload"}` with `type` one of `session_meta`, `response_item`, `turn_context`,
`event_msg`, `compacted`. What the model is sent are the `response_item` payloads, in file order;
a `compacted` line replaces everything before it. Early-2025 rollouts wrote the session meta bare on
the first line (`{"id", "timestamp", "instructions"}`) and the items bare after it (no wrapper);
both are read.

Each item becomes one Entry: `message` items by their role, a call (`function_call`,
`custom_tool_call`, `local_shell_call`) an assistant entry with one block of that kind whose id is
the `call_id`, an output (`function_call_output`, `custom_tool_call_output`) a user entry likewise.
Everything else (reasoning, web search, turn context, events) is a `system` entry that pairs nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .conversation import Conversation, Message
from .transcript import BadLine, Block, Entry, Transcript, is_truncated
from .verdict import TranscriptCheck, bytes_fetcher, conversation_findings

if TYPE_CHECKING:
    from .rules import RuleSet

ROLLOUT_TYPES = frozenset({"session_meta", "response_item", "turn_context", "event_msg", "compacted"})
# A call and the output kind that answers it (Codex's own normalizer pairs them the same way).
OUTPUT_OF = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
    "local_shell_call": "function_call_output",
}
OUTPUT_KINDS = frozenset(OUTPUT_OF.values())
# What Codex's normalizer (`ensure_call_outputs_present`) puts in for a call whose output is missing.
ABORTED_OUTPUT = "aborted"
HISTORY_LABEL = "history before a compaction"

# Codex sends these as `user` messages, but they are its own context, not something the user typed.
CONTEXT_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md instructions", "<INSTRUCTIONS>",
                    "<user_shell_command>", "<turn_aborted>")


def is_injected_context(text: str) -> bool:
    """Is a `user` message's text Codex's own context (environment, AGENTS.md), not a prompt?"""
    return text.lstrip().startswith(CONTEXT_PREFIXES)


def message_text(line: Any) -> str:
    """The text of a message item, from its decoded line (wrapped or bare); "" for anything else."""
    item = line.get("payload") if isinstance(line, dict) and isinstance(line.get("payload"), dict) else line
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return " ".join(c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str))


_ITEM_TYPES = frozenset({"message", "reasoning", "web_search_call", *OUTPUT_OF, *OUTPUT_KINDS})
# serde writes a RolloutLine's fields in this order: the first bytes say what the file is.
_HEAD = re.compile(
    rb'\A\s*\{\s*"timestamp"\s*:\s*"[^"\\]*"\s*,\s*"type"\s*:\s*"(?:session_meta|response_item|turn_context'
    rb'|event_msg|compacted)"\s*,\s*"payload"\s*:'
)
_FIRST_LINE_LIMIT = 1 << 20


def is_rollout_name(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith("rollout-") and name.endswith(".jsonl")


def is_rollout_head(head: bytes) -> bool:
    """Do the first bytes of a file (its first line, or the first MB of it) begin a Codex rollout?"""
    if _HEAD.match(head):
        return True
    first = head.split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return False
    try:
        d = json.loads(first.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return False
    if not isinstance(d, dict):
        return False
    kind = d.get("type")  # any JSON value: a list is unhashable
    if isinstance(kind, str) and kind in ROLLOUT_TYPES and isinstance(d.get("payload"), dict):
        return True
    # The early bare layout: a session meta with no `type` (every Claude Code line has one).
    return "type" not in d and isinstance(d.get("id"), str) and "timestamp" in d and (
        "instructions" in d or "git" in d)


def is_rollout_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return is_rollout_fd(f)
    except OSError:
        return False


def is_rollout_fd(f: Any) -> bool:
    """`is_rollout_file` for an open binary file; its position is put back at 0. A few KB decide it
    but for a first line longer than that (the hook checks every prompt: no MB read per prompt)."""
    f.seek(0)
    head = f.read(4096)
    if not _HEAD.match(head) and b"\n" not in head and len(head) == 4096:
        head += f.read(_FIRST_LINE_LIMIT - len(head))
    f.seek(0)
    return is_rollout_head(head)


class _Payload(msgspec.Struct, gc=False):
    type: str | None = None
    role: str | None = None
    call_id: str | None = None
    id: str | None = None


class _Line(msgspec.Struct, gc=False):
    timestamp: str | None = None
    type: str | None = None
    payload: _Payload | None = None
    # The bare layout's own fields (an item or the meta, unwrapped).
    role: str | None = None
    call_id: str | None = None
    id: str | None = None


_decode = msgspec.json.Decoder(_Line).decode


def _entry(d: _Line, bare: bool, first: bool) -> Entry:
    """The entry of one decoded line (without its place in the file)."""
    if not bare:
        kind, p = d.type, d.payload or _Payload()
        if kind == "session_meta":
            return Entry(type="system", subtype="session_meta", session_id=p.id, timestamp=d.timestamp)
        if kind == "compacted":
            return Entry(type="system", subtype="compact_boundary", timestamp=d.timestamp)
        if kind != "response_item":
            return Entry(type="system", subtype=kind or p.type, timestamp=d.timestamp)
        item, role, call_id, item_id = p.type, p.role, p.call_id, p.id
    else:
        if first and d.type is None and d.id is not None:
            return Entry(type="system", subtype="session_meta", session_id=d.id, timestamp=d.timestamp)
        item, role, call_id, item_id = d.type, d.role, d.call_id, d.id
    if item == "message":
        # `subtype` keeps the role: a `developer` message (instructions, environment) is no prompt.
        return Entry(type="assistant" if role == "assistant" else "user", subtype=role, timestamp=d.timestamp,
                     cached_blocks=())
    if item in OUTPUT_OF:
        # An old local_shell_call named its call by `id` only.
        return Entry(type="assistant", timestamp=d.timestamp, cached_blocks=(Block(0, item, call_id or item_id),))
    if item in OUTPUT_KINDS:
        return Entry(type="user", timestamp=d.timestamp, cached_blocks=(Block(0, item, call_id),))
    return Entry(type="system", subtype=item, timestamp=d.timestamp)


def read_rollout_bytes(data: bytes) -> Transcript:
    """The entries of a rollout, each placed at its line; lines that do not decode are bad lines, and a
    last line cut short (Codex mid-write) is a torn tail, as for a Claude Code transcript."""
    entries: list[Entry] = []
    bad: list[BadLine] = []
    torn = False
    bare = is_bare_layout(data)
    offset, line = 0, 1
    n = len(data)
    while offset < n:
        end = data.find(b"\n", offset)
        ended = end >= 0
        stop = end if ended else n
        body = data[offset:stop]
        length = len(body) - 1 if body.endswith(b"\r") else len(body)
        raw = body[:length]
        if raw.strip():
            d = _decoded(raw)
            if d is None:
                if not ended and is_truncated(raw):
                    torn = True
                else:
                    bad.append(BadLine(line, offset, 1, "not a JSON object"))
            else:
                e = _entry(d, bare, not entries)
                e.line, e.offset, e.length = line, offset, length
                entries.append(e)
        offset = stop + 1 if ended else n
        line += 1
    meta = next((e.session_id for e in entries if e.subtype == "session_meta" and e.session_id), None)
    for e in entries:
        e.session_id = meta
    return Transcript(entries, bad, torn, n)


def is_bare_layout(data: bytes) -> bool:
    """Is `data` (a rollout's bytes) the early bare layout (items without the `payload` wrapper)?"""
    return not _HEAD.match(data[:4096]) and not _wrapped_first_line(data)


def line_parser(bare: bool, first_line: int) -> Callable[[int, int, bytes], Entry | BadLine]:
    """How `read_rollout_bytes` reads one line of a rollout of that layout whose first entry is at
    `first_line` (a bare rollout's session meta is told by its place), as (line, offset, bytes) ->
    entry or bad line."""

    def parse(line: int, offset: int, raw: bytes) -> Entry | BadLine:
        d = _decoded(raw)
        if d is None:
            return BadLine(line, offset, 1, "not a JSON object")
        e = _entry(d, bare, line == first_line)
        e.line, e.offset, e.length = line, offset, len(raw)
        return e

    return parse


def _wrapped_first_line(data: bytes) -> bool:
    first = data[:_FIRST_LINE_LIMIT].split(b"\n", 1)[0]
    try:
        d = json.loads(first.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return False
    return isinstance(d, dict) and isinstance(d.get("type"), str) and d["type"] in ROLLOUT_TYPES and "payload" in d


def _decoded(raw: bytes) -> _Line | None:
    """A line's fields, by the typed fast path or else field by field; None when it is no JSON object."""
    try:
        return _decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _tolerant(raw)


def _tolerant(raw: bytes) -> _Line | None:
    """A line whose fields have other types than the fast path expects, read field by field."""
    try:
        d = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(d, dict):
        return None

    def s(v: Any) -> str | None:
        return v if isinstance(v, str) else None

    p = d.get("payload")
    payload = _Payload(s(p.get("type")), s(p.get("role")), s(p.get("call_id")), s(p.get("id"))) \
        if isinstance(p, dict) else None
    return _Line(s(d.get("timestamp")), s(d.get("type")), payload,
                 s(d.get("role")), s(d.get("call_id")), s(d.get("id")))


def rebuild_rollout(entries: Sequence[Entry]) -> list[Conversation]:
    """The conversation Codex sends on resume (every item after the last `compacted` line) and,
    when there was a compaction, the history before it. One message per item, as the Responses API
    takes them."""
    cut = max((k for k, e in enumerate(entries) if e.is_compact_boundary), default=-1)
    live = [e for e in entries[cut + 1:] if e.subtype != "session_meta"]
    convs = [_conversation("main", "main conversation", live)]
    if cut >= 0:
        convs.append(_conversation("history", HISTORY_LABEL, [e for e in entries[:cut] if e.subtype != "session_meta"]))
    return convs


def _conversation(kind: str, label: str, order: list[Entry]) -> Conversation:
    messages = [Message(e.type, [e]) for e in order if e.is_message]
    leaf = messages[-1].entries[0] if messages else None
    return Conversation(kind, messages, order, leaf, label, api="responses")


def session_meta_line(lines: Sequence[Entry]) -> Entry | None:
    return next((e for e in lines if e.subtype == "session_meta"), None)


def check_rollout_bytes(data: bytes, rules: RuleSet | None = None) -> TranscriptCheck:
    """The whole check of a rollout: read, rebuild, validate (the Responses API's rules), place.
    A rollout is read whole: Codex starts a new file per session and they stay far smaller than a
    long Claude Code transcript (the engine's segment-by-segment state is for those)."""
    transcript = read_rollout_bytes(data)
    conversations = rebuild_rollout(transcript.entries)
    return TranscriptCheck(transcript, conversations,
                           conversation_findings(conversations, transcript.bad_lines, bytes_fetcher(data), rules))


def check_rollout_file(path: str, rules: RuleSet | None = None) -> TranscriptCheck:
    with open(path, "rb") as f:
        return check_rollout_bytes(f.read(), rules)
