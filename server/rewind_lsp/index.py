"""Incremental check states kept on disk between processes (the hook runs once per prompt).

A state file holds offsets, the edges of the file that was read, findings, and hashes of what
the closed part of the transcript links to: no entries. A few hundred KB for a 100 MB
transcript. The next call re-reads only the open region (the live conversation's segment, a
few MB at most in a compacted session) and what was appended; an unchanged file costs a
`stat` and the state file. Any unreadable, foreign or stale state file means a full read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import __version__
from .findings import Finding
from .incremental import TranscriptState, _Closed, check_transcript_incremental

if TYPE_CHECKING:
    from .rules import RuleSet

FORMAT = 2
# A state file is a few hundred KB; anything past this is not ours (a /dev/zero symlink would grow
# the read without end): ignore it and rebuild.
MAX_STATE_BYTES = 64 * 1024 * 1024


class _Saved(msgspec.Struct, array_like=True):
    format: int
    version: str
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int
    line: int
    head: bytes
    tail: bytes
    open_start: int
    open_line: int
    uuids: bytes  # int64 hashes, native byte order (the file never leaves this machine)
    unresolved: bytes
    siblings: bytes
    closed_findings: list[Finding]
    findings: list[Finding] | None


_decode = msgspec.msgpack.Decoder(_Saved).decode
_DIGEST = 16


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST).digest()


def state_file(cache_dir: Path, path: str) -> Path:
    key = hashlib.sha256(os.path.realpath(path).encode(errors="surrogateescape")).hexdigest()[:32]
    return cache_dir / f"{key}.state"


def _unpack(data: bytes) -> array[int]:
    a = array("q")
    a.frombytes(data[: len(data) // a.itemsize * a.itemsize])
    return a


def _read_regular(file: Path) -> bytes | None:
    """The bytes of `file` when it is a regular file of at most MAX_STATE_BYTES, else None.
    O_NONBLOCK: opening a FIFO put in its place must not wait for a writer (the hook would hang)."""
    import stat

    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_STATE_BYTES + 1)
    finally:
        os.close(fd)
    return data if len(data) <= MAX_STATE_BYTES else None


def save_state(state: TranscriptState, file: Path, path: str) -> None:
    """Write `state` (which must use stable hashes) atomically; errors are ignored (a cache)."""
    if not state.stable_hashes or state.findings is None:
        return
    uuids, unresolved, siblings = state.closed.sorted_arrays()
    saved = _Saved(
        FORMAT, __version__, os.path.realpath(path), state.dev, state.ino, state.size, state.mtime_ns,
        state.offset, state.line, state.head, state.tail, state.open_start, state.open_line,
        uuids.tobytes(), unresolved.tobytes(), siblings.tobytes(),
        state.closed_findings, state.findings,
    )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name by hand (O_EXCL, pid and clock): `tempfile` would cost the hook
        # a few ms of imports on every prompt.
        tmp = file.with_name(f".state-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            payload = msgspec.msgpack.encode(saved)
            with os.fdopen(fd, "wb") as f:
                f.write(_digest(payload) + payload)
            os.replace(tmp, file)
        except OSError:
            os.unlink(tmp)
    except OSError:
        pass


def load_state(file: Path, path: str) -> TranscriptState:
    """The saved state for `path`, or a fresh one when there is none usable."""
    state = TranscriptState(stable_hashes=True)
    try:
        data = _read_regular(file)
        if data is None:
            return state  # a FIFO, a device or an oversized file: not ours, rebuild
        payload = data[_DIGEST:]
        if data[:_DIGEST] != _digest(payload):
            return state  # torn or damaged: the hash arrays must be exactly as written (sorted)
        saved = _decode(payload)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return state
    if saved.format != FORMAT or saved.version != __version__ or saved.path != os.path.realpath(path):
        return state  # another release may judge differently, or a hash collision of paths
    state.dev, state.ino, state.size, state.mtime_ns = saved.dev, saved.ino, saved.size, saved.mtime_ns
    state.offset, state.line, state.head, state.tail = saved.offset, saved.line, saved.head, saved.tail
    state.open_start, state.open_line = saved.open_start, saved.open_line
    state.closed_findings, state.findings = saved.closed_findings, saved.findings
    state.open_loaded = False
    state.closed = _Closed.from_sorted(_unpack(saved.uuids), _unpack(saved.unresolved), _unpack(saved.siblings))
    return state


def check_cached(path: str, cache_dir: Path, rules: RuleSet | None = None) -> tuple[list[Finding], TranscriptState]:
    """Findings of the transcript at `path`, reading only what changed since the last call."""
    file = state_file(cache_dir, path)
    state = load_state(file, path) if rules is None else TranscriptState(stable_hashes=True)
    findings = check_transcript_incremental(path, state, rules)
    if rules is None and not state.stats.reused:
        save_state(state, file, path)
        # The pickled index of earlier releases (entries included: 15 MB per 100 MB) is dead weight.
        with contextlib.suppress(OSError):
            file.with_suffix(".idx").unlink(missing_ok=True)
    return findings, state
