"""A transcript checked by several processes gives exactly the findings of a whole-file check.

The stretches are cut at main compaction boundaries and checked in real forked children; they are
joined only when no line of one names a line of another. Every kind of link across a cut must
make the join refuse (and the check fall back to one process), never give other findings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from core_support import CROSS_LINKS, SID, Builder, compacted, cross_link, group_gone, run_cli, tr, tu, turn

from rewind_lsp import parallel
from rewind_lsp.check import check_path, check_transcript_file
from rewind_lsp.findings import Finding
from rewind_lsp.incremental import PartCheck
from rewind_lsp.parallel import _collect, check_parts, check_transcript_parallel, split_points


def key(fs: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.rule, f.severity, f.message, f.start, f.end, f.tool_use_id, f.related, f.facts) for f in fs]


def boundaries(path: Path) -> list[int]:
    """Byte offsets of the main compact_boundary lines."""
    out, offset = [], 0
    for raw in path.read_bytes().splitlines(keepends=True):
        try:
            d = json.loads(raw)
        except ValueError:
            d = None
        if isinstance(d, dict) and d.get("subtype") == "compact_boundary" and not d.get("isSidechain"):
            out.append(offset)
        offset += len(raw)
    return out


def faulty(b: Builder) -> None:
    """Six segments with a fault in history, a malformed line, and a live call still pending."""
    compacted(b, 2)
    b.assistant(tu("toolu_lost"))  # never answered, then the session went on: history
    b.user("never mind")
    b.compact()
    turn(b, "toolu_mid")
    b.raw("{not json")
    b.compact()
    turn(b, "toolu_more", "streaming")
    b.user([tr("toolu_nowhere")])  # a result whose call is not in the file
    for s in range(2):
        b.compact()
        turn(b, f"toolu_late_{s}", "linear")
    b.compact()
    b.user("and now")
    b.assistant(tu("toolu_pending"))


@pytest.mark.parametrize("jobs", [2, 3, 4, 6])
def test_stretches_give_the_whole_file_findings(jobs: int, b: Builder, tmp_path: Path) -> None:
    faulty(b)
    path = b.write(tmp_path / f"{SID}.jsonl")
    full = key(check_transcript_file(str(path)).findings)
    assert {f[0] for f in full} >= {"orphan-tool-use", "orphan-tool-result", "malformed-line"}
    cuts = split_points(str(path), path.stat().st_size, jobs)
    # A share with no boundary in it joins the one before: six segments of unequal size give fewer cuts.
    assert 1 <= len(cuts) <= jobs - 1 and set(cuts) <= set(boundaries(path))
    joined = check_parts(str(path), cuts)
    assert joined is not None  # the parallel path itself, not the fallback
    assert key(joined) == full
    assert key(check_transcript_parallel(str(path), jobs=jobs, min_part=1)) == full


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_without_history_the_same_findings_but_historys(jobs: int, b: Builder, tmp_path: Path) -> None:
    # What a repair's check of its copy asks for: every finding but history's (information only).
    faulty(b)
    path = b.write(tmp_path / f"{SID}.jsonl")
    full = check_transcript_file(str(path)).findings
    history = [f for f in full if f.facts.get("conversation") == "rewound or compacted history"]
    assert history and {f.severity.label for f in history} == {"information"}
    live = [f for f in full if f not in history]
    assert key(check_transcript_parallel(str(path), jobs=jobs, min_part=1, history=False)) == key(live)
    assert key(check_transcript_file(str(path), history=False).findings) == key(live)


def test_every_cut_of_a_healthy_session_joins(b: Builder, tmp_path: Path) -> None:
    compacted(b, 5)
    path = b.write(tmp_path / f"{SID}.jsonl")
    full = key(check_transcript_file(str(path)).findings)
    for cut in boundaries(path):
        joined = check_parts(str(path), [cut])
        assert joined is not None and key(joined) == full


@pytest.mark.parametrize("link", CROSS_LINKS)
def test_a_link_across_the_cut_refuses_the_join(link: str, b: Builder, tmp_path: Path) -> None:
    cross_link(b, link)
    path = b.write(tmp_path / f"{SID}.jsonl")
    full = key(check_transcript_file(str(path)).findings)
    joined = check_parts(str(path), [boundaries(path)[1]])
    if link == "missing-parent":  # bridged inside the stretch, as in the whole file: no link at all
        assert joined is not None and key(joined) == full
    else:
        assert joined is None
    for jobs in (2, 3, 5):
        assert key(check_transcript_parallel(str(path), jobs=jobs, min_part=1)) == full


def test_the_live_conversation_must_be_in_the_last_stretch(b: Builder, tmp_path: Path) -> None:
    compacted(b, 2)
    b.assistant(tu("toolu_live"))  # pending on the live chain
    b.system("compact_boundary", parent=None)  # a boundary with no main message after it
    b.assistant(tu("toolu_sub"), sidechain=True, agent_id="agent1", parent=None)  # after it: a subagent only
    path = b.write(tmp_path / f"{SID}.jsonl")
    full = key(check_transcript_file(str(path)).findings)
    assert [f[2].split(":")[0] for f in full] == [
        "tool_use toolu_live has no tool_result yet", "tool_use toolu_sub has no tool_result yet"
    ]
    assert check_parts(str(path), [boundaries(path)[-1]]) is None
    assert key(check_transcript_parallel(str(path), jobs=2, min_part=1)) == full


def test_a_torn_last_line_and_crlf_lines(b: Builder, tmp_path: Path) -> None:
    compacted(b, 4)
    b.assistant(tu("toolu_last"))
    lines = b.text_lines()
    path = tmp_path / f"{SID}.jsonl"
    path.write_bytes("\r\n".join(lines[:-1]).encode() + b"\r\n" + lines[-1].encode()[:30])
    full = key(check_transcript_file(str(path)).findings)
    joined = check_parts(str(path), split_points(str(path), path.stat().st_size, 3))
    assert joined is not None and key(joined) == full
    path.write_bytes(path.read_bytes() + lines[-1].encode()[30:])  # complete, no newline yet
    full = key(check_transcript_file(str(path)).findings)
    assert [f[0] for f in full] == ["orphan-tool-use"]
    assert key(check_transcript_parallel(str(path), jobs=3, min_part=1)) == full


def test_no_boundary_to_cut_at_is_one_process(b: Builder, tmp_path: Path) -> None:
    for t in range(20):
        turn(b, f"toolu_{t}")
    b.assistant(tu("toolu_open"))
    path = b.write(tmp_path / f"{SID}.jsonl")
    assert split_points(str(path), path.stat().st_size, 4) == []
    full = key(check_transcript_file(str(path)).findings)
    assert key(check_transcript_parallel(str(path), jobs=4, min_part=1)) == full


def test_a_cut_is_looked_for_only_so_far_past_a_share(
    b: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file with a long stretch and no boundary near the share is not read to its end for a cut.
    faulty(b)
    path = b.write(tmp_path / f"{SID}.jsonl")
    size = path.stat().st_size
    marks = boundaries(path)
    share = size // 2
    after = [m for m in marks if m >= share]
    assert after and split_points(str(path), size, 2) == [after[0]]
    monkeypatch.setattr(parallel, "SEARCH", after[0] - share)  # the first boundary is just out of reach
    assert split_points(str(path), size, 2) == []
    monkeypatch.setattr(parallel, "SEARCH", after[0] - share + 1)
    assert split_points(str(path), size, 2) == [after[0]]
    full = key(check_transcript_file(str(path)).findings)
    assert key(check_transcript_parallel(str(path), jobs=2, min_part=1)) == full


def test_a_boundary_written_inside_a_tool_output_is_not_a_cut(b: Builder, tmp_path: Path) -> None:
    turn(b, "toolu_a")
    b.user([tr("toolu_grep", '{"type":"system","subtype":"compact_boundary"} found in a transcript')])
    for t in range(10):
        turn(b, f"toolu_{t}")
    path = b.write(tmp_path / f"{SID}.jsonl")
    assert split_points(str(path), path.stat().st_size, 2) == []


def test_a_child_without_a_result_is_a_refusal() -> None:
    for status, payload in ((3, b""), (0, b"not msgpack"), (0, b"")):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, payload)
            os._exit(status)
        os.close(w)
        assert _collect(pid, r) == PartCheck(False)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, msgspec.msgpack.encode(PartCheck(True)))
        os._exit(0)
    os.close(w)
    assert _collect(pid, r) == PartCheck(True)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20 MB: the CLI's stretches are at least 8 MB. Faults before and after the middle."""
    tmp_path = tmp_path_factory.mktemp("big")
    b = Builder()
    output = "x" * 60_000
    for s in range(6):
        if s:
            b.compact()
        for t in range(60):
            b.user(f"step {s}.{t}")
            call = b.assistant(tu(f"toolu_{s}_{t}"))
            if (s, t) not in {(1, 5), (4, 7)}:
                b.result(f"toolu_{s}_{t}", output, of=call)
            b.assistant({"type": "text", "text": "done"})
    b.user("last")
    b.assistant(tu("toolu_open"))
    return b.write(tmp_path / f"{SID}.jsonl")


def test_cli_jobs(big: Path) -> None:
    path = big
    assert path.stat().st_size > 16 << 20
    cuts = split_points(str(path), path.stat().st_size, 2)
    assert len(cuts) == 1 and check_parts(str(path), cuts) is not None  # the parallel path, not a fallback
    one = run_cli("check", "--no-cache", "--jobs", "1", "--format", "json", str(path))
    assert one.returncode == 0, one.stderr  # history and pending faults only: no error
    assert len(json.loads(one.stdout)) == 3
    for jobs in ("2", "0"):
        many = run_cli("check", "--no-cache", "--jobs", jobs, "--format", "json", str(path))
        assert (many.returncode, many.stdout) == (one.returncode, one.stdout)
    assert key(check_path(str(path), jobs=2)) == key(check_transcript_file(str(path)).findings)
    for bad in ("-1", "many"):
        r = run_cli("check", "--jobs", bad, str(path))
        assert r.returncode == 2 and "not a number of processes" in r.stderr


@pytest.mark.parametrize("after", [0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.35])
def test_ctrl_c_leaves_no_process_behind(after: float, big: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) while the stretches are being checked."""
    whole = run_cli("check", "--no-cache", "--jobs", "2", str(big)).stdout.encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rewind_lsp", "check", "--no-cache", "--jobs", "2", str(big)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)  # a process that already ended is a zombie: still a group
    out, err = proc.communicate(timeout=30)
    # 130: stopped by the CLI's handler. -SIGINT: the signal came while Python was starting or
    # already shutting down (its handler not installed, or restored): nothing was being checked.
    # 0: the signal came after the answer was complete (the whole answer, then). 1: CPython itself
    # was interrupted while starting, before any of our code ran. Never a crash: a Ctrl-C while
    # msgspec was imported once made the next decoder segfault (interrupts.py).
    assert proc.returncode in (0, 1, 130, -signal.SIGINT), err
    if proc.returncode == 0:
        assert out == whole, "exit 0 after Ctrl-C with a partial answer"
    if proc.returncode == 1:
        assert b"Failed to import the site module" in err or b"Could not import runpy module" in err, err
    if proc.returncode == 130:
        assert err == b""
    assert group_gone(proc.pid, within=5), "a forked child outlived the check"
