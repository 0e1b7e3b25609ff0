"""A small on-disk index of parsed transcripts, so a re-check reads only the appended bytes.

Keyed by path; valid while the file keeps its inode and its already-read prefix (checked by
the hash of the last bytes before the stored offset). Anything else means a full re-read.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .transcript import BadLine, Entry, Transcript, parse_line

FORMAT = 1
_TAIL = 4096  # bytes hashed before the offset to notice a rewritten prefix


@dataclass(slots=True)
class _Cached:
    format: int
    inode: int
    offset: int  # end of the last complete line read
    line: int  # the next line number
    tail_hash: str
    entries: list[Entry]
    bad_lines: list[BadLine]


def _tail_hash(f: object, offset: int) -> str:
    start = max(0, offset - _TAIL)
    f.seek(start)  # type: ignore[attr-defined]
    return hashlib.sha256(f.read(offset - start)).hexdigest()  # type: ignore[attr-defined]


def _cache_file(cache_dir: Path, path: str) -> Path:
    return cache_dir / f"{hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]}.idx"


def _load(cache_file: Path) -> _Cached | None:
    try:
        with open(cache_file, "rb") as f:
            cached = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None
    return cached if isinstance(cached, _Cached) and cached.format == FORMAT else None


def _store(cache_file: Path, cached: _Cached) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".idx-")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(cached, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_indexed(path: str, cache_dir: Path) -> tuple[Transcript, int]:
    """The transcript at `path`, and how many bytes had to be read to get it."""
    cache_file = _cache_file(cache_dir, path)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        cached = _load(cache_file)
        if cached is not None and (
            cached.inode != st.st_ino or cached.offset > st.st_size or _tail_hash(f, cached.offset) != cached.tail_hash
        ):
            cached = None
        if cached is None:
            cached = _Cached(FORMAT, st.st_ino, 0, 1, _tail_hash(f, 0), [], [])
        start = cached.offset
        f.seek(start)
        torn = False
        for raw in f:
            if not raw.endswith(b"\n"):
                torn = bool(raw.strip())  # a line still being written: read it next time
                break
            body = raw[:-1].rstrip(b"\r")
            if body.strip():
                parsed = parse_line(cached.line, cached.offset, body)
                (cached.entries if isinstance(parsed, Entry) else cached.bad_lines).append(parsed)  # type: ignore[arg-type]
            cached.offset += len(raw)
            cached.line += 1
        read = st.st_size - start
        cached.tail_hash = _tail_hash(f, cached.offset)
    _store(cache_file, cached)
    if torn:
        # The torn tail may already decode (a writer that has not written its newline yet).
        with open(path, "rb") as f:
            f.seek(cached.offset)
            body = f.read().rstrip(b"\r")
        parsed = parse_line(cached.line, cached.offset, body)
        if isinstance(parsed, Entry):
            return Transcript([*cached.entries, parsed], list(cached.bad_lines), False, st.st_size), read
    return Transcript(list(cached.entries), list(cached.bad_lines), torn, st.st_size), read
