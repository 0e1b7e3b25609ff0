"""A history branch picked up where its walk meets a chain already assembled is the conversation a
walk and assembly from its own leaf gives: the same messages (roles and lines, in order), the same
order, the same lines with a missing parent. And judging a history conversation only from its first
message with a line of its own (the rest is the live conversation's, judged there) gives the same
findings as judging all of it.

Lines are drawn at random: replies of several lines sharing a message.id, tool results hanging off
their tool_use lines, progress lines, rewinds to any earlier line (and rewinds inside rewound
branches), parents that are missing or name a later line (cycles), lines written twice, recorded
400s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewind_lsp import verdict
from rewind_lsp.check import check_transcript_file
from rewind_lsp.conversation import Conversation, chain_to, rebuild
from rewind_lsp.transcript import read_transcript

SID = "11111111-1111-4111-8111-111111111111"


@st.composite
def transcripts(draw: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    n = draw(st.integers(2, 60))
    last_mid = "m0"
    for k in range(n):
        uuid = f"u{k}"
        if k == 0:
            parent: str | None = None
        else:
            how = draw(st.sampled_from(["prev"] * 6 + ["rewind", "rewind", "root", "missing", "later", "twice"]))
            if how == "prev":
                parent = lines[-1]["uuid"]
            elif how == "rewind":
                parent = lines[draw(st.integers(0, len(lines) - 1))]["uuid"]
            elif how == "root":
                parent = None
            elif how == "missing":
                parent = f"lost{k}"
            elif how == "later":
                parent = f"u{draw(st.integers(k, n + 2))}"
            else:  # a line written again with the uuid of an earlier one
                uuid = lines[draw(st.integers(0, len(lines) - 1))]["uuid"]
                parent = lines[-1]["uuid"]
        kind = draw(st.sampled_from(["user", "assistant", "assistant", "result", "progress", "api-error"]))
        line: dict[str, Any] = {"uuid": uuid, "parentUuid": parent, "sessionId": SID,
                                "timestamp": f"2026-01-01T00:{k // 60:02d}:{k % 60:02d}.000Z"}
        if kind == "user":
            line.update(type="user", message={"role": "user", "content": f"prompt {k}"})
        elif kind == "assistant":
            mid = last_mid if draw(st.booleans()) else f"m{k}"
            last_mid = mid
            block = (
                {"type": "tool_use", "id": f"t{k}", "name": "Bash", "input": {}}
                if draw(st.booleans()) else {"type": "text", "text": "ok"}
            )
            line.update(type="assistant", message={"id": mid, "role": "assistant", "content": [block]})
        elif kind == "result":
            tid = f"t{draw(st.integers(0, k))}"
            line.update(type="user", message={"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tid, "content": "x"}]})
            if draw(st.booleans()) and lines:
                line["sourceToolAssistantUUID"] = lines[draw(st.integers(0, len(lines) - 1))]["uuid"]
        elif kind == "api-error":
            line.update(type="assistant", isApiErrorMessage=True, message={
                "id": f"synthetic-{k}", "role": "assistant", "model": "<synthetic>", "content": [
                    {"type": "text", "text": "API Error: 400 due to tool use concurrency issues. Run /rewind to "
                                             "recover the conversation."}]})
        else:
            line.update(type="progress", data={"type": "hook_progress"})
        lines.append(line)
    return lines


def write(lines: list[dict[str, Any]], tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def shape(c: Conversation) -> tuple[Any, ...]:
    return (
        [(m.role, [id(e) for e in m.entries]) for m in c.messages],
        [id(e) for e in c.order],
        id(c.leaf),
        [id(e) for e in c.missing_parent],
    )


def lines_of(c: Conversation) -> tuple[Any, ...]:
    """`shape` by line numbers: for conversations of two reads of one file."""
    return (
        [(m.role, [e.line for e in m.entries]) for m in c.messages],
        [e.line for e in c.order],
        c.leaf.line if c.leaf else None,
        [e.line for e in c.missing_parent],
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=transcripts())
def test_each_rebuilt_conversation_is_its_leafs_chain_assembled_alone(lines: list[dict[str, Any]], tmp_path: Path
                                                                       ) -> None:
    path = write(lines, tmp_path)
    entries = read_transcript(str(path)).entries
    conversations = rebuild(entries)
    for c in conversations:
        assert c.leaf is not None and c.leaf.uuid is not None
        alone = chain_to(entries, c.leaf.uuid)
        if alone is None or alone.leaf is not c.leaf:
            continue  # the leaf's uuid was written again later: chain_to finds the other copy
        assert shape(c) == shape(alone)


def test_branches_of_branches_are_picked_up_and_still_whole(tmp_path: Path) -> None:
    # A long main chain, a rewound branch off its middle, a branch off that branch: each history
    # conversation holds its chain from the root, as a walk from its own leaf does.
    lines: list[dict[str, Any]] = []

    def add(uuid: str, parent: str | None, role: str, k: int) -> None:
        content: Any = f"prompt {uuid}" if role == "user" else [{"type": "text", "text": uuid}]
        message = {"role": role, "content": content} | ({"id": f"msg_{uuid}"} if role == "assistant" else {})
        lines.append({"type": role, "uuid": uuid, "parentUuid": parent, "sessionId": SID,
                      "timestamp": f"2026-01-01T{k // 3600:02d}:{k // 60 % 60:02d}:{k % 60:02d}.000Z",
                      "message": message})

    k = 0
    parent = None
    for i in range(200):
        add(f"m{i}", parent, "user" if i % 2 == 0 else "assistant", k)
        parent, k = f"m{i}", k + 1
    parent = "m99"
    for i in range(40):
        add(f"b{i}", parent, "user" if i % 2 == 0 else "assistant", k)
        parent, k = f"b{i}", k + 1
    parent = "b19"
    for i in range(30):
        add(f"c{i}", parent, "user" if i % 2 == 0 else "assistant", k)
        parent, k = f"c{i}", k + 1
    add("m200", "m199", "user", k + 1)  # the live conversation is the main chain
    path = write(lines, tmp_path)
    entries = read_transcript(str(path)).entries
    conversations = rebuild(entries)
    assert [(c.kind, c.leaf.uuid if c.leaf else None, len(c.order)) for c in conversations] == [
        ("main", "m200", 201), ("history", "c29", 100 + 20 + 30), ("history", "b39", 100 + 40),
    ]
    for c in conversations:
        assert c.leaf is not None and c.leaf.uuid is not None
        alone = chain_to(entries, c.leaf.uuid)
        assert alone is not None and shape(c) == shape(alone)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=transcripts())
def test_history_judged_from_its_own_lines_finds_what_judging_all_of_it_finds(
    lines: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = write(lines, tmp_path)
    quick = check_transcript_file(str(path)).findings
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verdict, "_first_judged", lambda conv, active: 0)  # the oracle: every message judged
        whole = check_transcript_file(str(path)).findings
    assert quick == whole


def _line(k: int, uuid: str, parent: str | None, role: str, content: Any, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content}
    if role == "assistant":
        message["id"] = extra.pop("msg_id", f"msg_{uuid}")
    return {"type": role, "uuid": uuid, "parentUuid": parent, "sessionId": SID,
            "timestamp": f"2026-01-01T00:00:{k:02d}.000Z", "message": message, **extra}


def _same_findings_judged_whole(lines: list[dict[str, Any]], tmp_path: Path) -> list[tuple[str, str, int]]:
    path = write(lines, tmp_path)
    quick = check_transcript_file(str(path)).findings
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verdict, "_first_judged", lambda conv, active: 0)
        assert quick == check_transcript_file(str(path)).findings
    return [(f.rule, f.severity.label, f.start.line) for f in quick]


USE = [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]
RESULT = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]


def test_a_branch_whose_first_own_line_answers_the_live_tool_use(tmp_path: Path) -> None:
    # A result hanging off the live result line: a branch whose first message merges the live
    # result with its own, judged against the tool_uses in the message before (the branch answers
    # the call the live conversation left unanswered; a third result answers it a second time).
    two = [*USE, {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}}]
    lines = [
        _line(0, "u0", None, "user", "start"),
        _line(1, "a1", "u0", "assistant", two),
        _line(2, "r1", "a1", "user", RESULT),
        _line(3, "a2", "r1", "assistant", [{"type": "text", "text": "done"}]),
        _line(4, "r2", "r1", "user", [dict(RESULT[0], tool_use_id="toolu_2")]),  # rewound onto the result line
        _line(5, "r2b", "r2", "user", [dict(RESULT[0], tool_use_id="toolu_2")]),
        _line(6, "u3", "a2", "user", "go on"),
    ]
    assert _same_findings_judged_whole(lines, tmp_path) == [
        ("orphan-tool-use", "error", 2), ("orphan-tool-result", "information", 6),
    ]
    path = tmp_path / "t.jsonl"
    assert "a second tool_result for toolu_2" in check_transcript_file(str(path)).findings[1].message


def test_a_branch_with_its_own_recorded_400_is_judged_whole(tmp_path: Path) -> None:
    # Whether a branch's recorded 400 is "paired" depends on every fault of that branch, those in
    # the part it shares with the live conversation too.
    err = [{"type": "text", "text": "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the "
                                    "conversation."}]
    lines = [
        _line(0, "u0", None, "user", "start"),
        _line(1, "a1", "u0", "assistant", USE),
        _line(2, "u1", "a1", "user", "never mind"),  # toolu_1 unanswered: a live fault
        _line(3, "a2", "u1", "assistant", [{"type": "text", "text": "ok"}]),
        _line(4, "ub", "a2", "user", "try this"),
        _line(5, "e1", "ub", "assistant", err, isApiErrorMessage=True, msg_id="synthetic-1"),
        _line(6, "u2", "a2", "user", "again"),  # rewound past the error: the error line is history
        _line(7, "a3", "u2", "assistant", [{"type": "text", "text": "fine"}]),
    ]
    path = tmp_path / "t.jsonl"
    for error_after_a_prompt in (True, False):  # the branch has a message of its own, or only the error
        branch = lines if error_after_a_prompt else [x for x in lines if x["uuid"] != "ub"]
        if not error_after_a_prompt:
            branch = [dict(x, parentUuid="a2") if x["uuid"] == "e1" else x for x in branch]
        found = _same_findings_judged_whole(branch, tmp_path)
        assert ("orphan-tool-use", "error", 2) in found
        recorded = [f for f in check_transcript_file(str(path)).findings if f.rule == "tool-use-concurrency-400"]
        assert [(f.severity.label, f.facts["recorded_400"]) for f in recorded] == [("information", "broken")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=transcripts())
def test_a_check_without_history_gives_the_same_live_conversations_and_findings(
    lines: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = write(lines, tmp_path)
    whole, live = check_transcript_file(str(path)), check_transcript_file(str(path), history=False)
    assert [lines_of(c) for c in whole.conversations if c.kind != "history"] == [
        lines_of(c) for c in live.conversations
    ]
    assert [c for c in live.conversations if c.kind == "history"] == []
    assert live.findings == [f for f in whole.findings if f.facts.get("conversation") != "rewound or compacted history"]
