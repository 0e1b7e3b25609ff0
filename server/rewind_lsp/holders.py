"""Which other processes hold a file open for writing.

`--in-place` replaces a session by rename: a process that keeps the old file open (a Claude Code
still running, a `tail`-like logger) goes on writing into the file no name reaches any more, and
those lines are lost. Rewind asks this before it replaces anything, and once more after.

On Linux it reads `/proc/<pid>/fd` and `fdinfo` (the processes this user may inspect, which
includes every process of the user's own). Elsewhere (macOS, the BSDs) it asks the system's `lsof`
(`LSOF_PATHS`; macOS ships it) about the file's path; without either it finds no one, and says so
(`supported`). `lsof` is asked by path only: the old file of a session already replaced has none.
"""

from __future__ import annotations

import os
import subprocess  # lsof only, by its absolute path, an argument list and no shell
from dataclasses import dataclass

PROC = "/proc"
# Descriptors that are never a regular file: skipped without a stat.
_NOT_FILES = ("socket:", "pipe:", "anon_inode:", "/dev/")


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    command: str  # its command line, shortened; "" when unreadable

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" ({self.command})" if self.command else "")


# Where the system's own lsof is (macOS: /usr/sbin; Debian: /usr/bin; FreeBSD's port: /usr/local/sbin):
# never one found on PATH, which another program could have put first.
LSOF_PATHS = ("/usr/sbin/lsof", "/usr/bin/lsof", "/usr/local/sbin/lsof")


def _lsof() -> str | None:
    return next((p for p in LSOF_PATHS if os.path.isfile(p) and os.access(p, os.X_OK)), None)


def _proc_supported() -> bool:
    return os.path.isdir(os.path.join(PROC, "self", "fdinfo"))


def supported() -> bool:
    """Can `writers` find anyone here (with a path, where /proc is missing)?"""
    return _proc_supported() or _lsof() is not None


def _writes(pid: str, fd: str) -> bool:
    try:
        with open(os.path.join(PROC, pid, "fdinfo", fd), "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return (int(line.split()[1], 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _command(pid: str) -> str:
    try:
        with open(os.path.join(PROC, pid, "cmdline"), "rb") as f:
            raw = f.read(4096)
    except OSError:
        return ""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:79] + "…"


def writers(dev: int, ino: int, path: str | None = None) -> list[Holder]:
    """The processes other than this one with file (`dev`, `ino`) open for writing, by pid. Where
    /proc is missing, `lsof` is asked about `path` while it still names that file."""
    if not _proc_supported():
        if path is None:
            return []
        try:
            st = os.stat(path)
        except OSError:
            return []
        return lsof_writers(path) if (st.st_dev, st.st_ino) == (dev, ino) else []
    me = str(os.getpid())
    try:
        pids = [p for p in os.listdir(PROC) if p.isdigit() and p != me]
    except OSError:
        return []
    found: list[Holder] = []
    for pid in pids:
        fd_dir = os.path.join(PROC, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            link = os.path.join(fd_dir, fd)
            try:
                if os.readlink(link).startswith(_NOT_FILES):
                    continue
                st = os.stat(link)
            except OSError:
                continue
            if st.st_ino == ino and st.st_dev == dev and _writes(pid, fd):
                found.append(Holder(int(pid), _command(pid)))
                break
    return sorted(found, key=lambda h: h.pid)


LSOF_TIMEOUT = 10.0


def lsof_writers(path: str) -> list[Holder]:
    """`writers` as `lsof` sees the file at `path`: each process with it open in mode `w` or `u`."""
    lsof = _lsof()
    if lsof is None:
        return []
    try:
        # -F: one field a line (p pid, c command, f descriptor, a access mode); -w: no warnings
        # about other file systems; -n -P: no name look-ups.
        done = subprocess.run([lsof, "-n", "-P", "-w", "-F", "pcfa", "--", path], capture_output=True,
                              timeout=LSOF_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    found: dict[int, Holder] = {}
    pid, command = 0, ""
    for raw in done.stdout.decode("utf-8", "replace").splitlines():
        tag, value = raw[:1], raw[1:]
        if tag == "p":
            pid, command = int(value) if value.isdigit() else 0, ""
        elif tag == "c":
            command = value if len(value) <= 80 else value[:79] + "…"
        elif tag == "a" and value in ("w", "u") and pid and pid != me:
            found.setdefault(pid, Holder(pid, command))
    return sorted(found.values(), key=lambda h: h.pid)
