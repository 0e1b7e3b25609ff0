"""Read a Claude Code transcript (JSONL) into compact entries, streaming and tolerant.

Only the fields the validator needs are decoded; everything else on a line (tool inputs,
tool outputs, usage) is skipped by msgspec without building Python objects. A line whose
shape drifts from the typed fast path is decoded again with the standard library and read
field by field, so unknown fields, unknown entry types and wrong types never stop a check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgspec

# Entry types that are part of what the API is sent. `attachment` and `system` entries are
# messages too, but they never carry tool blocks; the validator treats them as transparent.
MESSAGE_TYPES = frozenset({"user", "assistant"})

TOOL_USE = "tool_use"
TOOL_RESULT = "tool_result"
# Server-side tools (web search, code execution, MCP connector, advisor): their result is a
# `*_tool_result` block in the same assistant message, never a user tool_result.
SERVER_TOOL_USES = frozenset({"server_tool_use", "mcp_tool_use"})
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Block:
    """One content block, reduced to what pairing needs."""

    index: int
    kind: str  # tool_use | tool_result | server_tool_use | <x>_tool_result | other
    tool_id: str | None = None


@dataclass(slots=True, eq=False)
class Entry:
    """One transcript line, reduced to what the chain rebuild and the validator need."""

    line: int  # 1-based
    offset: int  # byte offset of the line in the file
    length: int  # bytes, without the newline
    type: str
    uuid: str | None = None
    parent: str | None = None
    logical_parent: str | None = None
    sidechain: bool = False
    agent_id: str | None = None
    session_id: str | None = None
    subtype: str | None = None
    message_id: str | None = None
    role: str | None = None
    model: str | None = None
    version: str | None = None
    blocks: tuple[Block, ...] = ()
    text_content: bool = False  # message.content is a plain string
    api_error: bool = False  # synthetic entry (isApiErrorMessage), never sent to the API
    source_tool_assistant: str | None = None

    @property
    def is_message(self) -> bool:
        return self.type in MESSAGE_TYPES and not self.api_error

    @property
    def has_tool_result(self) -> bool:
        return any(b.kind == TOOL_RESULT for b in self.blocks)

    @property
    def is_compact_boundary(self) -> bool:
        return self.type == "system" and self.subtype == "compact_boundary"


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a JSON object: reported as malformed-line, the check goes on."""

    line: int
    offset: int
    column: int  # 1-based character column where decoding failed
    reason: str


@dataclass(slots=True)
class Transcript:
    entries: list[Entry]
    bad_lines: list[BadLine]
    torn_tail: bool  # the last line has no newline and does not decode: a writer mid-write
    size: int  # bytes read


# --- the typed fast path -------------------------------------------------------------------


class _Block(msgspec.Struct):
    type: str | None = None
    id: str | None = None
    tool_use_id: str | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    role: str | None = None
    model: str | None = None
    content: str | list[_Block] | None = None


class _Line(msgspec.Struct, rename={
    "parent": "parentUuid",
    "logical_parent": "logicalParentUuid",
    "sidechain": "isSidechain",
    "agent_id": "agentId",
    "session_id": "sessionId",
    "api_error": "isApiErrorMessage",
    "source_tool_assistant": "sourceToolAssistantUUID",
}):
    type: str | None = None
    uuid: str | None = None
    parent: str | None = None
    logical_parent: str | None = None
    sidechain: bool | None = None
    agent_id: str | None = None
    session_id: str | None = None
    subtype: str | None = None
    version: str | None = None
    api_error: bool | None = None
    source_tool_assistant: str | None = None
    message: _Message | None = None


_decode_fast = msgspec.json.Decoder(_Line).decode


def _block_kind(block_type: str | None) -> str:
    if block_type in (TOOL_USE, TOOL_RESULT) or block_type in SERVER_TOOL_USES:
        return block_type
    if block_type and block_type.endswith("_tool_result"):
        return block_type
    return OTHER


def _from_fast(line: int, offset: int, length: int, d: _Line) -> Entry:
    m = d.message
    blocks: tuple[Block, ...] = ()
    text_content = False
    message_id = role = model = None
    if m is not None:
        message_id, role, model = m.id, m.role, m.model
        if isinstance(m.content, list):
            blocks = tuple(
                Block(i, kind, b.id if kind == TOOL_USE or kind in SERVER_TOOL_USES else b.tool_use_id)
                for i, b in enumerate(m.content)
                for kind in (_block_kind(b.type),)
            )
        elif isinstance(m.content, str):
            text_content = True
    return Entry(
        line=line,
        offset=offset,
        length=length,
        type=d.type or "",
        uuid=d.uuid,
        parent=d.parent,
        logical_parent=d.logical_parent,
        sidechain=bool(d.sidechain),
        agent_id=d.agent_id,
        session_id=d.session_id,
        subtype=d.subtype,
        message_id=message_id,
        role=role,
        model=model,
        version=d.version,
        blocks=blocks,
        text_content=text_content,
        api_error=bool(d.api_error),
        source_tool_assistant=d.source_tool_assistant,
    )


# --- the tolerant slow path -----------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _from_any(line: int, offset: int, length: int, d: dict[str, Any]) -> Entry:
    m = d.get("message")
    blocks: list[Block] = []
    text_content = False
    message_id = role = model = None
    if isinstance(m, dict):
        message_id, role, model = _str(m.get("id")), _str(m.get("role")), _str(m.get("model"))
        content = m.get("content")
        if isinstance(content, list):
            for i, b in enumerate(content):
                if not isinstance(b, dict):
                    blocks.append(Block(i, OTHER))
                    continue
                kind = _block_kind(_str(b.get("type")))
                key = "id" if kind == TOOL_USE or kind in SERVER_TOOL_USES else "tool_use_id"
                blocks.append(Block(i, kind, _str(b.get(key)) if kind != OTHER else None))
        elif isinstance(content, str):
            text_content = True
    return Entry(
        line=line,
        offset=offset,
        length=length,
        type=_str(d.get("type")) or "",
        uuid=_str(d.get("uuid")),
        parent=_str(d.get("parentUuid")),
        logical_parent=_str(d.get("logicalParentUuid")),
        sidechain=d.get("isSidechain") is True,
        agent_id=_str(d.get("agentId")),
        session_id=_str(d.get("sessionId")),
        subtype=_str(d.get("subtype")),
        message_id=message_id,
        role=role,
        model=model,
        version=_str(d.get("version")),
        blocks=tuple(blocks),
        text_content=text_content,
        api_error=d.get("isApiErrorMessage") is True,
        source_tool_assistant=_str(d.get("sourceToolAssistantUUID")),
    )


def parse_line(line: int, offset: int, raw: bytes) -> Entry | BadLine:
    """Decode one line (without its newline)."""
    try:
        return _from_fast(line, offset, len(raw), _decode_fast(raw))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        # msgspec raises UnicodeDecodeError on invalid UTF-8 inside a decoded string and
        # RecursionError on deep nesting: neither may stop the check.
        pass
    # Claude Code reads its transcripts as UTF-8 with replacement characters: a stray invalid
    # byte (in a tool's output, say) does not drop the line, so it must not drop it here either.
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(line, offset, exc.colno, f"not valid JSON ({exc.msg})")
    except RecursionError:
        return BadLine(line, offset, 1, "JSON nested too deeply to read")
    if not isinstance(data, dict):
        return BadLine(line, offset, 1, f"a JSON {type(data).__name__}, not an entry object")
    return _from_any(line, offset, len(raw), data)


def iter_lines(stream: BinaryIO, start_offset: int = 0, start_line: int = 1) -> Iterator[tuple[int, int, bytes, bool]]:
    """Yield (line number, byte offset, bytes without newline, ended-with-newline)."""
    offset, line = start_offset, start_line
    for raw in stream:
        ended = raw.endswith(b"\n")
        body = raw[:-1] if ended else raw
        if body.endswith(b"\r"):
            body = body[:-1]
        yield line, offset, body, ended
        offset += len(raw)
        line += 1


def read_entries(lines: Iterable[tuple[int, int, bytes, bool]]) -> tuple[list[Entry], list[BadLine], bool]:
    entries: list[Entry] = []
    bad: list[BadLine] = []
    torn = False
    for line, offset, body, ended in lines:
        if not body.strip():
            continue
        parsed = parse_line(line, offset, body)
        if isinstance(parsed, Entry):
            entries.append(parsed)
        elif ended:
            bad.append(parsed)
        else:
            torn = True  # the last line is still being written
    return entries, bad, torn


def read_transcript(path: str) -> Transcript:
    with open(path, "rb") as f:
        entries, bad, torn = read_entries(iter_lines(f))
        size = f.tell()
    return Transcript(entries, bad, torn, size)


def read_transcript_bytes(data: bytes) -> Transcript:
    import io

    entries, bad, torn = read_entries(iter_lines(io.BytesIO(data)))
    return Transcript(entries, bad, torn, len(data))
