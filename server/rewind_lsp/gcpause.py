"""The cyclic collector's pauses: off while a check runs, and rarer in the server."""

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


# The server answers from long-lived maps of hundreds of thousands of objects. At Python's default
# first threshold (700) a response's own temporaries (a 100 MB transcript's outline: ~10,000 objects)
# set off young collections mid-request that promote them, and every ~10 requests a full pass over
# the maps (45-65 ms there) lands on a request: documentSymbol's p99 was 86 ms for a 17 ms p50. At
# this threshold a response's temporaries are freed by reference counting before any collection.
SERVER_THRESHOLD = 50_000


def tune_for_server() -> None:
    """For the language server's process only (the CLI and the hook keep Python's defaults)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(SERVER_THRESHOLD, older, oldest)


@contextmanager
def loading() -> Iterator[None]:
    """While the server's modules load: no collections (imports make ~300,000 objects, lsprotocol's
    ~1,000 classes among them, and almost no garbage), then those objects frozen out of every later
    collection, so that no pass over them lands on the way to the first diagnostics or on a request."""
    with no_gc():
        yield
        gc.freeze()
