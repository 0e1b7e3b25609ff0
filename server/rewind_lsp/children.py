"""What every forked helper of a check needs: whether a fork is safe here, and Ctrl-C held off
across it.

A child is forked only from a process with one thread (a fork copies only the calling thread: a
lock another thread held would stay held in the child forever), and only where `os.fork` exists.
"""

from __future__ import annotations

import os
import signal
import threading


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
