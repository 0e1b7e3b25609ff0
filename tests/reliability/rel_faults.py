"""Fault injection for rewind: kill the process at the N-th write step, or act at that step.

Every call rewind makes that changes the disk (file writes through `open`/`os.fdopen`,
`os.write`, `os.sendfile`, `os.fsync`, `os.link`, `os.replace`, `os.rename`, `os.unlink`,
`os.mkdir`, `os.rmdir`, `os.chmod`/`os.fchmod`/`os.fchown`, `shutil.copy2`, `tempfile.mkstemp`)
and its looks at the source (fingerprint, stat) are wrapped; each
one is a numbered *fault point* before the call, and one after it; a write also has a point in
the middle, where half of the data is on disk. At the chosen point the process dies with
`os._exit(137)`: no `finally`, no `atexit`, no flush, as with `kill -9`. It is fault injection,
not timing: the same run reaches the same points in the same order every time.

The run happens in a child process (`os.fork`, so that the hundreds of runs do not each pay for
starting Python). It is also a script, to replay one point by hand:

    python tests/reliability/rel_faults.py SESSION.jsonl --mode patch [--in-place] --kill-at 17
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILLED = 137
DONE = 0
REFUSED = 3
CRASHED = 4

_WRITE_MODES = ("w", "a", "x", "+")


class Points:
    """Numbers the fault points; at `target` it runs `action` (default: die)."""

    def __init__(self, target: int, action: Callable[[str], None] | None, log_path: str | None) -> None:
        self.n = 0
        self.target = target
        self.action = action
        self.log: list[str] = []
        self.log_path = log_path
        self.pid = os.getpid()

    def hit(self, name: str, partial: Callable[[], None] | None = None) -> None:
        if os.getpid() != self.pid:
            # A child rewind forked (the reader that checks the copy behind its writer) inherits
            # the wrapped calls: its own writes (to a pipe) are not rewind's steps, and an action
            # run there would run twice.
            return
        self.n += 1
        self.log.append(name)
        if self.n != self.target:
            return
        if self.action is not None:
            self.action(name)
            return
        if partial is not None:
            partial()
        os._exit(KILLED)

    def save(self) -> None:
        if self.log_path:
            data = json.dumps(list(self.log)).encode()
            with io.FileIO(self.log_path, "w") as f:  # never a wrapped writer
                f.write(data)


class _Writer:
    """A file object whose writes are fault points (with a torn-write point in the middle)."""

    def __init__(self, f: Any, points: Points, name: str) -> None:
        self._f = f
        self._points = points
        self._name = name

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B") if not isinstance(data, str) else data
        half = len(view) // 2

        def torn() -> None:  # half of the data reaches the file, then the process dies
            self._f.write(view[:half])
            self._f.flush()

        self._points.hit(f"write {self._name} (before)")
        if half:
            self._points.hit(f"write {self._name} (half written)", torn)
        n = self._f.write(data)
        self._points.hit(f"write {self._name} (after)")
        return n

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __iter__(self) -> Any:
        return iter(self._f)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def install(points: Points) -> None:
    """Wrap every disk-changing call rewind makes (process-wide: only ever in the child)."""
    import rewind_lsp.placement as placement
    import rewind_lsp.repair_plan as plan_mod

    real_open = io.open

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if any(m in mode for m in _WRITE_MODES):
            return _Writer(f, points, os.path.basename(str(file)) if not isinstance(file, int) else f"fd {file}")
        return f

    builtins.open = open_
    io.open = open_

    def wrap(owner: Any, attr: str, label: str | None = None) -> None:
        real = getattr(owner, attr)
        name = label or attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            points.hit(f"{name} (before)")
            result = real(*args, **kwargs)
            points.hit(f"{name} (after)")
            return result

        setattr(owner, attr, wrapped)

    real_write = os.write

    def os_write(fd: int, data: Any) -> int:
        view = memoryview(data).cast("B")
        points.hit("os.write (before)")
        if len(view) > 1:
            points.hit("os.write (half written)", lambda: real_write(fd, view[: len(view) // 2]))
        n = real_write(fd, data)
        points.hit("os.write (after)")
        return n

    os.write = os_write

    real_sendfile = os.sendfile

    def os_sendfile(out_fd: int, in_fd: int, offset: Any, count: int) -> int:
        points.hit("os.sendfile (before)")
        if count > 1:
            points.hit("os.sendfile (half copied)", lambda: real_sendfile(out_fd, in_fd, offset, count // 2))
        n = real_sendfile(out_fd, in_fd, offset, count)
        points.hit("os.sendfile (after)")
        return n

    os.sendfile = os_sendfile

    for attr in ("fsync", "link", "replace", "rename", "unlink", "mkdir", "rmdir", "truncate", "ftruncate",
                 "chmod", "fchmod", "fchown"):
        wrap(os, attr, f"os.{attr}")
    wrap(shutil, "copy2", "shutil.copy2")
    wrap(shutil, "copystat", "shutil.copystat")
    wrap(tempfile, "mkstemp", "tempfile.mkstemp")
    wrap(placement, "fingerprint", "fingerprint of the source")
    wrap(placement, "ensure_same_stat", "stat of the source")

    # Deterministic output, so a file left behind can be compared byte for byte with a full run.
    counter = iter(range(1, 1 << 30))
    uuid.uuid4 = lambda: uuid.UUID(int=(0x5EED << 96) | next(counter), version=4)  # type: ignore[assignment]
    plan_mod.now = lambda: "2026-01-01T00:00:00.000Z"  # type: ignore[assignment]
    real_strftime = time.strftime
    time.strftime = lambda fmt, *a: "20260101-000000" if "%Y%m%d" in fmt else real_strftime(fmt, *a)  # type: ignore[assignment]


def run(source: str, mode: str, in_place: bool, out: str | None, target: int,
        action: Callable[[str], None] | None = None, log_path: str | None = None,
        result_path: str | None = None) -> int:
    """Run rewind in a forked child with fault point `target` armed; returns how the child ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    # The repaired-copy record goes to a cache folder that does not exist yet in every run, so every
    # run makes the same calls (an existing folder would skip a mkdir and shift the points): one
    # under a folder of this run's own, removed when the child is done (not left in /tmp).
    scratch = tempfile.mkdtemp(prefix="rewind-lsp-fault-cache-")
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = CRASHED
        points = Points(target, action, log_path)
        try:
            from rewind_lsp.rewind import RewindError, rewind

            os.environ["REWIND_LSP_CACHE_DIR"] = os.path.join(scratch, "cache")
            install(points)
            try:
                result = rewind(source, mode=mode, out=out, in_place=in_place)
                code = DONE
                if result_path:
                    with io.FileIO(result_path, "w") as f:
                        f.write(json.dumps({"path": str(result.path), "backup": str(result.backup or ""),
                                            "warnings": result.warnings}).encode())
            except RewindError as exc:
                code = REFUSED
                if result_path:
                    with io.FileIO(result_path, "w") as f:
                        f.write(json.dumps({"refused": str(exc)}).encode())
        except BaseException:
            with io.FileIO(2, "w", closefd=False) as err:
                err.write(traceback.format_exc().encode())
        finally:
            try:
                points.save()
            finally:
                os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("--mode", default="truncate")
    ap.add_argument("--in-place", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--kill-at", type=int, default=0, help="0: no kill, list the fault points")
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".json") as log:
        code = run(args.source, args.mode, args.in_place, args.out, args.kill_at, log_path=log.name)
        points = json.loads(Path(log.name).read_text() or "[]")
    for i, p in enumerate(points, 1):
        print(f"{i:4d} {p}{'   <- killed here' if i == args.kill_at else ''}")
    print(f"child exit status: {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
