"""The startup scan, and which server of the machine runs it.

Every editor window may start a server (VS Code starts one per window), and all of them watch the same
folders. One of them, the holder of an exclusive `flock` on a lock file in the user cache folder (one
file per set of watched folders, held for the server's life), scans the watched files at start,
shows the summary and raises the notifications for newly broken sessions. The others skip the scan
and the notifications (they say why in the client's log) and still answer for open documents and
watched changes; each waits for the lock in a thread of its own, and the first to get it when the
holder exits takes over (it scans again, from the cache, without a second summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from ..findings import Severity
from .fileio import watched_files
from .summary import broken_summary

if TYPE_CHECKING:
    from .server import RewindLanguageServer

try:
    import fcntl
except ImportError:  # Windows: no flock; every server scans, as before
    fcntl = None  # type: ignore[assignment]

NOT_HOLDER = (
    "rewind-lsp: another rewind-lsp server (pid {pid}) runs the startup scan and the notifications for {roots}; "
    "this one answers for open documents and watched changes, and takes over when that one exits"
)
TOOK_OVER = "rewind-lsp: took over the startup scan and the notifications for {roots}"


def lock_path(folder: Path, roots: list[str]) -> Path:
    """One lock file per set of watched folders: servers watching other folders do not wait on each other."""
    key = "\0".join(sorted(os.path.realpath(r) for r in roots))
    return folder / f"watch-{hashlib.sha256(key.encode(errors='surrogateescape')).hexdigest()[:16]}.lock"


class ScanLock:
    """An exclusive flock held for the life of the server that holds it (the kernel lets go when the
    process ends, however it ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.abandoned = False

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)

    def _took(self, fd: int) -> None:
        self.fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def try_acquire(self) -> bool:
        """True when this process holds the lock now (always, where there is no flock or no cache folder)."""
        if fcntl is None:
            return True
        try:
            fd = self._open()
        except OSError:
            return True  # no cache folder to coordinate in: behave as a lone server
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._took(fd)
        return True

    def holder(self) -> str:
        """The holder's pid, as it wrote it ("?" when it cannot be read)."""
        try:
            with open(self.path, encoding="ascii") as f:
                return f.read(32).strip() or "?"
        except (OSError, ValueError):
            return "?"

    def wait(self, acquired: Callable[[], None]) -> None:
        """Wait for the lock in a daemon thread; `acquired()` is called on that thread once held."""

        def run() -> None:
            assert fcntl is not None
            try:
                fd = self._open()
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                return
            if self.abandoned:
                os.close(fd)  # the server watches other folders now
                return
            self._took(fd)
            acquired()

        threading.Thread(target=run, name="rewind-lsp-scan-lock", daemon=True).start()

    def release(self) -> None:
        self.abandoned = True
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def claim(ls: RewindLanguageServer, folder: Path) -> None:
    """Take the scan lock for the watched folders, or wait for it; start the scan when held."""
    if ls.scan_lock is not None:
        ls.scan_lock.release()
    roots = ls.watcher.roots if ls.watcher is not None else []
    lock = ScanLock(lock_path(folder, roots))
    ls.scan_lock = lock
    shown = ", ".join(roots) or "nothing"
    if lock.try_acquire():
        ls.scan_holder = True
        ls.spawn(startup_scan(ls, summary=True))
        return
    ls.scan_holder = False
    ls.startup_done.set()  # nothing to wait for: this server does not scan
    ls.window_log_message(types.LogMessageParams(types.MessageType.Info, NOT_HOLDER.format(pid=lock.holder(),
                                                                                          roots=shown)))
    loop = asyncio.get_running_loop()

    def took_over() -> None:
        if ls.scan_lock is not lock:
            return
        ls.scan_holder = True
        ls.window_log_message(types.LogMessageParams(types.MessageType.Info, TOOK_OVER.format(roots=shown)))
        ls.spawn(startup_scan(ls, summary=False, since=time.time()))

    def acquired() -> None:
        loop.call_soon_threadsafe(took_over)

    lock.wait(acquired)


async def startup_scan(ls: RewindLanguageServer, summary: bool, since: float | None = None) -> None:
    """Check every watched file once (from the persistent cache: a warm restart only stats files),
    reporting progress, without blocking requests; then the summary, when asked for and broken.
    Errors in a file written since `since` (default: since watching began) are news, announced; a
    takeover passes the moment it took over (what broke before, the previous holder announced)."""
    watcher = ls.watcher
    files = (
        await asyncio.get_running_loop().run_in_executor(None, watched_files, watcher.roots, watcher.wanted)
        if watcher
        else []
    )
    token: str | None = None
    wdp = ls.client_capabilities.window
    if files and wdp is not None and wdp.work_done_progress:
        token = str(uuid.uuid4())
        try:
            await ls.work_done_progress.create_async(token)
            ls.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(
                    title="rewind-lsp: checking Claude Code sessions", percentage=0, cancellable=False
                ),
            )
        except Exception:
            token = None
    broken: list[str] = []
    for i, path in enumerate(files):
        await ls.refresh_path(path, announce=ls.changed_since_watching(path, since))
        if any(f.severity == Severity.ERROR for f in ls.disk_findings.get(path, [])):
            broken.append(path)
        if token and (i % 20 == 0 or i == len(files) - 1):
            ls.work_done_progress.report(
                token,
                types.WorkDoneProgressReport(
                    message=f"{i + 1}/{len(files)} files", percentage=int(100 * (i + 1) / len(files))
                ),
            )
    text = broken_summary(broken)
    if token:
        done = text.removeprefix("rewind-lsp: ").partition(":")[0] if text else "nothing broken"
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=done))
    if summary and text and ls.settings.notifications:
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Warning, text))
    ls.startup_done.set()
