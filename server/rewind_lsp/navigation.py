"""The transcript as a document: its turns, tool calls and their results, and the API's message
index of every line, from the same rebuilt conversations the checker judges.

`messages.N` here is the index the API names in its errors: the position in the live conversation's
message list (consecutive entries of one role merged, recorded API errors left out), counted from
the first message Claude Code's loader sends (`conversation.first_sent`). `messages.N.content.M` is
the M-th content block of that message, the blocks of its lines in order (a string content is one
block).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from .conversation import Conversation, api_positions
from .transcript import SERVER_TOOL_USES, TOOL_RESULT, TOOL_USE, Entry

LineFetcher = Callable[[int, int], bytes]

# The tools that run a subagent (its transcript: <session>/subagents/agent-<agentId>.jsonl).
SUBAGENT_TOOLS = frozenset({"Task", "Agent"})

# How much of a prompt names its turn, and of a tool's input its call.
PROMPT_WORDS = 60
INPUT_CHARS = 60


@dataclass(frozen=True, slots=True)
class Spot:
    """A content block of a line (`block` None: the line's string content, or the whole line)."""

    line: int
    block: int | None = None
    # What the block is, where the map knows it (a message's content): "tool_use", "text", …
    kind: str | None = field(default=None, compare=False)
    tool_id: str | None = field(default=None, compare=False)


@dataclass(slots=True)
class Call:
    tool_id: str
    kind: str  # tool_use | server_tool_use | mcp_tool_use
    name: str
    summary: str  # "Bash npm test", "Read app.py"
    use: Spot
    results: list[Spot] = field(default_factory=list)
    message: int | None = None  # API index of its assistant message; None off the live conversation
    scope: str = "main conversation"
    agent_id: str | None = None  # a Task/Agent call: the subagent its result names (toolUseResult.agentId)

    @property
    def paired(self) -> bool:
        return len(self.results) == 1


@dataclass(frozen=True, slots=True)
class Reply:
    line: int
    text: str  # its first words


@dataclass(slots=True)
class Turn:
    """A prompt of the live conversation and everything up to the next one."""

    prompt: Spot
    text: str
    message: int
    timestamp: str | None
    last_line: int
    calls: list[Call] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)  # assistant text, line by line


@dataclass(frozen=True, slots=True)
class Stretch:
    """Lines off the live conversation, shown as one group: a rewound branch, a subagent run, or
    history before a compaction."""

    label: str
    first_line: int
    last_line: int


@dataclass(slots=True)
class TranscriptMap:
    turns: list[Turn]
    calls: list[Call]  # every conversation's, live first
    message_lines: list[list[int]]  # API index -> the lines of that message, in order
    content: list[list[Spot]]  # API index -> its content blocks, as the API counts them
    message_of: dict[int, int]  # line -> API index (live conversation only)
    boundaries: list[int]  # lines of compaction boundaries
    stretches: list[Stretch]
    total_messages: int
    # "messages": a Claude Code transcript (the Messages API's view, `messages.N`); "responses": a
    # Codex rollout (codex_map), whose calls the API names by call_id and whose map has no `messages.N`.
    api: str = "messages"

    def block_path(self, spot: Spot) -> list[str | int] | None:
        """Where a call's half is inside its line's JSON, for `locate.span` (None: the whole line)."""
        if spot.block is None:
            return None
        return ["payload"] if self.api == "responses" else ["message", "content", spot.block]

    def call_at(self, spot: Spot) -> Call | None:
        """The call whose tool_use or result is this block (or, `block` None, on this line)."""
        for c in self.calls_on(spot.line):
            places = [c.use, *c.results]
            if any(p.line == spot.line and (spot.block is None or p.block == spot.block) for p in places):
                return c
        return None

    def calls_on(self, line: int) -> list[Call]:
        """The calls with a half on this line."""
        index = self._line_index
        if index is None:
            index = {}
            for c in self.calls:
                for p in (c.use, *c.results):
                    index.setdefault(p.line, []).append(c)
            self._line_index = index
        return index.get(line, [])

    _line_index: dict[int, list[Call]] | None = None

    def line_of(self, message: int, content: int | None = None) -> Spot | None:
        """Where `messages.N[.content.M]` is in the file; None when the conversation has no such place."""
        if not 0 <= message < len(self.content):
            return None
        if content is None:
            return Spot(self.message_lines[message][0])
        blocks = self.content[message]
        return blocks[content] if 0 <= content < len(blocks) else None


class _Line(msgspec.Struct):
    message: _Msg | None = None
    timestamp: str | None = None
    toolUseResult: msgspec.Raw = msgspec.Raw(b"null")  # any shape (text, list, object); read for subagents


class _ToolUseResult(msgspec.Struct):
    agentId: str | None = None


class _Msg(msgspec.Struct):
    content: str | list[_Part] | None = None


class _Part(msgspec.Struct):
    type: str = ""
    text: str | None = None
    name: str | None = None
    input: dict[str, object] | None = None


_decode = msgspec.json.Decoder(_Line).decode


_decode_result = msgspec.json.Decoder(_ToolUseResult).decode


def _agent_id(raw: msgspec.Raw) -> str | None:
    try:
        return _decode_result(raw).agentId
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _read(fetch: LineFetcher, e: Entry) -> _Line:
    try:
        return _decode(fetch(e.offset, e.length))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _Line()


def words(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, its whitespace collapsed (… when cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prompt_text(line: _Line) -> str:
    content = line.message.content if line.message else None
    if isinstance(content, list):
        content = " ".join(p.text or "" for p in content if p.type == "text")
    return words(content or "", PROMPT_WORDS) or "(empty prompt)"


# The input field that says what a call does, per tool; others show their first short string.
_KEY_INPUT = {
    "Bash": "command", "Read": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "Write": "file_path",
    "NotebookEdit": "notebook_path", "Grep": "pattern", "Glob": "pattern", "Task": "description",
    "Agent": "description", "WebFetch": "url", "WebSearch": "query", "TodoWrite": "",
}


def _summary(part: _Part) -> str:
    return tool_summary(part.name or "(unnamed tool)", part.input or {})


def tool_summary(name: str, inp: dict[str, object]) -> str:
    """`Bash npm test`, `Read app.py`: the tool and the input that says what the call does."""
    key = _KEY_INPUT.get(name)
    value = inp.get(key) if key else next((v for v in inp.values() if isinstance(v, str)), None)
    if key in ("file_path", "notebook_path") and isinstance(value, str):
        value = value.rsplit("/", 1)[-1]
    return f"{name} {words(value, INPUT_CHARS)}" if isinstance(value, str) and value else name


def _calls(conv: Conversation, fetch: LineFetcher, msg_index: dict[int, int] | None) -> list[Call]:
    calls: dict[str, Call] = {}
    ordered: list[Call] = []
    for e in conv.order:
        if not e.is_message:
            continue
        blocks = e.blocks
        if e.type == "assistant" and any(b.kind == TOOL_USE or b.kind in SERVER_TOOL_USES for b in blocks):
            parts = (_read(fetch, e).message or _Msg()).content
            for b in blocks:
                if not (b.kind == TOOL_USE or b.kind in SERVER_TOOL_USES) or not b.tool_id:
                    continue
                part = parts[b.index] if isinstance(parts, list) and b.index < len(parts) else _Part()
                call = Call(b.tool_id, b.kind, part.name or "(unnamed tool)", _summary(part), Spot(e.line, b.index),
                            message=msg_index.get(id(e)) if msg_index is not None else None, scope=conv.label)
                if b.tool_id not in calls:
                    calls[b.tool_id] = call
                ordered.append(call)
        for b in blocks:
            if b.tool_id and (b.kind == TOOL_RESULT or b.kind.endswith("_tool_result")):
                known = calls.get(b.tool_id)
                if known is not None:
                    known.results.append(Spot(e.line, b.index))
                    if known.name in SUBAGENT_TOOLS and known.agent_id is None:
                        known.agent_id = _agent_id(_read(fetch, e).toolUseResult)
    return ordered


def build(conversations: Sequence[Conversation], fetch: LineFetcher, boundaries: Sequence[Entry] = ()) -> TranscriptMap:
    """The map of a transcript whose rebuilt conversations are `conversations` (`check.analyze`'s)."""
    # A subagent's own file holds no main conversation: its sidechain is the one the document is about.
    main = next((c for c in conversations if c.kind == "main"), None) or \
        next((c for c in conversations if c.kind == "sidechain"), None)
    message_lines: list[list[int]] = []
    content: list[list[Spot]] = []
    message_of: dict[int, int] = {}
    msg_index: dict[int, int] = {}
    turns: list[Turn] = []
    calls: list[Call] = []
    total = 0
    if main is not None:
        msg_index = api_positions(main)
        by_index: dict[int, list[Entry]] = {}
        for e in main.order:
            n = msg_index.get(id(e))
            if n is not None:
                by_index.setdefault(n, []).append(e)
        total = max(by_index, default=-1) + 1
        for n in range(total):
            entries = sorted(by_index.get(n, ()), key=lambda x: x.line)
            lines: list[int] = []
            blocks: list[Spot] = []
            for e in entries:
                message_of[e.line] = n
                if not lines or lines[-1] != e.line:
                    lines.append(e.line)
                if e.text_content or not e.blocks:
                    blocks.append(Spot(e.line, None, "text"))
                else:
                    blocks.extend(Spot(e.line, b.index, b.kind, b.tool_id) for b in e.blocks)
            message_lines.append(lines)
            content.append(blocks)
        calls = _calls(main, fetch, msg_index)
        turns = _turns(main, fetch, msg_index, calls)
    # Another conversation shares the lines before its fork with the live one (a rewound branch, the
    # chain a newer leaf left behind): a call on those lines is the live one's, listed once.
    seen = {(c.use.line, c.use.block) for c in calls}
    for conv in conversations:
        if conv is not main:
            for c in _calls(conv, fetch, None):
                if (c.use.line, c.use.block) not in seen:
                    seen.add((c.use.line, c.use.block))
                    calls.append(c)
    stretches = [
        Stretch(c.label, min(e.line for e in c.order), max(e.line for e in c.order))
        for c in conversations if c is not main and c.order
    ]
    stretches.sort(key=lambda s: s.first_line)
    return TranscriptMap(turns, calls, message_lines, content, message_of, sorted(e.line for e in boundaries),
                         stretches, total)


def _turns(main: Conversation, fetch: LineFetcher, msg_index: dict[int, int], calls: list[Call]) -> list[Turn]:
    turns: list[Turn] = []
    by_line: dict[int, list[Call]] = {}
    for c in calls:
        by_line.setdefault(c.use.line, []).append(c)
    current: Turn | None = None
    seen_calls: set[int] = set()
    for e in main.order:
        n = msg_index.get(id(e))
        if n is None:
            continue
        if e.type == "user" and e.is_message and not e.has_tool_result:
            if current is not None and current.message == n:  # a second line of the same prompt message
                current.last_line = max(current.last_line, e.line)
                continue
            line = _read(fetch, e)
            current = Turn(Spot(e.line), _prompt_text(line), n, line.timestamp, e.line)
            turns.append(current)
            continue
        if current is None:
            continue
        current.last_line = max(current.last_line, e.line)
        if e.type == "assistant":
            if any(b.kind == "other" for b in e.blocks) or e.text_content:
                said = _prompt_text(_read(fetch, e))
                if said != "(empty prompt)":  # thinking or another non-text block only
                    current.replies.append(Reply(e.line, said))
            for c in by_line.get(e.line, ()):
                if id(c) not in seen_calls:
                    seen_calls.add(id(c))
                    current.calls.append(c)
    return turns


_REF = re.compile(r"messages\.(\d{1,9})(?:\.content\.(\d{1,9}))?")


def parse_ref(text: str) -> tuple[int, int | None] | None:
    """`messages.N` or `messages.N.content.M` (as the API writes them), else None."""
    m = _REF.fullmatch(text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else None
