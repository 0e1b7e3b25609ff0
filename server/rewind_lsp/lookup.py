"""`messages.N[.content.M]`, as the API names a message in its errors, to the transcript line.

The mapping is the checker's own rebuilt message list (`navigation.build`): the line this prints
is the line a finding naming that `messages.N` points at. In a fork whose live conversation still
starts at its pointer, the API counts the parent's messages first: an index below their count is a
line of the parent session's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import locate
from .check import check_transcript_file
from .conversation import Conversation, chain_to, first_sent
from .forks import parent_file, parent_part, pointer
from .navigation import TranscriptMap, build, parse_ref
from .transcript import read_transcript


class NoSuchPlace(Exception):
    """A reference that names no place: the message says why."""


@dataclass(frozen=True, slots=True)
class Place:
    path: Path
    line: int
    column: int  # 1-based, in characters
    message: int
    content: int | None
    kind: str | None
    tool_use_id: str | None


def _map_of(path: Path, conversations: list[Conversation]) -> TranscriptMap:
    data = path.read_bytes()
    return build(conversations, lambda o, n: data[o:o + n])


def _place(path: Path, m: TranscriptMap, n: int, content: int | None, shown: int, total: int) -> Place:
    spot = m.line_of(n, content)
    if spot is None:
        if 0 <= n < len(m.content) and content is not None:
            raise NoSuchPlace(f"messages.{shown} has {len(m.content[n])} content blocks "
                               f"(content.0 to content.{len(m.content[n]) - 1})")
        raise NoSuchPlace(f"messages.{shown}: the conversation the API is sent has {total} messages "
                           f"(messages.0 to messages.{total - 1})")
    column = 1
    if spot.block is not None:
        with path.open("rb") as f:
            for _ in range(spot.line - 1):
                f.readline()
            text = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        where = locate.span(text, ["message", "content", spot.block])
        column = where[0] + 1 if where else 1
    return Place(path, spot.line, column, shown, content, spot.kind, spot.tool_id)


def lookup(path: str | Path, ref: str) -> Place:
    """Where `ref` (`messages.N` or `messages.N.content.M`) is, in `path` or its fork's parent."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise NoSuchPlace(f"{ref!r} is not a message reference: use messages.N or messages.N.content.M")
    n, content = parsed
    source = Path(path)
    check = check_transcript_file(str(source))
    m = _map_of(source, check.conversations)
    offset = 0
    main = check.main
    if main is not None and main.forked and main.missing_parent:
        ref_line = pointer(str(source))
        parent = parent_file(str(source), ref_line.session_id) if ref_line else None
        part = parent_part(parent, ref_line.up_to) if parent is not None and ref_line is not None else None
        if part is not None and parent is not None and ref_line is not None:
            starts_with_user = main.messages[first_sent(main)].role == "user"
            # The fork's first user message merges with the parent's last one, as the API merges them.
            offset = part.messages - (1 if part.last_role == "user" and starts_with_user else 0)
            total = offset + m.total_messages
            if n < offset:
                conv = chain_to(read_transcript(str(parent)).entries, ref_line.up_to)
                if conv is None:
                    raise NoSuchPlace(f"messages.{n} is in the parent session, whose file has no line "
                                      f"{ref_line.up_to}")
                return _place(parent, _map_of(parent, [conv]), n, content, n, total)
    return _place(source, m, n - offset, content, n, offset + m.total_messages)
