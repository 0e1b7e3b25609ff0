"""Was the file rewritten? The one test every incremental reader makes before reading on.

After a read, a `FileMark` notes the file's device, inode, size and mtime, and digests of its
first bytes and of the bytes just before the offset the read stopped at. On the next read the
file is taken for the same one, grown by appends only, unless it is another file (device or
inode), shorter than that offset, written without growing (same size, other mtime), or its first
bytes or the bytes before the offset differ. An edit in the middle of a file that also grows it
passes for an append: the writers watched here (Claude Code, a terminal log) only append.

Used by `incremental` (transcripts: the whole test) and `logscan` (logs: rotation, truncation and
the bytes before the offset); a state saved to disk keeps the mark.
"""

from __future__ import annotations

import os
from typing import IO

import msgspec

EDGE = 256  # bytes digested at the start of the file and before the offset
_DIGEST_SIZE = 16


class FileMark(msgspec.Struct):
    """What a read saw of a file. The default mark is "nothing read yet"."""

    dev: int = -1
    ino: int = -1
    size: int = -1
    mtime_ns: int = -1
    head: bytes = b""  # digest of the first EDGE bytes (of those before the offset, if fewer)
    tail: bytes = b""  # digest of the EDGE bytes before the offset

    @property
    def taken(self) -> bool:
        return self.ino >= 0

    def unchanged(self, st: os.stat_result) -> bool:
        """The same file, not written since (size and mtime as marked)."""
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.dev, self.ino, self.size, self.mtime_ns)


def _digest(data: bytes) -> bytes:
    from hashlib import blake2b  # ~3 ms of import: only for files read more than once

    return blake2b(data, digest_size=_DIGEST_SIZE).digest()


def _head(f: IO[bytes], offset: int) -> bytes:
    """The first bytes, no further than `offset`: an append leaves them as they were."""
    f.seek(0)
    return f.read(min(EDGE, offset))


def _before(f: IO[bytes], offset: int) -> bytes:
    start = max(0, offset - EDGE)
    f.seek(start)
    return f.read(offset - start)


def take_mark(f: IO[bytes], st: os.stat_result, offset: int) -> FileMark:
    """The mark of the open file `f` (stat `st`) read up to `offset`."""
    head, before = _digest(_head(f, offset)), _digest(_before(f, offset))
    return FileMark(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, head, before)


def rewritten(f: IO[bytes], st: os.stat_result, mark: FileMark, offset: int, whole: bool = True) -> bool:
    """Is the open file `f` (stat `st`) anything but the marked file, appended to, read to `offset`?

    False for a mark not taken yet (nothing to compare). `whole` False leaves out the two tests of
    what lies far behind the offset (the first bytes, a write that does not grow the file): a log
    scan keeps no state from there that such a write could make wrong, and reads on from the
    offset (tests/core/test_logscan.py holds it to that); truncation and rotation still count."""
    if not mark.taken:
        return False
    if (st.st_dev, st.st_ino) != (mark.dev, mark.ino) or st.st_size < offset:
        return True  # another file at the path (rotation), or truncated
    if whole:
        if st.st_size == mark.size and st.st_mtime_ns != mark.mtime_ns:
            return True  # written to without growing: not an append
        if _digest(_head(f, offset)) != mark.head:
            return True
    return _digest(_before(f, offset)) != mark.tail
