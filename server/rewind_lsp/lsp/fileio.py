"""Reading and appending files the server serves, safely: regular files only, bounded reads."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import BinaryIO


class NotRegularFileError(OSError):
    """A FIFO, a device or a socket where a file was expected: opening a FIFO blocks until a writer comes,
    reading a device may never end, so neither is ever opened."""

    def __init__(self) -> None:
        super().__init__(0, "not a regular file")


def shown(text: str, limit: int = 200) -> str:
    """A client-supplied string fit for a message: printable and short."""
    if text.isprintable() and len(text) <= limit:
        return text
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def real_inside(path: str, roots: list[str]) -> str | None:
    """`path` with its links resolved, when it lies in one of `roots` (theirs resolved too; empty
    ones skipped), else None."""
    real = os.path.realpath(path)
    for root in filter(None, roots):
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return real
    return None


def mtime(path: str) -> float | None:
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


def open_regular(path: str) -> BinaryIO:
    """Open a regular file for reading; anything else raises. Opened non-blocking and checked with fstat,
    so a FIFO or device put there after any earlier check is refused, never read (nor waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError()
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_tail(path: str, limit: int) -> str:
    """The last `limit` bytes of a regular file, decoded; never more, even if the file grows meanwhile."""
    with open_regular(path) as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
        return f.read(limit).decode("utf-8", errors="replace")


def append_regular(path: str, data: str) -> None:
    """Append to a regular file, creating it. Opened non-blocking: a FIFO in its place fails at once (ENXIO,
    no reader) or is refused by fstat, instead of blocking the event loop in open()."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    # Owner-only: terminal output may hold keys and tokens.
    with os.fdopen(os.open(path, flags, 0o600), "a", encoding="utf-8") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotRegularFileError()
        f.write(data)


def watched_files(roots: list[str], wanted: Callable[[str], bool]) -> list[str]:
    """Every file below the roots with a watched name, sorted; folder symlinks are not followed. Unlike
    check.discover it keeps what is not a regular file (FIFOs, link loops, dangling links), so that the
    scan reports each one instead of skipping it silently."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            found += [p for p in (os.path.join(folder, name) for name in sorted(files)) if wanted(p)]
    return found


def read_line(path: str, line: int) -> str:
    """Line `line` (1-based) of a regular file, decoded ("" when there is none)."""
    try:
        with open_regular(path) as f:
            for n, raw in enumerate(f, 1):
                if n == line:
                    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    except OSError:
        pass
    return ""


def read_lines(path: str, wanted: set[int]) -> dict[int, str]:
    """The texts of the 1-based lines `wanted` of a regular file, read in one pass that stops after the last."""
    found: dict[int, str] = {}
    last = max(wanted, default=0)
    try:
        with open_regular(path) as f:
            for n, raw in enumerate(f, 1):
                if n in wanted:
                    found[n] = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
                if n >= last:
                    break
    except OSError:
        pass
    return found
