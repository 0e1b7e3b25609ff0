"""Write a repaired copy of a session that `claude --resume` accepts, losing nothing.

Two modes:
- `truncate`: the active conversation cut back to the last point where every tool call pairs;
- `patch`: everything kept; each unanswered tool_use gets an `is_error` tool_result worded
  like Claude Code's own, orphaned tool_results become text at the end of their message,
  duplicate ids are renamed consistently, results are moved in front of other content.

A plan (lines to drop, lines to replace, lines to insert after a line) is computed from the
analysis, then the source is streamed through it into a temporary file in the same folder,
which is fsynced, checked, and only then renamed into place. The source is never written
(except by `--in-place`, after a backup), and a source that changes meanwhile is refused.

Crash safety: every file goes in under a hidden `.*.rewind-tmp` name and is fsynced before it
is renamed or linked to its real name; the new session's subagent folder is renamed into place
before the session file itself, so a crash at any point leaves either no new session or a
complete one. The copy gets the original's permission bits.
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .check import TranscriptCheck, check_transcript_file
from .conversation import Conversation, Message
from .findings import Severity
from .transcript import TOOL_RESULT, TOOL_USE, Entry, iter_lines
from .validate import validate

MISSING_RESULT_TEXT = "[Tool result missing due to internal error]"
# Also with spaces around the colon: transcripts re-serialized by other tools are still sessions.
_SESSION_ID = re.compile(rb'(?<!\\)"sessionId"\s*:\s*"[^"\\]*"')
MODES = ("truncate", "patch")
TEMP_SUFFIX = ".rewind-tmp"
# A leftover of a killed rewind older than this cannot belong to a rewind still running.
STALE_TEMP_SECONDS = 3600


class RewindError(Exception):
    """Rewind refused; nothing was written. The message says why."""


@dataclass(slots=True)
class RewindResult:
    path: Path
    session_id: str
    mode: str
    backup: Path | None
    fixed: list[str]  # one line per repaired fault
    kept_messages: int
    dropped_messages: int
    cwd: str | None
    warnings: list[str] = field(default_factory=list)  # done, but the user must know (data kept elsewhere)

    @property
    def resume_command(self) -> str:
        return f"claude --resume {self.session_id}"

    @property
    def resumable(self) -> bool:
        """Claude Code finds a session by its file name, which must be `<sessionId>.jsonl`."""
        return session_id_of(self.path) == self.session_id


@dataclass(slots=True)
class _Plan:
    drop: set[int] = field(default_factory=set)  # line numbers
    replace: dict[int, dict[str, Any]] = field(default_factory=dict)  # line -> new JSON object
    insert_after: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    fixed: list[str] = field(default_factory=list)
    dropped_messages: int = 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(path: Path) -> tuple[int, int, int, str]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, _sha256(path))


class _Lines:
    """Reads and decodes chosen lines of the source, once each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cache: dict[int, dict[str, Any]] = {}

    def get(self, e: Entry) -> dict[str, Any]:
        if e.line not in self.cache:
            with open(self.path, "rb") as f:
                f.seek(e.offset)
                # As the reader does (and Claude Code): invalid UTF-8 is read with replacement.
                self.cache[e.line] = json.loads(f.read(e.length).decode("utf-8", errors="replace"))
        return self.cache[e.line]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _synthetic_user(
    template: dict[str, Any], content: list[dict[str, Any]], source_assistant: str | None
) -> dict[str, Any]:
    """A user entry shaped like Claude Code's own, copying context fields from a neighbour."""
    entry: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": template.get("isSidechain", False),
        "userType": template.get("userType", "external"),
        "cwd": template.get("cwd"),
        "sessionId": template.get("sessionId"),
        "version": template.get("version"),
        "gitBranch": template.get("gitBranch"),
        "type": "user",
        "message": {"role": "user", "content": content},
        "uuid": str(uuid.uuid4()),
        "timestamp": _now(),
    }
    if template.get("agentId"):
        entry["agentId"] = template["agentId"]
    if source_assistant:
        entry["sourceToolAssistantUUID"] = source_assistant
    return {k: v for k, v in entry.items() if v is not None or k == "parentUuid"}


def _orphan_text(block: dict[str, Any]) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        body = "\n".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    else:
        body = "" if content is None else str(content)
    tid = block.get("tool_use_id")
    note = f"[Result of tool call {tid}, whose request was lost, kept as text by rewind-lsp]"
    return {"type": "text", "text": f"{note}\n{body}"}


def _message_index(conv: Conversation) -> dict[int, int]:
    return {id(e): i for i, m in enumerate(conv.messages) for e in m.entries}


def _plan_patch(conv: Conversation, lines: _Lines, plan: _Plan) -> None:
    faults = validate(conv)
    if not faults:
        return
    msg_of = _message_index(conv)
    msgs = conv.messages
    # Per user message: entries to move behind its results, and new entries to add there.
    tail: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # Per assistant message index with no user message after it: synthetic results.
    new_results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    renamed: dict[tuple[int, str], str] = {}  # (user message index, old id) -> new id

    def obj(e: Entry) -> dict[str, Any]:
        if e.line not in plan.replace:
            plan.replace[e.line] = json.loads(json.dumps(lines.get(e)))
        return plan.replace[e.line]

    for fault in faults:
        e, mi = fault.entry, msg_of.get(id(fault.entry), -1)
        if fault.rule == "orphan-tool-use" and fault.tool_use_id:
            result = {"type": "tool_result", "tool_use_id": fault.tool_use_id, "content": MISSING_RESULT_TEXT,
                      "is_error": True}
            new_results[mi].append(result)
            plan.fixed.append(f"line {e.line}: added the missing tool_result for {fault.tool_use_id}")
        elif fault.rule == "orphan-tool-result" and fault.block is not None:
            d = obj(e)
            content = d["message"]["content"]
            text = _orphan_text(content[fault.block])
            content[fault.block] = None  # removed below, after every fault of this line
            tail[mi].append({"__text__": text, "__template__": e})
            plan.fixed.append(f"line {e.line}: kept the orphaned tool_result for {fault.tool_use_id} as text")
        elif fault.rule == "duplicate-tool-use-id" and fault.tool_use_id and fault.block is not None:
            new_id = f"toolu_rw{uuid.uuid4().hex[:22]}"
            obj(e)["message"]["content"][fault.block]["id"] = new_id
            renamed[(mi + 1, fault.tool_use_id)] = new_id
            plan.fixed.append(f"line {e.line}: renamed the duplicate tool_use id {fault.tool_use_id} to {new_id}")
        elif fault.rule == "tool-result-not-first":
            plan.fixed.append(f"line {e.line}: moved the tool_result for {fault.tool_use_id} before other content")

    # Rename the result that answers a renamed duplicate (the last one with that id).
    for (ui, old), new_id in renamed.items():
        if 0 <= ui < len(msgs) and msgs[ui].role == "user":
            for ent in reversed(msgs[ui].entries):
                d = lines.get(ent) if ent.line not in plan.replace else plan.replace[ent.line]
                blocks = d.get("message", {}).get("content")
                if isinstance(blocks, list) and any(
                    isinstance(b, dict) and b.get("type") == TOOL_RESULT and b.get("tool_use_id") == old for b in blocks
                ):
                    for b in reversed(obj(ent)["message"]["content"]):
                        if isinstance(b, dict) and b.get("type") == TOOL_RESULT and b.get("tool_use_id") == old:
                            b["tool_use_id"] = new_id
                            break
                    break

    # Lay out each touched user message: results first, then synthetic results, then the rest.
    touched = set(tail) | {i + 1 for i in new_results} | {msg_of.get(id(f.entry), -1) for f in faults}
    layout: dict[int, tuple[list[Entry], list[Entry | dict[str, Any]]]] = {}  # msg -> (staying, moving)
    new_messages: dict[int, dict[str, Any]] = {}  # assistant msg -> a new user message after it
    for i, msg in enumerate(msgs):
        if msg.role == "assistant" and i in new_results and (i + 1 >= len(msgs) or msgs[i + 1].role != "user"):
            new_messages[i] = _synthetic_user(lines.get(msg.entries[-1]), new_results[i], msg.entries[-1].uuid)
        if msg.role != "user" or i not in touched:
            continue
        results: list[Entry] = []
        others: list[Entry | dict[str, Any]] = []
        for ent in msg.entries:
            d = plan.replace.get(ent.line) or lines.get(ent)
            content = d.get("message", {}).get("content")
            if ent.line in plan.replace and isinstance(content, list):
                content[:] = [b for b in content if b is not None]
                if not content:  # the line held only the orphan: it becomes the text itself
                    for t in tail[i]:
                        if t["__template__"] is ent:
                            content.append(t["__text__"])
                            t["__done__"] = True
                    others.append(ent)
                    continue
            if not isinstance(content, list):
                others.append(ent)
                continue
            is_res = [isinstance(b, dict) and b.get("type") == TOOL_RESULT for b in content]
            if not any(is_res):
                others.append(ent)
                continue
            if not all(is_res):  # results and other content on one line: results first
                fixed = [b for b, r in zip(content, is_res, strict=True) if r] + [
                    b for b, r in zip(content, is_res, strict=True) if not r]
                if fixed != content:
                    obj(ent)["message"]["content"] = fixed
            results.append(ent)
        prev_assistant = msgs[i - 1].entries[-1].uuid if i > 0 else None
        synth: list[Entry | dict[str, Any]] = (
            [_synthetic_user(lines.get(msg.entries[-1]), new_results[i - 1], prev_assistant)]
            if (i - 1) in new_results else []
        )
        texts: list[Entry | dict[str, Any]] = [
            _synthetic_user(lines.get(t["__template__"]), [t["__text__"]], None)
            for t in tail[i] if not t.get("__done__")
        ]
        layout[i] = (results, synth + others + texts)

    _relink(conv, layout, new_messages, plan, obj)


def _relink(
    conv: Conversation,
    layout: dict[int, tuple[list[Entry], list[Entry | dict[str, Any]]]],
    new_messages: dict[int, dict[str, Any]],
    plan: _Plan,
    obj: Any,
) -> None:
    """Place moved and new lines after their message's last line, and make the conversation one
    linear parentUuid chain in API order (the layout every Claude Code version loads)."""
    msg_of = _message_index(conv)
    sequence: list[Entry | dict[str, Any]] = []
    done: set[int] = set()
    for e in conv.order:
        mi = msg_of.get(id(e))
        if mi is None:
            sequence.append(e)
            continue
        if mi in done:
            continue
        done.add(mi)
        msg: Message = conv.messages[mi]
        anchor = max(x.line for x in msg.entries)
        if mi in layout:
            staying, moving = layout[mi]
            sequence.extend(staying)
            sequence.extend(moving)
            for x in moving:
                if isinstance(x, dict):
                    plan.insert_after[anchor].append(x)
                else:
                    plan.drop.add(x.line)
                    plan.insert_after[anchor].append(obj(x))
        else:
            sequence.extend(msg.entries)
        if mi in new_messages:
            sequence.append(new_messages[mi])
            plan.insert_after[anchor].append(new_messages[mi])
    prev_uuid: str | None = None
    for k, x in enumerate(sequence):
        this_uuid = x.get("uuid") if isinstance(x, dict) else x.uuid
        if this_uuid is None:
            continue
        if k > 0 and prev_uuid is not None:
            parent = x.get("parentUuid") if isinstance(x, dict) else x.parent
            if parent != prev_uuid:
                (x if isinstance(x, dict) else obj(x))["parentUuid"] = prev_uuid
        prev_uuid = this_uuid


def _plan_truncate(check: TranscriptCheck, plan: _Plan) -> None:
    main = check.main
    if main is None:
        if any(c.kind == "sidechain" for c in check.conversations):
            raise RewindError("this is a subagent transcript (only sidechain entries): nothing to cut back; "
                              "use --mode patch")
        raise RewindError("no conversation to rewind: the file has no user or assistant entries")
    faults = [f for f in validate(main)]
    if not faults:
        raise RewindError("the main conversation already pairs; nothing to rewind (try --mode patch for sidechains)")
    msg_of = _message_index(main)
    cut = min(msg_of[id(f.entry)] for f in faults)
    msgs = main.messages
    keep = cut
    while keep > 0 and msgs[keep - 1].role == "assistant" and any(
        b.kind == TOOL_USE for e in msgs[keep - 1].entries for b in e.blocks
    ):
        keep -= 1
    while keep > 0 and msgs[keep - 1].role == "user" and any(e.has_tool_result for e in msgs[keep - 1].entries) and (
        keep - 1 == 0 or msgs[keep - 2].role != "assistant"
    ):
        keep -= 1
    if keep == 0:
        raise RewindError("the conversation is broken from its first message: nothing to keep; use --mode patch")
    kept = {id(e) for m in msgs[:keep] for e in m.entries}
    last_kept_line = max(e.line for m in msgs[:keep] for e in m.entries)
    dropped = {id(e) for m in msgs[keep:] for e in m.entries}
    plan.dropped_messages = len(msgs) - keep
    in_main_order = {id(e) for e in main.order}
    for e in check.transcript.entries:
        late = e.line > last_kept_line and id(e) not in kept
        late_message = late and not e.sidechain and e.type in ("user", "assistant")
        late_chain = late and id(e) in in_main_order
        # Progress and system lines after the cut hang off dropped lines: kept, they would point at
        # nothing, and one of them could become the leaf Claude Code resumes from.
        late_linked = late and not e.sidechain and e.uuid is not None
        if id(e) in dropped or late_message or late_chain or late_linked:
            plan.drop.add(e.line)
    plan.fixed.append(
        f"kept {keep} of {len(msgs)} messages; cut before line {min(e.line for m in msgs[keep:] for e in m.entries)}"
    )


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


def _target(source: Path, out: str | Path | None, in_place: bool) -> tuple[Path, str | None]:
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


def _write(source: Path, tmp_fd: int, plan: _Plan, session_id: str | None, like: os.stat_result) -> None:
    new_sid = f'"sessionId":"{session_id}"'.encode() if session_id else None

    def encode(d: dict[str, Any]) -> bytes:
        if session_id and "sessionId" in d:
            d = {**d, "sessionId": session_id}
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    with os.fdopen(tmp_fd, "wb") as out, open(source, "rb") as src:
        _same_owner_and_mode(out.fileno(), like)
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


def _same_owner_and_mode(fd: int, like: os.stat_result) -> None:
    """mkstemp makes a 0600 file owned by whoever runs rewind: the copy gets the original's
    permission bits, and its owner when allowed (run as root, a root-owned session file would
    be one Claude Code can no longer append to)."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (like.st_uid, like.st_gid):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, like.st_uid, like.st_gid)
    os.fchmod(fd, stat.S_IMODE(like.st_mode))


def _changed(source: Path) -> RewindError:
    return RewindError(
        f"{source} changed while it was being repaired (is the session still running?); nothing was written. "
        "Close the session and try again."
    )


def _ensure_unchanged(source: Path, before: tuple[int, int, int, str]) -> None:
    """Refuse when the source is not what was analysed (a session still running appends to it)."""
    if _fingerprint(source) != before:
        raise _changed(source)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Best effort, for our own temporary files and folders (never a symlink's target)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sweep_stale_temps(folder: Path) -> None:
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
                _remove(Path(e.path))
        except OSError:
            continue


def _copy_tree(src_dir: Path, dest_dir: Path, session_id: str) -> None:
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
                _same_owner_and_mode(out.fileno(), st0)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
    # Deepest first: each folder's entries are durable before the folder that names it.
    for d, mode in reversed(folders):
        _fsync_dir(d)
        os.chmod(d, mode)


def _rescue_late_bytes(src_fd: int, size: int, backup: Path) -> int:
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


def rewind(
    path: str | Path, mode: str = "truncate", out: str | Path | None = None, in_place: bool = False
) -> RewindResult:
    source = Path(path)
    if mode not in MODES:
        raise RewindError(f"unknown mode {mode!r}: use truncate or patch")
    if out is not None and in_place:
        raise RewindError("--out and --in-place cannot be used together")
    if not source.is_file():
        raise RewindError(f"{source}: no such transcript file")
    target, session_id = _target(source, out, in_place)
    # Held open to the end: with `--in-place`, the old file can still be read once replaced.
    src_fd = os.open(source, os.O_RDONLY)
    try:
        return _rewind(source, src_fd, mode, target, session_id, in_place)
    finally:
        os.close(src_fd)


def _rewind(source: Path, src_fd: int, mode: str, target: Path, session_id: str | None,
            in_place: bool) -> RewindResult:
    before = _fingerprint(source)
    src_stat = os.fstat(src_fd)
    if src_stat.st_ino != before[0]:  # replaced between the open and the fingerprint
        raise _changed(source)
    check = check_transcript_file(str(source))
    if not any(f.severity <= Severity.WARNING and f.rule != "malformed-line" for f in check.findings):
        raise RewindError(f"{source}: the session already pairs; nothing to repair")
    lines = _Lines(source)
    # Read now: once `--in-place` has replaced the source, its old offsets point at other bytes.
    cwd = next((lines.get(e).get("cwd") for e in reversed(check.transcript.entries) if e.type in ("user", "assistant")),
               None)
    plan = _Plan()
    if mode == "truncate":
        _plan_truncate(check, plan)
    else:
        for conv in check.conversations:
            if conv.kind != "history":
                _plan_patch(conv, lines, plan)
        plan.dropped_messages = 0

    if not in_place and (target.exists() or target.is_symlink()):
        raise RewindError(f"{target}: already exists; refusing to overwrite it")
    # Subagent transcripts live in `<session id>/` beside the session: they go along with a new session.
    sub_src = source.with_suffix("")
    sub_dest = target.with_suffix("")
    with_subagents = session_id is not None and sub_src.is_dir()
    if with_subagents and (sub_dest.exists() or sub_dest.is_symlink()):
        raise RewindError(f"{sub_dest}: already exists (left by an interrupted rewind?); refusing to overwrite it")
    folder = target.parent
    _sweep_stale_temps(folder)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    tmp = Path(tmp_name)
    tmp_dir: Path | None = None
    placed_dir = False  # sub_dest is ours until the session file is linked
    backup: Path | None = None
    warnings: list[str] = []
    try:
        _write(source, fd, plan, session_id, src_stat)
        result = check_transcript_file(str(tmp))
        remaining = [f for f in result.findings if f.severity == Severity.ERROR]
        if remaining:
            f = remaining[0]
            raise RewindError(
                f"the repaired copy still has {len(remaining)} error(s) (first: {f.rule} at line {f.start.line}: "
                f"{f.message}); nothing was written. Please report this with `rewind-lsp doctor`."
            )
        if with_subagents and session_id is not None:
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{sub_dest.name}.", suffix=TEMP_SUFFIX, dir=folder))
            _copy_tree(sub_src, tmp_dir, session_id)
        _ensure_unchanged(source, before)
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
                _ensure_unchanged(source, before)
                if _sha256(backup) != before[3]:
                    raise RewindError(f"{backup}: the backup does not match {source}; nothing was replaced")
            except RewindError:
                backup.unlink()
                raise
            os.replace(tmp, target)
            late = _rescue_late_bytes(src_fd, before[1], backup)
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
                _fsync_dir(folder)
            os.link(tmp, target)  # fails if the target appeared meanwhile: never overwrite
            placed_dir = False
            tmp.unlink()
        _fsync_dir(folder)
    except BaseException:
        # The session file never arrived: take its subagent folder back out (but never from
        # under a session that did get linked, should an interrupt land just after the link).
        if placed_dir and not _same_file(target, tmp):
            _remove(sub_dest)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
        if tmp_dir is not None:
            _remove(tmp_dir)
    kept = len(check.main.messages) - plan.dropped_messages if check.main else 0
    return RewindResult(target, session_id or source.stem, mode, backup, plan.fixed, kept, plan.dropped_messages,
                        cwd if isinstance(cwd, str) else None, warnings)
