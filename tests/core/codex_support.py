"""Codex rollouts for the tests, shaped as Codex CLI writes them: a `session_meta` line, then per
turn a `turn_context`, the user's `message` (and its `event_msg`), reasoning, calls of every kind
(several in parallel, outputs in any order after them), the assistant's reply, token counts;
compaction; the early bare layout; and, broken, the shapes behind `No tool output found`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

CODEX_SID = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ROLLOUT = f"rollout-2026-11-30T10-00-00-{CODEX_SID}.jsonl"
CALL_KINDS = ("function_call", "custom_tool_call", "local_shell_call")
BREAKS = ("lost-output", "lost-call", "duplicate-id", "written-twice", "output-kind-swapped", "call-after-compaction")
ENDINGS = ("newline", "no-final-newline", "torn", "crlf")


@dataclass
class Rollout:
    lines: list[dict[str, Any]] = field(default_factory=list)
    bare: bool = False
    clock: int = 0
    calls: int = 0
    prompts: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    ending: str = "newline"

    def _ts(self) -> str:
        self.clock += 1
        return f"2026-11-30T10:{self.clock // 60 % 60:02d}:{self.clock % 60:02d}.000Z"

    def add(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.bare:
            line = dict(payload) if kind == "response_item" else {"record_type": "state"}
        else:
            line = {"timestamp": self._ts(), "type": kind, "payload": payload}
        self.lines.append(line)
        return line

    def meta(self, cwd: str = "/tmp/codex-project") -> None:
        payload = {"id": CODEX_SID, "timestamp": "2026-11-30T10:00:00.000Z", "cwd": cwd,
                   "originator": "codex_cli_rs", "cli_version": "0.63.0", "instructions": None}
        if self.bare:
            self.lines.append({"id": CODEX_SID, "timestamp": payload["timestamp"], "instructions": None})
        else:
            self.lines.append({"timestamp": self._ts(), "type": "session_meta", "payload": payload})

    def prompt(self, text: str) -> None:
        self.prompts.append(text)
        self.add("turn_context", {"cwd": "/tmp/codex-project", "approval_policy": "on-request", "model": "gpt-5-codex"})
        self.add("response_item", {"type": "message", "role": "user",
                                   "content": [{"type": "input_text", "text": text}]})
        self.add("event_msg", {"type": "user_message", "message": text, "images": []})

    def call(self, kind: str) -> tuple[str, str]:
        self.calls += 1
        cid = f"call_{self.calls:04d}abcdEFGH{kind[:2]}"
        if kind == "function_call":
            self.add("response_item", {"type": kind, "name": "shell", "arguments": json.dumps({"command": ["ls"]}),
                                       "call_id": cid})
        elif kind == "custom_tool_call":
            self.add("response_item", {"type": kind, "status": "completed", "name": "apply_patch", "call_id": cid,
                                       "input": "*** Begin Patch\n*** End Patch"})
        else:
            self.add("response_item", {"type": kind, "call_id": cid, "status": "completed",
                                       "action": {"type": "exec", "command": ["pwd"]}})
        return cid, kind

    def output(self, cid: str, kind: str) -> None:
        out = "custom_tool_call_output" if kind == "custom_tool_call" else "function_call_output"
        self.add("response_item", {"type": out, "call_id": cid, "output": json.dumps({"output": "ok", "metadata": {}})})

    def reply(self, text: str) -> None:
        self.add("response_item", {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}],
                                   "encrypted_content": "gAAAA"})
        self.add("response_item", {"type": "message", "role": "assistant",
                                   "content": [{"type": "output_text", "text": text}]})
        self.add("event_msg", {"type": "token_count", "info": None})

    def compact(self) -> None:
        self.add("compacted", {"message": "Summary of the work so far."})

    def text(self) -> str:
        body = "".join(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n" for x in self.lines)
        if self.ending == "no-final-newline":
            body = body[:-1]
        elif self.ending == "torn":
            body += '{"timestamp":"2026-11-30T11:00:00.000Z","type":"response_item","payload":{"type":"mess'
        elif self.ending == "crlf":
            body = body.replace("\n", "\r\n")
        return body

    def write(self, folder: Path, name: str = ROLLOUT) -> Path:
        path = folder / name
        path.write_bytes(self.text().encode("utf-8"))
        return path


def unanswered_second_turn(bare: bool = False) -> Rollout:
    """A turn whose call was answered, then a second whose call never was (Codex died mid-tool)."""
    r = Rollout(bare=bare)
    r.meta()
    r.prompt("list the files")
    cid, kind = r.call("function_call")
    r.output(cid, kind)
    r.reply("Here they are.")
    r.prompt("now run the tests")
    r.call("function_call")
    return r


def user_messages(path: Path) -> list[str]:
    """The user prompts a rollout holds, in order (wrapped or bare), read with the standard library."""
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        p = d.get("payload", d) if isinstance(d, dict) else {}
        if isinstance(p, dict) and p.get("type") == "message" and p.get("role") == "user":
            out.append(" ".join(c.get("text", "") for c in p.get("content", [])))
    return out


@st.composite
def rollouts(draw: st.DrawFn, breaking: bool = False) -> Rollout:
    """A rollout of 1-4 turns, each with 0-3 calls (parallel: every call, then every output in a drawn
    order); with `breaking`, one break applied to a turn that is not the first, so that a truncate has
    something to keep."""
    r = Rollout(bare=draw(st.booleans()) if not breaking else draw(st.sampled_from([False, False, True])))
    r.ending = draw(st.sampled_from(ENDINGS))
    r.meta()
    turns = draw(st.integers(2 if breaking else 1, 4))
    broken_turn = draw(st.integers(1, turns - 1)) if breaking else -1
    brk = draw(st.sampled_from(BREAKS)) if breaking else None
    if brk == "call-after-compaction" and r.bare:
        brk = "lost-call"
    for t in range(turns):
        r.prompt(f"turn {t}: do the thing é😀")
        if t == broken_turn and brk == "call-after-compaction":
            cid, kind = r.call("function_call")
            r.compact()
            r.output(cid, kind)  # its call went with the compaction
            r.breaks.append(brk)
            r.reply("done")
            continue
        kinds = draw(st.lists(st.sampled_from(CALL_KINDS), max_size=3))
        if t == broken_turn and not kinds:
            kinds = ["function_call"]
        made = [r.call(k) for k in kinds]
        order = draw(st.permutations(made))
        for n, (cid, kind) in enumerate(order):
            if t == broken_turn and n == 0:
                if brk == "lost-output":
                    continue
                if brk == "output-kind-swapped":
                    r.output(cid, "custom_tool_call" if kind != "custom_tool_call" else "function_call")
                    continue
                if brk == "lost-call":
                    r.lines.remove(next(x for x in r.lines if x.get("payload", x).get("call_id") == cid))
            r.output(cid, kind)
        if t == broken_turn and brk == "duplicate-id":
            cid, kind = made[0]
            again = r.add("response_item", dict(next(
                x.get("payload", x) for x in r.lines if x.get("payload", x).get("call_id") == cid)))
            assert again
            r.output(cid, kind)
        if t == broken_turn and brk == "written-twice":
            # A writer's retry: the call's line (and maybe its output's) written a second time right after.
            cid, _ = made[0]
            twice = [x for x in r.lines if x.get("payload", x).get("call_id") == cid]
            for x in twice[:1] + (twice[1:2] if draw(st.booleans()) else []):
                r.lines.insert(r.lines.index(x) + 1, dict(x))
        if t == broken_turn:
            r.breaks.append(brk or "")
        # A compaction after the break would take the broken call out of what is sent: one before it only.
        if draw(st.booleans()) and t < turns - 1 and not r.bare and (broken_turn < 0 or t < broken_turn):
            r.compact()
        r.reply(f"reply {t}")
    return r
