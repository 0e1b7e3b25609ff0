"""Where a session's repaired copy is, so repairs do not pile up.

A sidecar record per original in the user cache folder (`repairs/<hash of the original's path>.json`):
the original's path and state when it was repaired (device, inode, size, mtime), the copy's path,
session id and mode. No conversation text. A record counts only while the original is unchanged
since and the copy still exists; anything unreadable, foreign or stale is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .paths import user_cache_dir

FORMAT = 1
_MAX_RECORD = 64 * 1024  # a record is a few hundred bytes; anything larger is not ours


@dataclass(frozen=True, slots=True)
class Repaired:
    copy: Path
    session_id: str
    mode: str
    cwd: str | None


def _record_path(source: Path) -> Path:
    key = hashlib.sha256(os.path.abspath(source).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return user_cache_dir() / "repairs" / f"{key}.json"


def _state(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def remember(source: Path, source_stat: os.stat_result, copy: Path, session_id: str, mode: str,
             cwd: str | None) -> None:
    """Record a repaired copy of `source` (best effort: a cache that cannot be written costs nothing)."""
    record = {"format": FORMAT, "source": os.path.abspath(source), "state": _state(source_stat),
              "copy": os.path.abspath(copy), "session_id": session_id, "mode": mode, "cwd": cwd}
    path = _record_path(source)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".record.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def repaired_copy(source: str | Path) -> Repaired | None:
    """The repaired copy of `source`, when one was written and `source` has not changed since."""
    path = _record_path(Path(source))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECORD:
            return None
        data = json.loads(os.read(fd, _MAX_RECORD).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    try:
        now = os.stat(source)
        if (not isinstance(data, dict) or data.get("format") != FORMAT
                or data.get("source") != os.path.abspath(source) or data.get("state") != _state(now)):
            return None
        copy = Path(str(data["copy"]))
        if not copy.is_file():
            return None
        cwd = data.get("cwd")
        return Repaired(copy, str(data["session_id"]), str(data["mode"]), cwd if isinstance(cwd, str) else None)
    except (OSError, KeyError, TypeError):
        return None
