"""The cyclic collector off while a check runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    """Entries hold no cycles, and the collector's passes over hundreds of thousands of objects
    cost a tenth of a check: off meanwhile, then restored (process-wide, so harmless for other
    threads, which only collect later)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
