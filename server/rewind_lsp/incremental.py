"""Incremental transcript checks: after an append, the cost is the appended lines, not the file.

A transcript is split into *segments* at the main conversation's `compact_boundary` lines. After
a compaction the live chain starts at the boundary (`parentUuid: null`) and never reaches back,
so once a later segment holds a main message, everything before it is *closed*: its findings
cannot change, unless a later line links into it. A closed stretch is analysed once (its main
chains are history then, exactly as in a whole-file check), its findings and a digest of its
links are kept, and its entries are dropped. Only the *open* region (from the boundary that
starts the live conversation's segment to the end of the file) is kept and analysed again.

The shortcut is taken only while it provably gives the findings of a whole-file `analyze`:
no line of one side names a line of the other (`parentUuid`, `sourceToolAssistantUUID`, a uuid
written twice), no assistant `message.id` spans both, and no missing parent is bridged across.
Closing a stretch checks this against the open region; every later line is checked against the
digest of what is closed. Anything else (a rewind to before a compaction, a line linking back)
falls back to reading the whole file again, with nothing closed, as a full check does. A
changed inode, a shorter file, a write that does not grow the file, changed bytes at the start
or just before the read offset, or another rule set start over the same way (an edit in the
middle of a file that also grows it is taken for an append: Claude Code only appends, and
rewinds write a new file). Digests are hashes: a collision costs a needless full read, never a
wrong finding.

    state = TranscriptState()
    findings = check_transcript_incremental(path, state, rules)   # full read the first time
    ...                                                             # the file grows
    findings = check_transcript_incremental(path, state, rules)   # reads only the new bytes

A state belongs to one file and is not thread-safe: serialise calls per state (states of
different files may be used from different threads at once). The returned list is the caller's.
`state.stats` says what the last call did (bytes read, full reads, fallbacks, unchanged file).
`index.save_state`/`index.load_state` keep a state on disk without its entries (the hook does
this); a loaded state re-reads its open region on the next call. Memory: the open region's
entries plus 8-byte hashes of every closed uuid (~50 bytes each in a set).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import msgspec

from .check import _no_gc, conversation_findings
from .conversation import _Index, _index, dangling, locality, rebuild_indexed
from .findings import Finding
from .transcript import _FAST_ERRORS, BadLine, Entry, _decode_fast, decode_block, is_truncated, parse_line

if TYPE_CHECKING:
    from .rules import RuleSet

_EDGE = 64  # bytes compared at the start of the file and before the read offset to notice a rewrite


def _stable_hash(text: str) -> int:
    """The same in every process (Python's str hash is salted per process): for saved states."""
    digest = _blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _blake2b(data: bytes, digest_size: int) -> Any:
    # hashlib costs ~5 ms to import and only saved states (the hook) hash this way: bound on first use.
    global _blake2b
    from hashlib import blake2b

    _blake2b = blake2b  # type: ignore[assignment]  # every later call goes straight to hashlib
    return blake2b(data, digest_size=digest_size)


def _key_text(key: tuple[bool, str | None, str]) -> str:
    sidechain, agent, message_id = key
    return f"{int(sidechain)}\x00{'' if agent is None else agent + chr(1)}\x00{message_id}"


class _Closed:
    """Hashes of the links of everything closed: what a later line must not touch.

    Sets in memory. A state loaded from disk keeps the saved sorted arrays instead and searches
    them (a few look-ups per appended line), turning them into sets only when a segment closes.
    """

    __slots__ = ("_arrays", "siblings", "unresolved", "uuids")

    def __init__(self) -> None:
        self.uuids: set[int] = set()
        self.unresolved: set[int] = set()  # links from closed lines that named nothing
        self.siblings: set[int] = set()
        self._arrays: tuple[array[int], array[int], array[int]] | None = None

    @classmethod
    def from_sorted(cls, uuids: array[int], unresolved: array[int], siblings: array[int]) -> _Closed:
        closed = cls()
        closed._arrays = (uuids, unresolved, siblings)
        return closed

    def __bool__(self) -> bool:
        if self._arrays is not None:
            return any(len(a) for a in self._arrays)
        return bool(self.uuids or self.unresolved or self.siblings)

    @staticmethod
    def _in(a: array[int], x: int) -> bool:
        i = bisect_left(a, x)
        return i < len(a) and a[i] == x

    def has_uuid(self, x: int) -> bool:
        return self._in(self._arrays[0], x) if self._arrays is not None else x in self.uuids

    def has_unresolved(self, x: int) -> bool:
        return self._in(self._arrays[1], x) if self._arrays is not None else x in self.unresolved

    def has_sibling(self, x: int) -> bool:
        return self._in(self._arrays[2], x) if self._arrays is not None else x in self.siblings

    def as_sets(self) -> _Closed:
        if self._arrays is not None:
            self.uuids, self.unresolved, self.siblings = (set(a) for a in self._arrays)
            self._arrays = None
        return self

    def sorted_arrays(self) -> tuple[array[int], array[int], array[int]]:
        if self._arrays is not None:
            return self._arrays
        return array("q", sorted(self.uuids)), array("q", sorted(self.unresolved)), array("q", sorted(self.siblings))


class Stats(msgspec.Struct):
    """What the last call did (for tests and benchmarks)."""

    bytes_read: int = 0  # new bytes (appended since the last call, or all of them on a full read)
    bytes_reread: int = 0  # the open region read again by a state loaded from disk
    full_reads: int = 0  # whole-file reads, the first one included
    fallbacks: int = 0  # full reads forced because the shortcut was not provably equivalent
    reused: bool = False  # the file had not changed: the previous findings were returned


class TranscriptState:
    """What `check_transcript_incremental` keeps between calls for one file."""

    def __init__(self, stable_hashes: bool = False) -> None:
        # Hashes must survive the process when the state is saved (the hook).
        self.stable_hashes = stable_hashes
        self._h: Callable[[str], int] = _stable_hash if stable_hashes else hash
        self._hk: Callable[[tuple[bool, str | None, str]], int] = (
            (lambda k: _stable_hash(_key_text(k))) if stable_hashes else hash
        )
        self.stats = Stats()
        self.rules: RuleSet | None = None
        self._path = ""  # the file being read, to fetch the lines findings point at
        self._reset()

    def _reset(self) -> None:
        self.dev = self.ino = -1
        self.size = self.mtime_ns = -1
        self.offset = 0  # end of the last complete line read
        self.line = 1  # number of the next line
        self.head = b""  # first bytes of the file
        self.tail = b""  # bytes just before `offset`
        self.open_start = 0  # where the open region starts (a main compact_boundary line, or 0)
        self.open_line = 1
        self.open_entries: list[Entry] = []
        self.ix: _Index | None = None  # index of open_entries, kept up to date once built
        self.verified = 0  # open_entries[:verified] are known not to link into the closed part
        self.open_bad: list[BadLine] = []
        self.open_loaded = True  # False after load_state: the open region is re-read on the next call
        self.last_boundary = -1  # index in open_entries of the newest main compact_boundary
        self.main_segment = 0  # index in open_entries where the live conversation's segment starts
        self.closed = _Closed()
        self.closed_findings: list[Finding] = []
        self.findings: list[Finding] | None = None  # the last result
        self.violated = False  # a line links into the closed part: the shortcut does not hold

    @property
    def open_entry_count(self) -> int:
        return len(self.open_entries)


def check_transcript_incremental(
    path: str, state: TranscriptState, rules: RuleSet | None = None
) -> list[Finding]:
    """Findings of the transcript at `path`, equal to `check_transcript_file(path, rules).findings`.

    Reads only what was appended since the last call with this `state` (all of it the first time,
    after a rewrite, truncation or rotation, or when the shortcut does not provably hold).
    """
    with _no_gc():  # see check._no_gc (harmless for other threads meanwhile)
        return list(_check(path, state, rules))


def _check(path: str, state: TranscriptState, rules: RuleSet | None) -> list[Finding]:
    state.stats = Stats()
    state._path = path
    if rules is not state.rules:
        state._reset()
        state.rules = rules
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not _same_file(f, st, state):
            state._reset()
        elif state.findings is not None and st.st_size == state.size:
            if st.st_mtime_ns == state.mtime_ns:
                state.stats.reused = True
                return state.findings
            state._reset()  # written to without growing: not an append (Claude Code only appends)
        if state.offset == 0:
            state.stats.full_reads += 1
        if not state.open_loaded:
            _reload_open(f, state)
        _read_new(f, state, allow_close=True)
        tail = _tail(f, state)
        findings = [] if state.violated else _analyze_open(state, tail)
        if state.violated:
            state.stats.fallbacks += 1
            state.stats.full_reads += 1
            state._reset()
            state.rules = rules
            # Closing stays off for this pass: the link that broke the shortcut would break it again.
            _read_new(f, state, allow_close=False)
            tail = _tail(f, state)
            findings = _analyze_open(state, tail)
        state.dev, state.ino, state.size, state.mtime_ns = st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
        f.seek(0)
        state.head = f.read(_EDGE)
        state.tail = _bytes_before(f, state.offset)
    state.findings = findings
    return findings


def _bytes_before(f: IO[bytes], offset: int) -> bytes:
    start = max(0, offset - _EDGE)
    f.seek(start)
    return f.read(offset - start)


def _same_file(f: IO[bytes], st: os.stat_result, state: TranscriptState) -> bool:
    if state.ino < 0:
        return True  # nothing read yet
    if (st.st_dev, st.st_ino) != (state.dev, state.ino) or st.st_size < state.offset:
        return False
    f.seek(0)
    if f.read(len(state.head)) != state.head:
        return False
    return _bytes_before(f, state.offset) == state.tail


def _reload_open(f: IO[bytes], state: TranscriptState) -> None:
    """Re-read the open region of a loaded state (checked against the closed part when saved)."""
    end = state.offset
    state.open_loaded = True
    state.offset, state.line = state.open_start, state.open_line
    _read_new(f, state, allow_close=False, end=end)
    state.stats.bytes_reread, state.stats.bytes_read = state.stats.bytes_read, 0
    state.verified = len(state.open_entries)
    if state.offset != end:  # the file no longer holds what was saved
        state.violated = True


_CHUNK = 1 << 20


def _parse_lines(block: bytes, line: int, offset: int) -> tuple[list[Entry | BadLine], int]:
    """The entries and bad lines of `block` (whole lines), line by line (the tolerant path), and
    the number of lines."""
    out: list[Entry | BadLine] = []
    decode = _decode_fast
    lines = block.split(b"\n")
    lines.pop()  # empty: the block ends with a newline
    for body in lines:
        n = len(body)
        length = n - 1 if body[-1:] == b"\r" else n
        parsed: Entry | BadLine | None
        if body[:1] == b"{":
            try:
                parsed = decode(body)
                parsed.line, parsed.offset, parsed.length, parsed.cached_blocks = line, offset, length, None
            except _FAST_ERRORS:
                parsed = parse_line(line, offset, body[:length])
        else:
            parsed = parse_line(line, offset, body[:length]) if body.strip() else None
        offset += n + 1
        line += 1
        if parsed is not None:
            out.append(parsed)
    return out, len(lines)


def _read_new(f: IO[bytes], state: TranscriptState, allow_close: bool, end: int = -1) -> None:
    """Read complete lines from `state.offset` (to `end`, if given); the torn tail is left.

    Chunks are decoded whole when they can be (`decode_block`), else line by line; per line,
    the loop below is the rest of the cost of reading, so it stays flat.
    """
    start = offset = state.offset
    line = state.line
    entries, bad, ix = state.open_entries, state.open_bad, state.ix
    size = _CHUNK
    while True:
        want = size if end < 0 else min(size, end - offset)
        if want <= 0:
            break
        # Each read starts at the first line not yet read: the part of a line a chunk cut is read
        # again with the next one (cheaper than copying blocks and joining the pieces).
        f.seek(offset)
        chunk = f.read(want)
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            if len(chunk) < size:
                break  # no newline before the end (of the file, or `end`): a torn tail, left for `_tail`
            size *= 2  # a line longer than a chunk: read it whole next time
            continue
        size = _CHUNK
        items: list[Entry] | list[Entry | BadLine] | None = decode_block(chunk, cut, line, offset)
        if items is None:
            items, count = _parse_lines(chunk[:cut], line, offset)
        else:
            count = len(items)  # one entry per line
        base = offset
        offset += cut
        line += count
        for parsed in items:
            if isinstance(parsed, BadLine):
                bad.append(parsed)
                continue
            e = parsed
            entries.append(e)
            if ix is not None:
                ix.add_entries((e,))
            etype = e.type
            if e.sidechain or (etype != "user" and etype != "assistant" and etype != "system"):
                continue
            if etype == "system":
                if e.subtype == "compact_boundary":
                    state.last_boundary = len(entries) - 1
                continue
            if state.last_boundary > state.main_segment:
                # A main message after a boundary: the live conversation moved to a new segment,
                # so what lies before that boundary is closed, if nothing links across.
                state.main_segment = state.last_boundary
                if allow_close:
                    _close(state, state.main_segment)
                    if state.violated:
                        # Stop after this line, as a line-by-line read would.
                        state.offset = base + chunk.find(b"\n", e.offset - base) + 1
                        state.line = e.line + 1
                        state.stats.bytes_read += state.offset - start
                        return
                    entries, bad, ix = state.open_entries, state.open_bad, state.ix
    state.offset, state.line = offset, line
    state.stats.bytes_read += offset - start


def _links_into(state: TranscriptState, e: Entry) -> bool:
    """Does this line name, or is it named by, something in the closed part?"""
    h, closed = state._h, state.closed
    if e.parent is not None and closed.has_uuid(h(e.parent)):
        return True
    if e.source_tool_assistant is not None and closed.has_uuid(h(e.source_tool_assistant)):
        return True
    if e.uuid is not None:
        u = h(e.uuid)
        if closed.has_uuid(u) or closed.has_unresolved(u):
            return True
    if e.type == "assistant" and e.message_id and not e.api_error:
        return closed.has_sibling(state._hk((e.sidechain, e.agent_id, e.message_id)))
    return False


def _close(state: TranscriptState, k: int) -> None:
    """Close open_entries[:k] when provably independent of the rest; keep its findings."""
    entries = state.open_entries
    closing, rest = entries[:k], entries[k:]
    if not closing or not rest:
        return
    conversations, ix = rebuild_indexed(closing, main=False)
    loc = locality(ix)
    if loc.dangling and state.open_start > 0:
        return  # a missing parent bridged to nothing here might bridge to a closed line in a whole read
    h, hk = state._h, state._hk
    uuids = set(map(h, loc.uuids))
    unresolved = set(map(h, loc.unresolved))
    siblings = set(map(hk, loc.siblings))
    closed = state.closed.as_sets()
    if closed and not (
        closed.uuids.isdisjoint(uuids)  # a uuid written on both sides
        and closed.unresolved.isdisjoint(uuids)  # a closed line naming one of these
        and closed.uuids.isdisjoint(unresolved)  # one of these naming a closed line
        and closed.siblings.isdisjoint(siblings)  # one reply split across
    ):
        state.violated = True
        return
    for e in rest:
        if (e.parent is not None and h(e.parent) in uuids) or (
            e.source_tool_assistant is not None and h(e.source_tool_assistant) in uuids
        ):
            return
        if e.uuid is not None:
            u = h(e.uuid)
            if u in uuids or u in unresolved:
                return
        if (
            e.type == "assistant"
            and e.message_id
            and not e.api_error
            and hk((e.sidechain, e.agent_id, e.message_id)) in siblings
        ):
            return
    first = rest[0]
    bad = [b for b in state.open_bad if b.line < first.line]
    state.closed_findings.extend(conversation_findings(conversations, bad, _fetcher_for(state), state.rules))
    state.closed.uuids |= uuids
    state.closed.unresolved |= unresolved
    state.closed.siblings |= siblings
    state.open_entries = rest
    state.ix = None
    state.verified = 0
    state.open_bad = [b for b in state.open_bad if b.line >= first.line]
    state.open_start, state.open_line = first.offset, first.line
    state.last_boundary -= k
    state.main_segment -= k


def _fetcher_for(state: TranscriptState) -> Callable[[int, int], bytes]:
    path = state._path

    def fetch(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    return fetch


def _tail(f: IO[bytes], state: TranscriptState) -> Entry | BadLine | None:
    """The last line when it has no newline yet: read for this check, never kept."""
    f.seek(state.offset)
    rest = f.read()
    body = rest[:-1] if rest.endswith(b"\r") else rest
    if not body.strip():
        return None
    parsed = parse_line(state.line, state.offset, body)
    if isinstance(parsed, BadLine) and is_truncated(body):
        return None  # a writer mid-line: read it when it is complete
    if isinstance(parsed, Entry) and state.closed and _links_into(state, parsed):
        state.violated = True  # the shortcut fails for this line even before it is complete
    return parsed


def _analyze_open(state: TranscriptState, tail: Entry | BadLine | None) -> list[Finding]:
    entries = state.open_entries
    if state.closed and any(_links_into(state, e) for e in entries[state.verified :]):
        state.violated = True
        return []
    state.verified = len(entries)
    bad = state.open_bad
    ix = None
    if isinstance(tail, Entry):
        entries = [*entries, tail]  # not kept: indexed for this check only
    else:
        if state.ix is None:
            state.ix = _index(entries)
        ix = state.ix
        if isinstance(tail, BadLine):
            bad = [*bad, tail]
    conversations, ix = rebuild_indexed(entries, ix=ix)
    if state.closed and dangling(ix):
        state.violated = True
        return []
    found = conversation_findings(conversations, bad, _fetcher_for(state), state.rules)
    return [*state.closed_findings, *found] if state.closed_findings else found



# --- one stretch of a file on its own (the parallel check) -----------------------------------


class PartCheck(msgspec.Struct):
    """`check_stretch`'s answer as a forked child sends it (`ok` False: None).

    The digests are int64 arrays, for the caller to prove no line of one stretch names a line of
    another. They hash with `hash`, salted per interpreter: compare them only within one process
    and its forks.
    """

    ok: bool
    findings: list[Finding] = []
    uuids: bytes = b""
    unresolved: bytes = b""
    siblings: bytes = b""


Digests = tuple[set[int], set[int], set[int]]  # a stretch's uuids, names resolving to nothing, sibling keys


def check_part(path: str, start: int, end: int, line: int, rules: RuleSet | None = None) -> PartCheck:
    """`check_stretch`, packed to send from a forked child to its parent."""
    checked = check_stretch(path, start, end, line, rules)
    if checked is None:
        return PartCheck(False)
    findings, digests = checked
    uuids, unresolved, siblings = (array("q", d).tobytes() for d in digests)
    return PartCheck(True, findings, uuids, unresolved, siblings)


def check_stretch(
    path: str, start: int, end: int, line: int, rules: RuleSet | None = None
) -> tuple[list[Finding], Digests] | None:
    """Check `path[start:end]` (whole lines; `end` -1: to the end of the file, torn tail included)
    as a stretch of a longer file whose line `line` starts at byte `start`: its findings and the
    digests of its links (`_Closed`'s sets), or None when it cannot be judged alone.

    A stretch that ends before the file does is history (a later stretch holds the live
    conversation); the last one must hold it. `start` > 0 must be a main compact_boundary line,
    so that no chain crosses into the stretch: what `_close` relies on too.
    """
    state = TranscriptState()
    state.rules, state._path = rules, path
    state.offset = state.open_start = start
    state.line = state.open_line = line
    last = end < 0
    with _no_gc(), open(path, "rb") as f:
        _read_new(f, state, allow_close=True, end=end)
        tail = _tail(f, state) if last and not state.violated else None
    entries, bad = state.open_entries, state.open_bad
    if state.violated or (state.closed and any(_links_into(state, e) for e in entries[state.verified :])):
        return None
    if isinstance(tail, Entry):
        entries = [*entries, tail]
    elif isinstance(tail, BadLine):
        bad = [*bad, tail]
    conversations, ix = rebuild_indexed(entries, main=last)
    if last and not any(c.kind == "main" for c in conversations):
        return None  # the live conversation is in an earlier stretch: that one is not history
    loc = locality(ix)
    if loc.dangling and state.open_start > 0:
        return None  # bridging could reach a line before the stretch in a whole read
    findings = conversation_findings(conversations, bad, _fetcher_for(state), rules)
    closed = state.closed.as_sets()
    h, hk = state._h, state._hk
    digests = (
        closed.uuids.union(map(h, loc.uuids)),
        closed.unresolved.union(map(h, loc.unresolved)),
        closed.siblings.union(map(hk, loc.siblings)),
    )
    return [*state.closed_findings, *findings], digests
