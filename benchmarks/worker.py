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

from rewind_lsp.check import _file_fetcher, analyze, check_log_file, check_path, check_transcript_file
from rewind_lsp.incremental import TranscriptState, check_transcript_incremental
from rewind_lsp.index import check_cached
from rewind_lsp.parallel import usable_cpus
from rewind_lsp.transcript import read_transcript


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


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
    # What `rewind-lsp check` runs (segment by segment), and the whole-file check_transcript_file
    # the rewinder and the server's open documents use.
    times = [_timed(lambda: check_path(path)) for _ in range(repeat)]
    whole = [_timed(lambda: check_transcript_file(path)) for _ in range(repeat)]
    t = time.perf_counter()
    transcript = read_transcript(path)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    result = analyze(transcript, _file_fetcher(path))
    analyze_s = time.perf_counter() - t
    return {
        "times": times,
        "cpus": usable_cpus(),
        "whole_file_times": whole,
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


def _key(findings: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.rule, f.severity, f.message, f.start, f.end, f.tool_use_id, f.related, f.facts) for f in findings]


def append_recheck(path: str, cache: str, appends: int) -> dict[str, Any]:
    """What the hook and the server do after one entry is appended to a transcript they checked."""
    cache_dir = Path(cache)
    parent, session = last_live_uuid(path)
    full = _timed(lambda: check_transcript_file(path))
    state = TranscriptState()
    first_incremental = _timed(lambda: check_transcript_incremental(path, state))
    first_index = _timed(lambda: check_cached(path, cache_dir))  # writes the saved state
    index_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.state"))
    rows: dict[str, list[float]] = {"hook_path": [], "server_path": [], "full_reread": [], "floor": []}
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
        hook_findings, _ = check_cached(path, cache_dir)
        t1 = time.perf_counter()
        server_findings = check_transcript_incremental(path, state)
        t2 = time.perf_counter()
        rows["hook_path"].append(t1 - t0)
        rows["server_path"].append(t2 - t1)
        read_bytes.append(state.stats.bytes_read)
        assert state.stats.full_reads == 0, f"append {i} forced a full read: {state.stats}"
        assert not any(f.severity == 1 for f in server_findings), "an append broke the generated session"
        assert _key(hook_findings) == _key(server_findings)
        rows["full_reread"].append(_timed(lambda: check_transcript_file(path)))
    # The shortcut must give exactly what a whole-file check gives.
    assert _key(check_transcript_incremental(path, state)) == _key(check_transcript_file(path).findings)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "full_check_s": full,
        "first_incremental_s": first_incremental,
        "first_index_s": first_index,
        "index_bytes": index_bytes,
        "open_entries": state.open_entry_count,
        "median": med,
        "min": {k: min(v) for k, v in rows.items()},
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
