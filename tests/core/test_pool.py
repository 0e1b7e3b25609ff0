"""The pool of forked workers: the answers of a serial run in the same order, the heaviest job
first, a worker that dies costs only time, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from core_support import CLI, Builder, compacted, group_gone, text

from rewind_lsp.pool import Pool

PARENT = os.getpid()


class Answer(msgspec.Struct):
    job: int
    square: int
    pid: int


def square(n: int) -> Answer:
    return Answer(n, n * n, os.getpid())


@pytest.mark.parametrize("count", [1, 2, 3, 5, 40])
@pytest.mark.parametrize("processes", [1, 2, 5])
def test_the_answers_are_the_serial_ones_in_order(processes: int, count: int) -> None:
    """Any number of jobs against any number of workers (fewer jobs than workers have room for
    queued: every worker must still get one, or the pool would wait on an idle worker forever)."""
    jobs = list(range(count))
    answers = Pool(square, Answer, processes).map(jobs, weight=lambda n: n % 7)
    assert [(a.job, a.square) for a in answers] == [(n, n * n) for n in jobs]
    pids = {a.pid for a in answers}
    alone = processes == 1 or count == 1
    assert (pids == {os.getpid()}) if alone else (os.getpid() not in pids and len(pids) == min(processes, count))


def test_the_heaviest_job_goes_first() -> None:
    seen: list[int] = []
    Pool(square, Answer, 1).map([3, 9, 1, 7], weight=lambda n: n, done=lambda i, a: seen.append(a.job))
    assert seen == [9, 7, 3, 1]
    started = os.pipe()

    def noted(n: int) -> Answer:
        os.write(started[1], bytes([n]) + os.getpid().to_bytes(4, "little"))  # who took which job, when
        return square(n)

    Pool(noted, Answer, 2).map([3, 9, 1, 7, 5, 8], weight=lambda n: n)
    os.close(started[1])
    data = os.read(started[0], 256)
    os.close(started[0])
    taken: dict[int, list[int]] = {}
    for k in range(0, len(data), 5):
        taken.setdefault(int.from_bytes(data[k + 1 : k + 5], "little"), []).append(data[k])
    assert sorted(n for ns in taken.values() for n in ns) == [1, 3, 5, 7, 8, 9]
    # Jobs are handed out heaviest first and each worker takes its own in the order handed.
    assert all(ns == sorted(ns, reverse=True) for ns in taken.values()), taken
    assert 9 in [ns[0] for ns in taken.values()]


def dies_on_13(n: int) -> Answer:
    if n == 13 and os.getpid() != PARENT:
        os._exit(3)  # a worker killed mid-job (out of memory, say)
    return square(n)


def test_a_worker_that_dies_costs_only_time() -> None:
    answers = Pool(dies_on_13, Answer, 2).map(list(range(30)), weight=lambda n: 0)
    assert [a.square for a in answers] == [n * n for n in range(30)]
    assert answers[13].pid == os.getpid()  # done here after its worker died


def fails_on_5(n: int) -> Answer:
    if n == 5:
        raise ValueError("job 5 failed")
    return square(n)


def test_an_error_in_a_job_is_raised_here_as_in_a_serial_run() -> None:
    with pytest.raises(ValueError, match="job 5 failed"):
        Pool(fails_on_5, Answer, 3).map(list(range(12)), weight=lambda n: 0)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every worker was reaped


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Claude config folder with 80 sessions of ~1 MB: long enough for the pool to be busy."""
    root = tmp_path_factory.mktemp("machine")
    for i in range(80):
        b = Builder(session_id=f"{i:08d}-3333-4333-8333-333333333333")
        compacted(b, 3)
        for t in range(120):
            b.user(f"step {t} " + "x" * 4000)
            b.assistant(text("done " + "y" * 4000))
        b.write(root / "projects" / "-tmp-p" / f"{b.session_id}.jsonl")
    return root


@pytest.mark.parametrize("after", [0.15, 0.3, 0.45, 0.6])
def test_ctrl_c_leaves_no_process_behind(machine: Path, tmp_path: Path, after: float) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) while the pool checks the machine's sessions."""
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(machine), "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache")}
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "rewind_lsp"]
    whole = subprocess.run([*exe, "--no-cache"], env=env, capture_output=True, timeout=120).stdout
    proc = subprocess.Popen([*exe, "--jobs", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # 130: stopped by the CLI's handler; -SIGINT: while Python was starting or shutting down; 0: the
    # answer was complete before the signal came (the whole answer, then).
    assert proc.returncode in (0, 130, -signal.SIGINT), err
    if proc.returncode == 0:
        assert out == whole, "exit 0 after Ctrl-C with a partial answer"
    if proc.returncode == 130:
        assert (out, err) == (b"", b"")
    assert group_gone(proc.pid, within=5), "a worker outlived the check"


class Note(msgspec.Struct):
    text: str
    pid: int


def note(n: int) -> Note:
    # A lone surrogate (an id read from a damaged file) cannot be sent as UTF-8 msgpack.
    return Note(f"job {n}" + ("\udc80" if n == 3 else ""), os.getpid())


def test_an_answer_that_cannot_be_sent_is_made_here_and_the_worker_goes_on() -> None:
    answers = Pool(note, Note, 2).map(list(range(10)), weight=lambda n: 0)
    assert [a.text for a in answers] == [f"job {n}" + ("\udc80" if n == 3 else "") for n in range(10)]
    assert answers[3].pid == os.getpid()
    assert len({a.pid for a in answers} - {os.getpid()}) == 2  # both workers kept working
