"""Shared helpers for the core tests: a tiny transcript builder, checkers and the CLI runner.

Every test writes real files (tmp_path) and runs the real code; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewind_lsp.check import check_transcript_file
from rewind_lsp.conversation import rebuild
from rewind_lsp.findings import Finding, Severity
from rewind_lsp.transcript import read_transcript

REPO = Path(__file__).resolve().parents[2]
CORPUS = (REPO / ".." / "shared" / "corpus" / "real").resolve()
DATA = Path(__file__).resolve().parent / "data"
# The installed entry point of the interpreter running the tests (the project's .venv in development).
CLI = Path(sys.executable).parent / "rewind-lsp"
SID = "11111111-1111-4111-8111-111111111111"

_counter = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_counter):06d}"


# --- content blocks -------------------------------------------------------------------------


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def tu(tid: str, name: str = "Bash", **inp: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tid, "name": name, "input": inp or {"command": "ls"}}


def tr(tid: str, content: str = "ok", is_error: bool | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"tool_use_id": tid, "type": "tool_result", "content": content}
    if is_error is not None:
        b["is_error"] = is_error
    return b


INTERRUPTED = "[Request interrupted by user for tool use]"


def dumps(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Builder:
    """Builds a transcript entry by entry, linking `parentUuid` like Claude Code does.

    Each call appends one line and returns its dict. `parent` defaults to the last entry of the
    same scope (main chain, or one sidechain agent); pass `parent=None` for a root, or a uuid.
    """

    session_id: str = SID
    lines: list[dict[str, Any] | str] = field(default_factory=list)
    last: dict[tuple[bool, str | None], str | None] = field(default_factory=dict)
    version: str = "2.1.38"

    _AUTO = object()

    def _add(self, entry: dict[str, Any], parent: Any, sidechain: bool, agent_id: str | None,
             extra: dict[str, Any]) -> dict[str, Any]:
        scope = (sidechain, agent_id)
        entry.setdefault("uuid", fresh("u-"))
        base: dict[str, Any] = {
            "parentUuid": self.last.get(scope) if parent is Builder._AUTO else parent,
            "isSidechain": sidechain,
            "userType": "external",
            "cwd": "/tmp/project",
            "sessionId": self.session_id,
            "version": self.version,
        }
        if agent_id:
            base["agentId"] = agent_id
        base.update(entry)
        base.update(extra)
        self.lines.append(base)
        self.last[scope] = base["uuid"]
        return base

    def user(self, content: str | list[dict[str, Any]], *, parent: Any = _AUTO, sidechain: bool = False,
             agent_id: str | None = None, **extra: Any) -> dict[str, Any]:
        entry = {"type": "user", "message": {"role": "user", "content": content}, "uuid": fresh("u-")}
        return self._add(entry, parent, sidechain, agent_id, extra)

    def assistant(self, *blocks: dict[str, Any], msg_id: str | None = None, parent: Any = _AUTO,
                  sidechain: bool = False, agent_id: str | None = None, **extra: Any) -> dict[str, Any]:
        entry = {
            "type": "assistant",
            "message": {"model": "claude-opus-4-6", "id": msg_id or fresh("msg_"), "type": "message",
                        "role": "assistant", "content": list(blocks)},
            "uuid": fresh("a-"),
        }
        return self._add(entry, parent, sidechain, agent_id, extra)

    def result(self, tid: str, content: str = "ok", *, of: dict[str, Any] | None = None, parent: Any = _AUTO,
               is_error: bool | None = None, sidechain: bool = False, agent_id: str | None = None,
               **extra: Any) -> dict[str, Any]:
        """A user line with one tool_result; `of` = the assistant line holding its tool_use (DAG layout)."""
        if of is not None:
            extra.setdefault("sourceToolAssistantUUID", of["uuid"])
            if parent is Builder._AUTO:
                parent = of["uuid"]
        return self.user([tr(tid, content, is_error)], parent=parent, sidechain=sidechain, agent_id=agent_id,
                         **extra)

    def progress(self, *, parent: Any = _AUTO, sidechain: bool = False, agent_id: str | None = None,
                 **extra: Any) -> dict[str, Any]:
        entry = {"type": "progress", "data": {"type": "hook_progress", "hookEvent": "PostToolUse"},
                 "uuid": fresh("p-")}
        return self._add(entry, parent, sidechain, agent_id, extra)

    def system(self, subtype: str, *, parent: Any = _AUTO, **extra: Any) -> dict[str, Any]:
        entry = {"type": "system", "subtype": subtype, "content": subtype, "uuid": fresh("s-")}
        return self._add(entry, parent, False, None, extra)

    def compact(self) -> dict[str, Any]:
        """A compaction boundary (parentUuid null, logicalParentUuid) and its summary user line."""
        boundary = self.system("compact_boundary", parent=None, logicalParentUuid=self.last.get((False, None)),
                               compactMetadata={"trigger": "auto", "preTokens": 1000})
        self.user("This session is being continued from a previous conversation. Summary: ...",
                  isCompactSummary=True)
        return boundary

    def raw(self, line: str) -> None:
        self.lines.append(line)

    def bookkeeping(self) -> None:
        self.raw(dumps({"type": "summary", "summary": "a title", "leafUuid": "nowhere"}))
        self.raw(dumps({"type": "file-history-snapshot", "messageId": "m", "snapshot": {}}))

    # --- composite turns ---

    def tool_turn(self, ids: list[str], layout: str = "dag", *, sidechain: bool = False, agent_id: str | None = None,
                  interrupted: Iterable[str] = (), with_text: bool = True,
                  skip_results: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """One assistant reply with parallel tool calls and their results, in one of the layouts
        Claude Code writes: `linear` (1.0.x: every line chained after the previous one), `dag`
        (2.x: each result hangs off its own tool_use line), `streaming` (2.1.39: a result is
        written between two tool_use lines of the same reply). Returns {id: tool_use line} and
        {"r:"+id: result line}."""
        kw: dict[str, Any] = {"sidechain": sidechain, "agent_id": agent_id}
        interrupted, skip = set(interrupted), set(skip_results)
        mid = fresh("msg_")
        out: dict[str, dict[str, Any]] = {}
        if with_text:
            out["text"] = self.assistant(text("Let me look."), msg_id=mid, **kw)

        def res(tid: str, parent: Any) -> None:
            if tid in skip:
                return
            err = tid in interrupted
            body = INTERRUPTED if err else f"output of {tid}"
            p = out[tid] if layout != "linear" else None
            out["r:" + tid] = self.result(tid, body, of=p, is_error=True if err else None, parent=parent, **kw)

        if layout == "streaming" and len(ids) >= 2:
            half = max(1, len(ids) // 2)
            for tid in ids[:half]:
                out[tid] = self.assistant(tu(tid), msg_id=mid, **kw)
            res(ids[0], Builder._AUTO)
            for tid in ids[half:]:
                out[tid] = self.assistant(tu(tid), msg_id=mid, **kw)  # parentUuid: a tool_result line
            for tid in ids[1:]:
                res(tid, Builder._AUTO)
        else:
            for tid in ids:
                out[tid] = self.assistant(tu(tid), msg_id=mid, **kw)
            for tid in ids:
                res(tid, Builder._AUTO)
        if layout == "dag":
            # Results hang off their own tool_use lines; what follows continues from the last result.
            scope = (sidechain, agent_id)
            last_res = [out["r:" + t] for t in ids if "r:" + t in out]
            if last_res:
                self.last[scope] = last_res[-1]["uuid"]
        return out

    # --- output ---

    def text_lines(self) -> list[str]:
        return [x if isinstance(x, str) else dumps(x) for x in self.lines]

    def write(self, path: Path, *, trailing_newline: bool = True) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(self.text_lines())
        path.write_text(body + ("\n" if trailing_newline else ""), encoding="utf-8")
        return path

    def line_of(self, entry: dict[str, Any]) -> int:
        for i, x in enumerate(self.lines):
            if x is entry:
                return i + 1
        raise KeyError(entry.get("uuid"))


def turn(b: Builder, tid: str, layout: str = "dag") -> None:
    """A user prompt, a reply with two parallel tool calls (ids `tid` and `tid`+"b"), a closing text."""
    b.user(f"please run {tid}")
    b.tool_turn([tid, tid + "b"], layout)
    b.assistant({"type": "text", "text": "done"})


def compacted(b: Builder, segments: int = 4) -> None:
    """`segments` stretches of three turns (one per layout), a compaction between each two."""
    for s in range(segments):
        if s:
            b.compact()
        for t in range(3):
            turn(b, f"toolu_{s}_{t}", ("dag", "linear", "streaming")[t])
            b.progress()


# Ways a line after a compaction can link to a line before it (or, for "missing-parent" and
# "dangling", seem to): what the incremental and parallel checks must never take apart.
CROSS_LINKS = ("uuid-twice", "forward", "result-source", "same-message-id", "sidechain", "missing-parent",
               "dangling", "boundary-parent")


def cross_link(b: Builder, link: str) -> None:
    """Two segments, a main compaction boundary, then lines linking back across it as `link` says."""
    compacted(b, 2)
    first = b.lines[3]
    assert isinstance(first, dict)
    if link == "forward":
        b.user("names a line written later", parent="later-uuid")
    elif link == "sidechain":
        b.assistant(tu("toolu_side"), sidechain=True, agent_id="agent1", parent=None)
    elif link == "same-message-id":
        b.assistant(tu("toolu_shared"), msg_id="msg_shared")
    if link == "dangling":  # the boundary, then a line whose parent is lost and no earlier line to bridge to
        b.system("compact_boundary", parent=None)
        b.user("my parent was cut out", parent="gone")
    else:
        b.compact()
    turn(b, "toolu_z")
    if link == "uuid-twice":
        b.user("same uuid as a line before the boundary", uuid=first["uuid"])
    elif link == "forward":
        b.user("the line named earlier", uuid="later-uuid")
    elif link == "result-source":
        b.user([tr("toolu_0_0")], sourceToolAssistantUUID=first["uuid"])
    elif link == "same-message-id":
        b.user([tr("toolu_shared")])
        b.assistant(tu("toolu_shared2"), msg_id="msg_shared")
    elif link == "sidechain":
        b.user([tr("toolu_side")], sidechain=True, agent_id="agent1")
    elif link == "missing-parent":  # bridged to the line before it, on the same side of the boundary
        b.user("my parent was cut out", parent="gone")
        b.assistant(tu("toolu_dangling"), parent="gone-too")
    elif link == "boundary-parent":
        b.system("compact_boundary", parent=first["uuid"])
        b.user("after an odd boundary")
    b.user("more")
    turn(b, "toolu_end")


def block_column(line_text: str, block: dict[str, Any]) -> int:
    """1-based column (characters) of a block's `{` in the serialized line."""
    i = line_text.index(dumps(block))
    return i + 1


def findings(path: Path) -> list[Finding]:
    return check_transcript_file(str(path)).findings


def serious(fs: Iterable[Finding]) -> list[Finding]:
    return [f for f in fs if f.severity <= Severity.WARNING]


def errors(fs: Iterable[Finding]) -> list[Finding]:
    return [f for f in fs if f.severity == Severity.ERROR]


def summary(fs: Iterable[Finding]) -> list[tuple[str, str, int, str | None]]:
    return [(f.rule, f.severity.label, f.start.line, f.tool_use_id) for f in fs]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "rewind_lsp.cli"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def group_gone(pgid: int, within: float = 10.0) -> bool:
    """Whether every process of group `pgid` has exited and been reaped within `within` seconds
    (one left: a child its parent did not stop and reap)."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def corpus_files(pattern: str = "*.jsonl") -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.rglob(pattern))


# --- broken fixtures, one per rule and variant (used by the rewind and CLI tests) ------------


def _prelude(b: Builder) -> None:
    b.bookkeeping()
    b.progress(parent=None)
    b.user("first prompt: look at the repo")
    b.tool_turn(["toolu_01PRE1", "toolu_01PRE2"])
    b.assistant(text("The repo has two packages."))
    b.user("second prompt: and the tests?")
    b.assistant(text("There are 12 tests."))


def broken(name: str) -> Builder:
    b = Builder()
    _prelude(b)
    if name == "orphan-tool-use":
        b.user("run the build and the tests")
        b.tool_turn(["toolu_01BLD", "toolu_01TST"], skip_results=["toolu_01TST"])
        b.assistant(text("Build done; tests did not report."))
    elif name == "orphan-tool-use-linear":
        b.version = "1.0.98"
        b.user("read three files")
        b.tool_turn(["toolu_01L1", "toolu_01L2", "toolu_01L3"], "linear", skip_results=["toolu_01L2"])
        b.assistant(text("Read them."))
    elif name == "orphan-tool-use-streaming":
        b.user("fetch four pages")
        b.tool_turn(["toolu_01S1", "toolu_01S2", "toolu_01S3", "toolu_01S4"], "streaming", skip_results=["toolu_01S1"])
        b.assistant(text("Fetched."))
    elif name == "orphan-tool-result":
        b.user("edit the file")
        a = b.assistant(text("Editing now."))
        b.result("toolu_01LOST", "edited 3 lines", parent=a["uuid"])
        b.assistant(text("Edited."))
    elif name == "duplicate-tool-use-id":
        b.user("list again")
        b.tool_turn(["toolu_01PRE1"])
        b.assistant(text("Same as before."))
    elif name == "tool-result-not-first":
        b.user("check the status")
        b.assistant(tu("toolu_01NF"))
        b.user([text("a note typed while it ran"), tr("toolu_01NF", "clean")])
        b.assistant(text("Status is clean."))
    elif name == "pending":
        b.user("start the server")
        b.assistant(text("Starting it."), tu("toolu_01PEND"))
        return b  # the session stops here: the tool is still running (or the process died)
    elif name == "sidechain":
        b.user("delegate a search")
        task = b.assistant(tu("toolu_01TASK", "Task", prompt="search"))
        b.user("search", parent=None, sidechain=True)
        b.tool_turn(["toolu_01SB1", "toolu_01SB2"], "linear", sidechain=True, skip_results=["toolu_01SB1"])
        b.assistant(text("Found two hits."), sidechain=True)
        b.result("toolu_01TASK", "Found two hits.", of=task)
        b.assistant(text("The agent found two hits."))
    else:
        raise KeyError(name)
    b.user("final prompt: summarize")
    b.assistant(text("Summary: all good."))
    return b


BROKEN = ["orphan-tool-use", "orphan-tool-use-linear", "orphan-tool-use-streaming", "orphan-tool-result",
          "duplicate-tool-use-id", "tool-result-not-first", "pending", "sidechain"]


# --- what a repaired copy must keep ----------------------------------------------------------

BOOKKEEPING = {"summary", "file-history-snapshot", "queue-operation", "custom-title"}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def entries(p: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _texts(d: dict[str, Any]) -> list[str]:
    m = d.get("message")
    if not isinstance(m, dict):
        return []
    c = m.get("content")
    if isinstance(c, str):
        return [c]
    if isinstance(c, list):
        return [b["text"] for b in c if isinstance(b, dict) and b.get("type") == "text" and b.get("text")]
    return []


def active_texts(p: Path) -> set[tuple[str, str]]:
    """(role, text) of every user prompt and assistant text on the live conversations."""
    lines = p.read_text(encoding="utf-8").splitlines()
    out: set[tuple[str, str]] = set()
    for conv in rebuild(read_transcript(str(p)).entries):
        if conv.kind == "history":
            continue
        for msg in conv.messages:
            for e in msg.entries:
                out.update((msg.role, t) for t in _texts(json.loads(lines[e.line - 1])))
    return out


def all_texts(p: Path) -> set[tuple[str, str]]:
    return {(d["message"].get("role", d.get("type")), t) for d in entries(p) for t in _texts(d)}


def assert_new_session(out: Path, old_sid: str) -> str:
    new_sid = out.stem
    assert uuid.UUID(new_sid) and new_sid != old_sid
    for d in entries(out):
        if "sessionId" in d:
            assert d["sessionId"] == new_sid
        else:
            assert d.get("type") in BOOKKEEPING, d
    return new_sid


def dangling(p: Path) -> set[str]:
    ds = entries(p)
    known = {d["uuid"] for d in ds if "uuid" in d}
    return {d["parentUuid"] for d in ds if d.get("parentUuid") is not None and d["parentUuid"] not in known}


def assert_well_formed(out: Path, src: Path | None = None) -> None:
    """uuids unique, and every parentUuid names a line of the file (or was already missing in `src`)."""
    ds = entries(out)
    uuids = [d["uuid"] for d in ds if "uuid" in d]
    assert len(uuids) == len(set(uuids)), "uuids must stay unique"
    new = dangling(out) - (dangling(src) if src is not None else set())
    assert not new, f"parentUuid pointing at no line: {sorted(new)[:3]}"
