"""What every forked helper of a check needs: whether a fork is safe here, Ctrl-C held off
across it, and a call run in a child while the parent goes on (`ChildCall`).

A child is forked only from a process with one thread (a fork copies only the calling thread: a
lock another thread held would stay held in the child forever), and only where `os.fork` exists.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


def hold_sigint() -> set[int] | None:
    """Block SIGINT in this thread; the mask before, to restore (None where there is no mask).

    Held from just before a fork until the child is known to its parent: the child's after-fork
    hooks (Python's own, before any code of ours) would print a Ctrl-C instead of stopping, and
    between the fork and the bookkeeping the parent would lose the child."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})}


def restore_mask(was: set[int] | None) -> None:
    """The mask `hold_sigint` replaced: a Ctrl-C that came meanwhile is raised here."""
    if was is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, was)



class ChildCall(Generic[T]):
    """`fn()` run in a forked child from the moment this is made, while this process goes on.

    `outcome()` waits for it: `(True, result)`, `(False, exception)` for an exception of a `passes`
    type raised there, or None where no child could run it or the child failed (the caller then
    runs `fn` itself). What `fn` builds goes back at the child's exit without each object being
    freed (a million-line analysis took 0.4 s to free). The outcome comes back pickled through a
    pipe from this process's own fork, never from a file or another process. `close()` stops and
    reaps a child still running (a Ctrl-C meanwhile)."""

    __slots__ = ("_pid", "_read")

    def __init__(self, fn: Callable[[], T], passes: tuple[type[Exception], ...] = ()) -> None:
        self._pid = 0
        self._read = -1
        if not can_fork():
            return
        r, w = os.pipe()
        was = hold_sigint()  # until the child is known
        try:
            pid = os.fork()
        except OSError:  # no memory or process left for it: the caller runs `fn` itself
            restore_mask(was)
            os.close(r)
            os.close(w)
            return
        if pid == 0:
            os.close(r)
            _run(fn, passes, w, was)
        os.close(w)
        self._pid, self._read = pid, r
        restore_mask(was)

    @property
    def running(self) -> bool:
        return self._pid != 0

    def outcome(self) -> tuple[bool, T | Exception] | None:
        if self._read < 0:
            return None
        data = read_to_end(self._read)
        self._close_read()
        self._reap()
        try:
            ok, value = pickle.loads(data)  # written by our own fork (see the class)
        except Exception:  # nothing, or cut short: the child did not finish
            return None
        return bool(ok), value

    def close(self) -> None:
        self._close_read()
        if self._pid:
            with suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _close_read(self) -> None:
        if self._read >= 0:
            close_quietly(self._read)  # a Ctrl-C may have come between a close and this line
            self._read = -1

    def _reap(self) -> None:
        if self._pid:
            with suppress(ChildProcessError):
                os.waitpid(self._pid, 0)  # its memory given back: ~0.1 s for a GB
            self._pid = 0


def read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to the pipe `fd` (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def close_quietly(fd: int) -> None:
    """Close `fd`, already closed or not."""
    with suppress(OSError):
        os.close(fd)


def _run(fn: Callable[[], object], passes: tuple[type[Exception], ...], out: int, mask: set[int] | None) -> NoReturn:
    status = 1
    try:
        restore_mask(mask)  # a Ctrl-C that came since the fork is raised here, and caught below
        try:
            outcome: tuple[bool, object] = (True, fn())
        except passes as exc:
            outcome = (False, exc)
        write_all(out, pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
        os.close(out)
        status = 0
    except BaseException:  # Ctrl-C or any failure: the parent runs `fn` itself
        pass
    finally:
        os._exit(status)  # no atexit handlers, no flush of the parent's buffered output
