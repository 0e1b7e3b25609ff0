"""Check one large transcript on several cores.

No chain crosses a main compact_boundary line (see `incremental`), so a large transcript is cut
at such lines near equal shares: the first stretch is checked in this process, every later one in
a forked child (`incremental.check_part`), all at once. The findings are joined, in file order,
only when the stretches provably do not link (`links.Links.meets`, the rule that closes a segment
in `incremental` too): no uuid written in two of them, no line naming a line of another, no reply
split across two. Otherwise, and wherever a fork is not safe or does not
pay (no `os.fork`, one core, threads running, a small file, no boundary to cut at, a child that
fails), the file is checked in one process as always. The findings are the same either way.
"""

from __future__ import annotations

import os
import signal
from array import array
from contextlib import suppress
from typing import IO, TYPE_CHECKING

import msgspec

from .children import can_fork, hold_sigint, restore_mask, usable_cpus
from .findings import Finding
from .incremental import PartCheck, TranscriptState, check_part, check_stretch, check_transcript_incremental
from .links import Links
from .transcript import Entry, parse_line

if TYPE_CHECKING:
    from .rules import RuleSet

# Below this per stretch, forking and joining cost more than the second core saves.
MIN_PART = 8 << 20
# How far past a share's start a cut is looked for: segments are a few MB where Claude Code
# compacts, and a file with no boundary at all was read to its end for nothing (half of 1 GB).
SEARCH = 64 << 20
_WINDOW = 1 << 20
_BOUNDARY = b'"compact_boundary"'
_decode_part = msgspec.msgpack.Decoder(PartCheck).decode


def check_transcript_parallel(
    path: str, rules: RuleSet | None = None, jobs: int = 0, min_part: int = MIN_PART, history: bool = True
) -> list[Finding]:
    """Findings of the transcript at `path`, equal to `check_transcript_file`'s, using up to `jobs`
    processes (0: one per usable core), each given at least `min_part` bytes. `history=False`: but
    those of rewound and compacted history (information only; see `TranscriptState.history`)."""
    jobs = jobs or usable_cpus()
    size = os.path.getsize(path)
    parts = min(jobs, size // max(min_part, 1))
    if parts < 2 or not can_fork():
        return check_transcript_incremental(path, TranscriptState(history=history), rules)
    cuts = split_points(path, size, parts)
    if cuts:
        checked = check_parts(path, cuts, rules, history)
        if checked is not None:
            return checked
    return check_transcript_incremental(path, TranscriptState(history=history), rules)


def split_points(path: str, size: int, parts: int) -> list[int]:
    """Offsets of main compact_boundary lines, one at or after each share `size * i / parts`, before
    the next share and within `SEARCH` bytes of it (a share with none is merged into the one
    before), increasing."""
    cuts: list[int] = []
    with open(path, "rb") as f:
        for i in range(1, parts):
            start = max(size * i // parts, cuts[-1] + 1 if cuts else 1)
            cut = _boundary_line(f, start, min(size * (i + 1) // parts, start + SEARCH))
            if cut is not None:
                cuts.append(cut)
    return cuts


def _boundary_line(f: IO[bytes], pos: int, limit: int) -> int | None:
    """The offset of the first main compact_boundary line starting in [pos, limit), if any."""
    f.seek(pos - 1)
    head = f.read(_WINDOW)
    nl = head.find(b"\n")
    if nl < 0:
        return None  # one line fills the window: no cut near here
    offset = pos + nl  # the first line starting at or after pos
    while offset < limit:
        f.seek(offset)
        chunk = f.read(_WINDOW)
        end = chunk.rfind(b"\n") + 1
        if not end:
            return None  # the rest is one line (or the torn tail)
        at = chunk.find(_BOUNDARY, 0, end)
        while at >= 0:
            line_start = chunk.rfind(b"\n", 0, at) + 1
            if offset + line_start >= limit:
                return None
            entry = parse_line(0, 0, chunk[line_start : chunk.index(b"\n", at)].rstrip(b"\r"))
            if isinstance(entry, Entry) and entry.is_compact_boundary and not entry.sidechain:
                return offset + line_start
            at = chunk.find(_BOUNDARY, chunk.index(b"\n", at), end)
        offset += end
    return None


def check_parts(
    path: str, cuts: list[int], rules: RuleSet | None = None, history: bool = True
) -> list[Finding] | None:
    """The joined findings of the stretches the file is cut into at `cuts` (main compact_boundary
    lines, increasing), or None when they cannot be judged apart."""
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for start, end in zip(cuts, [*cuts[1:], -1], strict=True):
            was = hold_sigint()  # until the child is on the list
            try:
                children.append(_fork_part(path, start, end, rules, was, history))
            finally:
                restore_mask(was)
        first = check_stretch(path, 0, cuts[0], 1, rules, history)
        rest: list[PartCheck] = []
        while children:
            rest.append(_collect(*children[0]))
            children.pop(0)  # reaped
    finally:
        for pid, fd in children:  # only after an exception here (Ctrl-C): stop and reap the rest
            with suppress(OSError):
                os.close(fd)
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    if first is None or not all(p.ok for p in rest) or not _independent(first[1], rest):
        return None
    return [*first[0], *(f for p in rest for f in p.findings)]


def _fork_part(
    path: str, start: int, end: int, rules: RuleSet | None, mask: set[int] | None, history: bool = True
) -> tuple[int, int]:
    """Fork a child checking one stretch: its pid and the read end of its pipe. `mask`: the signal
    mask to restore in the child, once it can catch a Ctrl-C."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    status = 1  # the child: never returns; without a result the parent checks the file alone
    try:
        restore_mask(mask)  # a Ctrl-C that came since the fork is raised here, and caught below
        os.close(r)
        data = msgspec.msgpack.encode(check_part(path, start, end, _lines_before(path, start) + 1, rules, history))
        with os.fdopen(w, "wb") as out:
            out.write(data)
        status = 0
    except BaseException:  # Ctrl-C or any failure: the parent falls back, with no result
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flush of the parent's buffered output


def _lines_before(path: str, offset: int) -> int:
    """Newlines in the first `offset` bytes. A `find` per line: memchr, faster than bytes.count
    (a byte-by-byte loop) for lines a kilobyte long, as transcript lines are."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(_WINDOW, offset))
            if not chunk:
                break
            offset -= len(chunk)
            find, pos = chunk.find, 0
            while True:
                pos = find(b"\n", pos) + 1
                if not pos:
                    break
                count += 1
    return count


def _collect(pid: int, fd: int) -> PartCheck:
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return PartCheck(False)
    try:
        return _decode_part(data)
    except msgspec.DecodeError:
        return PartCheck(False)


def _ints(data: bytes) -> array[int]:
    a = array("q")
    a.frombytes(data)
    return a


def _independent(first: Links, rest: list[PartCheck]) -> bool:
    """No stretch links to any before it (`Links.meets`).

    The first stretch's sets are this process's own; the others' arrays are only iterated, and
    added to the sets only while a later stretch remains to compare."""
    seen = first
    for i, p in enumerate(rest):
        u, n, s = _ints(p.uuids), _ints(p.unresolved), _ints(p.siblings)
        if seen.meets(u, n, s):
            return False
        if i + 1 < len(rest):
            seen.add(Links(u, n, s))
    return True
