"""In-process measurements, each run by `bench.py` in a fresh interpreter (so one measurement's
memory and caches never leak into the next). Prints one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import append_line, last_live_uuid

from rewind_lsp.check import analyze, check_log_file, check_transcript_file
from rewind_lsp.index import read_indexed
from rewind_lsp.transcript import read_transcript


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _fetcher(path: str) -> Callable[[int, int], bytes]:
    def fetch(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    return fetch


def loop_json(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                json.loads(raw)
                n += 1
    return n


def loop_msgspec(path: str) -> int:
    decode = msgspec.json.Decoder().decode
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                decode(raw)
                n += 1
    return n


def engine_check(path: str, repeat: int) -> dict[str, Any]:
    times = [_timed(lambda: check_transcript_file(path)) for _ in range(repeat)]
    t = time.perf_counter()
    transcript = read_transcript(path)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    result = analyze(transcript, _fetcher(path))
    analyze_s = time.perf_counter() - t
    return {
        "times": times,
        "read_s": read_s,
        "analyze_s": analyze_s,
        "entries": len(transcript.entries),
        "findings": len(result.findings),
        "errors": sum(1 for f in result.findings if f.severity == 1),
    }


def loops(path: str, repeat: int) -> dict[str, Any]:
    return {
        "json": [_timed(lambda: loop_json(path)) for _ in range(repeat)],
        "msgspec": [_timed(lambda: loop_msgspec(path)) for _ in range(repeat)],
    }


def append_recheck(path: str, cache: str, appends: int) -> dict[str, Any]:
    """What the hook and the server do after one entry is appended to a transcript they checked."""
    cache_dir = Path(cache)
    parent, session = last_live_uuid(path)
    full = _timed(lambda: check_transcript_file(path))
    t = time.perf_counter()
    transcript, first_read = read_indexed(path, cache_dir)  # builds the on-disk index
    first_index = time.perf_counter() - t
    index_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.idx"))
    rows: dict[str, list[float]] = {"read_indexed": [], "analyze": [], "hook_path": [], "server_path": [], "floor": []}
    read_bytes: list[int] = []
    for i in range(appends):
        size_before = os.path.getsize(path)
        parent, added = append_line(path, parent, session, seed=i, kind="user" if i % 2 else "assistant")
        # The floor: read just the appended bytes and decode them.
        t = time.perf_counter()
        with open(path, "rb") as f:
            f.seek(size_before)
            msgspec.json.decode(f.read(added))
        rows["floor"].append(time.perf_counter() - t)
        t0 = time.perf_counter()
        transcript, nread = read_indexed(path, cache_dir)
        t1 = time.perf_counter()
        result = analyze(transcript, _fetcher(path))
        t2 = time.perf_counter()
        assert not any(f.severity == 1 for f in result.findings), "an append broke the generated session"
        rows["read_indexed"].append(t1 - t0)
        rows["analyze"].append(t2 - t1)
        rows["hook_path"].append(t2 - t0)
        read_bytes.append(nread)
        rows["server_path"].append(_timed(lambda: check_transcript_file(path)))
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "full_check_s": full,
        "first_index_s": first_index,
        "first_read_bytes": first_read,
        "index_bytes": index_bytes,
        "entries": len(transcript.entries),
        "median": med,
        "max": {k: max(v) for k, v in rows.items()},
        "read_bytes_median": statistics.median(read_bytes),
    }


def log_engine(path: str) -> dict[str, Any]:
    t = time.perf_counter()
    findings = check_log_file(path)
    return {
        "seconds": time.perf_counter() - t,
        "findings": len(findings),
        "by_rule": {r: sum(1 for f in findings if f.rule == r) for r in sorted({f.rule for f in findings})},
    }


def _warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=("engine-check", "loops", "append-recheck", "log-engine"))
    p.add_argument("path")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache", default="")
    p.add_argument("--appends", type=int, default=20)
    a = p.parse_args()
    _warm(a.path)  # the page cache may have dropped it since the caller warmed it
    if a.task == "engine-check":
        out = engine_check(a.path, a.repeat)
    elif a.task == "loops":
        out = loops(a.path, a.repeat)
    elif a.task == "append-recheck":
        out = append_recheck(a.path, a.cache, a.appends)
    else:
        out = log_engine(a.path)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
