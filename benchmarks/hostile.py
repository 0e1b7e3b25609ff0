"""Crafted or unusual transcript shapes that once made the checker quadratic, at a given size.

Each shape is one JSONL transcript, the same bytes for the same size. From the command line it
writes the file and times `rewind_lsp.check.check_transcript_file` on it (best of `--runs`), with
`--profile` printing the top of a cProfile run:

    python benchmarks/hostile.py orphan-results 2000
    python benchmarks/hostile.py all --scale 1 --runs 1
    python benchmarks/hostile.py all --scale 0.01 --digest   # the same findings on two branches?

With `--memory` (or `--modes`), each operation is run instead as the user runs it: the real
`rewind-lsp` CLI in a fresh child process (an empty cache folder each time), its wall time and
peak RSS (ru_maxrss of the largest process of its tree) printed as a markdown table against the
issue's targets (< 10 s, < 1 GB). `big` does the same for the issue's large files (1 GB
transcripts, a 200 MB line, a 750 MB subagent file, the hook), generated with generate.py under
benchmarks/data/hostile/ and removed afterwards unless `--keep`:

    python benchmarks/hostile.py all --scale 1 --modes check,truncate,patch --memory
    python benchmarks/hostile.py big
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SESSION = "11111111-1111-4111-8111-111111111111"
Line = dict[str, Any]


def _user(uuid: str, parent: str | None, content: Any) -> Line:
    return {"type": "user", "uuid": uuid, "parentUuid": parent, "sessionId": SESSION,
            "message": {"role": "user", "content": content}}


def _assistant(uuid: str, parent: str | None, msg_id: str, content: list[Any]) -> Line:
    return {"type": "assistant", "uuid": uuid, "parentUuid": parent, "sessionId": SESSION,
            "message": {"id": msg_id, "role": "assistant", "content": content}}


def _tool_use(tool_id: str) -> Line:
    return {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}


def _tool_result(tool_id: str) -> Line:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


def orphan_results(n: int) -> Iterator[Line]:
    """One user message of `n` tool_results that answer no tool_use."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [{"type": "text", "text": "hi"}])
    yield _user("u1", "a0", [_tool_result(f"toolu_orphan_{k}") for k in range(n)])


def orphan_result_lines(n: int) -> Iterator[Line]:
    """`n` tool_result lines in a row, each answering no tool_use: one user message."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [{"type": "text", "text": "hi"}])
    parent = "a0"
    for k in range(n):
        yield _user(f"r{k}", parent, [_tool_result(f"toolu_orphan_{k}")])
        parent = f"r{k}"


def unanswered_uses(n: int) -> Iterator[Line]:
    """One reply of `n` tool_use lines (one message.id), then a prompt: none is answered."""
    yield _user("u0", None, "start")
    parent = "u0"
    for k in range(n):
        yield _assistant(f"a{k}", parent, "msg_big", [_tool_use(f"toolu_{k}")])
        parent = f"a{k}"
    yield _user("u_end", parent, "hello?")


def pending_uses(n: int) -> Iterator[Line]:
    """One reply of `n` tool_use lines at the end of the file: all pending."""
    yield _user("u0", None, "start")
    parent = "u0"
    for k in range(n):
        yield _assistant(f"a{k}", parent, "msg_big", [_tool_use(f"toolu_{k}")])
        parent = f"a{k}"


def replied_uses(n: int) -> Iterator[Line]:
    """`n` tool_use lines, each followed by another reply merged into the same message."""
    yield _user("u0", None, "start")
    parent = "u0"
    for k in range(n):
        yield _assistant(f"a{k}", parent, f"msg_{k}", [_tool_use(f"toolu_{k}")])
        parent = f"a{k}"


def shared_id(n: int) -> Iterator[Line]:
    """`n` tool_use blocks of one message sharing one id, answered once."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [_tool_use("toolu_same") for _ in range(n)])
    yield _user("u1", "a0", [_tool_result("toolu_same")])


def one_message_uses(n: int) -> Iterator[Line]:
    """One assistant line of `n` tool_use blocks, then a prompt: none is answered."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [_tool_use(f"toolu_{k}") for k in range(n)])
    yield _user("u1", "a0", "hello?")


def many_children(n: int) -> Iterator[Line]:
    """One uuid that is the parent of `n` children (a branch each), some whose parent is missing."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [{"type": "text", "text": "hi"}])
    for k in range(n):
        if k % 2:
            yield _user(f"c{k}", "a0", f"prompt {k}")
        else:
            yield _user(f"c{k}", f"missing_{k}", f"prompt {k}")


def results_of_one(n: int) -> Iterator[Line]:
    """`n` tool_result lines hanging off one tool_use line: each a branch of its own."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [_tool_use("toolu_0")])
    for k in range(n):
        yield _user(f"r{k}", "a0", [_tool_result(f"toolu_{k}")])


def lost_parent_blocks(n: int) -> Iterator[Line]:
    """`n` lines of one reply (one message.id) whose parent lines are all lost."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_big", [{"type": "text", "text": "hi"}])
    for k in range(n):
        yield _assistant(f"a{k + 1}", f"lost_{k}", "msg_big", [{"type": "text", "text": f"part {k}"}])


def lost_parent_progress(n: int) -> Iterator[Line]:
    """A message with `n` progress lines after it whose parents are all lost: bridging each one
    passes over the progress lines before it."""
    yield _user("u0", None, "start")
    yield _assistant("a0", "u0", "msg_0", [_tool_use("toolu_0")])
    for k in range(n):
        yield {"type": "progress", "uuid": f"p{k}", "parentUuid": f"lost_{k}", "sessionId": SESSION,
               "data": {"type": "hook_progress"}}
    yield _user("r0", "a0", [_tool_result("toolu_0")])


def rewritten_blocks(n: int) -> Iterator[Line]:
    """`n` lines of one reply, then each written again with the same uuid, last first."""
    yield _user("u0", None, "start")
    lines = [_assistant(f"a{k}", "u0" if k == 0 else f"a{k - 1}", "msg_big", [{"type": "text", "text": f"p{k}"}])
             for k in range(n)]
    yield from lines
    yield from reversed(lines)  # the last first: each removal from the group scanned all of it


def sidechain_children(n: int) -> Iterator[Line]:
    """A sidechain root with `n` children whose parent is missing (bridged), as one subagent."""
    yield _user("u0", None, "start")
    root = _user("s0", None, "task")
    root.update(isSidechain=True, agentId="agent1")
    yield root
    for k in range(n):
        line = _user(f"s{k + 1}", "s0" if k % 2 else f"gone_{k}", f"step {k}")
        line.update(isSidechain=True, agentId="agent1")
        yield line


def server_split(n: int) -> Iterator[Line]:
    """`n` server_tool_use lines whose results come after a prompt written in between."""
    yield _user("u0", None, "start")
    parent = "u0"
    for k in range(n):
        yield _assistant(f"a{k}", parent, "msg_s", [{"type": "server_tool_use", "id": f"srv_{k}", "name": "web_search",
                                                     "input": {}}])
        parent = f"a{k}"
    yield _user("p", parent, "a prompt in between")
    parent = "p"
    for k in range(n):
        yield _assistant(f"b{k}", parent, "msg_s", [{"type": "web_search_tool_result", "tool_use_id": f"srv_{k}",
                                                     "content": []}])
        parent = f"b{k}"


def server_split_late(n: int) -> Iterator[Line]:
    """`n` prompts and replies, then `n` server_tool_use lines whose results follow a prompt: each
    result is asked against every earlier prompt."""
    yield _user("u0", None, "start")
    parent = "u0"
    for k in range(n):
        yield _assistant(f"r{k}", parent, f"msg_r{k}", [{"type": "text", "text": "ok"}])
        yield _user(f"q{k}", f"r{k}", f"prompt {k}")
        parent = f"q{k}"
    yield from (dict(line, parentUuid=parent if line["parentUuid"] == "u0" else line["parentUuid"])
                for line in server_split(n) if line["uuid"] != "u0")


def tiny_lines(n: int) -> Iterator[Line]:
    """`n` small linear prompt and reply lines (no fault)."""
    parent: str | None = None
    for k in range(n):
        if k % 2:
            yield _assistant(f"l{k}", parent, f"m{k}", [{"type": "text", "text": "k"}])
        else:
            yield _user(f"l{k}", parent, "p")
        parent = f"l{k}"


SHAPES: dict[str, tuple[Callable[[int], Iterator[Line]], int]] = {
    # name: (generator, the size the issue measured)
    "orphan-results": (orphan_results, 2_000),
    "orphan-result-lines": (orphan_result_lines, 100_000),
    "unanswered-uses": (unanswered_uses, 10_000),
    "pending-uses": (pending_uses, 10_000),
    "replied-uses": (replied_uses, 10_000),
    "shared-id": (shared_id, 100_000),
    "one-message-uses": (one_message_uses, 100_000),
    "many-children": (many_children, 50_000),
    "sidechain-children": (sidechain_children, 50_000),
    "results-of-one": (results_of_one, 50_000),
    "lost-parent-blocks": (lost_parent_blocks, 50_000),
    "lost-parent-progress": (lost_parent_progress, 50_000),
    "rewritten-blocks": (rewritten_blocks, 50_000),
    "server-split": (server_split, 10_000),
    "server-split-late": (server_split_late, 10_000),
    "tiny-lines": (tiny_lines, 1_000_000),
}


def write_shape(name: str, n: int, path: Path) -> Path:
    make = SHAPES[name][0]
    with path.open("w", encoding="utf-8") as f:
        for line in make(n):
            f.write(json.dumps(line, separators=(",", ":")))
            f.write("\n")
    return path


def time_check(path: Path, runs: int = 2) -> float:
    from rewind_lsp.check import check_transcript_file

    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        check_transcript_file(str(path))
        best = min(best, time.perf_counter() - started)
    return best


# --- the CLI in a child process: wall time and peak RSS ------------------------------------------

LIMIT_S = 10.0
LIMIT_MB = 1024.0
OPS = ("check", "truncate", "patch", "hook")
HERE = Path(__file__).resolve().parent

# Run in an intermediate interpreter, which waits for the command alone: its RUSAGE_CHILDREN
# ru_maxrss is then the peak RSS of the largest process of the command's tree (a forked checker's
# workers included), which a wait4 on the command would not see.
_RUN = """
import json, resource, subprocess, sys, time
cmd, stdin = json.loads(sys.argv[1]), sys.argv[2]
with open(stdin or "/dev/null", "rb") as f:
    started = time.perf_counter()
    done = subprocess.run(cmd, stdin=f, capture_output=True)
    wall = time.perf_counter() - started
print(json.dumps({"wall": wall, "rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "rc": done.returncode, "out": done.stdout[-2000:].decode(errors="replace"),
                  "err": done.stderr[-2000:].decode(errors="replace")}))
"""


@dataclass
class Measured:
    wall: float
    rss_mb: float
    rc: int
    out: str
    err: str

    @property
    def verdict(self) -> str:
        missed = [what for what, bad in (("time", self.wall >= LIMIT_S), ("memory", self.rss_mb >= LIMIT_MB)) if bad]
        return "MISS: " + ", ".join(missed) if missed else "ok"


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("rewind-lsp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rewind_lsp"]


def measure(cmd: list[str], env: dict[str, str], stdin: Path | None = None) -> Measured:
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(cmd), str(stdin or "")], env=env,
                          capture_output=True, text=True, check=True)
    r = json.loads(done.stdout)
    return Measured(r["wall"], r["rss_kb"] / 1024, r["rc"], r["out"], r["err"])


def child_env(scratch: Path) -> dict[str, str]:
    """An empty cache, log and Claude folder: every command starts as on a machine that never ran one."""
    for name in ("cache", "logs", "claude"):
        shutil.rmtree(scratch / name, ignore_errors=True)
        (scratch / name).mkdir(parents=True)
    return {**os.environ, "REWIND_LSP_CACHE_DIR": str(scratch / "cache"), "REWIND_LSP_LOG_DIR": str(scratch / "logs"),
            "CLAUDE_CONFIG_DIR": str(scratch / "claude")}


def session_file(folder: Path) -> Path:
    """Where a transcript goes so that rewind takes it as a session: `<session id>.jsonl`."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{SESSION}.jsonl"


def hook_payload(path: Path, scratch: Path) -> Path:
    payload = scratch / "hook-payload.json"
    payload.write_text(json.dumps({"session_id": SESSION, "transcript_path": str(path), "cwd": "/tmp/proj",
                                   "hook_event_name": "UserPromptSubmit", "prompt": "next step"}))
    return payload


def run_op(op: str, path: Path, scratch: Path, env: dict[str, str] | None = None) -> Measured:
    """One operation on the session file `path`, as the user runs it (a fresh cache unless `env`).
    Dirty pages are written out first: the 1 GB inputs are copied just before, and their writeback
    would compete with the measured command's own reads and fsync."""
    env = env or child_env(scratch)
    if hasattr(os, "sync"):
        os.sync()
    if op == "check":
        return measure([*cli(), "check", "--quiet", str(path)], env)
    if op == "hook":
        return measure([*cli(), "hook"], env, hook_payload(path, scratch))
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    try:
        m = measure([*cli(), "rewind", "--mode", op, str(path), "--out", str(out)], env)
        written = [p for p in out.glob("*.jsonl")]
        if m.rc == 0 and len(written) != 1:
            m.rc, m.err = -1, f"exit 0 but {len(written)} session files written"
        return m
    finally:
        shutil.rmtree(out, ignore_errors=True)


def note(op: str, m: Measured) -> str:
    if op.startswith("hook"):
        if not m.out.strip():
            return "passed (healthy)"
        try:
            decision = json.loads(m.out)
        except ValueError:
            return "hook output: " + m.out.strip()[:60]
        return "blocked" if decision.get("decision") == "block" else "told: " + str(decision)[:40]
    if op.startswith("check"):
        return f"exit {m.rc}"
    if m.rc == 0:
        return "repaired"
    last = (m.err.strip().splitlines() or ["?"])[-1].removeprefix("rewind-lsp: ")
    return f"refused (exit {m.rc}): {last[:110]}"


def table_header() -> None:
    print("| shape | size | op | wall s | peak RSS MB | verdict | note |")
    print("|---|---|---|---:|---:|---|---|", flush=True)


def table_row(shape: str, size: str, op: str, m: Measured, path: Path | None = None) -> None:
    said = note(op, m).replace(str(path), "FILE") if path else note(op, m)
    print(f"| {shape} | {size} | {op} | {m.wall:.2f} | {m.rss_mb:.0f} | {m.verdict} | {said} |", flush=True)


def human(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GB"
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.0f} KB"


def append_break(path: Path) -> None:
    """Break a shape that pairs, at its end: an unanswered tool_use hanging off the last main-chain
    line, then a prompt (so a rewind has something to repair, behind the whole shape)."""
    last = None
    with path.open("rb") as f:
        for raw in f:
            d = json.loads(raw)
            if d.get("uuid") and not d.get("isSidechain"):
                last = d["uuid"]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_assistant("brk_a", last, "msg_brk", [_tool_use("toolu_brk")])) + "\n")
        f.write(json.dumps(_user("brk_u", "brk_a", "still there?")) + "\n")


def measure_shapes(names: list[str], scale: float, size: int | None, ops: list[str], scratch: Path) -> None:
    table_header()
    for name in names:
        n = size or int(SHAPES[name][1] * scale)
        path = write_shape(name, n, session_file(scratch / "session"))
        label = f"n={n:,} ({human(path.stat().st_size)})"
        broken = True
        for op in ops:
            m = run_op(op, path, scratch)
            if op in ("truncate", "patch") and "nothing to repair" in m.err and broken:
                # A shape that pairs (a hard one to check) is rewound with a break after it.
                broken = False
                append_break(path)
                m = run_op(op, path, scratch)
            table_row(name if broken else name + " + a break at the end", label, op, m, path)
        path.unlink()


def one_long_line(path: Path, size: int) -> Path:
    """A session whose one user line is a `size`-byte tool_result answering no tool_use (patch keeps
    it as text: the line is decoded, rewritten and encoded)."""
    with path.open("w", encoding="utf-8") as f:
        for line in (_user("u0", None, "start"), _assistant("a0", "u0", "msg_0", [{"type": "text", "text": "hi"}])):
            f.write(json.dumps(line) + "\n")
        big = _user("u1", "a0", [dict(_tool_result("toolu_lost"), content="x" * size)])
        f.write(json.dumps(big) + "\n")
        f.write(json.dumps(_assistant("a1", "u1", "msg_1", [{"type": "text", "text": "ok"}])) + "\n")
    return path


def measure_big(data: Path, scratch: Path, keep: bool) -> None:
    """The issue's large cases, one at a time."""
    sys.path.insert(0, str(HERE))
    import generate

    data.mkdir(parents=True, exist_ok=True)
    healthy = data / "healthy-1G-nocompact.jsonl"  # one conversation: no compaction ever cuts it
    made = [healthy]
    if not healthy.exists():
        print(f"generating {healthy} …", file=sys.stderr, flush=True)
        generate.write_transcript(healthy, 1 << 30, seed=1, compact_every=1 << 40)
    size = human(healthy.stat().st_size)
    table_header()

    # The hook before every prompt of a healthy 1 GB session: the first call, the same file again,
    # then after Claude Code appended a line (the state read back, the new bytes read).
    live = session_file(scratch / "hook-session")
    shutil.copyfile(healthy, live)
    env = child_env(scratch)
    table_row("healthy, no compaction", size, "hook (first)", run_op("hook", live, scratch, env))
    table_row("healthy, no compaction", size, "hook (again)", run_op("hook", live, scratch, env))
    parent, sid = generate.last_live_uuid(live)
    generate.append_line(live, parent, sid, seed=7)
    table_row("healthy, no compaction", size, "hook (appended)", run_op("hook", live, scratch, env))

    # Rewind of the same 1 GB session with a break appended (an unanswered tool_use, then a prompt),
    # and of one compacted every few MB as Claude Code does (generate.py's default).
    generate.append_broken_turn(live, seed=1)
    for op in ("check", "truncate", "patch"):
        table_row("1 GB, no compaction, + a break", size, op, run_op(op, live, scratch))
    compacted = data / "healthy-1G.jsonl"
    made.append(compacted)
    if not compacted.exists():
        print(f"generating {compacted} …", file=sys.stderr, flush=True)
        generate.write_transcript(compacted, 1 << 30, seed=1)
    shutil.copyfile(compacted, live)
    generate.append_broken_turn(live, seed=1)
    for op in ("check", "truncate", "patch", "hook"):
        table_row("1 GB, compacted, + a break", human(live.stat().st_size), op, run_op(op, live, scratch))
    live.unlink()

    # The hook on a small file of 1,000 orphan results in one message, per prompt.
    small = write_shape("orphan-results", 1_000, session_file(scratch / "small"))
    env = child_env(scratch)
    for label in ("hook (first)", "hook (again)"):
        table_row("orphan-results n=1,000", human(small.stat().st_size), label, run_op("hook", small, scratch, env))

    # One 200 MB line that patch rewrites.
    longline = one_long_line(session_file(scratch / "long"), 200 << 20)
    for op in ("check", "truncate", "patch"):
        table_row("one 200 MB line (orphan result)", human(longline.stat().st_size), op, run_op(op, longline, scratch))
    longline.unlink()

    # A small broken session with a 750 MB subagent transcript, which a rewind copies along.
    main = write_shape("unanswered-uses", 10, session_file(scratch / "agents"))
    agents = main.with_suffix("") / "subagents"
    agents.mkdir(parents=True, exist_ok=True)
    agent = agents / "agent-a1b2c3d.jsonl"
    with healthy.open("rb") as src, agent.open("wb") as dst:  # its first 750 MB of whole lines
        dst.write(src.read(750 << 20).rsplit(b"\n", 1)[0] + b"\n")
    for op in ("truncate", "patch", "hook"):
        table_row("session + 750 MB subagent", human(agent.stat().st_size), op, run_op(op, main, scratch))
    shutil.rmtree(main.parent)
    if not keep:
        for p in made:
            p.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=[*SHAPES, "all", "big"])
    ap.add_argument("size", nargs="?", type=int, help="blocks or lines (default: the size the issue measured)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the default sizes")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--digest", action="store_true",
                    help="print the count and a SHA-256 of the findings instead of a time (to compare two versions)")
    ap.add_argument("--memory", action="store_true",
                    help="run the CLI in a child process per operation: wall time and peak RSS, as a table")
    ap.add_argument("--modes", help=f"operations for --memory, comma-separated, of {','.join(OPS)} (default: check)")
    ap.add_argument("--data", type=Path, default=HERE / "data" / "hostile", help="where `big` writes its files")
    ap.add_argument("--keep", action="store_true", help="`big`: keep the generated 1 GB transcript for the next run")
    args = ap.parse_args(argv)
    if args.shape == "big":
        with tempfile.TemporaryDirectory(dir=args.data.parent if args.data.parent.is_dir() else None) as tmp:
            measure_big(args.data, Path(tmp), args.keep)
        return 0
    names = list(SHAPES) if args.shape == "all" else [args.shape]
    if args.memory or args.modes:
        ops = (args.modes or "check").split(",")
        if unknown := set(ops) - set(OPS):
            ap.error(f"unknown --modes {','.join(sorted(unknown))}")
        with tempfile.TemporaryDirectory() as tmp:
            measure_shapes(names, args.scale, args.size, ops, Path(tmp))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            n = args.size or int(SHAPES[name][1] * args.scale)
            path = write_shape(name, n, Path(tmp) / f"{name}.jsonl")
            if args.digest:
                import hashlib

                import msgspec

                from rewind_lsp.check import check_transcript_file

                found = check_transcript_file(str(path)).findings
                print(f"{name:20} n={n:>9,}  {len(found):>9,} findings  "
                      f"{hashlib.sha256(msgspec.json.encode(found)).hexdigest()}", flush=True)
            elif args.profile:
                from rewind_lsp.check import check_transcript_file

                prof = cProfile.Profile()
                prof.runcall(check_transcript_file, str(path))
                pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(15)
            else:
                print(f"{name:20} n={n:>9,}  {time_check(path, args.runs):8.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
