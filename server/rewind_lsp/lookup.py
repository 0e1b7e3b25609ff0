"""`messages.N[.content.M]`, as the API names a message in its errors, to the transcript line.

The mapping is the checker's own rebuilt message list (`navigation.build`): the line this gives is
the line a finding naming that `messages.N` points at. In a fork whose live conversation still
starts at its pointer, the API counts the parent's messages first: an index below their count is a
line of the parent session's file. A tool id (`toolu_…`, `srvtoolu_…`) leads to its tool_use line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import locate
from .check import check_transcript_file
from .conversation import Conversation, chain_to, first_sent
from .forks import parent_file, parent_part, pointer
from .navigation import Spot, TranscriptMap, build, parse_ref
from .transcript import read_transcript


class NoSuchPlace(Exception):
    """A reference that names no place: the message says why."""


@dataclass(frozen=True, slots=True)
class Place:
    path: Path
    line: int
    column: int  # 1-based, in characters
    message: int | None
    content: int | None
    kind: str | None
    tool_use_id: str | None


def _map_of(path: Path, conversations: list[Conversation]) -> TranscriptMap:
    data = path.read_bytes()
    return build(conversations, lambda o, n: data[o:o + n])


def _column(path: Path, spot: Spot) -> int:
    if spot.block is None:
        return 1
    with path.open("rb") as f:
        for _ in range(spot.line - 1):
            f.readline()
        text = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    where = locate.span(text, ["message", "content", spot.block])
    return where[0] + 1 if where else 1


class Transcript:
    """One transcript checked once, asked for as many places as needed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check = check_transcript_file(str(self.path))
        main = check.main
        # A Codex rollout: the Responses API names a call by its call_id, never by messages.N.
        self.codex = main is not None and main.api == "responses"
        self.map = _map_of(self.path, [] if self.codex else check.conversations)
        self.offset = 0
        self._parent: tuple[Path, TranscriptMap] | None = None
        if main is None or not (main.forked and main.missing_parent):
            return
        ref = pointer(str(self.path))
        parent = parent_file(str(self.path), ref.session_id) if ref is not None else None
        part = parent_part(parent, ref.up_to) if parent is not None and ref is not None else None
        if part is None or parent is None or ref is None:
            return
        starts_with_user = main.messages[first_sent(main)].role == "user"
        # The fork's first user message merges with the parent's last one, as the API merges them.
        self.offset = part.messages - (1 if part.last_role == "user" and starts_with_user else 0)
        conv = chain_to(read_transcript(str(parent)).entries, ref.up_to)
        if conv is not None:
            self._parent = (parent, _map_of(parent, [conv]))

    @property
    def total(self) -> int:
        return self.offset + self.map.total_messages

    def message(self, n: int, content: int | None = None) -> Place:
        if self.codex:
            raise NoSuchPlace("a Codex session: the Responses API names a call by its call_id, "
                              "not by messages.N (`rewind-lsp check` gives the line of each call it refuses)")
        path, m, k = self.path, self.map, n - self.offset
        if k < 0:
            if self._parent is None:
                raise NoSuchPlace(f"messages.{n} is in the parent session, which is not on this machine")
            path, m, k = self._parent[0], self._parent[1], n
        spot = m.line_of(k, content)
        if spot is None:
            if 0 <= k < len(m.content) and content is not None:
                blocks = len(m.content[k])
                raise NoSuchPlace(f"messages.{n} has {blocks} content blocks (content.0 to content.{blocks - 1})")
            raise NoSuchPlace(f"messages.{n}: the conversation the API is sent has {self.total} messages "
                              f"(messages.0 to messages.{self.total - 1})")
        return Place(path, spot.line, _column(path, spot), n, content, spot.kind, spot.tool_id)

    def call(self, tool_id: str) -> Place | None:
        """The tool_use of that id in the live conversation (else in any other), or None."""
        calls = [c for c in self.map.calls if c.tool_id == tool_id]
        if not calls:
            return None
        c = next((c for c in calls if c.message is not None), calls[0])
        n = c.message + self.offset if c.message is not None else None
        return Place(self.path, c.use.line, _column(self.path, c.use), n, None, c.kind, c.tool_id)


def lookup(path: str | Path, ref: str) -> Place:
    """Where `ref` (`messages.N` or `messages.N.content.M`) is, in `path` or its fork's parent."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise NoSuchPlace(f"{ref!r} is not a message reference: use messages.N or messages.N.content.M")
    return Transcript(path).message(*parsed)
