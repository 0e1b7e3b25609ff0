"""Before/after on the same machine at the same time, interleaved: the core of another revision
(its `server/` and `rules/`, e.g. from `git archive REV server rules | tar -x -C OLD`) against the
work tree, on the generated 100 MB and 1 GB transcripts (run `benchmarks/run --generate-only`).

    .venv/bin/python benchmarks/before_after.py OLD [--rounds 2] > before_after.json

Prints the raw figures as JSON (seconds; MB for RSS), one list entry per round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402

PY = sys.executable
DATA = HERE / "data" / "full"
SRC = str(DATA / f"transcript-100M-s1-g{generate.GENERATOR_VERSION}.jsonl")
BIG = str(DATA / f"transcript-1G-s3-g{generate.GENERATOR_VERSION}.jsonl")
TREES: dict[str, str] = {}


def env(tree: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": TREES[tree]}
    e.update(extra or {})
    return e


def wall(argv: list[str], e: dict[str, str], stdin: str | None = None) -> tuple[float, Any]:
    t = time.perf_counter()
    p = subprocess.run(argv, env=e, input=stdin, capture_output=True, text=True)
    return time.perf_counter() - t, p


ENGINE = """
import sys, time, json
from rewind_lsp.check import check_path
p = sys.argv[1]; best = 9e9
for _ in range(3):
    t = time.perf_counter(); check_path(p); best = min(best, time.perf_counter() - t)
print(json.dumps(best))
"""
RECHECK = """
import sys, time, json, statistics, shutil
sys.path.insert(0, sys.argv[4])
from generate import append_line, last_live_uuid
from pathlib import Path
tree, path, cache = sys.argv[1], sys.argv[2], Path(sys.argv[3])
from rewind_lsp.check import check_transcript_file, analyze, _file_fetcher
server, hook = [], []
if tree == 'new':
    from rewind_lsp.incremental import TranscriptState, check_transcript_incremental
    from rewind_lsp.index import check_cached
    st = TranscriptState(); check_transcript_incremental(path, st); check_cached(path, cache)
    srv = lambda: check_transcript_incremental(path, st)
    hk = lambda: check_cached(path, cache)
else:
    from rewind_lsp.index import read_indexed
    read_indexed(path, cache)
    srv = lambda: check_transcript_file(path)
    hk = lambda: analyze(read_indexed(path, cache)[0], _file_fetcher(path))
parent, session = last_live_uuid(path)
for i in range(10):
    parent, _ = append_line(path, parent, session, seed=i, kind="user" if i % 2 else "assistant")
    t = time.perf_counter(); hk(); hook.append(time.perf_counter() - t)
    t = time.perf_counter(); srv(); server.append(time.perf_counter() - t)
print(json.dumps({"server": statistics.median(server), "hook": statistics.median(hook)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="folder holding the other revision's server/ and rules/")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    TREES["old"] = str(Path(a.old) / "server")
    TREES["new"] = str(HERE.parent / "server")
    res: dict[str, dict[str, Any]] = {t: {} for t in TREES}
    scratch = Path(tempfile.mkdtemp(prefix="before-after-"))
    for rnd in range(a.rounds):
        for tree in TREES:
            r = res[tree]
            e = env(tree)
            out = subprocess.run([PY, "-c", ENGINE, SRC], env=e, capture_output=True, text=True)
            r.setdefault("engine_s", []).append(json.loads(out.stdout))
            r.setdefault("cli_s", []).append(min(wall([PY, "-m", "rewind_lsp", "check", SRC], e)[0] for _ in range(3)))
            work = str(scratch / f"{tree}.jsonl")
            shutil.copyfile(SRC, work)
            shutil.rmtree(str(scratch / f"cache-{tree}"), ignore_errors=True)
            out = subprocess.run(
                [PY, "-c", RECHECK, tree, work, str(scratch / f"cache-{tree}"), str(HERE)],
                env=e,
                capture_output=True,
                text=True,
            )
            d = json.loads(out.stdout)
            r.setdefault("recheck_server_s", []).append(d["server"])
            r.setdefault("recheck_hook_inproc_s", []).append(d["hook"])
            # the hook as a process (python -m rewind_lsp hook, through the CLI module)
            shutil.rmtree(str(scratch / f"hook-cache-{tree}"), ignore_errors=True)
            he = env(
                tree,
                {
                    "REWIND_LSP_CACHE_DIR": str(scratch / f"hook-cache-{tree}"),
                    "REWIND_LSP_LOG_DIR": str(scratch / f"hook-log-{tree}"),
                },
            )
            payload = json.dumps({"hook_event_name": "UserPromptSubmit", "transcript_path": work, "prompt": "x"})
            argv = [PY, "-m", "rewind_lsp", "hook"]
            w, p = wall(argv, he, payload)
            assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr
            r.setdefault("hook_first_s", []).append(w)
            r.setdefault("hook_same_s", []).append(min(wall(argv, he, payload)[0] for _ in range(5)))
            parent, session = generate.last_live_uuid(work)
            app = []
            for i in range(5):
                parent, _ = generate.append_line(
                    work, parent, session, seed=100 + i, kind="user" if i % 2 else "assistant"
                )
                w, p = wall(argv, he, payload)
                assert not p.stdout.strip()
                app.append(w)
            r.setdefault("hook_appended_s", []).append(statistics.median(app))
            if rnd == 0:
                p = subprocess.run(
                    ["/usr/bin/time", "-f", "%M %e", PY, "-m", "rewind_lsp", "check", BIG],
                    env=e,
                    capture_output=True,
                    text=True,
                )
                kb, sec = p.stderr.strip().splitlines()[-1].split()
                r["big_rss_mb"] = int(kb) / 1024
                r["big_s"] = float(sec)
            os.unlink(work)
        base = min(wall([PY, "-c", "pass"], os.environ)[0] for _ in range(5))
        for t in TREES:
            res[t].setdefault("python_pass_s", []).append(base)
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
