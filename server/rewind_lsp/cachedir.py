"""The state folder's size cap: the least recently used files are dropped past it.

Every file in the folder is ours (states, and the temporary files they are written through), and
a file's mtime is its last use (`index` writes or touches it). Pruning is a `scandir` of the
folder: the CLI prunes after every run that wrote a state, the hook and the server at most every
`PRUNE_EVERY_SECONDS`. Several processes may prune at once: a file already gone is skipped, and a
state removed under a reader is a full read for it, never a wrong answer.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

DEFAULT_CAP_MB = 64
CAP_ENV = "REWIND_LSP_CACHE_MB"  # the cap in MB (1,000,000 bytes), when set to a whole number
PRUNE_EVERY_SECONDS = 300
TEMP_PREFIX = ".state-"  # a state being written; one older than this is a writer that died
STALE_TEMP_SECONDS = 3600
_MARK = ".pruned"  # its mtime: the last time the folder was pruned


def cap_bytes() -> int:
    text = os.environ.get(CAP_ENV, "")
    try:
        mb = int(text)
    except ValueError:
        mb = DEFAULT_CAP_MB
    return max(mb, 0) * 1_000_000


def prune(folder: Path, cap: int | None = None) -> int:
    """Drop the least recently used files of `folder` until it holds at most `cap` bytes (default
    `cap_bytes()`), and dead writers' temporary files: how many bytes it holds after."""
    cap = cap_bytes() if cap is None else cap
    now = time.time()
    files: list[tuple[float, int, str]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name == _MARK:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                    continue  # a folder or FIFO someone put here: not ours to remove
                if entry.name.startswith(TEMP_PREFIX):
                    if now - st.st_mtime > STALE_TEMP_SECONDS:
                        _unlink(entry.path)
                    continue
                files.append((st.st_mtime, st.st_size, entry.path))
    except OSError:
        return 0
    total = sum(size for _, size, _ in files)
    files.sort()
    for _, size, path in files:
        if total <= cap:
            break
        if _unlink(path):
            total -= size
    return total


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)  # a symlink is removed, never what it points to
    except FileNotFoundError:
        return True  # another process pruned it first
    except OSError:
        return False
    return True


def prune_if_due(folder: Path) -> None:
    """Prune when the last prune is older than PRUNE_EVERY_SECONDS (one `stat` otherwise)."""
    mark = folder / _MARK
    try:
        if time.time() - os.stat(mark).st_mtime < PRUNE_EVERY_SECONDS:
            return
    except OSError:
        pass
    try:
        mark.touch()
    except OSError:
        return  # an unwritable folder grows no more
    prune(folder)
