"""Follow a `/fork` pointer into the parent session, as Claude Code does when it reads the fork.

Since 2.1.118 `/fork` writes one `fork-context-ref` line (`forkedSessionId`, `upToMessageId`)
instead of a copy of the parent conversation, and hydrates the parent's chain up to that message
on read. The fork's first lines answer what the parent's last message asked, so the checker
alone (one file) can only call them information. With the parent file at hand, that answer is
checked against the parent's chain, and each `messages.N` counts the parent's messages too.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from .conversation import chain_to, rebuild
from .findings import Finding, Severity, line_position
from .transcript import SERVER_TOOL_USES, TOOL_RESULT, TOOL_USE, read_transcript

if TYPE_CHECKING:
    from .rules import RuleSet

# A session id names a file: only this shape is looked up (no path separators, no `..`).
_SESSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")
_MARK = b'"fork-context-ref"'
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Pointer:
    session_id: str
    up_to: str
    line: int


@dataclass(frozen=True, slots=True)
class Parent:
    """The part of the parent session a fork continues: where, how many API messages, and the
    tool calls its last assistant message made (what the fork's first results may answer)."""

    path: Path
    messages: int
    last_role: str | None
    last_uses: frozenset[str]
    last_line: int


class _Ref(msgspec.Struct):
    type: str = ""
    forkedSessionId: str | None = None  # the file's own key names
    upToMessageId: str | None = None


_decode_ref = msgspec.json.Decoder(_Ref).decode


def pointer(path: str) -> Pointer | None:
    """The file's `fork-context-ref` line (the last one, if a tool wrote several). Chunks without
    the marker are only counted for newlines: a file that is no fork costs one read in C."""
    found: Pointer | None = None
    line, rest = 1, b""
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                whole, rest = data[:cut], data[cut:]
                if _MARK in whole:
                    for raw in whole.split(b"\n")[:-1]:
                        if _MARK in raw:
                            found = _parsed(raw, line) or found
                        line += 1
                else:
                    line += whole.count(b"\n")
            if rest and _MARK in rest:
                found = _parsed(rest, line) or found
    except OSError:
        return None
    return found


def _parsed(raw: bytes, line: int) -> Pointer | None:
    try:
        ref = _decode_ref(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if ref.type != "fork-context-ref" or not ref.forkedSessionId or not ref.upToMessageId:
        return None
    if not _SESSION_ID.fullmatch(ref.forkedSessionId):
        return None
    return Pointer(ref.forkedSessionId, ref.upToMessageId, line)


def parent_file(path: str, session_id: str, projects: Path | None = None) -> Path | None:
    """`<session_id>.jsonl` beside the fork at `path`, else in another project folder (since 2.1.221
    a fork gets a worktree, so a project folder, of its own)."""
    if not _SESSION_ID.fullmatch(session_id):
        return None
    name = f"{session_id}.jsonl"
    here = Path(path).parent
    beside = here / name
    if _regular(beside):
        return beside
    root = projects if projects is not None else here.parent
    try:
        folders = sorted(os.scandir(root), key=lambda d: d.name)
    except OSError:
        return None
    for d in folders:
        candidate = Path(d.path) / name
        if d.is_dir(follow_symlinks=False) and _regular(candidate):
            return candidate
    return None


def _regular(p: Path) -> bool:
    """A regular file itself: a symlink named like a session is not followed out of the folder."""
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def parent_part(parent: Path, up_to: str) -> Parent | None:
    """What Claude Code hydrates from `parent` for a pointer that reads up to `up_to`."""
    try:
        transcript = read_transcript(str(parent))
    except OSError:
        return None
    conv = chain_to(transcript.entries, up_to)
    if conv is None or not conv.messages:
        return None
    last = conv.messages[-1]
    uses: frozenset[str] = frozenset()
    if last.role == "assistant":
        uses = frozenset(
            b.tool_id for e in last.entries for b in e.blocks
            if b.tool_id and (b.kind == TOOL_USE or b.kind in SERVER_TOOL_USES)
        )
    return Parent(parent, len(conv.messages), last.role, uses, last.entries[-1].line)


@dataclass(frozen=True, slots=True)
class _First:
    role: str
    results: frozenset[str]
    line: int
    text: str


def _first_message(path: str) -> _First | None:
    """The fork's own first API message: its role, the tool_use ids it answers, its first line."""
    transcript = read_transcript(path)
    main = next((c for c in rebuild(transcript.entries, history=False) if c.kind == "main"), None)
    if main is None or not main.messages:
        return None
    msg = main.messages[0]
    first = msg.entries[0]
    results = frozenset(b.tool_id for e in msg.entries for b in e.blocks if b.kind == TOOL_RESULT and b.tool_id)
    with open(path, "rb") as f:
        f.seek(first.offset)
        text = f.read(first.length).decode("utf-8", errors="replace")
    return _First(msg.role, results, first.line, text)


def follow(path: str, findings: list[Finding], rules: RuleSet | None = None,
           projects: Path | None = None, where: str | None = None) -> list[Finding]:
    """The findings of a forked transcript with its parent taken into account: a first result that
    answers the parent's last tool call is no finding; one that answers nothing there is the error it
    is; `messages.N` counts from the start of the hydrated conversation. A file that is no fork, or
    whose parent cannot be read, keeps its findings (their notes say why). `path` is read; `where`
    (default `path`) is where the session lives, for finding its parent."""
    if not any("forked" in f.facts or "fork" in f.facts for f in findings):
        return findings  # no fork, or one whose live conversation no longer reaches the parent
    ref = pointer(path)
    if ref is None:
        return findings
    parent = parent_file(where or path, ref.session_id, projects)
    part = parent_part(parent, ref.up_to) if parent is not None else None
    if part is None:
        note = (f"; the parent session {ref.session_id} is not on this machine" if parent is None else
                f"; the parent session's file {parent} has no line {ref.up_to}")
        return [replace(f, message=f.message + note) if f.facts.get("fork") == "parent" else f for f in findings]
    first = _first_message(path)
    offset = part.messages
    if part.last_role == "user" and first is not None and first.role == "user":
        offset -= 1  # the fork's first user message merges with the parent's last, as the API merges them
    rule = rules.get("orphan-tool-result") if rules is not None else None
    severity = rule.severity if rule is not None else Severity.ERROR
    out: list[Finding] = []
    if first is not None and first.role == "user":
        use_rule = rules.get("orphan-tool-use") if rules is not None else None
        for tid in sorted(part.last_uses - first.results):
            at = line_position(first.line, first.text, 0)
            out.append(Finding(
                "orphan-tool-use", use_rule.severity if use_rule is not None else Severity.ERROR,
                f"tool_use {tid} ends the conversation this session was forked from ({part.path.name}, line "
                f"{part.last_line}) and has no tool_result in this session's first message",
                at, line_position(first.line, first.text, len(first.text)), tid,
                facts={"messages_index": str(part.messages - 1), "fork": "unanswered"},
            ))
    for f in findings:
        facts = dict(f.facts)
        n = facts.get("messages_index")
        if n is not None and "recorded_400" not in facts:  # a recorded 400's index is the API's own
            facts["messages_index"] = str(int(n) + offset)
        facts.pop("forked", None)
        if facts.pop("fork", None) == "parent":
            if f.tool_use_id and f.tool_use_id in part.last_uses:
                continue  # answered in the parent, as the API sees the hydrated conversation
            f = replace(f, severity=severity, message=(
                f"tool_result for {f.tool_use_id or '(no id)'} answers no tool_use: the conversation this "
                f"session was forked from ({part.path.name}, up to line {part.last_line}) does not end with "
                "a tool_use with this id"))
            facts["fork"] = "unanswered"
        out.append(replace(f, facts=facts))
    return sorted(out, key=lambda f: f.sort_key)


def answered_in_parent(path: str, where: str) -> frozenset[str] | None:
    """The tool calls of the parent's last message, which the fork's first results may answer; None
    when `path` is no fork or its parent cannot be read (then the fork's file alone is the judge)."""
    ref = pointer(path)
    parent = parent_file(where, ref.session_id) if ref is not None else None
    part = parent_part(parent, ref.up_to) if ref is not None and parent is not None else None
    return part.last_uses if part is not None else None
