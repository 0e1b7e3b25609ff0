"""A file checked by a forked child as it is written gives exactly the whole file's findings.

The child (`copycheck.GrowingCheck`) reads behind a writer that tells it how far it has written;
it is a real process here, and so is the writer where the writer's death is the point. Without
a child (a thread running), or from one that died, the answer is None: the caller checks the
file itself.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from core_support import CLI, CROSS_LINKS, SID, Builder, compacted, corpus_files, cross_link, group_gone, tr, tu, turn

from rewind_lsp import rewind as rewind_module
from rewind_lsp.check import check_transcript_file
from rewind_lsp.copycheck import GrowingCheck
from rewind_lsp.findings import Finding
from rewind_lsp.incremental import check_growing
from rewind_lsp.parallel import check_transcript_parallel
from rewind_lsp.repair_plan import Plan, RewindError
from rewind_lsp.rewind import rewind


def key(fs: list[Finding]) -> list[tuple[Any, ...]]:
    return [(f.rule, f.severity, f.message, f.start, f.end, f.tool_use_id, f.related, f.facts) for f in fs]


def shapes(b: Builder, kind: str) -> None:
    if kind == "compacted, a fault in history, a malformed line, a pending call":
        compacted(b, 3)
        b.assistant(tu("toolu_lost"))
        b.user("never mind")
        b.compact()
        turn(b, "toolu_mid", "streaming")
        b.raw("{not json")
        b.user([tr("toolu_nowhere")])
        b.user("and now")
        b.assistant(tu("toolu_pending"))
    elif kind == "no compaction, every layout, a torn last line":
        for t in range(12):
            turn(b, f"toolu_{t}", ("dag", "linear", "streaming")[t % 3])
            b.progress()
        b.raw('{"type":"user","message":{"role":"us')
    elif kind == "crlf lines and an unanswered call":
        turn(b, "toolu_a")
        b.assistant(tu("toolu_open"))
        b.user("still there?")


SHAPES = ("compacted, a fault in history, a malformed line, a pending call",
          "no compaction, every layout, a torn last line", "crlf lines and an unanswered call")


def write_followed(data: bytes, path: Path, rng: random.Random, pieces: int, history: bool) -> list[Finding] | None:
    """Write `data` to `path` in about `pieces` random pieces (cut anywhere, mid-line too), telling
    a child after each one; its findings."""
    cuts = [*sorted(rng.sample(range(1, len(data)), min(pieces, len(data) - 1))), len(data)]
    path.write_bytes(b"")
    growing = GrowingCheck(str(path), history=history)
    assert growing.running  # a real child: this test has no thread running
    try:
        start = 0
        with path.open("ab") as f:
            for cut in cuts:
                f.write(data[start:cut])
                f.flush()
                growing.written(cut)
                start = cut
        checked = growing.result()
        return None if checked is None else checked.findings
    finally:
        growing.close()


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("history", [True, False])
def test_checked_as_written_the_whole_file_findings(kind: str, history: bool, b: Builder, tmp_path: Path) -> None:
    shapes(b, kind)
    whole_path = b.write(tmp_path / f"{SID}.jsonl")
    data = whole_path.read_bytes()
    if kind.startswith("crlf"):
        data = data.replace(b"\n", b"\r\n")
        whole_path.write_bytes(data)
    whole = key(check_transcript_parallel(str(whole_path), history=history))
    assert whole  # every shape has findings: the comparison is not between two empty lists
    rng = random.Random(kind)
    for pieces in (1, 3, 40):
        followed = write_followed(data, tmp_path / "copy.jsonl", rng, pieces, history)
        assert followed is not None
        assert key(followed) == whole, pieces


@pytest.mark.parametrize("link", CROSS_LINKS)
def test_a_link_back_across_a_compaction_gives_the_whole_file_findings(link: str, b: Builder, tmp_path: Path) -> None:
    """Lines read early close a segment; a later line that links into it makes the child read the
    whole file again, as an append does."""
    cross_link(b, link)
    path = b.write(tmp_path / f"{SID}.jsonl")
    whole = key(check_transcript_file(str(path)).findings)
    data = path.read_bytes()
    followed = write_followed(data, tmp_path / "copy.jsonl", random.Random(link), 20, True)
    assert followed is not None and key(followed) == whole


@pytest.mark.parametrize("path", corpus_files()[:8], ids=lambda p: p.name)
def test_real_sessions_checked_as_written(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    whole = key(check_transcript_file(str(path)).findings)
    followed = write_followed(data, tmp_path / path.name, random.Random(path.name), 30, True)
    assert followed is not None and key(followed) == whole


def test_sizes_past_the_end_and_repeated_are_harmless(b: Builder, tmp_path: Path) -> None:
    """In this process: the sizes only say how far to read, never what the file holds."""
    shapes(b, SHAPES[0])
    path = b.write(tmp_path / f"{SID}.jsonl")
    n = path.stat().st_size
    whole = key(check_transcript_file(str(path)).findings)
    assert key(check_growing(str(path), [10, 10, n // 2, n // 3, n, n * 2])) == whole


def test_no_child_while_a_thread_runs(tmp_path: Path) -> None:
    """A fork copies only the calling thread: with another running, no child, and no answer."""
    path = tmp_path / "copy.jsonl"
    path.write_bytes(b"")
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        growing = GrowingCheck(str(path))
        assert not growing.running
        growing.written(10)
        assert growing.result() is None
        growing.close()
    finally:
        stop.set()
        t.join()


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has exited (and been reaped) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_a_child_killed_gives_no_answer_and_is_reaped(b: Builder, tmp_path: Path) -> None:
    shapes(b, SHAPES[1])
    data = b.write(tmp_path / f"{SID}.jsonl").read_bytes()
    path = tmp_path / "copy.jsonl"
    path.write_bytes(data[: len(data) // 2])
    growing = GrowingCheck(str(path))
    pid = growing._pid
    growing.written(len(data) // 2)
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead (not reaped): no sleep-and-hope
    with path.open("ab") as f:
        f.write(data[len(data) // 2 :])
    growing.written(len(data))  # to a pipe nobody reads: no error, no SIGPIPE
    assert growing.result() is None
    growing.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped by close


WRITER = textwrap.dedent("""
    import os, sys
    from rewind_lsp.copycheck import GrowingCheck
    g = GrowingCheck(sys.argv[1])
    g.written(os.path.getsize(sys.argv[1]))
    print(g._pid, flush=True)
    sys.stdin.readline()
    os._exit(9)  # the writer dies (kill -9 has the same effect on its pipes)
""")


def test_a_writer_that_dies_leaves_no_child(b: Builder, tmp_path: Path) -> None:
    shapes(b, SHAPES[0])
    path = b.write(tmp_path / f"{SID}.jsonl")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdin is not None
    child = int(writer.stdout.readline())
    assert not gone(child, within=0.2)  # waiting behind the writer
    writer.stdin.write("\n")
    writer.stdin.flush()
    assert writer.wait(timeout=30) == 9
    assert gone(child), "the child outlived its writer"


def broken_session(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    b = Builder()
    turn(b, "toolu_ok")
    b.assistant(tu("toolu_lost"))
    b.user("still there?")
    return b.write(folder / f"{SID}.jsonl")


@pytest.mark.parametrize("with_child", [True, False])
def test_a_copy_with_an_error_left_is_refused_with_nothing_written(
    with_child: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan that repairs nothing (a bug) leaves the copy broken: the check of the copy refuses
    it, by the child or, without one, in this process, and no new session appears."""
    src = broken_session(tmp_path / "projects" / "p")
    before = sorted(p.name for p in src.parent.iterdir())
    started: list[bool] = []
    real = GrowingCheck.__init__

    def spy(self: GrowingCheck, path: str, history: bool = True) -> None:
        real(self, path, history)
        started.append(self.running)

    monkeypatch.setattr(GrowingCheck, "__init__", spy)
    monkeypatch.setattr(rewind_module, "_plan", lambda *a, **k: Plan())
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    if not with_child:
        t.start()
    try:
        with pytest.raises(RewindError) as got:
            rewind(src, mode="patch")
    finally:
        stop.set()
        if t.is_alive():
            t.join()
    assert started == [with_child]
    assert str(got.value).startswith("the repaired copy still has 1 error(s) (first: orphan-tool-use at line ")
    assert str(got.value).endswith("nothing was written. Please report this with `rewind-lsp doctor`.")
    assert sorted(p.name for p in src.parent.iterdir()) == before


def test_a_rewind_with_its_child_writes_what_one_without_writes(tmp_path: Path) -> None:
    """The same copy with the copy checked by a child and in this process: every line of the
    source byte for byte, and the synthetic result alike but for its own uuid and time."""
    data = broken_session(tmp_path / "built").read_bytes()
    copies: list[list[str]] = []
    for with_child in (True, False):
        src = tmp_path / str(with_child) / "projects" / "p" / f"{SID}.jsonl"
        src.parent.mkdir(parents=True)
        src.write_bytes(data)
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        if not with_child:
            t.start()
        try:
            result = rewind(src, mode="patch")
        finally:
            stop.set()
            if t.is_alive():
                t.join()
        copies.append(result.path.read_text().replace(result.session_id, "<new session>").splitlines())
    first, second = copies
    assert len(first) == len(second) == data.count(b"\n") + 1  # one synthetic result added
    made = [i for i, line in enumerate(first) if line != second[i]]
    assert len(made) == 2  # the synthetic result, and the prompt after it hung off its uuid
    for copy in copies:
        result_line, prompt = (json.loads(copy[i]) for i in made)
        assert result_line["message"]["content"][0]["type"] == "tool_result"
        assert prompt["parentUuid"] == result_line["uuid"]
    for i in made:
        a, b = (json.loads(c[i]) for c in copies)
        assert {k: v for k, v in a.items() if k not in ("uuid", "timestamp", "parentUuid")} == \
            {k: v for k, v in b.items() if k not in ("uuid", "timestamp", "parentUuid")}


def large_broken_session(folder: Path) -> Path:
    """~15 MB with a break at the end: long enough to be caught in each phase of its rewind."""
    folder.mkdir(parents=True, exist_ok=True)
    b = Builder()
    for t in range(2500):
        b.user(f"step {t}")
        call = b.assistant(tu(f"toolu_{t}"))
        b.result(f"toolu_{t}", "x" * 5000, of=call)
        b.assistant({"type": "text", "text": "done"})
    b.assistant(tu("toolu_lost"))
    b.user("still there?")
    return b.write(folder / f"{SID}.jsonl")


def waiting_on_a_pipe(pid: int) -> bool:
    try:
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("phase", ["while a child analyses the source", "while a child checks the copy"])
def test_ctrl_c_during_a_rewind_leaves_the_original_and_no_process(phase: str, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) once rewind waits on its child: in the
    analysis (no copy begun yet) or in the check of the copy (its temporary file written). Exit 130
    without a word, the original byte for byte, no copy or temporary file, no process left."""
    src = large_broken_session(tmp_path / "projects" / "p")
    data = src.read_bytes()
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "rewind_lsp.cli"]
    proc = subprocess.Popen([*exe, "rewind", "--mode", "patch", str(src)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    copy_begun = phase.endswith("the copy")
    deadline = time.monotonic() + 60
    while not (waiting_on_a_pipe(proc.pid)
               and any(p.name.endswith(".rewind-tmp") for p in src.parent.iterdir()) == copy_begun):
        assert proc.poll() is None, f"rewind ended before it was stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "rewind never reached the phase"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, b"")
    assert sorted(p.name for p in src.parent.iterdir()) == [src.name]
    assert src.read_bytes() == data
    assert group_gone(proc.pid), "a forked child outlived the rewind"
