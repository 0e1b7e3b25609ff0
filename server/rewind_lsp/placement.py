"""Crash-safe placement of a repaired session: stream the source through a plan into a new file.

Every file goes in under a hidden `.*.rewind-tmp` name and is fsynced before it is renamed or
linked to its real name; the new session's subagent folder is renamed into place before the
session file itself, so a crash at any point leaves either no new session or a complete one.
The copy gets the original's permission bits. The source is never written (except by
`--in-place`, after a backup), and a source that changes meanwhile is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .repair_plan import Plan, RewindError
from .transcript import iter_lines

# Also with spaces around the colon: transcripts re-serialized by other tools are still sessions.
_SESSION_ID = re.compile(rb'(?<!\\)"sessionId"\s*:\s*"[^"\\]*"')
TEMP_SUFFIX = ".rewind-tmp"
# A leftover of a killed rewind older than this cannot belong to a rewind still running.
STALE_TEMP_SECONDS = 3600


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path) -> tuple[int, int, int, str]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, sha256(path))


def session_id_of(path: Path) -> str | None:
    """The session id a file name stands for: `<id>.jsonl` with id a UUID in Claude Code's own
    spelling (lowercase, hyphens). `uuid.UUID` also takes other spellings, which would name a
    file Claude Code cannot find by the id written inside it."""
    if path.suffix != ".jsonl":
        return None
    try:
        canonical = str(uuid.UUID(path.stem))
    except ValueError:
        return None
    return canonical if canonical == path.stem else None


def choose_target(source: Path, out: str | Path | None, in_place: bool) -> tuple[Path, str | None]:
    """Where the copy goes and the session id written into it (None: keep the ids, in place)."""
    if in_place:
        return source, None
    if out is None:
        sid = str(uuid.uuid4())
        return source.with_name(f"{sid}.jsonl"), sid
    dest = Path(out)
    if dest.is_dir():  # a folder (the one named, even through a symlink): a new session file in it
        sid = str(uuid.uuid4())
        return dest / f"{sid}.jsonl", sid
    if dest.exists() or dest.is_symlink():
        raise RewindError(f"{dest}: already exists; refusing to overwrite it")
    named = session_id_of(dest)
    if named is None:
        raise RewindError(
            f"--out {dest}: Claude Code resumes a session by the id in its file name, so the name must be "
            f"<session id>.jsonl with a lowercase UUID (for example {uuid.uuid4()}.jsonl), or give a folder "
            "to write a new session file in; nothing was written"
        )
    if not dest.parent.is_dir():
        raise RewindError(f"--out {dest}: no such folder {dest.parent}; nothing was written")
    return dest, named


def write_copy(source: Path, tmp_fd: int, plan: Plan, session_id: str | None, like: os.stat_result) -> None:
    new_sid = f'"sessionId":"{session_id}"'.encode() if session_id else None

    def encode(d: dict[str, Any]) -> bytes:
        if session_id and "sessionId" in d:
            d = {**d, "sessionId": session_id}
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    with os.fdopen(tmp_fd, "wb") as out, open(source, "rb") as src:
        same_owner_and_mode(out.fileno(), like)
        for line, _offset, body, ended in iter_lines(src):
            if line not in plan.drop:
                if line in plan.replace:
                    data = encode(plan.replace[line])
                else:
                    data = _SESSION_ID.sub(new_sid, body) if new_sid else body
                out.write(data + (b"\n" if ended else b""))
            for extra in plan.insert_after.get(line, ()):
                out.write(encode(extra) + b"\n")
        out.flush()
        os.fsync(out.fileno())


def same_owner_and_mode(fd: int, like: os.stat_result) -> None:
    """mkstemp makes a 0600 file owned by whoever runs rewind: the copy gets the original's
    permission bits, and its owner when allowed (run as root, a root-owned session file would
    be one Claude Code can no longer append to)."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (like.st_uid, like.st_gid):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, like.st_uid, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))


def changed_error(source: Path) -> RewindError:
    return RewindError(
        f"{source} changed while it was being repaired (is the session still running?); nothing was written. "
        "Close the session and try again."
    )


def ensure_unchanged(source: Path, before: tuple[int, int, int, str]) -> None:
    """Refuse when the source is not what was analysed (a session still running appends to it)."""
    if fingerprint(source) != before:
        raise changed_error(source)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_ours(path: Path) -> None:
    """Best effort, for our own temporary files and folders (never a symlink's target)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def sweep_stale_temps(folder: Path) -> None:
    """Remove what a killed rewind left (kill -9, power cut): hidden `.*.rewind-tmp` copies, never
    the only copy of anything. Recent ones are left alone: they may be a rewind running now."""
    now = time.time()
    try:
        found = [e for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for e in found:
        try:
            if now - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                remove_ours(Path(e.path))
        except OSError:
            continue


def copy_subagents(src_dir: Path, dest_dir: Path, session_id: str) -> None:
    """Copy the subagent transcripts in `src_dir` into the empty `dest_dir`, their sessionId replaced,
    every file and folder fsynced and with its source's permission bits."""
    new_sid = f'"sessionId":"{session_id}"'.encode()
    folders: list[tuple[Path, int]] = [(dest_dir, stat.S_IMODE(src_dir.stat().st_mode))]
    for root, dirs, files in os.walk(src_dir):  # symlinked folders are not followed
        here = Path(root)
        to_dir = dest_dir / here.relative_to(src_dir)
        for name in sorted(dirs):
            s = here / name
            # A symlinked folder is not followed out of the session folder: it becomes an empty one.
            mode = 0o700 if s.is_symlink() else stat.S_IMODE(s.stat().st_mode)
            os.mkdir(to_dir / name, 0o700)  # opened up once filled (below)
            folders.append((to_dir / name, mode))
        for name in sorted(files):
            s = here / name
            st0 = os.lstat(s)
            if not stat.S_ISREG(st0.st_mode):
                continue
            with open(s, "rb") as f:
                data = f.read()
            st1 = os.lstat(s)
            if (st1.st_ino, st1.st_size, st1.st_mtime_ns) != (st0.st_ino, st0.st_size, st0.st_mtime_ns) or (
                len(data) != st0.st_size
            ):
                raise RewindError(f"{s} changed while it was being copied (is a subagent still running?); "
                                  "nothing was written. Close the session and try again.")
            if s.suffix == ".jsonl":
                data = _SESSION_ID.sub(new_sid, data)
            with open(to_dir / name, "xb") as out:
                same_owner_and_mode(out.fileno(), st0)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
    # Deepest first: each folder's entries are durable before the folder that names it.
    for d, mode in reversed(folders):
        fsync_dir(d)
        os.chmod(d, mode)


def rescue_late_bytes(src_fd: int, size: int, backup: Path) -> int:
    """`--in-place`: a line appended after the last check went to the old file, which os.replace
    just unlinked; `src_fd` still holds it. Append whatever lies past the checked size to the
    backup, so it is kept. Returns how many bytes were rescued."""
    done = size
    for _ in range(100):  # a writer that keeps the old file open may keep going: bounded
        end = os.fstat(src_fd).st_size
        if end <= done:
            break
        with open(backup, "ab") as b:
            while done < end:
                chunk = os.pread(src_fd, min(1 << 20, end - done), done)
                if not chunk:
                    break
                b.write(chunk)
                done += len(chunk)
            b.flush()
            os.fsync(b.fileno())
    return done - size




@dataclass(slots=True)
class Placed:
    backup: Path | None
    warnings: list[str] = field(default_factory=list)  # done, but the user must know (data kept elsewhere)


def place(
    source: Path,
    src_fd: int,
    before: tuple[int, int, int, str],
    plan: Plan,
    target: Path,
    session_id: str | None,
    verify: Callable[[Path], None],
) -> Placed:
    """Write the repaired copy and put it at `target` (a new session, or the source itself with
    `session_id` None: in place, after a backup). `verify` is given the finished temporary copy
    and raises RewindError to refuse it."""
    in_place = session_id is None
    src_stat = os.fstat(src_fd)
    if not in_place and (target.exists() or target.is_symlink()):
        raise RewindError(f"{target}: already exists; refusing to overwrite it")
    # Subagent transcripts live in `<session id>/` beside the session: they go along with a new session.
    sub_src = source.with_suffix("")
    sub_dest = target.with_suffix("")
    with_subagents = session_id is not None and sub_src.is_dir()
    if with_subagents and (sub_dest.exists() or sub_dest.is_symlink()):
        raise RewindError(f"{sub_dest}: already exists (left by an interrupted rewind?); refusing to overwrite it")
    folder = target.parent
    sweep_stale_temps(folder)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    tmp = Path(tmp_name)
    tmp_dir: Path | None = None
    placed_dir = False  # sub_dest is ours until the session file is linked
    backup: Path | None = None
    warnings: list[str] = []
    try:
        write_copy(source, fd, plan, session_id, src_stat)
        verify(tmp)
        if with_subagents and session_id is not None:
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{sub_dest.name}.", suffix=TEMP_SUFFIX, dir=folder))
            copy_subagents(sub_src, tmp_dir, session_id)
        ensure_unchanged(source, before)
        if in_place:
            backup = source.with_name(f"{source.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            n = 1
            while backup.exists():
                backup = source.with_name(f"{source.name}.{time.strftime('%Y%m%d-%H%M%S')}-{n}.bak")
                n += 1
            shutil.copy2(source, backup)
            with open(backup, "rb") as b:
                os.fsync(b.fileno())
            try:
                ensure_unchanged(source, before)
                if sha256(backup) != before[3]:
                    raise RewindError(f"{backup}: the backup does not match {source}; nothing was replaced")
            except RewindError:
                backup.unlink()
                raise
            os.replace(tmp, target)
            late = rescue_late_bytes(src_fd, before[1], backup)
            if late:
                warnings.append(
                    f"{late} byte(s) were appended to {source} while it was being replaced (is the session still "
                    f"running?): they are not in the repaired file; they are kept at the end of the backup {backup}"
                )
        else:
            if tmp_dir is not None:
                # Before the session file: a crash from here on leaves a complete subagent folder
                # with no session (nothing to resume), never a session with missing subagents.
                os.rename(tmp_dir, sub_dest)
                tmp_dir, placed_dir = None, True
                fsync_dir(folder)
            os.link(tmp, target)  # fails if the target appeared meanwhile: never overwrite
            placed_dir = False
            tmp.unlink()
        fsync_dir(folder)
    except BaseException:
        # The session file never arrived: take its subagent folder back out (but never from
        # under a session that did get linked, should an interrupt land just after the link).
        if placed_dir and not same_file(target, tmp):
            remove_ours(sub_dest)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
        if tmp_dir is not None:
            remove_ours(tmp_dir)
    return Placed(backup, warnings)
