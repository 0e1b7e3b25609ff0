"""Read a Claude Code transcript (JSONL) into compact entries, streaming and tolerant.

Only the fields the validator needs are decoded; everything else on a line (tool inputs,
tool outputs, usage) is skipped by msgspec without building Python objects. A line whose
shape drifts from the typed fast path is decoded again with the standard library and read
field by field, so unknown fields, unknown entry types and wrong types never stop a check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple

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


class Block(NamedTuple):
    """One content block, reduced to what pairing needs (a tuple: built 7 k times per 100 MB)."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, never called here
    kind: str  # tool_use | tool_result | server_tool_use | <x>_tool_result | other
    tool_id: str | None = None


class BadLine(msgspec.Struct, frozen=True, gc=False):
    """A line that is not a JSON object: reported as malformed-line, the check goes on."""

    line: int
    offset: int
    column: int  # 1-based character column where decoding failed
    reason: str


class Transcript(msgspec.Struct):
    entries: list[Entry]
    bad_lines: list[BadLine]
    torn_tail: bool  # the last line has no newline and does not decode: a writer mid-write
    size: int  # bytes read


# --- the typed fast path -------------------------------------------------------------------


# gc=False (as Entry): strings only, no cycles; untracked objects are cheaper to build and free.
class _Block(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    tool_use_id: str | None = None


class _Message(msgspec.Struct, gc=False):  # strings and a list of _Block: no cycles either
    id: str | None = None
    role: str | None = None
    model: str | None = None
    content: str | list[_Block] | None = None


# Keys no transcript writes: fields filled after decoding (a line that has them anyway gets
# them overwritten, so they can never come from the file).
_UNREAD = "rewind-lsp-internal:"


class Entry(
    msgspec.Struct,
    eq=False,  # identity: the same line is the same entry
    gc=False,  # no cycles; the collector need not track a million of them
    rename={
        "line": _UNREAD + "line",
        "offset": _UNREAD + "offset",
        "length": _UNREAD + "length",
        "cached_blocks": _UNREAD + "blocks",
        "parent": "parentUuid",
        "logical_parent": "logicalParentUuid",
        "sidechain": "isSidechain",
        "agent_id": "agentId",
        "session_id": "sessionId",
        "api_error": "isApiErrorMessage",
        "source_tool_assistant": "sourceToolAssistantUUID",
    },
):
    """One transcript line, reduced to what the chain rebuild and the validator need.

    Decoded straight from the line by msgspec (fields it does not name are skipped unread);
    `line`, `offset` and `length` are set by the reader.
    """

    type: str = ""
    uuid: str | None = None
    parent: str | None = None
    logical_parent: str | None = None
    sidechain: bool = False
    agent_id: str | None = None
    session_id: str | None = None
    subtype: str | None = None
    version: str | None = None
    api_error: bool = False  # synthetic entry (isApiErrorMessage), never sent to the API
    source_tool_assistant: str | None = None
    timestamp: str | None = None  # ISO 8601 as Claude Code writes it: picks the leaf `--resume` takes
    message: _Message | None = None
    line: int = 0  # 1-based
    offset: int = 0  # byte offset of the line in the file
    length: int = 0  # bytes, without the newline
    cached_blocks: tuple[Block, ...] | None = None

    @property
    def message_id(self) -> str | None:
        m = self.message
        return None if m is None else m.id

    @property
    def role(self) -> str | None:
        m = self.message
        return None if m is None else m.role

    @property
    def model(self) -> str | None:
        m = self.message
        return None if m is None else m.model

    @property
    def text_content(self) -> bool:
        """message.content is a plain string."""
        m = self.message
        return m is not None and isinstance(m.content, str)

    @property
    def blocks(self) -> tuple[Block, ...]:
        cached = self.cached_blocks
        if cached is None:
            cached = self.cached_blocks = _blocks_of(self.message)
        return cached

    def blocks_once(self) -> tuple[Block, ...]:
        """`blocks`, not kept when not kept already: for a pass over lines no check will look at
        again (history's, when the check left history alone)."""
        cached = self.cached_blocks
        return cached if cached is not None else _blocks_of(self.message)

    @property
    def is_message(self) -> bool:
        return self.type in MESSAGE_TYPES and not self.api_error

    @property
    def has_tool_result(self) -> bool:
        for b in self.blocks:  # noqa: SIM110  # a loop, not any(genexpr): called for every user line
            if b.kind == TOOL_RESULT:
                return True
        return False

    @property
    def is_compact_boundary(self) -> bool:
        return self.type == "system" and self.subtype == "compact_boundary"


_decoder = msgspec.json.Decoder(Entry)
_decode_fast = _decoder.decode
_decode_lines = _decoder.decode_lines
_FAST_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def decode_block(buf: bytes, cut: int, line: int, offset: int) -> tuple[list[Entry], bool] | None:
    """The entries of `buf[:cut]` (whole lines, each ended by `\n`) in one msgspec call, located,
    and whether one of them is a compact_boundary line (see `Batch.boundary`).

    None unless every line provably decodes to exactly one entry, as line by line: then the
    caller reads the block line by line instead. Per line this saves the copy of a split, a
    Python-level call and its try block. `cut` instead of a slice: no copy of the block either.
    """
    if buf.find(b"\r", 0, cut) >= 0:
        return None  # CRLF or a stray CR: lengths need the per-line rules
    with memoryview(buf) as view, view[:cut] as block:
        try:
            decoded = _decode_lines(block)
        except _FAST_ERRORS:
            return None
    # decode_lines takes a newline as whitespace, so a value could span lines. It cannot when every
    # line starts with `{` and ends with `}`: `}` then `{` is never valid inside a value. So each
    # line holds whole values, at least one; as many values as lines makes it exactly one each.
    # (Counted by this loop: bytes.count costs as much as the loop itself.)
    find = buf.find
    share = sys.intern
    pos = 0
    boundary = False
    before: str | None = None  # the uuid of the line before
    for e in decoded:
        end = find(b"\n", pos, cut)
        if end < 0 or buf[pos] != 0x7B or buf[end - 1] != 0x7D:
            return None  # more values than lines, a blank line, or a line that may share a value
        e.line = line  # one store each: a 4-tuple assignment builds a tuple per line
        e.offset = offset + pos
        e.length = end - pos
        e.cached_blocks = None  # a line could name the internal key (see _UNREAD)
        if e.subtype == _COMPACT_BOUNDARY:
            boundary = True
        # Strings every line repeats, one object each: a million lines in 225 MB less, for 0.25 s.
        e.type = share(e.type)
        sid = e.session_id
        if sid is not None:
            e.session_id = share(sid)
        # Most lines continue from the line before: their parentUuid as that line's uuid object,
        # so the index's and the walk's look-ups of it compare pointers, not 36 characters.
        parent = e.parent
        if parent is not None and parent == before:
            e.parent = before
        before = e.uuid
        m = e.message
        if m is not None:
            role = m.role
            if role is not None:
                m.role = share(role)
        pos = end + 1
        line += 1
    return (decoded, boundary) if pos == cut else None  # fewer values than lines


_COMPACT_BOUNDARY = "compact_boundary"


def _share_strings(e: Entry) -> None:
    """What `decode_block` does inline: the strings every line repeats, one object each."""
    share = sys.intern
    e.type = share(e.type)
    if e.session_id is not None:
        e.session_id = share(e.session_id)
    m = e.message
    if m is not None and m.role is not None:
        m.role = share(m.role)


def _block_kind(block_type: str | None) -> str:
    if block_type in (TOOL_USE, TOOL_RESULT) or block_type in SERVER_TOOL_USES:
        return block_type
    if block_type and block_type.endswith("_tool_result"):
        return block_type
    return OTHER


_USE_KINDS = frozenset({TOOL_USE, *SERVER_TOOL_USES})
# Block type -> kind, filled as types are met (a handful in practice; bounded, since the types
# come from the file): one dict look-up per block instead of `_block_kind`'s tests.
_KIND_OF: dict[str | None, str] = {TOOL_USE: TOOL_USE, TOOL_RESULT: TOOL_RESULT, **{k: k for k in SERVER_TOOL_USES}}
_new_block = tuple.__new__  # Block(...) runs NamedTuple's Python-level __new__; this does not


# Text, thinking and image blocks, by place: one shared Block each (they are most blocks), and the
# usual content of one such block as one shared tuple.
_OTHER_AT = tuple(_new_block(Block, (i, OTHER, None)) for i in range(64))
_ONE_OTHER = (_OTHER_AT[0],)


def _blocks_of(m: _Message | None) -> tuple[Block, ...]:
    content = None if m is None else m.content
    if not isinstance(content, list) or not content:
        return ()
    kinds, uses = _KIND_OF, _USE_KINDS
    out = []
    for i, b in enumerate(content):
        t = b.type
        kind = kinds.get(t)
        if kind is None:
            kind = _block_kind(t)
            if len(kinds) < 256:
                kinds[t] = kind
        tool_id = b.id if kind in uses else b.tool_use_id
        if kind == OTHER and tool_id is None and i < 64:
            out.append(_OTHER_AT[i])
        else:
            out.append(_new_block(Block, (i, kind, tool_id)))
    if len(out) == 1 and out[0] is _OTHER_AT[0]:
        return _ONE_OTHER
    return tuple(out)


def _located(e: Entry, line: int, offset: int, length: int) -> Entry:
    e.line, e.offset, e.length, e.cached_blocks = line, offset, length, None
    return e


# --- the tolerant slow path -----------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _from_any(line: int, offset: int, length: int, d: dict[str, Any]) -> Entry:
    m = d.get("message")
    message = None
    if isinstance(m, dict):
        content = m.get("content")
        if isinstance(content, list):
            content = [
                _Block(_str(b.get("type")), _str(b.get("id")), _str(b.get("tool_use_id")))
                if isinstance(b, dict) else _Block()
                for b in content
            ]
        elif not isinstance(content, str):
            content = None
        message = _Message(_str(m.get("id")), _str(m.get("role")), _str(m.get("model")), content)
    return Entry(
        type=_str(d.get("type")) or "",
        uuid=_str(d.get("uuid")),
        parent=_str(d.get("parentUuid")),
        logical_parent=_str(d.get("logicalParentUuid")),
        sidechain=d.get("isSidechain") is True,
        agent_id=_str(d.get("agentId")),
        session_id=_str(d.get("sessionId")),
        subtype=_str(d.get("subtype")),
        version=_str(d.get("version")),
        api_error=d.get("isApiErrorMessage") is True,
        source_tool_assistant=_str(d.get("sourceToolAssistantUUID")),
        timestamp=_str(d.get("timestamp")),
        message=message,
        line=line,
        offset=offset,
        length=length,
    )


def parse_line(line: int, offset: int, raw: bytes) -> Entry | BadLine:
    """Decode one line (without its newline)."""
    try:
        return _located(_decode_fast(raw), line, offset, len(raw))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        # msgspec raises UnicodeDecodeError on invalid UTF-8 inside a decoded string and
        # RecursionError on deep nesting: neither may stop the check.
        pass
    # Claude Code reads its transcripts as UTF-8 with replacement characters: a stray invalid
    # byte (in a tool's output, say) does not drop the line, so it must not drop it here either.
    import json  # only for lines the typed path cannot read (json pulls in re)

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


def is_truncated(raw: bytes) -> bool:
    """True when `raw` reads as the start of a JSON value cut short: a line still being written.

    Anything else that does not decode (a CR-only file read as one line, say) is malformed,
    not torn: calling it torn would let a whole broken file check clean.
    """
    if not raw.lstrip().startswith(b"{"):
        return False  # every entry is an object: `f` may begin `false`, never an entry
    try:
        msgspec.json.decode(raw.decode("utf-8", errors="replace").encode())
    except msgspec.DecodeError as exc:
        return "truncated" in str(exc)
    except (RecursionError, ValueError):
        return False
    return False


_CHUNK = 1 << 20


class Batch(NamedTuple):
    """The whole lines of one chunk, decoded and located."""

    entries: list[Entry]
    bad: list[BadLine]
    line: int  # number of its first line
    offset: int  # byte offset of its first line
    end: int  # byte offset just past its last newline
    lines: int  # lines it holds, blank ones included
    chunk: bytes  # what was read: the batch is chunk[: end - offset]
    # Some entry is a compact_boundary line (main or sidechain; the type is not looked at). Told
    # while decoding, in the loop that locates each line: a search of the chunk's bytes for the
    # word cost ~7 % of a check (each `"` of the JSON is a candidate for that needle).
    boundary: bool


def parse_lines(buf: bytes, cut: int, line: int, offset: int) -> tuple[list[Entry], list[BadLine], int]:
    """The entries and bad lines of `buf[:cut]` (whole lines), line by line (the tolerant path), and
    the number of lines. Blank lines are counted and skipped. (`Batch.boundary` is asked of these
    entries by the caller: this path is the rare one.)"""
    entries: list[Entry] = []
    bad: list[BadLine] = []
    decode = _decode_fast
    lines = buf[:cut].split(b"\n")
    lines.pop()  # empty: the block ends with a newline
    for body in lines:
        n = len(body)
        length = n - 1 if body[-1:] == b"\r" else n
        parsed: Entry | BadLine | None
        if body[:1] == b"{":
            try:
                parsed = decode(body)  # msgspec takes a trailing CR as whitespace
                parsed.line, parsed.offset, parsed.length, parsed.cached_blocks = line, offset, length, None
                _share_strings(parsed)
            except _FAST_ERRORS:
                parsed = parse_line(line, offset, body[:length])
        else:
            parsed = parse_line(line, offset, body[:length]) if body.strip() else None
        offset += n + 1
        line += 1
        if isinstance(parsed, Entry):
            entries.append(parsed)
        elif parsed is not None:
            bad.append(parsed)
    return entries, bad, len(lines)


class LineReader:
    """The one chunk reader: every whole line from `offset` (numbered from `line`) up to `end`
    (-1: the end of the file), ~1 MB of whole lines at a time, as `Batch`es.

    A chunk is decoded in one msgspec call (`decode_block`) where that provably gives what line by
    line does, else line by line (`parse_lines`). `read(offset, n)` gives up to n bytes from offset.
    Each read starts at the first line not yet read: the part of a line a chunk cut is read again
    with the next one (cheaper than copying blocks and joining the pieces). After the batches,
    `rest` holds the bytes after the last newline (the torn tail, or the last line without a
    newline), for `parse_tail`; `offset` and `line` are where it starts.
    """

    def __init__(self, read: Callable[[int, int], bytes], offset: int = 0, line: int = 1, end: int = -1) -> None:
        self.read = read
        self.offset, self.line, self.end = offset, line, end
        self.rest = b""

    def __iter__(self) -> Iterator[Batch]:
        size = _CHUNK
        while True:
            want = size if self.end < 0 else min(size, self.end - self.offset)
            if want <= 0:
                return
            offset, line = self.offset, self.line
            chunk = self.read(offset, want)
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                if len(chunk) < size:
                    self.rest = chunk  # no newline before the end (of the file, or `end`)
                    return
                size *= 2  # a line longer than a chunk: read it whole next time
                continue
            size = _CHUNK
            decoded = decode_block(chunk, cut, line, offset)
            if decoded is None:
                entries, bad, count = parse_lines(chunk, cut, line, offset)
                boundary = any(e.subtype == _COMPACT_BOUNDARY for e in entries)
            else:
                (entries, boundary), bad = decoded, []
                count = len(entries)  # one entry per line
            self.offset, self.line = offset + cut, line + count
            yield Batch(entries, bad, line, offset, offset + cut, count, chunk, boundary)


def parse_tail(line: int, offset: int, rest: bytes) -> tuple[Entry | BadLine | None, bool]:
    """The last line of a file when it has no newline: (what it holds, whether it is torn).

    A torn line (the start of a JSON object cut short: a writer mid-line) holds nothing yet."""
    body = rest[:-1] if rest.endswith(b"\r") else rest
    if not body.strip():
        return None, False
    parsed = parse_line(line, offset, body)
    if isinstance(parsed, BadLine) and is_truncated(body):
        return None, True
    return parsed, False


def read_lines(read: Callable[[int, int], bytes]) -> Transcript:
    """Every line of a file, through `LineReader` and `parse_tail`."""
    entries: list[Entry] = []
    bad: list[BadLine] = []
    reader = LineReader(read)
    for batch in reader:
        entries.extend(batch.entries)
        if batch.bad:
            bad.extend(batch.bad)
    last, torn = parse_tail(reader.line, reader.offset, reader.rest)
    if isinstance(last, Entry):
        entries.append(last)
    elif last is not None:
        bad.append(last)
    return Transcript(entries, bad, torn, reader.offset + len(reader.rest))


def read_transcript(path: str) -> Transcript:
    with open(path, "rb") as f:

        def read(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        return read_lines(read)


def read_transcript_bytes(data: bytes) -> Transcript:
    return read_lines(lambda offset, n: data[offset : offset + n])
