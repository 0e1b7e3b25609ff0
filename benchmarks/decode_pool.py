"""The main job's floor: every `*.jsonl` under a folder decoded line by line with msgspec (untyped,
the least a JSON check can do), the files spread over a process pool, largest first, one process per
usable core. `python benchmarks/decode_pool.py FOLDER [--jobs N]` prints {"files", "bytes", "lines",
"jobs"} as JSON. Imports nothing of rewind-lsp, so it measures the same work whatever the engine is."""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec


def decode_file(path: str) -> tuple[int, int]:
    """(bytes, lines) of one file, every non-blank line decoded."""
    decode = msgspec.json.Decoder().decode
    lines = 0
    size = 0
    with open(path, "rb") as f:
        for raw in f:
            size += len(raw)
            if raw.strip():
                decode(raw)
                lines += 1
    return size, lines


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="decode_pool.py")
    p.add_argument("folder")
    p.add_argument("--jobs", type=int, default=0, help="processes (default 0: one per usable core)")
    args = p.parse_args(argv)
    files = sorted((str(f) for f in Path(args.folder).rglob("*.jsonl")), key=os.path.getsize, reverse=True)
    jobs = args.jobs or usable_cores()
    if jobs == 1:
        done = [decode_file(f) for f in files]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(decode_file, files, chunksize=1))
    json.dump({"files": len(files), "bytes": sum(d[0] for d in done), "lines": sum(d[1] for d in done),
               "jobs": jobs}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
