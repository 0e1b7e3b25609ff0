"""Deterministic generator of realistic Claude Code transcripts and terminal logs.

The shapes follow the real transcripts in ../shared/corpus/real (Claude Code 1.0.98 to 2.1.39):

- every content block of one response on its own line, all sharing `message.id`;
- parallel tool calls in the three layouts seen in real files: *batch DAG* (all tool_use lines,
  then the results in completion order, each result's `parentUuid` its own tool_use line, with
  `sourceToolAssistantUUID`), *streaming DAG* (2.1.39: tool_use, its result, the next tool_use
  hanging off that result) and the old *linear* layout (1.0.x: everything chained line by line);
- large tool results (median about 1 KB, a long tail to 150 KB, duplicated in `toolUseResult`
  as Claude Code does), hook/bash/agent `progress` lines hanging off tool_use lines;
- inline sidechains (`isSidechain`, `agentId`) for Task calls, a compaction boundary with its
  summary every few MB (as auto-compaction does), now and then a rewound branch;
- the file ends healthy: `rewind-lsp check` reports no error.

Terminal logs are what `script`/`tmux pipe-pane` record: ANSI colour, spinner redraws with `\\r`
and erase-line, `●`/`⎿` lines, CRLF endings, and a few tool-use 400 lines at known places.

Same arguments and seed, same bytes. Usable as a module (`write_transcript`, `write_log`,
`write_corpus`) or from the command line:

    python benchmarks/generate.py transcript --size 100M OUT.jsonl
    python benchmarks/generate.py log --size 1G OUT.log
    python benchmarks/generate.py corpus --files 1000 --size 5G OUTDIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

GENERATOR_VERSION = 5  # bump when the output changes, so cached data is regenerated

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_encode = msgspec.json.Encoder().encode

CONCURRENCY_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."


def parse_size(text: str) -> int:
    """`100M`, `1G`, `512K` or a plain byte count."""
    text = text.strip().upper().removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def size_label(n: int) -> str:
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


# --- text ----------------------------------------------------------------------------------------

_WORDS_TEXT = (
    "the a of to in is for on that with as it be this are by from at or an not was all def return "
    "import class self None True False if else elif for while try except raise async await const let "
    "function export default interface type string number boolean null undefined => {} [] () ; : , . "
    "src/ lib/ test/ ./ ../ main.py index.ts server.ex config.toml README.md package.json Cargo.toml "
    "error warning info debug PASS FAIL ok passed failed skipped TODO FIXME API request response "
    "user assistant tool_use tool_result message content session transcript 200 404 500 0x7f 1024 "
    "→ ● ⎿ ✓ ✗ … — “quoted” 'single' \"double\" \\backslash\\ tab\there é ü ß 日本 🚀 📋"
)
_WORDS = _WORDS_TEXT.split(" ")


def _text_pool(rng: random.Random, size: int = 1 << 21) -> str:
    """A few MB of code-and-log-like text that slices are cut from."""
    out: list[str] = []
    n = 0
    while n < size:
        words = rng.choices(_WORDS, k=rng.randint(3, 16))
        indent = " " * rng.choice((0, 0, 0, 2, 4, 8))
        line = indent + " ".join(words)
        out.append(line)
        n += len(line) + 1
    return "\n".join(out)


_POOL: str | None = None


def _shared_pool() -> str:
    """One pool for every file (building it costs more than a small transcript)."""
    global _POOL
    if _POOL is None:
        _POOL = _text_pool(random.Random("text-pool"))
    return _POOL


class _Text:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = _shared_pool()

    def cut(self, n: int) -> str:
        n = max(1, min(n, len(self.pool) - 1))
        start = self.rng.randrange(0, len(self.pool) - n)
        return self.pool[start : start + n]

    def sized(self, median: float, sigma: float, cap: int) -> str:
        """Text of a log-normal length (median in characters), as tool outputs are."""
        n = int(min(cap, max(8, self.rng.lognormvariate(math.log(median), sigma))))
        return self.cut(n)


def _b62(rng: random.Random, n: int) -> str:
    return "".join(_B62[b % 62] for b in rng.randbytes(n))


# --- transcripts ---------------------------------------------------------------------------------

_TOOLS = ("Bash", "Read", "Edit", "Grep", "Glob", "Write", "WebFetch", "Task")
_TOOL_WEIGHTS = (34, 26, 14, 9, 6, 4, 3, 4)
# Number of tool_use blocks in one response (real files: mostly 1, sometimes 2-6, rarely 8).
_FANOUT = (1, 2, 3, 4, 5, 8)
_FANOUT_WEIGHTS = (74, 11, 6, 4, 3, 2)
MODEL = "claude-opus-4-6"


@dataclass(slots=True)
class _Scope:
    """Where lines go: the main conversation or one inline sidechain."""

    sidechain: bool = False
    agent_id: str | None = None


@dataclass
class TranscriptInfo:
    path: str
    size: int
    lines: int
    session_id: str
    cwd: str
    last_uuid: str  # the live conversation's last line: where an append continues from
    tool_uses: int = 0
    compactions: int = 0
    sidechains: int = 0
    rewound_branches: int = 0
    layouts: dict[str, int] = field(default_factory=dict)


class TranscriptWriter:
    """Writes one session line by line; `leaf` is the uuid the next line of the chain hangs off."""

    def __init__(self, out: BinaryIO, rng: random.Random, session_id: str | None = None) -> None:
        self.out = out
        self.rng = rng
        self.text = _Text(rng)
        self.session_id = session_id or self.uuid()
        self.cwd = f"/home/dev/projects/app-{_b62(rng, 4).lower()}"
        self.branch = rng.choice(("main", "master", "feat/tool-pairing", "fix/resume"))
        self.slug = "-".join(
            rng.choice(("modular", "petting", "thompson", "quiet", "river", "amber", "delta")) for _ in range(3)
        )
        self.clock = datetime(2026, 2, 11, 20, 0, 0, tzinfo=UTC)
        self.size = 0
        self.lines = 0
        self.leaf: str | None = None
        self.info = TranscriptInfo("", 0, 0, self.session_id, self.cwd, "")

    # -- primitives

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self) -> str:
        self.clock += timedelta(milliseconds=self.rng.randint(5, 4000))
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.clock.microsecond // 1000:03d}Z"

    def emit(self, obj: dict[str, Any]) -> None:
        data = _encode(obj) + b"\n"
        self.out.write(data)
        self.size += len(data)
        self.lines += 1

    def envelope(self, scope: _Scope, parent: str | None, version: str = "2.1.39") -> dict[str, Any]:
        d: dict[str, Any] = {
            "parentUuid": parent,
            "isSidechain": scope.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": version,
            "gitBranch": self.branch,
        }
        if scope.agent_id:
            d["agentId"] = scope.agent_id
        else:
            d["slug"] = self.slug
        return d

    # -- entries

    def user_prompt(self, scope: _Scope, parent: str | None, text: str | None = None) -> str:
        u = self.uuid()
        d = self.envelope(scope, parent)
        d.update(
            {
                "type": "user",
                "message": {"role": "user", "content": text or self.text.sized(180, 0.9, 4000)},
                "uuid": u,
                "timestamp": self.stamp(),
            }
        )
        if not scope.sidechain:
            d.update(
                {"thinkingMetadata": {"maxThinkingTokens": 31999}, "todos": [], "permissionMode": "bypassPermissions"}
            )
        self.emit(d)
        return u

    def assistant(
        self, scope: _Scope, parent: str | None, mid: str, rid: str, block: dict[str, Any], version: str = "2.1.39"
    ) -> str:
        u = self.uuid()
        d = self.envelope(scope, parent, version)
        d.update(
            {
                "message": {
                    "model": MODEL,
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": self.rng.randint(1, 9),
                        "cache_creation_input_tokens": self.rng.randint(0, 9000),
                        "cache_read_input_tokens": self.rng.randint(10000, 160000),
                        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 8037},
                        "output_tokens": self.rng.randint(1, 900),
                        "service_tier": "standard",
                        "inference_geo": "not_available",
                    },
                },
                "requestId": rid,
                "type": "assistant",
                "uuid": u,
                "timestamp": self.stamp(),
            }
        )
        self.emit(d)
        return u

    def tool_result(
        self, scope: _Scope, parent: str, tool_id: str, name: str, source: str | None, version: str = "2.1.39"
    ) -> str:
        u = self.uuid()
        d = self.envelope(scope, parent, version)
        output = self.text.sized(1100, 1.45, 150_000)
        content: Any = output
        result: Any = {"stdout": output, "stderr": "", "interrupted": False, "isImage": False}
        if name == "Task":
            content = [{"type": "text", "text": output}]
            result = {
                "status": "completed",
                "agentId": _b62(self.rng, 7).lower(),
                "totalTokens": self.rng.randint(900, 90000),
                "totalToolUseCount": self.rng.randint(1, 30),
                "content": content,
            }
        elif name in ("Read", "Grep", "Glob"):
            result = {
                "type": "text",
                "file": {
                    "filePath": f"{self.cwd}/src/{_b62(self.rng, 6)}.py",
                    "content": output,
                    "numLines": output.count("\n") + 1,
                    "startLine": 1,
                },
            }
        d.update(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [{"tool_use_id": tool_id, "type": "tool_result", "content": content, "is_error": False}],
                },
                "uuid": u,
                "timestamp": self.stamp(),
                "toolUseResult": result,
            }
        )
        if source is not None:
            d["sourceToolAssistantUUID"] = source
        self.emit(d)
        return u

    def progress(self, scope: _Scope, parent: str | None, tool_id: str, kind: str) -> str:
        u = self.uuid()
        d = self.envelope(scope, parent)
        if kind == "hook":
            data: dict[str, Any] = {
                "type": "hook_progress",
                "hookEvent": "PostToolUse",
                "hookName": "PostToolUse:Bash",
                "command": "/home/dev/.claude/hooks/tmux-waiting.sh mark",
            }
            ids = {"parentToolUseID": tool_id, "toolUseID": tool_id}
        elif kind == "bash":
            out = self.text.sized(300, 1.0, 6000)
            data = {
                "type": "bash_progress",
                "output": out,
                "fullOutput": out,
                "elapsedTimeSeconds": self.rng.randint(1, 60),
                "totalLines": out.count("\n") + 1,
                "timeoutMs": 120000,
            }
            ids = {"toolUseID": f"bash-progress-{self.rng.randint(0, 9)}", "parentToolUseID": tool_id}
        else:
            prompt = self.text.sized(500, 0.8, 8000)
            data = {
                "message": {
                    "type": "user",
                    "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
                    "uuid": self.uuid(),
                    "timestamp": self.stamp(),
                },
                "normalizedMessages": [],
                "type": "agent_progress",
                "prompt": prompt,
                "agentId": _b62(self.rng, 7).lower(),
            }
            ids = {"toolUseID": f"agent_msg_01{_b62(self.rng, 22)}", "parentToolUseID": tool_id}
        d.update({"type": "progress", "data": data, **ids, "uuid": u, "timestamp": self.stamp()})
        self.emit(d)
        return u

    def bookkeeping(self, prompt_uuid: str) -> None:
        """Lines outside the chain: file-history snapshots, queue operations."""
        if self.rng.random() < 0.6:
            backups = {
                f"src/{_b62(self.rng, 6)}.py": {
                    "backupFileName": f"{_b62(self.rng, 16)}@v{self.rng.randint(1, 9)}",
                    "version": self.rng.randint(1, 9),
                    "backupTime": self.stamp(),
                }
                for _ in range(self.rng.randint(0, 8))
            }
            self.emit(
                {
                    "type": "file-history-snapshot",
                    "messageId": prompt_uuid,
                    "snapshot": {"messageId": prompt_uuid, "trackedFileBackups": backups, "timestamp": self.stamp()},
                    "isSnapshotUpdate": False,
                }
            )
        if self.rng.random() < 0.05:
            self.emit(
                {
                    "type": "queue-operation",
                    "operation": "enqueue",
                    "timestamp": self.stamp(),
                    "sessionId": self.session_id,
                    "content": self.text.sized(200, 0.5, 1000),
                }
            )

    def system(self, scope: _Scope, parent: str, subtype: str, **extra: Any) -> str:
        u = self.uuid()
        d = self.envelope(scope, parent)
        d.update(
            {
                "type": "system",
                "subtype": subtype,
                **extra,
                "isMeta": False,
                "timestamp": self.stamp(),
                "uuid": u,
                "level": "info",
            }
        )
        self.emit(d)
        return u

    # -- structure

    def tool_use_block(self) -> tuple[dict[str, Any], str, str]:
        name = self.rng.choices(_TOOLS, _TOOL_WEIGHTS)[0]
        tid = f"toolu_01{_b62(self.rng, 22)}"
        if name == "Bash":
            inp: dict[str, Any] = {
                "command": self.text.sized(60, 0.8, 600),
                "description": self.text.sized(30, 0.5, 120),
            }
        elif name in ("Edit", "Write"):
            inp = {
                "file_path": f"{self.cwd}/src/{_b62(self.rng, 6)}.py",
                "old_string": self.text.sized(300, 1.0, 8000),
                "new_string": self.text.sized(300, 1.0, 8000),
            }
        elif name == "Task":
            inp = {
                "description": self.text.sized(30, 0.5, 120),
                "prompt": self.text.sized(600, 0.8, 6000),
                "subagent_type": "general-purpose",
            }
        else:
            inp = {"pattern": self.text.sized(20, 0.5, 200), "path": f"{self.cwd}/src"}
        return {"type": "tool_use", "id": tid, "name": name, "input": inp, "caller": {"type": "direct"}}, tid, name

    def after_tool_use(self, scope: _Scope, use_uuid: str, tid: str, name: str, depth: int) -> None:
        """What hangs off a tool_use line while the tool runs: progress lines, a subagent."""
        parent = use_uuid
        if name == "Bash":
            for _ in range(self.rng.choice((0, 0, 1, 2, 3))):
                parent = self.progress(scope, parent, tid, "bash")
        if name == "Task" and depth == 0:
            for _ in range(self.rng.randint(1, 4)):
                parent = self.progress(scope, parent, tid, "agent")
            self.sidechain()
        # Real 2.1.x files carry about five hook_progress lines per tool call (Pre/PostToolUse hooks).
        for _ in range(self.rng.choice((2, 4, 4, 6, 6, 8))):
            parent = self.progress(scope, parent, tid, "hook")

    def sidechain(self) -> None:
        """An inline subagent conversation (isSidechain, its own root)."""
        scope = _Scope(True, _b62(self.rng, 7).lower())
        self.info.sidechains += 1
        leaf = self.user_prompt(scope, None)
        for _ in range(self.rng.randint(1, 4)):
            leaf = self.response(scope, leaf, depth=1)
        self.response(scope, leaf, depth=1, tools=False)

    def response(self, scope: _Scope, parent: str, depth: int = 0, tools: bool = True) -> str:
        """One assistant response (thinking, text, tool calls) and its results; returns the new leaf."""
        mid = f"msg_01{_b62(self.rng, 22)}"
        rid = f"req_011C{_b62(self.rng, 20)}"
        fanout = self.rng.choices(_FANOUT, _FANOUT_WEIGHTS)[0] if tools else 0
        layout = (
            "none"
            if fanout == 0
            else ("streaming" if fanout == 1 else self.rng.choices(("batch", "streaming", "linear"), (50, 35, 15))[0])
        )
        version = "1.0.98" if layout == "linear" else "2.1.39"
        self.info.layouts[layout] = self.info.layouts.get(layout, 0) + 1
        leaf = parent
        if self.rng.random() < 0.5:
            leaf = self.assistant(
                scope,
                leaf,
                mid,
                rid,
                {"type": "thinking", "thinking": self.text.sized(400, 0.9, 6000), "signature": _b62(self.rng, 120)},
                version,
            )
        if fanout == 0 or self.rng.random() < 0.7:
            leaf = self.assistant(
                scope, leaf, mid, rid, {"type": "text", "text": self.text.sized(250, 1.0, 5000)}, version
            )
        self.info.tool_uses += fanout
        if layout == "streaming":
            for _ in range(fanout):
                block, tid, name = self.tool_use_block()
                use = self.assistant(scope, leaf, mid, rid, block, version)
                self.after_tool_use(scope, use, tid, name, depth)
                leaf = self.tool_result(scope, use, tid, name, use, version)
        elif layout == "batch":
            uses: list[tuple[str, str, str]] = []
            for _ in range(fanout):
                block, tid, name = self.tool_use_block()
                leaf = self.assistant(scope, leaf, mid, rid, block, version)
                uses.append((leaf, tid, name))
            self.rng.shuffle(uses)  # results arrive in completion order
            for use, tid, name in uses:
                self.after_tool_use(scope, use, tid, name, depth)
                leaf = self.tool_result(scope, use, tid, name, use, version)
        elif layout == "linear":
            ids: list[tuple[str, str]] = []
            for _ in range(fanout):
                block, tid, name = self.tool_use_block()
                leaf = self.assistant(scope, leaf, mid, rid, block, version)
                ids.append((tid, name))
            self.rng.shuffle(ids)
            for tid, name in ids:
                leaf = self.tool_result(scope, leaf, tid, name, None, version)
        return leaf

    def turn(self) -> None:
        scope = _Scope()
        prompt = self.user_prompt(scope, self.leaf)
        self.bookkeeping(prompt)
        leaf = prompt
        for _ in range(self.rng.choices((1, 2, 3, 4, 6, 10), (20, 25, 20, 15, 12, 8))[0]):
            leaf = self.response(scope, leaf)
        leaf = self.response(scope, leaf, tools=False)
        if self.rng.random() < 0.3:
            leaf = self.system(
                scope,
                leaf,
                "stop_hook_summary",
                hookCount=1,
                hookInfos=[{"command": "/home/dev/.claude/hooks/tmux-waiting.sh mark"}],
                hookErrors=[],
                preventedContinuation=False,
                stopReason="",
                hasOutput=True,
            )
        if self.rng.random() < 0.3:
            leaf = self.system(scope, leaf, "turn_duration", durationMs=self.rng.randint(1000, 3_000_000))
        self.leaf = leaf

    def rewound_branch(self) -> None:
        """The user rewound: a short branch is left behind and the session goes on from its fork point."""
        fork = self.leaf
        scope = _Scope()
        dead = self.user_prompt(scope, fork)
        self.response(scope, dead, tools=False)
        self.leaf = fork
        self.info.rewound_branches += 1

    def compaction(self) -> None:
        scope = _Scope()
        boundary = self.uuid()
        d = self.envelope(scope, None)
        d.update(
            {
                "logicalParentUuid": self.leaf,
                "type": "system",
                "subtype": "compact_boundary",
                "content": "Conversation compacted",
                "isMeta": False,
                "timestamp": self.stamp(),
                "uuid": boundary,
                "level": "info",
                "compactMetadata": {"trigger": "auto", "preTokens": self.rng.randint(150000, 170000)},
            }
        )
        self.emit(d)
        summary = (
            "This session is being continued from a previous conversation that ran out of context. "
            "The summary below covers the earlier portion of the conversation.\n\n" + self.text.sized(9000, 0.3, 30000)
        )
        u = self.uuid()
        d = self.envelope(scope, boundary)
        d.update(
            {
                "type": "user",
                "message": {"role": "user", "content": summary},
                "isVisibleInTranscriptOnly": True,
                "isCompactSummary": True,
                "uuid": u,
                "timestamp": self.stamp(),
            }
        )
        self.emit(d)
        self.leaf = u
        self.info.compactions += 1


def write_transcript(
    path: str | Path, size: int, seed: int = 1, compact_every: int = 3 << 20, rewind_rate: float = 1 / 150
) -> TranscriptInfo:
    """A healthy session of at least `size` bytes (it stops at the first turn boundary past it)."""
    rng = random.Random(f"transcript:{seed}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb", buffering=1 << 20) as f:
        w = TranscriptWriter(f, rng)
        w.emit(
            {
                "type": "file-history-snapshot",
                "messageId": w.uuid(),
                "snapshot": {"messageId": w.uuid(), "trackedFileBackups": {}, "timestamp": w.stamp()},
                "isSnapshotUpdate": False,
            }
        )
        root = _Scope()
        w.leaf = w.progress(root, None, w.uuid(), "hook")  # the SessionStart hook line, a root
        next_compaction = int(compact_every * rng.uniform(0.6, 1.4))
        while w.size < size:
            w.turn()
            if w.size >= next_compaction and size - w.size > compact_every // 4:
                w.compaction()
                next_compaction = w.size + int(compact_every * rng.uniform(0.6, 1.4))
            elif rng.random() < rewind_rate:
                w.rewound_branch()
        info = w.info
        info.size, info.lines, info.last_uuid = w.size, w.lines, w.leaf or ""
    os.replace(tmp, path)
    info.path = str(path)
    return info


def entry_line(parent: str, session_id: str, seed: int, kind: str = "assistant") -> tuple[str, bytes]:
    """One healthy entry continuing the live chain from `parent`: (its uuid, the line with its newline)."""
    rng = random.Random(f"append:{seed}")
    buf = _Buffer()
    w = TranscriptWriter(buf, rng, session_id)  # type: ignore[arg-type]
    w.clock = _append_clock()
    if kind == "user":
        u = w.user_prompt(_Scope(), parent, "continue")
    else:
        u = w.assistant(
            _Scope(),
            parent,
            f"msg_01{_b62(rng, 22)}",
            f"req_011C{_b62(rng, 20)}",
            {"type": "text", "text": w.text.sized(250, 1.0, 2000)},
        )
    return u, buf.data


_last_append = datetime(2026, 2, 11, tzinfo=UTC)


def _append_clock() -> datetime:
    """Where an appended entry's clock starts: now, as Claude Code stamps what it appends, and never
    before an earlier append. A generated file's own stamps start in February 2026, so what is appended
    is the newest leaf, the one `claude --resume` continues (conversation picks the leaf by timestamp)."""
    global _last_append
    _last_append = max(datetime.now(UTC), _last_append + timedelta(seconds=5))
    return _last_append


def append_line(path: str | Path, parent: str, session_id: str, seed: int, kind: str = "assistant") -> tuple[str, int]:
    """Append one healthy entry continuing the live chain from `parent`; returns (its uuid, bytes)."""
    u, data = entry_line(parent, session_id, seed, kind)
    with open(path, "ab") as f:
        f.write(data)
    return u, len(data)


def append_broken_turn(path: str | Path, seed: int = 1) -> dict[str, Any]:
    """Break a healthy transcript the way the tool-use 400 does: append a tool_use that is never answered,
    then a user prompt. Returns {"tool_use_line" (0-based), "tool_use_id", "last_uuid", "session_id"}."""
    parent, session = last_live_uuid(path)
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(8 << 20), b""))
    rng = random.Random(f"broken:{seed}")
    buf = _Buffer()
    w = TranscriptWriter(buf, rng, session)  # type: ignore[arg-type]
    w.clock = _append_clock()
    tool_id = f"toolu_01{_b62(rng, 22)}"
    block = {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}
    a = w.assistant(_Scope(), parent, f"msg_01{_b62(rng, 22)}", f"req_011C{_b62(rng, 20)}", block)
    last = w.user_prompt(_Scope(), a, "still there?")
    with open(path, "ab") as f:
        f.write(buf.data)
    return {"tool_use_line": lines, "tool_use_id": tool_id, "last_uuid": last, "session_id": session}


class _Buffer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, b: bytes) -> None:
        self.data += b


def last_live_uuid(path: str | Path) -> tuple[str, str]:
    """(uuid, sessionId) of the last main-chain user/assistant line: where an append continues."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        f.seek(max(0, end - (4 << 20)))
        tail = f.read().split(b"\n")
    for raw in reversed(tail):
        if not raw.strip():
            continue
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        if d.get("type") in ("user", "assistant") and not d.get("isSidechain") and d.get("uuid"):
            return d["uuid"], d.get("sessionId", "")
    raise ValueError(f"{path}: no live user/assistant line in its last 4 MB")


def write_corpus(
    folder: str | Path, files: int, total: int, seed: int = 1, progress: Callable[[int, int], None] | None = None
) -> list[TranscriptInfo]:
    """`files` sessions under folder/projects/<project>/, log-normal sizes (a few large, most small)."""
    rng = random.Random(f"corpus:{seed}")
    raw = [rng.lognormvariate(0, 1.4) for _ in range(files)]
    scale = total / sum(raw)
    cap = max(total // 20, 2 * total // files, 64 << 10)  # the largest file: 5 % of the total, or 2× the mean
    sizes = [min(cap, max(16 << 10, int(r * scale))) for r in raw]
    # Rescale the uncapped ones so the total lands on target despite the clipping.
    fixed = sum(s for s in sizes if s in (cap, 16 << 10))
    free = [i for i, s in enumerate(sizes) if s not in (cap, 16 << 10)]
    if free:
        k = (total - fixed) / max(1, sum(sizes[i] for i in free))
        for i in free:
            sizes[i] = max(16 << 10, min(cap, int(sizes[i] * k)))
    out: list[TranscriptInfo] = []
    projects = [f"-home-dev-projects-app{i}" for i in range(max(1, files // 40))]
    for i, s in enumerate(sizes):
        sub = random.Random(f"corpus:{seed}:{i}")
        session = str(uuid.UUID(int=sub.getrandbits(128), version=4))
        path = Path(folder) / "projects" / projects[i % len(projects)] / f"{session}.jsonl"
        out.append(write_transcript(path, s, seed=seed * 100_003 + i))
        if progress:
            progress(i + 1, files)
    return out


# --- terminal logs -------------------------------------------------------------------------------

_ESC = "\x1b"
_ORANGE = f"{_ESC}[38;2;215;119;87m"
_WHITE = f"{_ESC}[38;2;255;255;255m"
_GREY = f"{_ESC}[38;2;153;153;153m"
_RED = f"{_ESC}[38;2;255;107;128m"
_RESET = f"{_ESC}[39m"
_BOLD, _NOBOLD, _DIM, _NODIM = f"{_ESC}[1m", f"{_ESC}[22m", f"{_ESC}[2m", f"{_ESC}[22m"
_SPINNER = "·✢✳✶✻✽"
_NEIGHBOURS = (
    'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens '
    'has exceeded your per-minute rate limit"}}',
    'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    'API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
)


@dataclass
class LogInfo:
    path: str
    size: int
    lines: int
    errors_400: int  # tool-use 400 lines on one physical line (what rg can find too)
    wrapped_400: int  # 400 messages wrapped onto a continuation line (only a wrap-aware scanner finds them)
    near_misses: int  # the user typing the 400's words at the prompt (not a finding; rg matches them)
    neighbours: int


def _wrap(text: str, width: int, indent: str) -> list[str]:
    out, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return out


def _segment(rng: random.Random, text: _Text) -> str:
    """One exchange as the terminal received it (CRLF, colour, spinner redraws)."""
    parts: list[str] = []
    prompt = text.sized(80, 0.8, 400).replace("\n", " ")
    parts.append(f"{_ESC}[?2026h\r{_ESC}[2K{_WHITE}❯{_RESET} {prompt}\r\n{_ESC}[?2026l")
    for _ in range(rng.randint(1, 5)):
        spin = "".join(
            f"\r{_ESC}[2K{_ORANGE}{rng.choice(_SPINNER)}{_RESET} {_ORANGE}Thinking…{_RESET} "
            f"{_DIM}({rng.randint(1, 90)}s · ↑ {rng.randint(1, 40)}.{rng.randint(0, 9)}k tokens · esc to interrupt)"
            f"{_NODIM}"
            for _ in range(rng.randint(2, 12))
        )
        parts.append(spin + f"\r{_ESC}[2K")
        tool = rng.choice(("Bash", "Read", "Update", "Search", "Fetch", "Task"))
        arg = text.sized(40, 0.6, 200).replace("\n", " ")
        parts.append(f"\r\n{_WHITE}●{_RESET} {_BOLD}{tool}{_NOBOLD}({arg})\r\n")
        out = text.sized(500, 1.2, 20000).split("\n")
        shown = out[: rng.randint(1, 12)]
        parts.append(f"  ⎿  {shown[0]}\r\n")
        parts.extend(f"     {x}\r\n" for x in shown[1:])
        if len(out) > len(shown):
            parts.append(f"     {_DIM}… +{len(out) - len(shown)} lines (ctrl+o to expand){_NODIM}\r\n")
    reply = text.sized(300, 0.9, 3000).replace("\n", " ")
    lines = _wrap(reply, 78, "  ")
    parts.append(f"\r\n{_WHITE}●{_RESET} " + "\r\n".join(lines) + "\r\n\r\n")
    parts.append(f"{_GREY}  ⏵⏵ bypass permissions on (shift+tab to cycle){_RESET}\r\n")
    return "".join(parts)


def error_400_lines(wrapped: bool = False) -> str:
    """The user retries at the prompt and Claude Code answers with the 400, as a terminal shows it."""
    head = f"\r{_ESC}[2K{_WHITE}❯{_RESET} continue\r\n"
    if not wrapped:
        return head + f"  ⎿  {_RED}{CONCURRENCY_400}{_RESET}\r\n"
    first, rest = CONCURRENCY_400[:38], CONCURRENCY_400[38:]  # wrapped mid-word ("concurr|ency") by a narrow terminal
    return head + f"  ⎿  {_RED}{first}\r\n     {rest}{_RESET}\r\n"


def write_log(path: str | Path, size: int, seed: int = 1, errors: int | None = None) -> LogInfo:
    """A terminal log of about `size` bytes with `errors` tool-use 400s (default: 3 + 1 per 100 MB)."""
    rng = random.Random(f"log:{seed}")
    text = _Text(rng)
    pool = [_segment(rng, text).encode() for _ in range(384)]
    errors = errors if errors is not None else 3 + size // (100 << 20)
    slots = sorted(rng.uniform(0.05, 0.95) * size for _ in range(errors))
    near = sorted(rng.uniform(0, size) for _ in range(max(1, errors // 2)))
    neigh = sorted(rng.uniform(0, size) for _ in range(errors))
    info = LogInfo(str(path), 0, 0, 0, 0, 0, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    written = 0
    with open(tmp, "wb", buffering=1 << 20) as f:
        batch: list[bytes] = []
        while written < size:
            seg = rng.choice(pool)
            batch.append(seg)
            written += len(seg)
            info.lines += seg.count(b"\n")
            while slots and written >= slots[0]:
                slots.pop(0)
                wrapped = info.errors_400 + info.wrapped_400 == 1  # the second one is wrapped
                e = error_400_lines(wrapped).encode()
                batch.append(e)
                written += len(e)
                info.lines += e.count(b"\n")
                if wrapped:
                    info.wrapped_400 += 1
                else:
                    info.errors_400 += 1
            while near and written >= near[0]:
                near.pop(0)
                space = "\u00a0" if info.near_misses % 2 == 0 else " "  # the input box writes a no-break space
                n = f"\r{_ESC}[2K{_WHITE}❯{_RESET}{space}why do I keep getting {CONCURRENCY_400[:52]}?\r\n".encode()
                batch.append(n)
                written += len(n)
                info.lines += 1
                info.near_misses += 1
            while neigh and written >= neigh[0]:
                neigh.pop(0)
                n = f"  ⎿  {_RED}{rng.choice(_NEIGHBOURS)}{_RESET}\r\n".encode()
                batch.append(n)
                written += len(n)
                info.lines += 1
                info.neighbours += 1
            if len(batch) > 256:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
    os.replace(tmp, path)
    info.size = written
    return info


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("transcript", help="one healthy session of at least --size bytes")
    t.add_argument("--size", default="100M")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("out")
    lg = sub.add_parser("log", help="a terminal log with a few tool-use 400 lines")
    lg.add_argument("--size", default="100M")
    lg.add_argument("--seed", type=int, default=1)
    lg.add_argument("out")
    c = sub.add_parser("corpus", help="many sessions under OUT/projects/ (a CLAUDE_CONFIG_DIR)")
    c.add_argument("--files", type=int, default=1000)
    c.add_argument("--size", default="5G", help="total size")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("out")
    args = p.parse_args(argv)
    info: Any
    if args.what == "transcript":
        info = write_transcript(args.out, parse_size(args.size), args.seed)
    elif args.what == "log":
        info = write_log(args.out, parse_size(args.size), args.seed)
    else:
        infos = write_corpus(args.out, args.files, parse_size(args.size), args.seed)
        info = {"files": len(infos), "size": sum(i.size for i in infos)}
    json.dump(info if isinstance(info, dict) else info.__dict__, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
