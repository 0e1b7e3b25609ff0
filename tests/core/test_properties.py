"""Property tests: generated valid conversations check clean; breaking one pairing gives exactly
that finding, at that line, with the severity of where it happened (live: error, history:
information).

The generator mixes what real transcripts hold: text turns, parallel tool calls in the three
layouts Claude Code writes (linear 1.0.x, DAG 2.x, streaming 2.1.39), interrupted tools,
progress lines inside the chain and dead-end progress lines, inline sidechains (with and
without agentId), rewound branches (some ending in an unanswered tool_use), compaction.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core_support import (
    INTERRUPTED,
    SID,
    Builder,
    active_texts,
    assert_new_session,
    assert_well_formed,
    findings,
    sha,
    summary,
    text,
    tu,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rewind_lsp.rewind import RewindError, rewind

# CORE_MAX_EXAMPLES=5000 for a deeper run; CI keeps the suite fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("CORE_MAX_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Turn:
    segment: int
    ids: list[str] = field(default_factory=list)
    uses: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> tool_use line
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> result line


@dataclass
class Segment:
    live: bool
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Generated:
    b: Builder
    segments: list[Segment]

    def turns(self) -> list[Turn]:
        return [t for s in self.segments for t in s.turns]

    def followed(self, t: Turn) -> bool:
        """A later turn of the same conversation begins with a user message after this one."""
        turns = self.segments[t.segment].turns
        return turns.index(t) < len(turns) - 1


class _Gen:
    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.b = Builder()
        self.segments: list[Segment] = []
        self.n = itertools.count()

    def seg(self, live: bool) -> int:
        self.segments.append(Segment(live))
        return len(self.segments) - 1

    def tid(self) -> str:
        return f"toolu_{next(self.n):04d}{self.draw(st.sampled_from(['Ab', 'xY', '9z']))}"

    def turn(self, seg: int, *, sidechain: bool = False, agent: str | None = None, root: bool = False,
             allow_sidechain: bool = False, pending: bool = False) -> None:
        b, draw = self.b, self.draw
        kw: dict[str, Any] = {"sidechain": sidechain, "agent_id": agent}
        scope = (sidechain, agent)
        t = Turn(seg)
        self.segments[seg].turns.append(t)
        b.user(f"prompt {next(self.n)}", **({"parent": None} if root else {}), **kw)
        if draw(st.booleans()):
            self.dead_end_progress(scope, b.last[scope])
        if pending:
            b.assistant(text("on it"), tu(self.tid()), **kw)  # never answered (Esc, then /rewind)
            return
        kind = draw(st.sampled_from(["text", "tools", "tools", "task"] if allow_sidechain else ["text", "tools"]))
        if kind == "text":
            mid = f"msg_{next(self.n)}"
            b.assistant({"type": "thinking", "thinking": "hm", "signature": "s"}, msg_id=mid, **kw)
            b.assistant(text("an answer"), msg_id=mid, **kw)
            return
        if kind == "task":
            tid = self.tid()
            task = b.assistant(tu(tid, "Task", prompt="p"), **kw)
            agent_id = draw(st.sampled_from([None, f"ag{next(self.n)}"]))
            side = self.seg(True)
            for k in range(draw(st.integers(1, 3))):
                self.turn(side, sidechain=True, agent=agent_id, root=(k == 0))
            layout = draw(st.sampled_from(["linear", "dag"]))
            r = b.result(tid, "agent report", of=task if layout == "dag" else None, **kw)
            t.ids, t.uses, t.results = [tid], {tid: task}, {tid: r}
            b.assistant(text("the agent reported"), **kw)
            return
        ids = [self.tid() for _ in range(draw(st.integers(1, 4)))]
        layout = draw(st.sampled_from(["linear", "dag", "streaming"]))
        interrupted = [i for i in ids if draw(st.integers(0, 5)) == 0]
        if draw(st.booleans()):
            b.progress(**kw)  # a hook progress line inside the chain
        if not sidechain and draw(st.booleans()):
            self.bookkeeping_in_chain()
        out = b.tool_turn(ids, layout, interrupted=interrupted, with_text=draw(st.booleans()), **kw)
        t.ids = ids
        t.uses = {i: out[i] for i in ids}
        t.results = {i: out["r:" + i] for i in ids}
        if draw(st.booleans()):
            self.dead_end_progress(scope, out[ids[0]]["uuid"])
        if interrupted:
            b.user([text(INTERRUPTED)], **kw)
        else:
            if draw(st.booleans()):
                b.progress(**kw)
            b.assistant(text("done"), **kw)

    def bookkeeping_in_chain(self) -> None:
        """A line inside the parentUuid chain that is not a message with tool blocks."""
        b = self.b
        kind = self.draw(st.sampled_from(["progress", "system", "attachment", "api-error"]))
        if kind == "progress":
            b.progress()
        elif kind == "system":
            b.system("turn_duration", durationMs=1234)
        elif kind == "attachment":
            attachment = {"type": "hook_additional_context", "content": ["x"]}
            b._add({"type": "attachment", "uuid": f"at-{next(self.n)}", "attachment": attachment},
                   Builder._AUTO, False, None, {})
        else:
            e = b.assistant(text("API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}"),
                            msg_id=f"synthetic-{next(self.n)}", isApiErrorMessage=True)
            e["message"]["model"] = "<synthetic>"

    def dead_end_progress(self, scope: tuple[bool, str | None], parent: str | None) -> None:
        keep = self.b.last.get(scope)
        self.b.progress(parent=parent, sidechain=scope[0], agent_id=scope[1])
        self.b.last[scope] = keep

    def build(self) -> Generated:
        b, draw = self.b, self.draw
        main = self.seg(True)
        if draw(st.booleans()):
            b.bookkeeping()
        if draw(st.booleans()):
            b.progress(parent=None)  # SessionStart hook progress at the root
        self.turn(main, allow_sidechain=True)
        for _ in range(draw(st.integers(0, 6))):
            action = draw(st.sampled_from(["turn", "turn", "turn", "rewind", "compact", "progress"]))
            if action == "turn":
                self.turn(main, allow_sidechain=True)
            elif action == "progress":
                self.bookkeeping_in_chain()
            elif action == "rewind":
                fork = b.last[(False, None)]
                dead = self.seg(False)
                n = draw(st.integers(1, 2))
                for k in range(n):
                    self.turn(dead, pending=(k == n - 1 and draw(st.booleans())))
                b.last[(False, None)] = fork
                self.turn(main, allow_sidechain=True)
            else:
                self.segments[main].live = False
                main = self.seg(True)
                b.compact()
                self.turn(main, allow_sidechain=True)
        return Generated(b, self.segments)


@st.composite
def conversations(draw: Any) -> Generated:
    return _Gen(draw).build()


def _write(g: Generated, tmp_path: Path, name: str) -> Path:
    return g.b.write(tmp_path / f"{name}.jsonl")


@SETTINGS
@given(g=conversations())
def test_generated_valid_conversations_have_no_errors_or_warnings(g: Generated, tmp_path_factory: Any) -> None:
    p = _write(g, tmp_path_factory.mktemp("valid"), "valid")
    assert summary(findings(p)) == []


def _break_one(g: Generated, data: Any) -> tuple[tuple[str, int, str], str] | None:
    """Break exactly one pairing; returns ((rule, line, tool_use_id), expected severity)."""
    b = g.b
    turns = [t for t in g.turns() if t.ids]
    if not turns:
        return None
    droppable = [t for t in turns if g.followed(t) or len(t.ids) > 1]
    by_segment: dict[int, list[Turn]] = {}
    for t in turns:
        by_segment.setdefault(t.segment, []).append(t)
    dup_pairs = [ts for ts in by_segment.values() if len(ts) >= 2]
    kinds = (["drop-result"] if droppable else []) + (["duplicate-id"] if dup_pairs else []) + ["text-before-result"]
    kind = data.draw(st.sampled_from(kinds), label="break")
    if kind == "drop-result":
        t = data.draw(st.sampled_from(droppable), label="turn")
        tid = data.draw(st.sampled_from(t.ids), label="id")
        line = b.line_of(t.uses[tid])
        b.lines.remove(t.results[tid])
        expected = ("orphan-tool-use", line, tid)
    elif kind == "duplicate-id":
        ts = data.draw(st.sampled_from(dup_pairs), label="segment")
        i = data.draw(st.integers(0, len(ts) - 2), label="first")
        j = data.draw(st.integers(i + 1, len(ts) - 1), label="second")
        old = data.draw(st.sampled_from(ts[j].ids), label="renamed")
        new = data.draw(st.sampled_from(ts[i].ids), label="reused")
        use_line = ts[j].uses[old]
        for block in use_line["message"]["content"]:
            if block.get("type") == "tool_use" and block["id"] == old:
                block["id"] = new
        for block in ts[j].results[old]["message"]["content"]:
            if block.get("type") == "tool_result":
                block["tool_use_id"] = new
        expected = ("duplicate-tool-use-id", b.line_of(use_line), new)
    else:
        t = data.draw(st.sampled_from(turns), label="turn")
        last = max(t.results.values(), key=b.line_of)  # the last result of the merged user message
        last["message"]["content"].insert(0, text("a note typed before the result"))
        tid = last["message"]["content"][1]["tool_use_id"]
        expected = ("tool-result-not-first", b.line_of(last), tid)
    target = next(t for t in turns if expected[2] in t.ids or expected[2] in t.uses)
    return expected, ("error" if g.segments[target.segment].live else "information")


@SETTINGS
@given(g=conversations(), data=st.data())
def test_breaking_one_pairing_gives_exactly_that_finding(g: Generated, data: Any, tmp_path_factory: Any) -> None:
    broke = _break_one(g, data)
    if broke is None:
        return
    (rule, line, tid), severity = broke
    p = _write(g, tmp_path_factory.mktemp("broken"), "broken")
    assert summary(findings(p)) == [(rule, severity, line, tid)]


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 3))
@given(g=conversations(), data=st.data(), mode=st.sampled_from(["patch", "truncate"]))
def test_rewind_repairs_any_single_break(g: Generated, data: Any, mode: str, tmp_path_factory: Any) -> None:
    """Whatever single pairing is broken on a live conversation, the repaired copy checks clean,
    the original is untouched, and patch keeps every prompt and reply of the live conversations."""
    broke = _break_one(g, data)
    if broke is None or broke[1] != "error":
        event("skipped: nothing live to break")
        return
    event(f"{mode} of {broke[0][0]}")
    folder = tmp_path_factory.mktemp("rewind")
    src = g.b.write(folder / f"{SID}.jsonl")
    before = sha(src)
    try:
        result = rewind(src, mode)
    except RewindError as exc:
        # Truncate only cuts the main conversation back; a broken sidechain needs patch, and a
        # main conversation broken in its very first exchange leaves nothing to keep.
        assert mode == "truncate", exc
        assert "--mode patch" in str(exc) or "try --mode patch" in str(exc)
        event("truncate refused")
        return
    finally:
        assert sha(src) == before
    out = findings(result.path)
    assert [f for f in out if f.severity.label == "error"] == [], summary(out)
    assert_well_formed(result.path, src)
    assert_new_session(result.path, SID)
    if mode == "patch":
        assert active_texts(src) <= active_texts(result.path)


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 3))
@given(g=conversations(), data=st.data(), broken=st.booleans(), pieces=st.integers(1, 12))
def test_incremental_check_equals_a_full_check_at_every_append(
    g: Generated, data: Any, broken: bool, pieces: int, tmp_path_factory: Any
) -> None:
    """Written in random-sized pieces (lines cut anywhere), the incremental check after each piece
    gives exactly the findings of a whole-file check, in memory and with the state saved to disk."""
    from rewind_lsp.check import check_transcript_file
    from rewind_lsp.incremental import TranscriptState, check_transcript_incremental
    from rewind_lsp.index import check_cached

    if broken:
        _break_one(g, data)
    folder = tmp_path_factory.mktemp("pieces")
    whole = _write(g, folder, "whole").read_bytes()
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(whole)), max_size=pieces), label="cuts")) | {len(whole)})
    path = folder / "growing.jsonl"
    path.write_bytes(b"")
    state = TranscriptState()
    start = 0
    for cut in cuts:
        with path.open("ab") as f:
            f.write(whole[start:cut])
        start = cut
        full = [(f.rule, f.severity, f.message, f.start, f.end, f.related, f.facts)
                for f in check_transcript_file(str(path)).findings]
        inc = check_transcript_incremental(str(path), state)
        assert [(f.rule, f.severity, f.message, f.start, f.end, f.related, f.facts) for f in inc] == full
        saved, _ = check_cached(str(path), folder / "cache")
        assert [(f.rule, f.severity, f.message, f.start, f.end, f.related, f.facts) for f in saved] == full
