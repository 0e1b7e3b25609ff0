"""What a transcript's lines hold, counted the same way for what a repair plans and what it wrote.

A repair's copy is checked for errors before it is placed, but a copy with no error can still have
lost part of the session: a line fused with the next is one malformed line (a warning), and a
conversation cut short pairs as well as a whole one. So the copy is also counted as it is read back
(`incremental.check_counted`), and must hold exactly what the plan keeps of the source: the same
lines (their uuids, in order), as many user prompts, replies, tool calls and tool results, as many
malformed lines, and a newline at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from operator import attrgetter
from typing import Any

import msgspec

from .transcript import (
    OTHER,
    SERVER_TOOL_USES,
    TOOL_RESULT,
    TOOL_USE,
    BadLine,
    Entry,
    LineReader,
    Transcript,
    parse_line,
    parse_tail,
)

# A Codex rollout's calls and outputs (`codex.OUTPUT_OF`, repeated so that counting imports no reader;
# tests/core/test_census.py holds them equal).
RESPONSES_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
RESPONSES_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
_USES = frozenset({TOOL_USE, *SERVER_TOOL_USES, *RESPONSES_CALLS})
_RESULTS = frozenset({TOOL_RESULT, *RESPONSES_OUTPUTS})
_line_of = attrgetter("line")
_uuid_of = attrgetter("uuid")
_UUIDS_AT_ONCE = 4096


class Census(msgspec.Struct, frozen=True):
    """The counts of one file's lines (see the module's docstring)."""

    entries: int = 0  # lines that are transcript entries
    malformed: int = 0  # lines that are not
    prompts: int = 0  # user lines the user typed (not tool results, not recorded API errors)
    replies: int = 0  # assistant lines (not recorded API errors)
    tool_uses: int = 0  # tool_use and server tool blocks
    tool_results: int = 0  # tool_result and server tool result blocks
    uuids: bytes = b""  # a digest of every entry's uuid, in file order
    unterminated: bool = False  # the last line has no newline

    def differences(self, expected: Census) -> list[str]:
        """What this census has that `expected` does not, in words ("3 user prompts instead of 4")."""
        out = [f"{got:,} {one if got == 1 else many} instead of {want:,}"
               for one, many, got, want in (
                   ("line", "lines", self.entries, expected.entries),
                   ("malformed line", "malformed lines", self.malformed, expected.malformed),
                   ("user prompt", "user prompts", self.prompts, expected.prompts),
                   ("assistant reply", "assistant replies", self.replies, expected.replies),
                   ("tool call", "tool calls", self.tool_uses, expected.tool_uses),
                   ("tool result", "tool results", self.tool_results, expected.tool_results),
               ) if got != want]
        if not out and self.uuids != expected.uuids:
            out.append("other lines, or the same lines in another order")
        if self.unterminated and not expected.unterminated:
            out.append("a last line without a newline")
        return out


class Counter:
    """A census taken as lines come, in file order. `keep_blocks`: each line's blocks are kept on
    its entry, for the check that reads them next; else they are not made to stay (a plan's count
    of lines already checked, history's among them)."""

    __slots__ = ("_digest", "_keep", "entries", "malformed", "prompts", "replies", "tool_results", "tool_uses")

    def __init__(self, keep_blocks: bool = True) -> None:
        self._keep = keep_blocks
        self._digest = hashlib.blake2b(digest_size=16)
        self.entries = self.malformed = self.prompts = self.replies = self.tool_uses = self.tool_results = 0

    def add(self, entries: Sequence[Entry]) -> None:
        """Count `entries`, the next lines of the file that are entries."""
        # The uuids, each ended by a newline (a missing one by NUL), a few thousand at a time: one
        # digest update each, never a string of every uuid of a large file at once.
        update = self._digest.update
        for at in range(0, len(entries), _UUIDS_AT_ONCE):
            run = entries[at : at + _UUIDS_AT_ONCE]
            uuids = [u if u is not None else _identity(e) for u, e in zip(map(_uuid_of, run), run, strict=True)]
            update(("\n".join(uuids) + "\n").encode("utf-8", "surrogatepass"))
        self.entries += len(entries)
        prompts = replies = uses = results = 0
        keep = self._keep
        for e in entries:
            kind = e.type
            if (kind != "user" and kind != "assistant") or e.api_error:
                continue
            blocks = e.blocks if keep else e.blocks_once()
            if kind == "assistant":
                replies += 1
            if blocks:
                answered = False
                for b in blocks:
                    k = b.kind
                    if k is OTHER:
                        continue
                    if k in _USES:
                        uses += 1
                    elif k in _RESULTS or k.endswith("_tool_result"):
                        results += 1
                        answered = answered or k in _RESULTS
                if kind == "user" and not answered:
                    prompts += 1
            elif kind == "user":
                prompts += 1
        self.prompts += prompts
        self.replies += replies
        self.tool_uses += uses
        self.tool_results += results

    def add_transcript(self, t: Transcript) -> None:
        """Every line of a transcript read whole (a Codex rollout): its entries and bad lines."""
        self.add(t.entries)
        self.add_malformed(len(t.bad_lines))

    def add_malformed(self, count: int) -> None:
        self.malformed += count

    def census(self, unterminated: bool = False) -> Census:
        return Census(self.entries, self.malformed, self.prompts, self.replies, self.tool_uses,
                      self.tool_results, self._digest.digest(), unterminated)


def _identity(e: Entry) -> str:
    """What stands for an entry with no uuid in the digest (a Codex rollout's every line): its kind
    and its blocks' kinds and ids, so that two such lines swapped or replaced are told apart."""
    parts = [f"\0{e.type}\0{e.subtype or ''}", *(f"{b.kind}\0{b.tool_id or ''}" for b in e.blocks_once())]
    return "\0".join(parts)


LineParser = Callable[[int, int, bytes], "Entry | BadLine"]  # (line, offset, bytes) -> what a reader makes of it


def planned_census(
    entries: Sequence[Entry],
    bad: Iterable[BadLine],
    drop: Set[int],
    replace: Mapping[int, dict[str, Any]],
    insert_after: Mapping[int, Sequence[dict[str, Any]]],
    left_out: int | None = None,
    parse: LineParser = parse_line,
) -> Census:
    """The census of the copy a repair writes from a source read as `entries` (in file order) and
    `bad` lines: every line but those in `drop`, each in `replace` as its new object, the objects
    of `insert_after` after their line (dropped or not), and never line `left_out` (a malformed last
    line without a newline, which the copy leaves in the original). Every line ends in a newline.
    `parse` reads a line the plan writes anew as the copy's reader will (a Codex rollout's own)."""
    counter = Counter(keep_blocks=False)
    kept_bad = sorted(b.line for b in bad if b.line not in drop and b.line != left_out)
    marks = sorted(set(replace) | set(insert_after))
    pos = at_bad = 0
    for mark in [*marks, None]:
        end = len(entries) if mark is None else bisect_left(entries, mark, lo=pos, key=_line_of)
        run = entries[pos:end]
        counter.add([e for e in run if e.line not in drop] if drop else run)
        pos = end
        next_bad = len(kept_bad) if mark is None else bisect_left(kept_bad, mark, lo=at_bad)
        counter.add_malformed(next_bad - at_bad)  # where they are does not change the counts
        at_bad = next_bad
        if mark is None:
            break
        here = pos < len(entries) and entries[pos].line == mark
        here_bad = at_bad < len(kept_bad) and kept_bad[at_bad] == mark
        if mark not in drop:
            if mark in replace:
                _add_object(counter, replace[mark], mark, parse)
            elif here:
                counter.add(entries[pos : pos + 1])
            elif here_bad:
                counter.add_malformed(1)
        pos += here
        at_bad += here_bad
        for extra in insert_after.get(mark, ()):
            _add_object(counter, extra, mark, parse)
    return counter.census()


def _add_object(counter: Counter, obj: dict[str, Any], line: int, parse: LineParser) -> None:
    """A line the plan writes anew, as a reader of the copy will decode it."""
    parsed = parse(line, 0, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if isinstance(parsed, Entry):
        counter.add([parsed])
    else:
        counter.add_malformed(1)


def file_census(path: str) -> tuple[Census, set[str | None]]:
    """The census of the file at `path` as it is (a subagent transcript copied whole), and the
    session ids its entries carry: read a batch of lines at a time, never held whole."""
    counter = Counter(keep_blocks=False)
    ids: set[str | None] = set()
    with open(path, "rb") as f:
        reader = LineReader(lambda offset, n: os.pread(f.fileno(), n, offset))
        for batch in reader:
            counter.add(batch.entries)
            ids.update(e.session_id for e in batch.entries)
            counter.add_malformed(len(batch.bad))
        last, torn = parse_tail(reader.line, reader.offset, reader.rest)
    if isinstance(last, Entry):
        counter.add([last])
        ids.add(last.session_id)
    elif last is not None or torn:
        counter.add_malformed(1)
    return counter.census(unterminated=bool(reader.rest)), ids
