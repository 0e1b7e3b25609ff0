"""`rewind-lsp capture -- claude …`: run a command under a pseudo-terminal and tee its output to a log.

Everything passes through untouched: keys, colours, window resizes and the exit status. The
log lands in the default watched log folder, so the language server sees the 400 the moment
Claude Code prints it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
import tty
from pathlib import Path

from .paths import user_log_dir


def default_log_path(command: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = os.path.basename(command) or "command"
    return user_log_dir() / f"{name}-{stamp}-{os.getpid()}.log"


def _copy_winsize(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def capture(argv: list[str], log_path: Path) -> int:
    """Run `argv` on a pty, passing I/O through and appending its output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    pid, master = pty.fork()
    if pid == 0:  # the child
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"rewind-lsp capture: cannot run {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    interactive = os.isatty(stdin_fd)
    saved = termios.tcgetattr(stdin_fd) if interactive else None
    if interactive:
        _copy_winsize(stdin_fd, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(stdin_fd, master))
        tty.setraw(stdin_fd)
    inputs = [master, stdin_fd]
    try:
        # Owner-only, like a shell history: terminal output may hold keys and tokens.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "ab", buffering=0) as log:
            while True:
                try:
                    ready, _, _ = select.select(inputs, [], [])
                except InterruptedError:
                    continue
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        data = b""
                    if not data:
                        break
                    _write_all(stdout_fd, data)
                    log.write(data)
                if stdin_fd in ready:
                    data = os.read(stdin_fd, 65536)
                    if data:
                        _write_all(master, data)
                    else:
                        inputs.remove(stdin_fd)  # our stdin ended; the child goes on
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
