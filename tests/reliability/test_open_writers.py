"""A session another process holds open for writing, one appended to while it is repaired, and a
disk that fails once the session is placed: real processes and files, the rewind run as the CLI,
syscalls delayed or failed by strace.

`--in-place` replaces the session by rename; a process holding the old file keeps writing into a
file no name reaches, so in-place is refused while one does. A writer that opens the file in the
last instant (between the final look and the rename) is made deterministic by delaying the rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_support import CLI, SID, broken, isolated_env, run_cli, wait_until

from rewind_lsp import holders

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="needs Linux /proc")

# Appends one entry when started, then one per line read on stdin; holds the file open throughout.
HOLDER = """\
import json, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
def add(uid):
    os.write(fd, (json.dumps({"type": "system", "uuid": uid}) + "\\n").encode())
add("held-1")
print("open", flush=True)
for line in sys.stdin:
    add(line.strip())
    print("wrote", flush=True)
"""

READER = """\
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("open", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def session(tmp_path: Path) -> Path:
    folder = tmp_path / "claude" / "projects" / "a project"  # a space in the path
    folder.mkdir(parents=True)
    src = folder / f"{SID}.jsonl"
    src.write_text(broken())
    return src


def start(tmp_path: Path, code: str, name: str, src: Path) -> tuple[subprocess.Popen[str], str]:
    """A real process running `code` on `src`; and its command line as rewind names it."""
    script = tmp_path / name
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script), str(src)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "open\n"
    full = f"{sys.executable} {script} {src}"
    return proc, full if len(full) <= 80 else full[:79] + "…"


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_in_place_is_refused_while_another_process_holds_the_session_open_for_writing(
        tmp_path: Path, session: Path) -> None:
    holder, command = start(tmp_path, HOLDER, "holder.py", session)
    try:
        before = session.read_bytes()
        done = run_cli(["rewind", "--in-place", str(session)], isolated_env(tmp_path))
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert done.stderr == (
            f"rewind-lsp: {session} is open for writing by pid {holder.pid} ({command}): what it writes after an "
            "in-place repair would go to the replaced file and be lost; nothing was written. End that session "
            "and try again, or repair it into a new session (without --in-place).\n"
        )
        assert session.read_bytes() == before
        assert sorted(p.name for p in session.parent.iterdir()) == [session.name]
        # The holder goes on writing into the session, under its name: nothing of it is lost.
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("held-2\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "wrote\n"
        assert [e["uuid"] for e in entries(session)][-2:] == ["held-1", "held-2"]
        # A new session needs no swap: the original stays where the holder writes.
        copy = run_cli(["rewind", str(session)], isolated_env(tmp_path))
        assert copy.returncode == 0, copy
        assert session.read_bytes() == before + b'{"type": "system", "uuid": "held-2"}\n'
    finally:
        stop(holder)


def test_a_reader_holding_the_session_open_does_not_stop_an_in_place_repair(tmp_path: Path, session: Path) -> None:
    reader, _ = start(tmp_path, READER, "reader.py", session)
    try:
        done = run_cli(["rewind", "--in-place", str(session)], isolated_env(tmp_path))
    finally:
        stop(reader)
    assert done.returncode == 0, done
    assert done.stderr == ""
    assert done.stdout.startswith(f"Repaired {session} in place; backup at {session}.")


# --- where /proc is missing (macOS, the BSDs): lsof ---------------------------------------------

needs_lsof = pytest.mark.skipif(shutil.which("lsof") is None, reason="lsof is not installed")


def lsof_name(pid: int) -> str:
    """The command name lsof gives a process (the kernel's 15 characters, on Linux)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


@needs_lsof
def test_lsof_finds_the_writer_and_not_the_reader(tmp_path: Path, session: Path) -> None:
    holder, _ = start(tmp_path, HOLDER, "holder.py", session)
    reader, _ = start(tmp_path, READER, "reader.py", session)
    try:
        assert holders.lsof_writers(str(session)) == [holders.Holder(holder.pid, lsof_name(holder.pid))]
    finally:
        stop(holder)
        stop(reader)
    assert holders.lsof_writers(str(session)) == []


@needs_lsof
def test_without_proc_in_place_asks_lsof_and_is_refused_while_a_writer_holds_the_session(
        tmp_path: Path, session: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on macOS: no /proc (the module is pointed at a folder that does not exist), so the writer is
    found by lsof, by the session's path; the refusal names it as lsof does."""
    from rewind_lsp.rewind import RewindError, rewind

    monkeypatch.setattr(holders, "PROC", str(tmp_path / "no-proc"))
    assert holders.supported()
    holder, _ = start(tmp_path, HOLDER, "holder.py", session)
    try:
        before = session.read_bytes()
        with pytest.raises(RewindError) as refused:
            rewind(session, in_place=True)
        assert str(refused.value) == (
            f"{session} is open for writing by pid {holder.pid} ({lsof_name(holder.pid)}): what it writes after an "
            "in-place repair would go to the replaced file and be lost; nothing was written. End that session "
            "and try again, or repair it into a new session (without --in-place)."
        )
        assert session.read_bytes() == before
        assert sorted(p.name for p in session.parent.iterdir()) == [session.name]
    finally:
        stop(holder)
    reader, _ = start(tmp_path, READER, "reader.py", session)
    try:
        done = rewind(session, in_place=True)  # a reader does not stop it
    finally:
        stop(reader)
    assert done.backup is not None and done.backup.read_bytes() == before


def strace(*options: str) -> list[str]:
    if not shutil.which("strace"):
        assert not os.environ.get("CI"), "CI installs strace (scripts/setup --editors)"
        pytest.skip("strace is not installed")
    return ["strace", "-qq", "-o", os.devnull, *options, "--"]


# What /proc/<pid>/syscall shows while one is delayed, by machine: the syscalls os.replace may use,
# and flock (the session lock rewind takes once its analysis is done).
RENAMES = {"x86_64": {82, 264, 316}, "aarch64": {38, 276}}
FLOCK = {"x86_64": {73}, "aarch64": {32}}


def in_syscall(pid: int, numbers: set[int]) -> bool:
    try:
        field = Path(f"/proc/{pid}/syscall").read_text().split(" ", 1)[0]
    except OSError:
        return False
    return field.isdigit() and int(field) in numbers


def traced_child(tracer: subprocess.Popen[str]) -> int:
    """The pid of the rewind strace started (not one of the short-lived children strace forks first
    to test what the kernel supports)."""
    def child() -> int:
        try:
            pids = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
        except OSError:
            return 0
        for pid in pids:
            with contextlib.suppress(OSError):  # strace's own children run strace, not Python
                if os.readlink(f"/proc/{pid}/exe") == os.path.realpath(sys.executable):
                    return int(pid)
        return 0
    pid: int = wait_until(child, 30)
    assert pid, "strace started no rewind"
    return pid


@pytest.fixture
def writer_in_the_swap(tmp_path: Path, session: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], int, str]]:
    """`rewind --in-place` with its rename over the session delayed 2 s; a writer opens the session
    (still the old file) during the delay, appends one line, and holds it open."""
    numbers = RENAMES.get(platform.machine())
    if numbers is None:
        pytest.skip(f"no rename syscall numbers for {platform.machine()}")
    # The main process's first rename is the swap (`-P` would not match a rename's second path).
    inject = "rename,renameat,renameat2"
    cmd = [*strace("-e", f"trace={inject}", "-e", f"inject={inject}:delay_enter=2000000:when=1"),
           *CLI, "rewind", "--in-place", str(session)]
    tracer = subprocess.Popen(cmd, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    holder: subprocess.Popen[str] | None = None
    try:
        rewinding = traced_child(tracer)
        if not wait_until(lambda: in_syscall(rewinding, numbers), 60):
            tracer.kill()
            out, err = tracer.communicate()
            pytest.fail(f"rewind never reached the rename (pid {rewinding}, exit {tracer.returncode}): {out}{err}")
        assert list(session.parent.glob(".*.rewind-tmp")), "the delayed rename is not the swap"
        holder, command = start(tmp_path, HOLDER, "holder.py", session)
        out, err = tracer.communicate(timeout=60)
        yield subprocess.CompletedProcess(cmd, tracer.returncode, out, err), holder.pid, command
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("after\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "wrote\n"
    finally:
        if holder is not None:
            stop(holder)
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()


def test_a_writer_that_opens_the_session_during_the_swap_is_named_and_its_line_kept(
        session: Path, writer_in_the_swap: tuple[subprocess.CompletedProcess[str], int, str]) -> None:
    done, pid, command = writer_in_the_swap
    assert done.returncode == 0, done
    (backup,) = session.parent.glob("*.bak")
    line = b'{"type": "system", "uuid": "held-1"}\n'
    assert backup.read_bytes() == broken().encode() + line
    assert done.stderr == (
        f"rewind-lsp: warning: {len(line)} byte(s) were appended to {session} while it was being replaced (is the "
        "session still running?): they are not in the repaired file; they are kept at the end of the backup "
        f"{backup}\n"
        f"rewind-lsp: warning: pid {pid} ({command}) opened {session} while it was being replaced and still holds "
        f"the replaced file: what it writes from now on is lost. End it; the backup {backup} holds everything "
        "written until now\n"
    )
    assert "held-1" not in session.read_text()
    check = run_cli(["check", str(session)], isolated_env(session.parents[3]))
    assert check.returncode == 0, check


def fsync_of(folder: Path) -> list[str]:
    """Fail with EIO every fsync of `folder` itself (only rewind's last step: the folder's entry)."""
    return strace("-P", str(folder), "-e", "trace=fsync", "-e", "inject=fsync:error=EIO")


def test_a_disk_failing_after_the_swap_reports_the_repair_done_with_a_warning(tmp_path: Path, session: Path) -> None:
    done = subprocess.run([*fsync_of(session.parent), *CLI, "rewind", "--in-place", str(session)],
                          env=isolated_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done
    (backup,) = session.parent.glob("*.bak")
    assert backup.read_text() == broken()
    assert done.stdout.startswith(f"Repaired {session} in place; backup at {backup}\n")
    assert done.stderr == (
        f"rewind-lsp: warning: the repaired session is in place, but the disk holding {session.parent} did not "
        f"confirm it (Input/output error): if the machine stops now, {session} may come back as it was; the "
        f"backup {backup} keeps the original\n"
    )
    assert run_cli(["check", str(session)], isolated_env(tmp_path)).returncode == 0


def test_a_disk_failing_after_the_link_reports_the_copy_written_and_remembered(tmp_path: Path, session: Path) -> None:
    env = isolated_env(tmp_path)
    done = subprocess.run([*fsync_of(session.parent), *CLI, "rewind", "--format", "json", str(session)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done
    result = json.loads(done.stdout)
    copy = Path(result["path"])
    assert copy.parent == session.parent and copy != session
    assert session.read_text() == broken()
    warning = (f"the repaired session {copy} was written, but the disk holding {session.parent} did not confirm it "
               f"(Input/output error): if the machine stops now, it may be missing; the original {session} is "
               "untouched")
    assert result["warnings"] == [warning]
    assert done.stderr == f"rewind-lsp: warning: {warning}\n"
    assert sorted(p.name for p in session.parent.iterdir()) == sorted([session.name, copy.name])
    # Remembered: the original is reported as repaired, and which copy to resume.
    check = run_cli(["check", str(session)], env)
    sid = result["session_id"]
    assert check.stderr.endswith(f"{session}: already repaired as {sid}: claude --resume {sid}\n"), check


@pytest.mark.parametrize("in_place", [False, True])
def test_a_session_appended_to_while_it_is_repaired_is_refused_with_exit_2(
        tmp_path: Path, session: Path, in_place: bool) -> None:
    """Claude Code appends a line once rewind has analysed the session (the lock it takes again
    before it writes is delayed 2 s): the CLI refuses, exit 2, the message on stderr and nothing on
    stdout; the session is the original and the appended line, and nothing else is in the folder."""
    numbers = FLOCK.get(platform.machine())
    if numbers is None:
        pytest.skip(f"no flock syscall number for {platform.machine()}")
    cmd = [*strace("-e", "trace=flock", "-e", "inject=flock:delay_enter=2000000:when=2"),
           *CLI, "rewind", *(["--in-place"] if in_place else []), str(session)]
    tracer = subprocess.Popen(cmd, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        rewinding = traced_child(tracer)
        assert wait_until(lambda: in_syscall(rewinding, numbers), 60), "rewind never took the session lock"
        appended = json.dumps({"type": "system", "uuid": "appended"}) + "\n"
        with open(session, "a") as f:
            f.write(appended)
        out, err = tracer.communicate(timeout=60)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    assert (tracer.returncode, out) == (2, "")
    assert err == (f"rewind-lsp: {session} changed while it was being repaired (is the session still running?); "
                   "nothing was written. Close the session and try again.\n")
    assert session.read_text() == broken() + appended
    assert sorted(p.name for p in session.parent.iterdir()) == [session.name]


def test_a_failure_keeping_the_late_lines_is_a_warning_once_swapped(tmp_path: Path) -> None:
    """After the swap, the bytes that reached the old file are appended to the backup; when that
    fails (here the backup's name is taken by a folder), the repair is done and the user is told."""
    from rewind_lsp import placement

    src = tmp_path / f"{SID}.jsonl"
    src.write_text(broken())
    fd = os.open(src, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        with open(src, "a") as f:
            f.write('{"type": "system", "uuid": "late"}\n')
        backup = tmp_path / "taken.bak"
        backup.mkdir()
        warnings = placement.after_swap(src, fd, st, st.st_size, backup)
    finally:
        os.close(fd)
    assert warnings == [
        f"the repaired session is in place, but what was appended to {src} while it was being replaced could not "
        f"be added to the backup {backup} (Is a directory): the backup may lack the last lines"
    ]
