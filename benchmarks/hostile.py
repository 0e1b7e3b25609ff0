"""Crafted or unusual transcript shapes that once made the checker quadratic, at a given size.

Each shape is one JSONL transcript, the same bytes for the same size. From the command line it
writes the file and times `rewind_lsp.check.check_transcript_file` on it (best of `--runs`), with
`--profile` printing the top of a cProfile run:

    python benchmarks/hostile.py orphan-results 2000
    python benchmarks/hostile.py all --scale 1 --runs 1
    python benchmarks/hostile.py all --scale 0.01 --digest   # the same findings on two branches?
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=[*SHAPES, "all"])
    ap.add_argument("size", nargs="?", type=int, help="blocks or lines (default: the size the issue measured)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the default sizes")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--digest", action="store_true",
                    help="print the count and a SHA-256 of the findings instead of a time (to compare two versions)")
    args = ap.parse_args(argv)
    names = list(SHAPES) if args.shape == "all" else [args.shape]
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
