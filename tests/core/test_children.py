"""A call run in a forked child (`children.ChildCall`): its result, the exceptions it passes on,
and None (the caller runs it itself) whenever the child cannot run it or does not finish. Real
forks; a child that is killed is killed with a real signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from core_support import group_gone

from rewind_lsp.children import ChildCall
from rewind_lsp.repair_plan import Plan, RewindError


def big_result() -> dict[int, str]:
    return {i: f"value {i}" for i in range(200_000)}  # far more than a pipe holds


def test_the_result_comes_back_and_the_child_is_reaped() -> None:
    call = ChildCall(big_result)
    assert call.running
    assert call.outcome() == (True, big_result())
    assert not call.running
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    call.close()  # harmless once done


def test_the_child_runs_while_this_process_goes_on() -> None:
    r, w = os.pipe()

    def wait_for_the_parent() -> str:
        return os.read(r, 5).decode()  # blocks until the parent writes, after ChildCall returned

    call = ChildCall(wait_for_the_parent)
    os.write(w, b"hello")
    assert call.outcome() == (True, "hello")
    os.close(r)
    os.close(w)


def test_a_passed_exception_is_raised_as_the_child_raised_it() -> None:
    def refuse() -> Plan:
        raise RewindError("/x.jsonl: the session already pairs; nothing to repair")

    got = ChildCall(refuse, passes=(RewindError,)).outcome()
    assert got is not None
    ok, exc = got
    assert not ok and type(exc) is RewindError and str(exc) == "/x.jsonl: the session already pairs; nothing to repair"


def test_any_other_failure_is_no_answer() -> None:
    def fail() -> int:
        raise OSError(5, "Input/output error")

    assert ChildCall(fail, passes=(RewindError,)).outcome() is None

    def unpicklable() -> object:
        return threading.Lock()

    assert ChildCall(unpicklable).outcome() is None


def hanging() -> tuple[ChildCall[int], int, int]:
    """A child that is in its call, for a minute: the call and the pipe it said so on."""
    r, w = os.pipe()

    def hang() -> int:
        os.write(w, b"x")
        time.sleep(60)
        return 1

    call = ChildCall(hang)
    assert os.read(r, 1) == b"x"  # the child is in `hang`
    return call, r, w


def test_a_child_killed_is_no_answer() -> None:
    call, r, w = hanging()
    os.kill(call._pid, signal.SIGKILL)
    assert call.outcome() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    os.close(r)
    os.close(w)


def test_close_stops_a_child_still_running() -> None:
    call, r, w = hanging()
    started = time.monotonic()
    call.close()
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    os.close(r)
    os.close(w)


def test_no_child_while_a_thread_runs() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        call = ChildCall(big_result)
        assert not call.running and call.outcome() is None
    finally:
        stop.set()
        t.join()


CTRL_C = textwrap.dedent("""
    import os, sys, time
    from rewind_lsp.children import ChildCall
    r, w = os.pipe()
    def work():
        os.write(w, str(os.getpid()).encode() + b"\\n")
        time.sleep(60)
    call = ChildCall(work)
    child = os.read(r, 64).decode().strip()
    print(child, flush=True)
    try:
        call.outcome()
    except KeyboardInterrupt:
        call.close()
        print("stopped", flush=True)
""")


def test_ctrl_c_stops_the_child_too() -> None:
    """SIGINT to the process group, as a terminal's Ctrl-C, once the parent waits for its child's
    answer (its kernel wait channel says so): both get it; neither is left."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    deadline = time.monotonic() + 10
    while "pipe" not in Path(f"/proc/{proc.pid}/wchan").read_text():  # in its read of the child's answer
        assert time.monotonic() < deadline, "the parent never waited for its child"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout.readline() == "stopped\n"
    assert proc.wait(timeout=30) == 0
    assert child != proc.pid and group_gone(proc.pid), "the child outlived Ctrl-C"  # it was in the group
