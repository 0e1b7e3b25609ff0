"""Hypothesis strategies for the repair property tests: whole sessions (a main transcript and its
subagent files) mixing what real sessions hold, with or without the breaks behind the 400.

A generated session is plain data over `core_support.Builder`: the test writes it into a real
folder laid out like Claude Code's (`<sid>.jsonl`, `<sid>/subagents/agent-<id>.jsonl`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core_support import INTERRUPTED, SID, Builder, text, tu
from hypothesis import strategies as st

CONCURRENCY = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."

# Breaks of a tool pairing that can happen in any conversation (main, inline sidechain, subagent file).
PAIRING_BREAKS = ("lost-result", "lost-use", "duplicate-id", "text-before-result")
# Breaks of the main conversation only.
MAIN_BREAKS = ("advisor-split", "advisor-lost-use")
# How a session can end.
TAILS = ("none", "recorded-400", "retries-after-lost-result")
ENDINGS = ("newline", "no-final-newline", "torn")


@dataclass
class Session:
    main: Builder
    subagents: dict[str, Builder] = field(default_factory=dict)  # agent id -> its transcript
    breaks: list[str] = field(default_factory=list)  # what was broken, where ("lost-use@main")
    ending: str = "newline"
    subagent_endings: dict[str, str] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        """The session file `<sid>.jsonl` in `folder`, its subagent files beside it."""
        path = folder / f"{SID}.jsonl"
        for agent, sub in self.subagents.items():
            ending = self.subagent_endings.get(agent, "newline")
            _write(sub, folder / SID / "subagents" / f"agent-{agent}.jsonl", ending)
        _write(self.main, path, self.ending)
        return path


def _write(b: Builder, path: Path, ending: str) -> None:
    if ending == "torn":
        b.write(path)
        with path.open("a", encoding="utf-8") as f:
            f.write('{"parentUuid":"x","type":"user","message":{"role":"us')  # a writer mid-line
    else:
        b.write(path, trailing_newline=ending == "newline")


def recorded_400(b: Builder, **scope: Any) -> dict[str, Any]:
    """The synthetic entry Claude Code appends when the API refuses (isApiErrorMessage, <synthetic>)."""
    e = b.assistant(text(CONCURRENCY), isApiErrorMessage=True, error="invalid_request", apiErrorStatus=400, **scope)
    e["message"]["model"] = "<synthetic>"
    return e


def server_use(tid: str) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": tid, "name": "advisor", "input": {}}


def advisor_result(tid: str) -> dict[str, Any]:
    return {"type": "advisor_tool_result", "tool_use_id": tid,
            "content": {"type": "advisor_result", "text": "Use a bounded queue.", "stop_reason": "end_turn"}}


class _Gen:
    def __init__(self, draw: Any, breaking: bool) -> None:
        self.draw = draw
        self.breaking = breaking
        self.s = Session(Builder())
        self.n = itertools.count()
        self.ids: dict[tuple[int, bool, str | None], list[str]] = {}  # tool ids of each live conversation
        self.prompts: list[dict[str, Any]] = []  # user prompts of the current main segment
        self.all_prompts: list[dict[str, Any]] = []  # and of every segment

    def tid(self, prefix: str = "toolu_") -> str:
        return f"{prefix}{next(self.n):04d}{self.draw(st.sampled_from(['Ab', 'xY']))}"

    def maybe_break(self, where: str) -> str | None:
        if not self.breaking or self.draw(st.integers(0, 3)):
            return None
        kind: str = self.draw(st.sampled_from(PAIRING_BREAKS))
        self.s.breaks.append(f"{kind}@{where}")
        return kind

    def turn(self, b: Builder, key: tuple[int, bool, str | None], where: str, *, root: bool = False) -> None:
        """A prompt and its reply (text, or parallel tool calls), in `b`'s scope `key[1:]`."""
        kw: dict[str, Any] = {"sidechain": key[1], "agent_id": key[2]}
        first: dict[str, Any] = {"parent": None} if root else {}
        prompt = b.user(f"prompt {next(self.n)}", **first, **kw)
        if b is self.s.main and not key[1]:
            self.prompts.append(prompt)
            self.all_prompts.append(prompt)
        known = self.ids.setdefault(key, [])
        brk = self.maybe_break(where)
        if brk == "lost-use":
            a = b.assistant(text(f"editing {next(self.n)}"), **kw)
            b.result(self.tid("toolu_LOST"), "edited 3 lines", parent=a["uuid"], **kw)
            b.assistant(text(f"edited {next(self.n)}"), **kw)
            return
        if brk is None and self.draw(st.booleans()):
            b.assistant(text(f"an answer {next(self.n)}"), **kw)
            return
        ids = [self.tid() for _ in range(self.draw(st.integers(1, 3)))]
        if brk == "duplicate-id" and not known:
            brk = "lost-result"
            self.s.breaks[-1] = f"{brk}@{where}"
        if brk == "duplicate-id":
            ids[0] = self.draw(st.sampled_from(known))
        layout = self.draw(st.sampled_from(["linear", "dag", "streaming"]))
        interrupted = [i for i in ids if self.draw(st.integers(0, 4)) == 0]
        skip = [self.draw(st.sampled_from(ids))] if brk == "lost-result" else []
        out = b.tool_turn(ids, layout, interrupted=interrupted, skip_results=skip, with_text=self.draw(st.booleans()),
                          **kw)
        if brk == "text-before-result":
            last = max((out["r:" + i] for i in ids), key=b.line_of)
            last["message"]["content"].insert(0, text("a note typed before the result"))
        known.extend(ids)
        if interrupted:
            b.user([text(INTERRUPTED)], **kw)
        b.assistant(text(f"done {next(self.n)}"), **kw)

    def task(self, seg: int) -> None:
        """A Task tool call whose subagent runs inline (isSidechain) or in its own file."""
        b = self.s.main
        agent = f"a{next(self.n):04d}{self.draw(st.sampled_from(['f0', '9c']))}"
        tid = self.tid()
        use = b.assistant(tu(tid, "Task", prompt="search"))
        inline = self.draw(st.booleans())
        side = b if inline else self.s.subagents.setdefault(agent, Builder())
        key = (seg if inline else -1, True, agent)
        for k in range(self.draw(st.integers(1, 2))):
            self.turn(side, key, "sidechain" if inline else "subagent-file", root=(k == 0))
        b.result(tid, "agent report", of=use if self.draw(st.booleans()) else None)
        self.ids.setdefault((seg, False, None), []).append(tid)
        b.assistant(text(f"the agent reported {next(self.n)}"))

    def advisor(self) -> None:
        """A server tool (advisor) reply: healthy, or split by a /usage typed while it ran."""
        b = self.s.main
        split = self.breaking and self.draw(st.integers(0, 3)) == 0
        if split:
            self.s.breaks.append("advisor-split@main")
        sid, mid = self.tid("srvtoolu_"), f"msg_ADV{next(self.n)}"
        b.assistant(text("Let me ask the advisor."), msg_id=mid)
        b.assistant(server_use(sid), msg_id=mid)
        if split:
            b.system("local_command", content="<command-name>/usage</command-name>")
        b.assistant(advisor_result(sid), msg_id=mid)
        b.assistant(text(f"The advisor says: a bounded queue {next(self.n)}."), msg_id=mid)

    def build(self) -> Session:
        s, draw, b = self.s, self.draw, self.s.main
        if draw(st.booleans()):
            b.bookkeeping()
        seg = 0
        if self.breaking and draw(st.integers(0, 5)) == 0:
            # Broken from its first message: a tool_result whose tool_use is gone opens the session.
            s.breaks.append("lost-use-at-start@main")
            b.result(self.tid("toolu_GONE"), "a result from before", parent=None)
            b.assistant(text(f"picking up {next(self.n)}"))
        self.turn(b, (seg, False, None), "main")
        actions = ["turn", "turn", "task", "advisor", "compact", "fork", "progress", "retry-midway"]
        for _ in range(draw(st.integers(0, 6))):
            action = draw(st.sampled_from(actions))
            if action == "turn":
                self.turn(b, (seg, False, None), "main")
            elif action == "task":
                b.user(f"delegate {next(self.n)}")
                self.task(seg)
            elif action == "advisor":
                b.user(f"plan {next(self.n)}")
                self.advisor()
                b.user(f"go on {next(self.n)}")
                b.assistant(text(f"ok {next(self.n)}"))
            elif action == "compact":
                seg += 1
                self.prompts = []
                b.compact()
                if self.breaking and draw(st.integers(0, 3)) == 0:
                    # #56515: compaction dropped the server_tool_use and kept its result.
                    s.breaks.append("advisor-lost-use@main")
                    b.assistant(advisor_result(self.tid("srvtoolu_")), text("Continuing with the advice."))
                self.turn(b, (seg, False, None), "main")
            elif action == "fork" and self.prompts and self.all_prompts:
                # /rewind: a second child of an earlier prompt; the old branch becomes history.
                # Now and then a prompt from before a compaction: the new branch leaves the boundary behind.
                prompt = draw(st.sampled_from(self.prompts if draw(st.integers(0, 3)) else self.all_prompts))
                self.prompts = self.prompts[: self.prompts.index(prompt) + 1] if prompt in self.prompts else [prompt]
                b.last[(False, None)] = prompt["uuid"]
                b.assistant(text(f"a second answer {next(self.n)}"))
                seg += 1  # the ids of the dead branch are not on the live chain
                self.ids[(seg, False, None)] = []
                self.turn(b, (seg, False, None), "main")
            elif action == "progress":
                b.progress()
            elif action == "retry-midway" and self.breaking:
                # A tool_use whose result was lost, a retry refused and recorded, then the user went on.
                s.breaks.append("retry-400-midway@main")
                b.user(f"run it {next(self.n)}")
                b.assistant(tu(self.tid("toolu_RETRY")))
                b.user("continue")
                recorded_400(b)
                self.turn(b, (seg, False, None), "main")
        for written in [b, *s.subagents.values()]:
            if draw(st.integers(0, 2)) == 0:
                # A line written twice byte for byte (Claude Code's loader keys by uuid: one entry).
                lines = [x for x in written.lines if isinstance(x, dict)]
                twice = draw(st.sampled_from(lines))
                written.lines.insert(written.line_of(twice), dict(twice))
        for agent, sub in s.subagents.items():
            if self.breaking and draw(st.integers(0, 3)) == 0:
                # The subagent's own request refused, recorded at the end of its file.
                s.breaks.append("recorded-400@subagent-file")
                sub.user(f"go on {next(self.n)}", sidechain=True, agent_id=agent)
                recorded_400(sub, sidechain=True, agent_id=agent)
        tail = draw(st.sampled_from(TAILS)) if self.breaking else "none"
        if tail == "retries-after-lost-result":
            s.breaks.append("retries-after-lost-result@main")
            b.assistant(tu(self.tid("toolu_RETRY")))
            b.user("continue")
            recorded_400(b)
            b.user("please continue")
            recorded_400(b)
        elif tail == "recorded-400":
            s.breaks.append("recorded-400@main")
            b.user(f"now the tests {next(self.n)}")
            recorded_400(b)
        s.ending = draw(st.sampled_from(ENDINGS))
        s.subagent_endings = {agent: draw(st.sampled_from(ENDINGS)) for agent in s.subagents}
        return s


@st.composite
def sessions(draw: Any, breaking: bool = True) -> Session:
    """A session; with `breaking`, each place a pairing can break is broken now and then."""
    return _Gen(draw, breaking).build()
