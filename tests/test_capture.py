"""`rewind-lsp capture`: a real pseudo-terminal, as a user's terminal would run it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

LINE = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."


def run_in_terminal(args: list[str], rows: int, cols: int, keys: bytes = b"", timeout: float = 20) -> tuple[int, bytes]:
    """Run `args` with a terminal of rows x cols as its stdin/stdout; type `keys`; collect the screen bytes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if keys and not sent and b"ready" in out:
            os.write(master, keys)
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(timeout=5), out


def test_passes_through_output_keys_size_and_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "claude.log"
    script = f"stty size; printf '\\033[31m{LINE}\\033[0m\\n'; echo ready; read answer; echo \"got $answer\"; exit 7"
    status, screen = run_in_terminal(
        [sys.executable, "-m", "rewind_lsp", "capture", "--log", str(log), "--", "sh", "-c", script],
        rows=33,
        cols=111,
        keys=b"yes\r",
    )
    assert status == 7
    assert b"33 111" in screen  # the window size reached the command's own terminal
    assert b"got yes" in screen  # keys went through
    text = log.read_bytes()
    assert b"\x1b[31m" + LINE.encode() in text  # colours untouched in the log
    assert b"got yes" in text
    assert log.stat().st_mode & 0o777 == 0o600  # terminal output may hold secrets: owner-only


def test_the_log_is_a_log_the_checker_finds_the_400_in(tmp_path: Path) -> None:
    log = tmp_path / "claude.log"
    status, _ = run_in_terminal(
        [sys.executable, "-m", "rewind_lsp", "capture", "--log", str(log), "--", "printf", f"\\033[31m● {LINE}\\n"],
        rows=24,
        cols=80,
    )
    assert status == 0
    done = subprocess.run(
        [sys.executable, "-m", "rewind_lsp", "check", "--format", "json", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and '"tool-use-concurrency-400"' in done.stdout


def test_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    status, screen = run_in_terminal(
        [
            sys.executable,
            "-m",
            "rewind_lsp",
            "capture",
            "--log",
            str(tmp_path / "x.log"),
            "--",
            "no-such-claude-binary",
        ],
        rows=24,
        cols=80,
    )
    assert status == 127 and b"cannot run no-such-claude-binary" in screen


def test_default_log_goes_to_the_watched_log_folder(tmp_path: Path) -> None:
    env = {**os.environ, "REWIND_LSP_LOG_DIR": str(tmp_path / "logs")}
    done = subprocess.run(
        [sys.executable, "-m", "rewind_lsp", "capture", "--", "echo", "hi"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0
    logs = list((tmp_path / "logs").glob("echo-*.log"))
    assert len(logs) == 1 and logs[0].read_bytes().strip() == b"hi"
