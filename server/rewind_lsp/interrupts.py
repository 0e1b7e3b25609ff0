"""Ctrl-C held off while msgspec and the engine's modules are imported.

A KeyboardInterrupt raised while `import msgspec` runs is partly swallowed by its initialisation,
and the first decoder built afterwards crashes CPython with SIGSEGV inside msgspec's C code (msgspec
0.23, CPython 3.11.7: about 1 in 50 Ctrl-Cs at `check`'s start; the core dump shows
`typenode_collect_type` under `JSONDecoder_init`). So SIGINT is blocked from before the first
import of msgspec until the engine is loaded; a Ctrl-C that came meanwhile is delivered when the
block is lifted and becomes the usual KeyboardInterrupt, in our code. Python runs signal handlers in
the main thread only, so other threads need nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_held() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def load_engine() -> None:
    """Import every module that defines msgspec types (with Ctrl-C held off: see above)."""
    with sigint_held():
        from . import check, forks, incremental, index, navigation, parallel  # noqa: F401
