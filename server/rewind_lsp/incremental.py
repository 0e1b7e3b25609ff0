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
or just before the read offset (`filemark`, the test `logscan` makes too), or another rule set
start over the same way (an edit in the middle of a file that also grows it is taken for an
append: Claude Code only appends, and rewinds write a new file). The links are hashed and
compared by one rule (`links.Links.meets`): a collision costs a needless full read, never a
wrong finding. Lines are read by `transcript.LineReader`, the reader of a whole-file check.

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
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING

import msgspec

from .census import Census, Counter
from .codex import check_rollout_bytes, is_rollout_fd
from .conversation import EntryIndex, Locality, dangling, index_entries, locality, rebuild_indexed
from .filemark import FileMark, rewritten, take_mark
from .findings import Finding
from .gcpause import no_gc
from .links import Hash, KeyHash, Links, stable_hash, stable_key_hash
from .transcript import BadLine, Entry, LineReader, parse_tail
from .verdict import conversation_findings, file_fetcher

if TYPE_CHECKING:
    from .rules import RuleSet



class Stats(msgspec.Struct):
    """What the last call did (for tests and benchmarks)."""

    bytes_read: int = 0  # new bytes (appended since the last call, or all of them on a full read)
    bytes_reread: int = 0  # the open region read again by a state loaded from disk
    full_reads: int = 0  # whole-file reads, the first one included
    fallbacks: int = 0  # full reads forced because the shortcut was not provably equivalent
    reused: bool = False  # the file had not changed: the previous findings were returned


class TranscriptState:
    """What `check_transcript_incremental` keeps between calls for one file."""

    def __init__(self, stable_hashes: bool = False, history: bool = True, count: bool = False) -> None:
        # Hashes must survive the process when the state is saved (the hook).
        self.stable_hashes = stable_hashes
        # False: rewound and compacted history is not rebuilt, nor its information findings given
        # (a repair's check of its copy, which asks for errors only). Never saved: index.py's states
        # are whole.
        self.history = history
        # True: every line read is counted (`census`), for a repair's copy (`check_counted`). A loaded
        # state never counts (its open region is read again).
        self._count = count
        self._h: Hash = stable_hash if stable_hashes else hash
        self._hk: KeyHash = stable_key_hash if stable_hashes else hash
        self.stats = Stats()
        self.rules: RuleSet | None = None
        self.stop: Callable[[], bool] | None = None  # during a call: see check_transcript_incremental
        self._path = ""  # the file being read, to fetch the lines findings point at
        self._reset()

    def _reset(self) -> None:
        self.mark = FileMark()  # what the last read saw of the file, to notice a rewrite
        self.offset = 0  # end of the last complete line read
        self.line = 1  # number of the next line
        self.open_start = 0  # where the open region starts (a main compact_boundary line, or 0)
        self.open_line = 1
        self.open_entries: list[Entry] = []
        self.ix: EntryIndex | None = None  # index of open_entries, kept up to date once built
        self.verified = 0  # open_entries[:verified] are known not to link into the closed part
        self.open_bad: list[BadLine] = []
        self.open_loaded = True  # False after load_state: the open region is re-read on the next call
        self.last_boundary = -1  # index in open_entries of the newest main compact_boundary
        self.main_segment = 0  # index in open_entries where the live conversation's segment starts
        self.closed = Links()
        self.closed_findings: list[Finding] = []
        self.findings: list[Finding] | None = None  # the last result
        self.violated = False  # a line links into the closed part: the shortcut does not hold
        self.counter = Counter() if self._count else None  # the lines read so far, once each

    @property
    def open_entry_count(self) -> int:
        return len(self.open_entries)

    # The mark's fields by their former names: index.py saves and loads a state through them.
    @property
    def dev(self) -> int:
        return self.mark.dev

    @dev.setter
    def dev(self, value: int) -> None:
        self.mark.dev = value

    @property
    def ino(self) -> int:
        return self.mark.ino

    @ino.setter
    def ino(self, value: int) -> None:
        self.mark.ino = value

    @property
    def size(self) -> int:
        return self.mark.size

    @size.setter
    def size(self, value: int) -> None:
        self.mark.size = value

    @property
    def mtime_ns(self) -> int:
        return self.mark.mtime_ns

    @mtime_ns.setter
    def mtime_ns(self, value: int) -> None:
        self.mark.mtime_ns = value

    @property
    def head(self) -> bytes:
        return self.mark.head

    @head.setter
    def head(self, value: bytes) -> None:
        self.mark.head = value

    @property
    def tail(self) -> bytes:
        return self.mark.tail

    @tail.setter
    def tail(self, value: bytes) -> None:
        self.mark.tail = value


class CheckStopped(Exception):
    """`stop` said so: the check was left half done, and its state must be dropped."""


def check_transcript_incremental(
    path: str, state: TranscriptState, rules: RuleSet | None = None, stop: Callable[[], bool] | None = None
) -> list[Finding]:
    """Findings of the transcript at `path`, equal to `check_transcript_file(path, rules).findings`.

    Reads only what was appended since the last call with this `state` (all of it the first time,
    after a rewrite, truncation or rotation, or when the shortcut does not provably hold).
    `stop` is asked between chunks and before the analysis: when it answers True the check raises
    CheckStopped (the server's open documents: a document closed or replaced meanwhile).
    """
    state.stop = stop
    try:
        with no_gc():
            return list(_check(path, state, rules))
    finally:
        state.stop = None


def _stop_here(state: TranscriptState) -> None:
    if state.stop is not None and state.stop():
        raise CheckStopped


def _check(path: str, state: TranscriptState, rules: RuleSet | None) -> list[Finding]:
    state.stats = Stats()
    state._path = path
    if rules is not state.rules:
        state._reset()
        state.rules = rules
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if is_rollout_fd(f):  # a Codex session: read whole, by its own reader (codex.py)
            return _check_rollout(f, st, state, rules)
        if rewritten(f, st, state.mark, state.offset):
            state._reset()
        elif state.findings is not None and state.mark.unchanged(st):
            state.stats.reused = True
            return state.findings
        if state.offset == 0:
            state.stats.full_reads += 1
        if not state.open_loaded:
            _reload_open(f, state)
        _read_new(f, state, allow_close=True)
        tail = _tail(f, state)
        findings = [] if state.violated else _analyze_open(state, tail)
        if state.violated:
            findings = _fall_back(f, state, rules)
        state.mark = take_mark(f, st, state.offset)
    state.findings = findings
    return findings


def _fall_back(f: IO[bytes], state: TranscriptState, rules: RuleSet | None) -> list[Finding]:
    """The whole file read again with nothing closed: the shortcut did not provably hold."""
    state.stats.fallbacks += 1
    state.stats.full_reads += 1
    state._reset()
    state.rules = rules
    # Closing stays off for this pass: the link that broke the shortcut would break it again.
    _read_new(f, state, allow_close=False)
    return _analyze_open(state, _tail(f, state))


def check_growing(
    path: str, sizes: Iterable[int], rules: RuleSet | None = None, history: bool = True
) -> list[Finding]:
    """The findings of a file still being written, equal to `check_transcript_file(path, rules)`'s
    once it is complete: its whole lines are read behind the writer, up to each size `sizes` gives
    (what is written so far), then to the end once `sizes` is exhausted (the writer is done).

    What is read meanwhile is decoded, indexed and, behind a compaction, closed, as appends are;
    only the analysis of the open region waits for the end. A repair's copy is checked this way
    while it is written (`copycheck`). A Codex rollout is read whole at the end, as always.
    """
    return _follow(path, sizes, rules, history, count=False)[0]


def check_counted(path: str, sizes: Iterable[int] = (), history: bool = False) -> tuple[list[Finding], Census | None]:
    """`check_growing`'s findings, and the census of the file's lines: what a repair's copy is
    verified by."""
    return _follow(path, sizes, None, history, count=True)


def _follow(
    path: str, sizes: Iterable[int], rules: RuleSet | None, history: bool, count: bool
) -> tuple[list[Finding], Census | None]:
    state = TranscriptState(history=history, count=count)
    state.rules, state._path = rules, path
    with no_gc(), open(path, "rb") as f:
        for size in sizes:
            if not state.violated and size > state.offset:
                if state.ix is None:
                    state.ix = index_entries(state.open_entries)  # built as lines come, not at the end
                _read_new(f, state, allow_close=True, end=size)
        if is_rollout_fd(f):
            if count:  # read whole, by its own reader, and counted as it reads it
                data = f.read()
                check = check_rollout_bytes(data, rules)
                counter = Counter(keep_blocks=False)
                counter.add_transcript(check.transcript)
                return check.findings, counter.census(unterminated=bool(data) and not data.endswith(b"\n"))
            return _check_rollout(f, os.fstat(f.fileno()), state, rules), None
        findings: list[Finding] = []
        if not state.violated:
            _read_new(f, state, allow_close=True)
            tail = _tail(f, state)
            if not state.violated:
                findings = _analyze_open(state, tail)
        if state.violated:
            findings = _fall_back(f, state, rules)
        return findings, _census(f, state)


def _census(f: IO[bytes], state: TranscriptState) -> Census | None:
    """The count of every line read, with the last one when it has no newline."""
    counter = state.counter
    if counter is None:
        return None
    f.seek(state.offset)
    rest = f.read()
    last, _torn = parse_tail(state.line, state.offset, rest)
    if isinstance(last, Entry):
        counter.add([last])
    elif last is not None:
        counter.add_malformed(1)
    return counter.census(unterminated=bool(rest))


def _check_rollout(f: IO[bytes], st: os.stat_result, state: TranscriptState, rules: RuleSet | None) -> list[Finding]:
    """A rollout's findings, kept with the file's mark: unchanged, they are the answer again."""
    if state.findings is not None and state.offset == 0 and state.mark.unchanged(st):
        state.stats.reused = True
        return state.findings
    state._reset()
    state.rules = rules
    state.stats.full_reads += 1
    findings = check_rollout_bytes(f.read(), rules).findings
    state.mark = take_mark(f, st, 0)
    state.findings = findings
    return findings


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


def _read_new(f: IO[bytes], state: TranscriptState, allow_close: bool, end: int = -1) -> None:
    """Read complete lines from `state.offset` (to `end`, if given); the torn tail is left.

    Per line, the loop below is the rest of the cost of reading (after `LineReader`'s decoding),
    so it stays flat.
    """
    start = state.offset
    entries, bad, ix = state.open_entries, state.open_bad, state.ix

    def read(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    reader = LineReader(read, state.offset, state.line, end)
    for batch in reader:
        _stop_here(state)
        # All at once: a stop below (a link into the closed part) drops this state anyway.
        bad.extend(batch.bad)
        if state.counter is not None:
            state.counter.add(batch.entries)
            state.counter.add_malformed(len(batch.bad))
        if state.last_boundary <= state.main_segment and not batch.boundary:
            # No boundary pending and none in these lines: nothing can close, so they are only kept
            # (most chunks; the loop below costs ~3 % of a check).
            entries.extend(batch.entries)
            if ix is not None:
                ix.add_entries(batch.entries)
            continue
        for e in batch.entries:
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
                        base = batch.offset
                        state.offset = base + batch.chunk.find(b"\n", e.offset - base) + 1
                        state.line = e.line + 1
                        state.stats.bytes_read += state.offset - start
                        return
                    entries, bad, ix = state.open_entries, state.open_bad, state.ix
    state.offset, state.line = reader.offset, reader.line
    state.stats.bytes_read += reader.offset - start


def _links_of(loc: Locality, state: TranscriptState) -> Links:
    h, hk = state._h, state._hk
    return Links(map(h, loc.uuids), map(h, loc.unresolved), map(hk, loc.siblings))


def _close(state: TranscriptState, k: int) -> None:
    """Close open_entries[:k] when provably independent of the rest; keep its findings."""
    entries = state.open_entries
    closing, rest = entries[:k], entries[k:]
    if not closing or not rest:
        return
    conversations, ix = rebuild_indexed(closing, main=False, history=state.history)
    loc = locality(ix)
    if loc.dangling and state.open_start > 0:
        return  # a missing parent bridged to nothing here might bridge to a closed line in a whole read
    h, hk = state._h, state._hk
    stretch = _links_of(loc, state)
    closed = state.closed.as_sets()
    if closed and closed.meets(stretch.uuids, stretch.unresolved, stretch.siblings):
        state.violated = True
        return
    if stretch.meets_entries(rest, h, hk):
        return  # the open region reaches back into what would close: keep it open
    first = rest[0]
    bad = [b for b in state.open_bad if b.line < first.line]
    state.closed_findings.extend(conversation_findings(conversations, bad, file_fetcher(state._path), state.rules))
    closed.add(stretch)
    state.open_entries = rest
    state.ix = None
    state.verified = 0
    state.open_bad = [b for b in state.open_bad if b.line >= first.line]
    state.open_start, state.open_line = first.offset, first.line
    state.last_boundary -= k
    state.main_segment -= k


def _tail(f: IO[bytes], state: TranscriptState) -> Entry | BadLine | None:
    """The last line when it has no newline yet: read for this check, never kept."""
    f.seek(state.offset)
    parsed, _torn = parse_tail(state.line, state.offset, f.read())  # torn: read it when it is complete
    if isinstance(parsed, Entry) and state.closed and state.closed.meets_entry(parsed, state._h, state._hk):
        state.violated = True  # the shortcut fails for this line even before it is complete
    return parsed


def _reaches_closed(state: TranscriptState, entries: list[Entry]) -> bool:
    closed, h, hk = state.closed, state._h, state._hk
    return bool(closed) and closed.meets_entries(entries, h, hk)


def _analyze_open(state: TranscriptState, tail: Entry | BadLine | None) -> list[Finding]:
    _stop_here(state)
    entries = state.open_entries
    if _reaches_closed(state, entries[state.verified :]):
        state.violated = True
        return []
    state.verified = len(entries)
    bad = state.open_bad
    ix = None
    if isinstance(tail, Entry):
        entries = [*entries, tail]  # not kept: indexed for this check only
    else:
        if state.ix is None:
            state.ix = index_entries(entries)
        ix = state.ix
        if isinstance(tail, BadLine):
            bad = [*bad, tail]
    conversations, ix = rebuild_indexed(entries, ix=ix, history=state.history)
    if state.closed and dangling(ix):
        state.violated = True
        return []
    found = conversation_findings(conversations, bad, file_fetcher(state._path), state.rules)
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


def check_part(
    path: str, start: int, end: int, line: int, rules: RuleSet | None = None, history: bool = True
) -> PartCheck:
    """`check_stretch`, packed to send from a forked child to its parent."""
    checked = check_stretch(path, start, end, line, rules, history)
    if checked is None:
        return PartCheck(False)
    findings, links = checked
    uuids, unresolved, siblings = (array("q", d).tobytes() for d in (links.uuids, links.unresolved, links.siblings))
    return PartCheck(True, findings, uuids, unresolved, siblings)


def check_stretch(
    path: str, start: int, end: int, line: int, rules: RuleSet | None = None, history: bool = True
) -> tuple[list[Finding], Links] | None:
    """Check `path[start:end]` (whole lines; `end` -1: to the end of the file, torn tail included)
    as a stretch of a longer file whose line `line` starts at byte `start`: its findings and the
    links of all its lines (`Links`, as sets), or None when it cannot be judged alone.

    A stretch that ends before the file does is history (a later stretch holds the live
    conversation); the last one must hold it. `start` > 0 must be a main compact_boundary line,
    so that no chain crosses into the stretch: what `_close` relies on too.
    """
    state = TranscriptState(history=history)
    state.rules, state._path = rules, path
    state.offset = state.open_start = start
    state.line = state.open_line = line
    last = end < 0
    with no_gc(), open(path, "rb") as f:
        _read_new(f, state, allow_close=True, end=end)
        tail = _tail(f, state) if last and not state.violated else None
    entries, bad = state.open_entries, state.open_bad
    if state.violated or _reaches_closed(state, entries[state.verified :]):
        return None
    if isinstance(tail, Entry):
        entries = [*entries, tail]
    elif isinstance(tail, BadLine):
        bad = [*bad, tail]
    conversations, ix = rebuild_indexed(entries, main=last, history=history)
    if last and not any(c.kind == "main" for c in conversations):
        return None  # the live conversation is in an earlier stretch: that one is not history
    loc = locality(ix)
    if loc.dangling and state.open_start > 0:
        return None  # bridging could reach a line before the stretch in a whole read
    findings = conversation_findings(conversations, bad, file_fetcher(path), rules)
    links = state.closed.as_sets()
    links.add(_links_of(loc, state))
    return [*state.closed_findings, *findings], links
