"""Crash-safe placement of a repaired session: stream the source through a plan into a new file.

Every file goes in under a hidden `.*.rewind-tmp` name and is fsynced before it is renamed or
linked to its real name; the new session's subagent folder is renamed into place before the
session file itself, so a crash at any point leaves either no new session or a complete one.
The copy gets the original's permission bits. The source is never written (except by
`--in-place`, after a backup), and a source that changes meanwhile is refused.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
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
from typing import Any, Protocol

import msgspec

from . import holders
from .census import file_census
from .repair_plan import Plan, RewindError

TEMP_SUFFIX = ".rewind-tmp"
# A leftover of a killed rewind older than this cannot belong to a rewind still running.
STALE_TEMP_SECONDS = 3600


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    # 8 MB reads: taken in a thread beside an analysis (rewind), each read waits for the other
    # thread to give up the GIL; 1 MB ones took a 1 GB digest from 0.6 to 4.4 s.
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_mark(st: os.stat_result) -> tuple[int, int, int]:
    """What a fingerprint takes of a file's stat: inode, size, mtime."""
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def fingerprint(path: Path) -> tuple[int, int, int, str]:
    return (*_stat_mark(path.stat()), sha256(path))


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


_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def top_level_value_spans(text: str, key: str) -> list[tuple[int, int]]:
    """Where the values of `text`'s own top-level `key` fields lie (start, end); [] when `text` is
    not one JSON object. The same key nested deeper (a tool's input, a recorded result) is not one."""
    spans: list[tuple[int, int]] = []
    n = len(text)
    i = 0
    try:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] != "{":
            return []
        i += 1
        first = True
        while True:
            while i < n and text[i] in _SPACE:
                i += 1
            if i < n and text[i] == "}" and first:
                return spans
            name, i = _DECODER.raw_decode(text, i)
            if not isinstance(name, str):
                return []
            while i < n and text[i] in _SPACE:
                i += 1
            if i >= n or text[i] != ":":
                return []
            i += 1
            while i < n and text[i] in _SPACE:
                i += 1
            start = i
            _value, i = _DECODER.raw_decode(text, i)
            if name == key:
                spans.append((start, i))
            while i < n and text[i] in _SPACE:
                i += 1
            if i < n and text[i] == ",":
                i += 1
                first = False
                continue
            if i < n and text[i] == "}":
                i += 1
                while i < n and text[i] in _SPACE:
                    i += 1
                return spans if i == n else []
            return []
    except (ValueError, RecursionError):
        return []


class _TopSessionId(msgspec.Struct):
    sessionId: Any = msgspec.UNSET


class _TopParentUuid(msgspec.Struct):
    parentUuid: Any = msgspec.UNSET


# key -> (the key as JSON bytes, a decoder of that top-level field alone): set up once, used per line.
_TOP_FIELD: dict[str, tuple[bytes, msgspec.json.Decoder[Any]]] = {
    "sessionId": (b'"sessionId"', msgspec.json.Decoder(_TopSessionId)),
    "parentUuid": (b'"parentUuid"', msgspec.json.Decoder(_TopParentUuid)),
}


class _TopParentAndSession(msgspec.Struct):
    parentUuid: Any = msgspec.UNSET
    sessionId: Any = msgspec.UNSET


_PARENT_AND_SESSION = msgspec.json.Decoder(_TopParentAndSession)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NULL = re.compile(rb"null")


def _past_space(raw: bytes, i: int) -> int:
    while i < len(raw) and raw[i] in b" \t\n\r":
        i += 1
    return i


def _own_value_span(raw: bytes, name: bytes) -> tuple[int, int] | None:
    """Where the value after the one `name` in `raw` is, when it is a string or null: the line's own
    key, as the callers have made sure (no `\\u` escape, one occurrence, msgspec read the field). None
    for any other spelling, which the callers leave to the walk or to one step at a time."""
    i = _past_space(raw, raw.index(name) + len(name))
    if raw[i:i + 1] != b":":
        return None
    start = _past_space(raw, i + 1)
    found = _JSON_STRING.match(raw, start) or _NULL.match(raw, start)
    return None if found is None else (start, found.end())


def with_top_level(raw: bytes, key: str, value: Any) -> bytes | None:
    """`raw` with the value of its own top-level `key` (sessionId or parentUuid) set to `value`, every
    other byte kept (invalid UTF-8 included: it round-trips through surrogateescape); None when it
    has no such field or is not one JSON object."""
    name, decoder = _TOP_FIELD[key]
    if name not in raw:
        return None
    if raw.count(name) == 1 and b"\\u" not in raw:
        # The usual line, without walking all of it in Python: with no \u escape, a top-level key
        # is spelled out, so when msgspec (which skips the other values in C) finds one, it is the
        # one occurrence. Anything else is left to the walk below.
        try:
            top = decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            top = None
        if top is not None and getattr(top, key) is msgspec.UNSET:
            return None
        span = _own_value_span(raw, name) if top is not None else None
        if span is not None:
            return raw[:span[0]] + json.dumps(value).encode("utf-8", errors="surrogateescape") + raw[span[1]:]
    text = raw.decode("utf-8", errors="surrogateescape")
    spans = top_level_value_spans(text, key)
    if not spans:
        return None
    encoded = json.dumps(value)
    for start, end in reversed(spans):
        text = text[:start] + encoded + text[end:]
    return text.encode("utf-8", errors="surrogateescape")


def with_parent_and_session(raw: bytes, parent: str | None, session_id: str) -> bytes | None:
    """`raw` with its own top-level parentUuid and sessionId set, in one pass over the line: what
    `with_top_level` of one then the other gives, for the usual line (no `\\u` escape, each key
    once, both its own, with a string or null value); None for any other line (do them one at a
    time). Patch relinks a line of most replies, and such lines hold the large tool results."""
    parent_key = _TOP_FIELD["parentUuid"][0]
    if b"\\u" in raw or raw.count(parent_key) != 1 or raw.count(_SESSION_KEY) != 1:
        return None
    try:
        top = _PARENT_AND_SESSION.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if top.parentUuid is msgspec.UNSET or top.sessionId is msgspec.UNSET:
        return None
    spans: list[tuple[int, int, bytes]] = []
    for key, value in ((parent_key, parent), (_SESSION_KEY, session_id)):
        span = _own_value_span(raw, key)
        if span is None:
            return None
        spans.append((*span, json.dumps(value).encode("utf-8", errors="surrogateescape")))
    spans.sort()
    (a, b, first), (c, d, second) = spans
    return b"".join((raw[:a], first, raw[b:c], second, raw[d:]))


def with_session_id(raw: bytes, session_id: str) -> bytes:
    """`raw` with its own top-level `sessionId` set to `session_id`; every other byte kept."""
    replaced = with_top_level(raw, "sessionId", session_id)
    return raw if replaced is None else replaced


def is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8", errors="replace")), dict)
    except (ValueError, RecursionError):
        return False


_SESSION_KEY = b'"sessionId"'
# An escaped ASCII letter (`\u0049` for `I`): the only way `sessionId` can be spelled other than
# literally. Escapes of anything else (`\u001b` in a terminal's output) cannot spell that key.
_ESCAPED_LETTER = re.compile(rb"\\u00[4-7][0-9A-Fa-f]")
_CHUNK = 1 << 20


def write_copy(
    src_fd: int, tmp_fd: int, plan: Plan, session_id: str | None, like: os.stat_result,
    written: Callable[[int], None] | None = None,
) -> list[str]:
    """Stream the source (read through `src_fd`, the file that was analysed, even if its path has
    been replaced since) through `plan` into `tmp_fd`. Every line written ends in `\n`, so the
    first line Claude Code appends on resume starts a line of its own. Returns what was left out.
    `written` is told the size of the copy's whole lines as each block of them reaches the file.

    ~1 MB of whole lines at a time: a line the plan does not touch is copied as it is, or with its
    own sessionId rewritten in place when the check read it (`Plan.session_ids`); every other line
    goes through `copy_line`, as each line once did (a 1 GB copy: 4.4 s, now ~1 s)."""
    left_out: list[str] = []
    acted = set(plan.drop) | plan.reparent.keys() | plan.replace.keys() | plan.insert_after.keys()
    known = plan.session_ids if session_id else None
    new_key = _SESSION_KEY + b":" + json.dumps(session_id).encode("utf-8") if session_id else b""

    def encode(d: dict[str, Any]) -> bytes:
        if session_id and "sessionId" in d:
            d = {**d, "sessionId": session_id}
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def copy_line(line: int, body: bytes, ended: bool, out: list[bytes]) -> None:
        if line not in plan.drop:
            relink = line in plan.reparent and line not in plan.replace
            both = with_parent_and_session(body, plan.reparent[line], session_id) \
                if relink and session_id and ended else None
            if both is not None:
                out += (both, b"\n")
            else:
                if relink:
                    relinked = with_top_level(body, "parentUuid", plan.reparent[line])
                    if relinked is None:  # no parentUuid field of its own: given one
                        plan.replace[line] = {**json.loads(body.decode("utf-8", errors="replace")),
                                              "parentUuid": plan.reparent[line]}
                    else:
                        body = relinked
                if line in plan.replace:
                    out += (encode(plan.replace[line]), b"\n")
                elif ended or is_json_object(body):
                    out += (with_session_id(body, session_id) if session_id else body, b"\n")
                elif body.strip():
                    # A writer mid-write: its bytes stay in the original, never fused with the
                    # line Claude Code appends next.
                    left_out.append(
                        f"line {line}: a half-written last line ({len(body)} bytes) was left out; "
                        "it stays in the original"
                    )
        for extra in plan.insert_after.get(line, ()):
            out += (encode(extra), b"\n")

    def copy_whole(line: int, body: bytes, out: list[bytes]) -> None:
        """A line the plan leaves as it is (ended by a newline): with the new session's id."""
        if not session_id:
            out += (body, b"\n")
            return
        old = known.of(line) if known is not None else None
        # Its one `"sessionId"` is its own top-level key when the check read one and no key can be
        # spelled with an escape (a `"` inside a string value is always escaped: `\"`; an escaped
        # letter is `_ESCAPED_LETTER`).
        if old is not None and body.count(_SESSION_KEY) == 1 and not _ESCAPED_LETTER.search(body):
            needle = _SESSION_KEY + b':"' + old + b'"'
            at = body.find(needle)
            if at >= 0:
                out += (body[:at], new_key, body[at + len(needle):], b"\n")
                return
        copy_line(line, body, True, out)

    acted_lines = sorted(acted)

    def as_it_is(first: int, count: int, block: bytes) -> bytes | None:
        """`count` whole lines from line `first`, none the plan touches (a run between acted lines),
        written at once: as they are, or with the one `"sessionId":"<old>"` of each line that has an
        id replaced in one pass, when those lines' ids are all the same `<old>` (what `copy_whole`
        does line by line, a few times faster). None: line by line."""
        after = first + count
        if b"\r" in block:
            return None
        if not session_id:
            return block
        shared = known.shared(first, after) if known is not None else None
        if shared is None or _ESCAPED_LETTER.search(block):
            return None
        old, having = shared
        # No key spelled with an escape, so a line's own key is spelled `"sessionId"`: one in all
        # per line that has an id means that one is each such line's own and the rest have none,
        # and as many `"sessionId":"<old>"` means each is spelled that way, with the value read.
        needle = _SESSION_KEY + b':"' + old + b'"'
        if block.count(_SESSION_KEY) != having or block.count(needle) != having:
            return None
        return block.replace(needle, new_key)

    def one_by_one(first: int, block: bytes, start: int, stop: int, out: list[bytes]) -> None:
        """The untouched lines from line `first` in `block[start:stop]` (whole lines), one at a time."""
        line = first
        for body in block[start:stop].split(b"\n")[:-1]:  # the last piece is empty: a newline ends the run
            copy_whole(line, body[:-1] if body.endswith(b"\r") else body, out)
            line += 1

    with os.fdopen(tmp_fd, "wb") as out, os.fdopen(os.dup(src_fd), "rb") as src:

        def tell_written() -> None:  # what reached the file: whole lines (a block's pieces end in one)
            if written is not None:
                out.flush()
                written(out.tell())

        same_owner_and_mode(out.fileno(), like)
        fd = src.fileno()
        offset, line = 0, 1
        end = plan.source_size  # what was analysed: a line appended since is not the plan's
        while True:
            chunk = os.pread(fd, _CHUNK if end < 0 else min(_CHUNK, end - offset), offset)
            if not chunk:
                break
            cut = chunk.rfind(b"\n") + 1
            pieces: list[bytes] = []
            if not cut:
                # A line longer than a chunk, or the last one without a newline: read whole.
                src.seek(offset)
                raw = src.readline(-1 if end < 0 else end - offset)
                offset += len(raw)
                ended = raw.endswith(b"\n")
                body = raw[:-1] if ended else raw
                del raw  # a 200 MB line is held once, not twice, while its rewrite is encoded
                copy_line(line, body[:-1] if body.endswith(b"\r") else body, ended, pieces)
                del body
                out.writelines(pieces)
                tell_written()
                line += 1
                continue
            block = chunk if cut == len(chunk) else chunk[:cut]
            del chunk
            count = block.count(b"\n")
            # Patch relinks a line of most replies: the runs of untouched lines between the acted
            # ones are still written a run at a time (`as_it_is`), each acted line on its own.
            end_line = line + count
            acted_here = acted_lines[bisect.bisect_left(acted_lines, line):bisect.bisect_left(acted_lines, end_line)]
            pos = 0
            for a in [*acted_here, end_line]:
                if a > line:
                    start = pos
                    if a == end_line:
                        pos = cut
                    else:
                        for _ in range(a - line):
                            pos = block.index(b"\n", pos) + 1
                    run = as_it_is(line, a - line, block if start == 0 and pos == cut else block[start:pos])
                    if run is not None:
                        pieces.append(run)
                    else:
                        one_by_one(line, block, start, pos, pieces)
                    line = a
                if a < end_line:
                    stop = block.index(b"\n", pos)
                    body = block[pos:stop]
                    copy_line(a, body[:-1] if body.endswith(b"\r") else body, True, pieces)
                    pos = stop + 1
                    line = a + 1
            out.writelines(pieces)
            tell_written()
            offset += cut
        out.flush()
        os.fsync(out.fileno())
    return left_out


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
    """Refuse when the source is not what was analysed (a session still running appends to it,
    an editor saved over it, it was removed): its inode, size, mtime and digest."""
    try:
        now = fingerprint(source)
    except OSError:
        raise changed_error(source) from None
    if now != before:
        raise changed_error(source)


def ensure_same_stat(source: Path, before: tuple[int, int, int, str]) -> None:
    """`ensure_unchanged` without the digest (a read of the whole file): its inode, size and mtime,
    for the moments after a full check where another read of a large file would be waited for."""
    try:
        if _stat_mark(source.stat()) != before[:3]:
            raise changed_error(source)
    except OSError:
        raise changed_error(source) from None


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


def is_subagent_file(name: str) -> bool:
    """A subagent transcript Claude Code writes (`agent-<id>.jsonl`) or its `.meta.json` sibling."""
    return name.startswith("agent-") and (name.endswith(".jsonl") or name.endswith(".meta.json"))


def leaving_link_error(link: Path, folder: Path) -> RewindError:
    return RewindError(
        f"{link} is a symbolic link out of the session's folder {folder}; nothing was written. "
        "Replace the link with the files themselves and try again."
    )


def copy_subagents(src_dir: Path, dest_dir: Path, session_id: str) -> None:
    """Copy the subagent transcripts in `src_dir` into the empty `dest_dir`, their sessionId replaced,
    every file and folder fsynced and with its source's permission bits. Only regular
    `agent-*.jsonl` files and their `.meta.json` siblings are copied, never through a symlink:
    `src_dir` itself, its `subagents` folder or a subagent file being a symlink out of `src_dir` is
    refused (its target is not the session's); any other symlink is left out."""
    if src_dir.is_symlink():
        raise leaving_link_error(src_dir, src_dir.parent)
    inside = src_dir.resolve()

    def check_link(link: Path) -> None:
        if not link.resolve().is_relative_to(inside):
            raise leaving_link_error(link, src_dir)

    folders: list[tuple[Path, int]] = [(dest_dir, stat.S_IMODE(src_dir.stat().st_mode))]
    for root, dirs, files in os.walk(src_dir):  # symlinked folders are not followed
        here = Path(root)
        to_dir = dest_dir / here.relative_to(src_dir)
        for name in sorted(dirs):
            s = here / name
            if s.is_symlink():
                if here == src_dir and name == "subagents":
                    check_link(s)
                continue  # not followed: within the folder its target is copied where it is
            os.mkdir(to_dir / name, 0o700)  # opened up once filled (below)
            folders.append((to_dir / name, stat.S_IMODE(s.stat().st_mode)))
        for name in sorted(files):
            s = here / name
            st0 = os.lstat(s)
            if stat.S_ISLNK(st0.st_mode):
                if is_subagent_file(name):
                    check_link(s)
                continue
            if not stat.S_ISREG(st0.st_mode) or not is_subagent_file(name):
                continue
            # Line by line (a subagent transcript can be as large as a session, so it is never read
            # whole), each line's own sessionId replaced; lines end as bytes.splitlines ends them.
            copied = 0
            with open(s, "rb") as f, open(to_dir / name, "xb", buffering=1 << 20) as out:
                same_owner_and_mode(out.fileno(), st0)
                for raw in f:
                    copied += len(raw)
                    if s.suffix != ".jsonl":
                        out.write(raw)
                    elif b"\r" in raw:
                        out.writelines(with_session_id(piece, session_id) for piece in raw.splitlines(keepends=True))
                    else:
                        out.write(with_session_id(raw, session_id))
                out.flush()
                os.fsync(out.fileno())
            # Counted as it was written and as it is: no line lost, fused or moved, every id the new one.
            differences = _copied_differences(s, to_dir / name, session_id)
            st1 = os.lstat(s)
            if (st1.st_ino, st1.st_size, st1.st_mtime_ns) != (st0.st_ino, st0.st_size, st0.st_mtime_ns) or (
                copied != st0.st_size
            ):
                raise RewindError(f"{s} changed while it was being copied (is a subagent still running?); "
                                  "nothing was written. Close the session and try again.")
            if differences:
                raise RewindError(f"the copy of {s} does not hold what that file holds ({'; '.join(differences)}); "
                                  "nothing was written. Please report this with `rewind-lsp doctor`.")
    # Deepest first: each folder's entries are durable before the folder that names it.
    for d, mode in reversed(folders):
        fsync_dir(d)
        os.chmod(d, mode)


def _copied_differences(source: Path, copy: Path, session_id: str) -> list[str]:
    """How the copy of one subagent file differs from it, in words ([]: it does not)."""
    if source.suffix != ".jsonl":
        return [] if copy.read_bytes() == source.read_bytes() else ["other bytes"]
    want, _ = file_census(str(source))
    got, ids = file_census(str(copy))
    differences = got.differences(want)
    others = sorted(i for i in ids if i is not None and i != session_id)
    if others:
        differences.append(f"a line of another session ({others[0]})")
    return differences


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


def _named(found: list[holders.Holder]) -> str:
    return ", ".join(map(str, found))


def writers_error(source: Path, found: list[holders.Holder]) -> RewindError:
    return RewindError(
        f"{source} is open for writing by {_named(found)}: what it writes after an in-place repair would go to "
        "the replaced file and be lost; nothing was written. End that session and try again, or repair "
        "it into a new session (without --in-place)."
    )


def refuse_writers(source: Path, st: os.stat_result) -> None:
    """`--in-place` only: refuse while another process holds the source open for writing."""
    found = holders.writers(st.st_dev, st.st_ino, str(source))
    if found:
        raise writers_error(source, found)


def after_swap(source: Path, src_fd: int, st: os.stat_result, size: int, backup: Path) -> list[str]:
    """`--in-place`, once the repaired file has replaced the source: keep in the backup what reached
    the old file meanwhile, and warn of a writer that still holds it. Warnings only: it is done."""
    warnings: list[str] = []
    try:
        late = rescue_late_bytes(src_fd, size, backup)
    except OSError as exc:
        warnings.append(
            f"the repaired session is in place, but what was appended to {source} while it was being "
            f"replaced could not be added to the backup {backup} ({exc.strerror or exc}): the backup "
            "may lack the last lines"
        )
    else:
        if late:
            warnings.append(
                f"{late} byte(s) were appended to {source} while it was being replaced (is the session still "
                f"running?): they are not in the repaired file; they are kept at the end of the backup {backup}"
            )
    found = holders.writers(st.st_dev, st.st_ino)
    if found:
        warnings.append(
            f"{_named(found)} opened {source} while it was being replaced and still holds the replaced file: what it "
            f"writes from now on is lost. End it; the backup {backup} holds everything written until now"
        )
    return warnings


def unconfirmed_warning(source: Path, target: Path, backup: Path | None, exc: OSError) -> str:
    """The session is placed but the disk did not confirm the folder's change (fsync failed)."""
    why = exc.strerror or str(exc)
    if backup is not None:
        return (f"the repaired session is in place, but the disk holding {target.parent} did not confirm it "
                f"({why}): if the machine stops now, {source} may come back as it was; the backup {backup} "
                "keeps the original")
    return (f"the repaired session {target} was written, but the disk holding {target.parent} did not confirm "
            f"it ({why}): if the machine stops now, it may be missing; the original {source} is untouched")


# How long a rewind waits for another rewind of the same session to finish.
LOCK_WAIT_SECONDS = 10.0


def busy_error(source: Path) -> RewindError:
    return RewindError(
        f"{source} is being repaired by another rewind; nothing was written. Wait for it to finish and try again."
    )


def lock_session(src_fd: int, source: Path, wait: float) -> None:
    """Serialise rewinds of one session across processes: an exclusive flock on the file analysed
    (released when `src_fd` is closed). A second rewind waits for the first, then works on what
    the first left (or is refused: its fingerprint no longer matches)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(src_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy_error(source) from None
            time.sleep(0.02)


def no_space_error(folder: Path) -> RewindError:
    return RewindError(f"no space left on the disk holding {folder}; nothing was written (the original is untouched)")


def io_error(folder: Path, exc: OSError) -> RewindError:
    return RewindError(
        f"the disk holding {folder} failed to write ({exc.strerror or exc}); nothing was written "
        "(the original is untouched)"
    )


def make_backup(source: Path, src_fd: int, like: os.stat_result) -> Path:
    """A new backup file of the analysed source, created exclusively (never an existing file,
    which another rewind may own), with the original's mode and times, fsynced."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 0
    while True:
        backup = source.with_name(f"{source.name}.{stamp}{f'-{n}' if n else ''}.bak")
        try:
            out = open(backup, "xb")  # noqa: SIM115 (closed below) O_EXCL: exactly one rewind ever owns this name
        except FileExistsError:
            n += 1
            continue
        break
    try:
        with out:
            same_owner_and_mode(out.fileno(), like)
            done = 0
            while chunk := os.pread(src_fd, 1 << 20, done):
                out.write(chunk)
                done += len(chunk)
            out.flush()
            os.utime(out.fileno(), ns=(like.st_atime_ns, like.st_mtime_ns))
            os.fsync(out.fileno())
    except BaseException:
        remove_ours(backup)
        raise
    return backup


class CopyCheck(Protocol):
    """How `place` has its copy checked: `begin` once the temporary file exists (nothing written
    yet), `written` as whole lines reach it (up to that byte), `finish` once it is complete and
    fsynced (raise RewindError to refuse it), and `close` at the end, whatever happened."""

    def begin(self, copy: Path) -> None: ...
    def written(self, size: int) -> None: ...
    def finish(self, copy: Path) -> None: ...
    def close(self) -> None: ...


class CheckedOnceWritten:
    """A `CopyCheck` that gives the complete copy to `verify`."""

    __slots__ = ("verify",)

    def __init__(self, verify: Callable[[Path], None]) -> None:
        self.verify = verify

    def begin(self, copy: Path) -> None:
        pass

    def written(self, size: int) -> None:
        pass

    def finish(self, copy: Path) -> None:
        self.verify(copy)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Placed:
    backup: Path | None
    warnings: list[str] = field(default_factory=list)  # done, but the user must know (data kept elsewhere)
    # What the copy does not hold that the source does (a half-written last line): one message each.
    left_out: list[str] = field(default_factory=list)


def place(
    source: Path,
    src_fd: int,
    before: tuple[int, int, int, str],
    plan: Plan,
    target: Path,
    session_id: str | None,
    verify: CopyCheck,
) -> Placed:
    """Write the repaired copy and put it at `target` (a new session, or the source itself with
    `session_id` None: in place, after a backup). `verify` checks the copy (`CopyCheck`) and
    refuses it with a RewindError. The copy is read through `src_fd` (the file analysed);
    a full disk or a failing one is a RewindError, with nothing written."""
    folder = target.parent
    try:
        return _place(source, src_fd, before, plan, target, session_id, verify)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space_error(folder) from None
        if exc.errno == errno.EIO:
            raise io_error(folder, exc) from None
        raise


def _place(
    source: Path,
    src_fd: int,
    before: tuple[int, int, int, str],
    plan: Plan,
    target: Path,
    session_id: str | None,
    verify: CopyCheck,
) -> Placed:
    in_place = session_id is None
    folder = target.parent
    src_stat = os.fstat(src_fd)
    if src_stat.st_ino != before[0]:
        raise changed_error(source)
    lock_session(src_fd, source, LOCK_WAIT_SECONDS)
    # The lock may have been waited for: what the other rewind did is seen here (it replaced or
    # rewrote the file; the digest is compared once the copy is written, before anything is placed).
    ensure_same_stat(source, before)
    if not in_place and (target.exists() or target.is_symlink()):
        raise RewindError(f"{target}: already exists; refusing to overwrite it")
    # Subagent transcripts live in `<session id>/` beside the session: they go along with a new session.
    sub_src = source.with_suffix("")
    sub_dest = target.with_suffix("")
    with_subagents = session_id is not None and (sub_src.is_dir() or sub_src.is_symlink())
    if with_subagents and (sub_dest.exists() or sub_dest.is_symlink()):
        raise RewindError(f"{sub_dest}: already exists (left by an interrupted rewind?); refusing to overwrite it")
    sweep_stale_temps(folder)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    tmp = Path(tmp_name)
    tmp_dir: Path | None = None
    placed_dir = False  # sub_dest is ours until the session file is linked
    backup: Path | None = None
    warnings: list[str] = []
    left_out: list[str] = []
    try:
        verify.begin(tmp)
        left_out = write_copy(src_fd, fd, plan, session_id, src_stat, verify.written)
        # Written: the rewritten lines are freed before the copy is checked (a large one held twice).
        plan.replace.clear()
        plan.insert_after.clear()
        # The source's digest (a read of the whole file) before the copy's check is waited for: a
        # child checks the copy meanwhile, on the other core (1 GB: 0.75 s less). What changes after
        # it is seen by its inode, size and mtime, compared again just before anything is placed.
        ensure_unchanged(source, before)
        verify.finish(tmp)
        if with_subagents and session_id is not None:
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{sub_dest.name}.", suffix=TEMP_SUFFIX, dir=folder))
            copy_subagents(sub_src, tmp_dir, session_id)
        ensure_same_stat(source, before)
        if in_place:
            backup = make_backup(source, src_fd, src_stat)
            try:
                ensure_unchanged(source, before)
                if sha256(backup) != before[3]:
                    raise RewindError(f"{backup}: the backup does not match {source}; nothing was replaced")
                refuse_writers(source, src_stat)  # again: rewind first asked before its analysis
            except RewindError:
                backup.unlink()  # ours: make_backup created it exclusively
                raise
            os.replace(tmp, target)
            # From here on a failure is a warning, never "nothing was written": the session is replaced.
            left_out = [m.replace("it stays in the original", f"it is kept in the backup {backup}") for m in left_out]
            warnings.extend(after_swap(source, src_fd, src_stat, before[1], backup))
        else:
            if tmp_dir is not None:
                # Before the session file: a crash from here on leaves a complete subagent folder
                # with no session (nothing to resume), never a session with missing subagents.
                os.rename(tmp_dir, sub_dest)
                tmp_dir, placed_dir = None, True
                fsync_dir(folder)
            os.link(tmp, target)  # fails if the target appeared meanwhile: never overwrite
            placed_dir = False  # linked: from here on a failure is a warning
            with contextlib.suppress(OSError):  # `finally` tries again; a leftover is swept next time
                tmp.unlink()
        try:
            fsync_dir(folder)
        except OSError as exc:
            warnings.append(unconfirmed_warning(source, target, backup, exc))
    except BaseException:
        # The session file never arrived: take its subagent folder back out (but never from
        # under a session that did get linked, should an interrupt land just after the link).
        if placed_dir and not same_file(target, tmp):
            remove_ours(sub_dest)
        raise
    finally:
        verify.close()
        if tmp.exists():
            tmp.unlink()
        if tmp_dir is not None:
            remove_ours(tmp_dir)
    return Placed(backup, warnings, left_out)
