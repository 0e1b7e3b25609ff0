"""Check a file while it is written, in a forked child that reads behind the writer.

A repair verifies its copy before placing it. Checked once written, a large copy costs a whole
analysis more while nothing else runs. Checked by a child as it is written
(`incremental.check_growing`), the child's reading, decoding and indexing share the time the writer
spends copying and waiting on the disk, and its memory goes back at its exit without each object
being freed (a million lines: ~0.5 s). The writer tells the child how far the file is written
(`written`), then that it is done (`result`), and gets the findings back with the census of the
lines it read (`census.Census`: what the writer compares with what it meant to write).

Without a child (no fork on this platform, threads running, a fork refused) or from a child that
died or failed, `result` answers None: the caller then checks the file itself, as before. The
child never writes a file; if the writer dies, the child reads the end of its pipe and exits.
"""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import Iterator
from contextlib import suppress
from typing import NoReturn

import msgspec

from .census import Census
from .children import can_fork, close_quietly, hold_sigint, read_to_end, restore_mask, write_all
from .findings import Finding
from .incremental import check_counted

_SIZE = struct.Struct("<q")  # one message: a size written so far, or _DONE
_DONE = -1


class Checked(msgspec.Struct, frozen=True):
    """The child's answer: the file's findings, and its census (None for a Codex rollout)."""

    findings: list[Finding]
    census: Census | None


_decode = msgspec.msgpack.Decoder(Checked).decode


class Abandoned(Exception):
    """The writer is gone (its end of the pipe closed without saying it was done)."""


class GrowingCheck:
    """The check of the file at `path` by a child, from before its first byte is written."""

    __slots__ = ("_delivered", "_pid", "_results", "_sizes")

    def __init__(self, path: str, history: bool = True) -> None:
        self._pid = 0
        self._sizes = -1  # write end: sizes to the child
        self._results = -1  # read end: the child's findings
        self._delivered = False
        if not can_fork():
            return
        sizes_r, sizes_w = os.pipe()
        results_r, results_w = os.pipe()
        was = hold_sigint()  # until the child is known: see children.hold_sigint
        try:
            pid = os.fork()
        except OSError:  # no memory or process left for it: checked after the write instead
            restore_mask(was)
            for fd in (sizes_r, sizes_w, results_r, results_w):
                os.close(fd)
            return
        if pid == 0:
            _child(path, history, sizes_r, results_w, was)
        self._pid, self._sizes, self._results = pid, sizes_w, results_r
        os.close(sizes_r)
        os.close(results_w)
        # A child behind the writer must never stall it: a size it misses, a later one covers.
        os.set_blocking(sizes_w, False)
        restore_mask(was)

    @property
    def running(self) -> bool:
        return self._pid != 0

    def written(self, size: int) -> None:
        """Whole lines are written up to byte `size`."""
        if self._sizes < 0:
            return
        try:
            os.write(self._sizes, _SIZE.pack(size))
        except BlockingIOError:
            pass  # the pipe is full: the child has sizes enough to go on with
        except OSError:  # the child is gone: `result` says so
            self._close_sizes()

    def result(self) -> Checked | None:
        """The writer is done: the child's check of the whole file, or None without one."""
        if self._pid == 0:
            return None
        data = b""
        if self._sizes >= 0:
            try:
                os.set_blocking(self._sizes, True)
                os.write(self._sizes, _SIZE.pack(_DONE))
            except OSError:
                pass  # the child is gone: it has closed its end, so the read below ends at once
            self._close_sizes()
        if self._results >= 0:
            data = read_to_end(self._results)
            self._close_results()
        try:
            checked = _decode(data)
        except msgspec.DecodeError:  # nothing, or cut short: the child did not finish
            return None
        self._delivered = True
        return checked

    def close(self) -> None:
        """Stop the child unless it delivered, and reap it."""
        self._close_sizes()
        self._close_results()
        if self._pid:
            if not self._delivered:
                with suppress(OSError):
                    os.kill(self._pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0

    def _close_sizes(self) -> None:
        if self._sizes >= 0:
            close_quietly(self._sizes)  # a Ctrl-C may have come between a close and this line
            self._sizes = -1

    def _close_results(self) -> None:
        if self._results >= 0:
            close_quietly(self._results)
            self._results = -1


def _child(path: str, history: bool, sizes: int, results: int, mask: set[int] | None) -> NoReturn:
    status = 1
    try:
        _close_all_but(sizes, results)  # a session's lock among them: never held past the writer
        restore_mask(mask)  # a Ctrl-C that came since the fork is raised here, and caught below
        found, census = check_counted(path, _sizes_from(sizes), history=history)
        write_all(results, msgspec.msgpack.encode(Checked(found, census)))
        os.close(results)  # the writer goes on now, while this process's memory is given back
        status = 0
    except BaseException:  # abandoned, Ctrl-C or any failure: the writer checks the file itself
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flush of the writer's buffered output


def _close_all_but(*keep: int) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 16)


def _sizes_from(fd: int) -> Iterator[int]:
    """The sizes the writer sends, the latest of each read; ends when it says it is done."""
    pending = b""
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            raise Abandoned
        pending += data
        whole = len(pending) - len(pending) % _SIZE.size
        values = [v for (v,) in _SIZE.iter_unpack(pending[:whole])]
        pending = pending[whole:]
        if _DONE in values:
            return
        if values:
            yield max(values)
