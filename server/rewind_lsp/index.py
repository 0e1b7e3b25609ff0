"""Incremental check states kept on disk between processes (the hook, the CLI, the server).

A state file holds offsets, the edges of the file that was read, findings, and hashes of what
the closed part of the transcript links to: no entries. A few hundred KB for a 100 MB
transcript. The next call re-reads only the open region (the live conversation's segment, a
few MB at most in a compacted session) and what was appended; an unchanged file costs a
`stat` and the state file. Any unreadable, foreign or stale state file means a full read.

A state is keyed by the transcript's real path, the package version and a digest of the rule set
in force (`rules_digest`): another release or other rules never read a state they did not write.
The folder is kept under a size cap by `cachedir` (least recently used dropped).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import __version__, cachedir
from .findings import Finding
from .forks import follow
from .incremental import TranscriptState, check_transcript_incremental
from .links import Links

if TYPE_CHECKING:
    from .rules import RuleSet

FORMAT = 4  # 3: the rule set's digest joined the key and the header; 4: links.stable_hash changed
# A state file is a few hundred KB; anything past this is not ours (a /dev/zero symlink would grow
# the read without end): ignore it and rebuild.
MAX_STATE_BYTES = 64 * 1024 * 1024
# A state used again is touched (its mtime is its last use, for the LRU bound) at most this often:
# a second run over 1,000 unchanged sessions should not write 1,000 inodes.
TOUCH_AFTER_SECONDS = 600


class SavedState(msgspec.Struct, array_like=True):
    """A state file's payload (after a BLAKE2b digest of it)."""

    format: int
    version: str
    rules: str
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


_decode = msgspec.msgpack.Decoder(SavedState).decode
_DIGEST = 16


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST).digest()


def shipped_rules_dir() -> Path:
    # rules.builtin_rules_dir, without importing the rules loader (re2, TOML): the hook runs on
    # every prompt and a clean check needs no rule. A test keeps the two equal.
    here = Path(__file__).resolve().parent
    packaged = here / "rules"
    return packaged if packaged.is_dir() else here.parent.parent / "rules"


_shipped_digest: str | None = None


def rules_digest(rules: RuleSet | None) -> str:
    """A digest of the rule set in force: None is the shipped rules (named by their files' names,
    sizes and mtimes, so an edited rule in a development checkout is noticed); a loaded set is
    digested by what its rules say."""
    global _shipped_digest
    h = hashlib.blake2b(digest_size=8)
    if rules is None:
        if _shipped_digest is None:
            folder = shipped_rules_dir()
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            for name in names:
                try:
                    st = os.stat(folder / name)
                except OSError:
                    continue
                h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
            _shipped_digest = "shipped-" + h.hexdigest()
        return _shipped_digest
    for r in rules:
        parts = [r.id, r.title, r.severity.label, ",".join(r.applies_to), str(r.wrap), r.hover, r.fix_markdown,
                 str(r.fix_path), *(p.pattern for p in r.patterns), "\0not", *(p.pattern for p in r.not_patterns)]
        h.update("\0".join(parts).encode(errors="surrogatepass") + b"\n\1")
    return "set-" + h.hexdigest()


def states_dir() -> Path:
    """The folder the CLI, the hook and the server keep their states in (one, so they share them)."""
    from .paths import user_cache_dir

    return user_cache_dir() / "index"


def state_file(cache_dir: Path, path: str, rules: RuleSet | None = None, real: str | None = None) -> Path:
    """Where the state of `path` under `rules` lives (one file per path, release and rule set);
    `real`: its canonical path when the caller resolved it already."""
    return _file_for(cache_dir, real or os.path.realpath(path), rules)


def _file_for(cache_dir: Path, real: str, rules: RuleSet | None) -> Path:
    key = f"{real}\0{__version__}\0{rules_digest(rules)}"
    return cache_dir / f"{hashlib.sha256(key.encode(errors='surrogateescape')).hexdigest()[:32]}.state"


def _unpack(data: bytes) -> array[int]:
    a = array("q")
    a.frombytes(data[: len(data) // a.itemsize * a.itemsize])
    return a


def _read_regular(file: Path) -> tuple[bytes, float] | None:
    """The bytes and mtime of `file` when it is a regular file of at most MAX_STATE_BYTES, else None.
    O_NONBLOCK: opening a FIFO put in its place must not wait for a writer (the hook would hang)."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_STATE_BYTES + 1)
    finally:
        os.close(fd)
    return (data, st.st_mtime) if len(data) <= MAX_STATE_BYTES else None


def save_state(state: TranscriptState, file: Path, path: str, rules: RuleSet | None = None) -> bool:
    """Write `state` (which must use stable hashes) atomically: whether it was written (errors are
    ignored: this is a cache; an unwritable folder means the next call reads the file again)."""
    return _save(state, file, os.path.realpath(path), rules)


def _save(state: TranscriptState, file: Path, real: str, rules: RuleSet | None) -> bool:
    if not state.stable_hashes or state.findings is None:
        return False
    uuids, unresolved, siblings = state.closed.sorted_arrays()
    saved = SavedState(
        FORMAT, __version__, rules_digest(rules), real, state.dev, state.ino, state.size,
        state.mtime_ns, state.offset, state.line, state.head, state.tail, state.open_start, state.open_line,
        uuids.tobytes(), unresolved.tobytes(), siblings.tobytes(),
        state.closed_findings, state.findings,
    )
    try:
        payload = msgspec.msgpack.encode(saved)
    except (UnicodeEncodeError, msgspec.EncodeError):
        return False  # an id with a lone surrogate (from a damaged file): such a state is not kept
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name by hand (O_EXCL, pid and clock): `tempfile` would cost the hook
        # a few ms of imports on every prompt. The rename makes a concurrent writer's file or ours
        # win whole; a reader never sees half of one.
        tmp = file.with_name(f"{cachedir.TEMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_digest(payload) + payload)
            os.replace(tmp, file)
        except OSError:
            os.unlink(tmp)
            return False
    except OSError:
        return False
    return True


def read_saved(file: Path) -> tuple[SavedState, float] | None:
    """The payload of a state file and the file's mtime, or None when it is unreadable, not a
    regular file, torn or damaged."""
    try:
        read = _read_regular(file)
        if read is None:
            return None  # a FIFO, a device or an oversized file: not ours, rebuild
        data, mtime = read
        payload = data[_DIGEST:]
        if data[:_DIGEST] != _digest(payload):
            return None  # torn or damaged: the hash arrays must be exactly as written (sorted)
        return _decode(payload), mtime
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def _load(file: Path, real: str, rules: RuleSet | None) -> tuple[TranscriptState, float]:
    state = TranscriptState(stable_hashes=True)
    state.rules = rules  # what the saved state was checked under (its digest is in the key)
    read = read_saved(file)
    if read is None:
        return state, 0.0
    saved, mtime = read
    if (saved.format, saved.version, saved.rules, saved.path) != (
        FORMAT, __version__, rules_digest(rules), real
    ):
        return state, 0.0  # another release or rule set may judge differently, or a hash collision
    state.dev, state.ino, state.size, state.mtime_ns = saved.dev, saved.ino, saved.size, saved.mtime_ns
    state.offset, state.line, state.head, state.tail = saved.offset, saved.line, saved.head, saved.tail
    state.open_start, state.open_line = saved.open_start, saved.open_line
    state.closed_findings, state.findings = saved.closed_findings, saved.findings
    state.open_loaded = False
    state.closed = Links.from_sorted(_unpack(saved.uuids), _unpack(saved.unresolved), _unpack(saved.siblings))
    return state, mtime


def load_state(file: Path, path: str, rules: RuleSet | None = None) -> TranscriptState:
    """The saved state for `path` under `rules`, or a fresh one when there is none usable
    (`state.findings` is None then)."""
    return _load(file, os.path.realpath(path), rules)[0]


def check_saved(
    path: str, cache_dir: Path, rules: RuleSet | None = None, real: str | None = None
) -> tuple[list[Finding], TranscriptState, bool]:
    """`check_cached` without the folder's upkeep: (findings, state, whether a state was written);
    `real`: the canonical path of `path` when the caller resolved it already."""
    real = real or os.path.realpath(path)  # one look-up of every link in the path, not three
    file = _file_for(cache_dir, real, rules)
    state, mtime = _load(file, real, rules)
    findings = check_transcript_incremental(path, state, rules)
    # The file's own findings are saved; a fork's parent is read anew each time (it changes apart).
    if state.stats.reused:
        if time.time() - mtime > TOUCH_AFTER_SECONDS:
            with contextlib.suppress(OSError):
                os.utime(file)  # used again: the last to be dropped
        return follow(path, findings, rules), state, False
    return follow(path, findings, rules), state, _save(state, file, real, rules)


def check_cached(path: str, cache_dir: Path, rules: RuleSet | None = None) -> tuple[list[Finding], TranscriptState]:
    """Findings of the transcript at `path`, reading only what changed since the last call."""
    findings, state, wrote = check_saved(path, cache_dir, rules)
    if wrote:
        cachedir.prune_if_due(cache_dir)
    return findings, state
