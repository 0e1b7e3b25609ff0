"""Watch transcript and log folders with watchdog and hand changed paths to the server's loop."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, wanted: Callable[[str], bool], notify: Callable[[str, bool], None]) -> None:
        self.wanted = wanted
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        deleted = event.event_type == "deleted"
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if path and self.wanted(path):
                self.notify(path, deleted and path == os.fsdecode(event.src_path))


class Watcher:
    """Coalesces bursts of events per path and calls `on_change(path, deleted)` on the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[str, bool], None],
        log_globs: Iterable[str],
        delay: float = 0.02,
    ) -> None:
        self.loop = loop
        self.on_change = on_change
        self.log_globs = list(log_globs)
        self.delay = delay
        self.observer: Observer | None = None  # type: ignore[valid-type]
        self.roots: list[str] = []
        self._pending: dict[str, asyncio.TimerHandle] = {}

    def wanted(self, path: str) -> bool:
        name = os.path.basename(path)
        return name.endswith(".jsonl") or any(fnmatch.fnmatch(name, g) for g in self.log_globs)

    def _from_thread(self, path: str, deleted: bool) -> None:
        """Called on watchdog's thread. Once the server is exiting its loop may be closed before the
        observer stops: such an event is dropped, there is no one left to tell."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed between the test and the call
            self.loop.call_soon_threadsafe(self._schedule, path, deleted)

    def _schedule(self, path: str, deleted: bool) -> None:
        old = self._pending.pop(path, None)
        if old is not None:
            old.cancel()
        self._pending[path] = self.loop.call_later(self.delay, self._fire, path, deleted)

    def _fire(self, path: str, deleted: bool) -> None:
        self._pending.pop(path, None)
        self.on_change(path, deleted)

    def start(self, roots: Iterable[str]) -> list[str]:
        """Watch the roots that exist; returns the messages for those that could not be watched."""
        self.stop()
        problems: list[str] = []
        observer = Observer()
        handler = _Handler(self.wanted, self._from_thread)
        self.roots = []
        for root in roots:
            if not os.path.isdir(root):
                problems.append(f"{root}: not a folder (yet); not watched")
                continue
            try:
                observer.schedule(handler, root, recursive=True)
                self.roots.append(root)
            except OSError as exc:
                problems.append(f"{root}: cannot watch: {exc.strerror or exc}")
        observer.daemon = True
        observer.start()
        self.observer = observer
        return problems

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=2)
            self.observer = None
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
