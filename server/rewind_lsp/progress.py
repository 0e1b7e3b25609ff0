"""One progress line on a terminal: files and MB done and the time left, rewritten in place.

Shown only when the stream is a terminal (a pipe or a file gets nothing) and not `--quiet`;
cleared at the end, so what follows starts on a clean line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_SECONDS = 0.1  # a redraw per file would cost more than the check of an unchanged one
_CLEAR = "\r\x1b[K"


def _mb(n: int, total: int) -> str:
    return f"{n / 1e6:.1f}" if total < 100_000_000 else f"{n / 1e6:.0f}"


def _left(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


def progress_text(files: int, total_files: int, done: int, total: int, elapsed: float) -> str:
    """`rewind-lsp: checked 3 of 10 files, 12.5 of 40.0 MB, about 8 s left` (no estimate before
    the first file is done)."""
    text = f"rewind-lsp: checked {files} of {total_files} files, {_mb(done, total)} of {_mb(total, total)} MB"
    if files and done and elapsed > 0 and files < total_files:
        text += ", " + _left(elapsed * max(total - done, 0) / done)
    return text


class Progress:
    """Counts what is done; draws on `stream` when `enabled`."""

    def __init__(self, stream: TextIO, enabled: bool, total_files: int, total_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.enabled = stream, enabled
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.done = 0
        self._clock = clock
        self._start = clock()
        self._drawn = -REDRAW_SECONDS
        self._shown = False
        self._draw(force=True)

    def advance(self, nbytes: int) -> None:
        self.files += 1
        self.done += nbytes
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock() - self._start
        if not force and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        text = progress_text(self.files, self.total_files, self.done, self.total_bytes, now)
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 0
        width = width or 80  # a pseudo-terminal nobody sized says 0
        self.stream.write(_CLEAR + text[: max(width - 1, 1)])  # a wrapped line could not be redrawn
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self._shown = False
