"""The shapes real broken sessions have, repaired through the CLI contract (`rewind FILE --mode M --out DIR`).

Retries that each recorded a 400, a recorded 400 whose pairing now looks fine, and the
server-tool (advisor) variant: split by a line written between its halves, or its
server_tool_use lost. For each: check's verdict, and both modes give a copy that checks clean,
leaves the original byte-identical and (patch) keeps every user prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_support import (
    SID,
    Builder,
    active_texts,
    assert_well_formed,
    errors,
    findings,
    run_cli,
    serious,
    sha,
    summary,
    text,
    tu,
)

from rewind_lsp.conversation import rebuild
from rewind_lsp.findings import Severity
from rewind_lsp.transcript import read_transcript

CONCURRENCY = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."
ADVISOR_ID = "srvtoolu_017Tii4oWGrhVoMF2h9kXgqx"


def recorded_400(b: Builder, body: str = CONCURRENCY) -> dict[str, Any]:
    """The synthetic entry Claude Code appends when the API refuses (isApiErrorMessage, <synthetic>)."""
    e = b.assistant(text(body), isApiErrorMessage=True, error="invalid_request", apiErrorStatus=400)
    e["message"]["model"] = "<synthetic>"
    return e


def server_use(tid: str = ADVISOR_ID) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": tid, "name": "advisor", "input": {}}


def advisor_result(tid: str = ADVISOR_ID) -> dict[str, Any]:
    return {"type": "advisor_tool_result", "tool_use_id": tid,
            "content": {"type": "advisor_result", "text": "Use a bounded queue.", "stop_reason": "end_turn"}}


def retries_after_a_lost_result() -> Builder:
    """A tool_use whose result was never written, then two retries, each refused and recorded."""
    b = Builder()
    b.user("run the tests")
    b.tool_turn(["toolu_01OK"])
    b.assistant(tu("toolu_01LOST"))
    b.user("continue")
    recorded_400(b)
    b.user("please continue")
    recorded_400(b)
    return b


def recorded_400_that_pairs() -> Builder:
    b = Builder()
    b.user("look at app.py")
    b.tool_turn(["toolu_01A"])
    b.assistant(text("Done."))
    b.user("now the tests")
    recorded_400(b)
    return b


def advisor_split_by_a_local_command() -> Builder:
    """#92509: `/usage` typed while the advisor ran wrote its lines between the two halves."""
    b = Builder()
    b.user("plan the refactor")
    b.assistant(text("Let me ask the advisor."), msg_id="msg_ADV")
    b.assistant(server_use(), msg_id="msg_ADV")
    b.system("local_command", content="<command-name>/usage</command-name>")
    b.assistant(advisor_result(), msg_id="msg_ADV")
    b.assistant(text("The advisor says: a bounded queue."), msg_id="msg_ADV")
    b.user("go on")
    b.assistant(text("ok"))
    return b


def advisor_result_without_its_use() -> Builder:
    """#56515: compaction dropped the server_tool_use and kept its advisor_tool_result."""
    b = Builder()
    b.user("plan it")
    b.assistant(text("Planning."))
    b.compact()
    b.assistant(advisor_result(), text("Continuing with the advice."), msg_id="msg_AFTER")
    b.user("thanks")
    b.assistant(text("welcome"))
    return b


SHAPES = {
    "retries": retries_after_a_lost_result,
    "recorded-400-pairs": recorded_400_that_pairs,
    "advisor-split": advisor_split_by_a_local_command,
    "advisor-lost-use": advisor_result_without_its_use,
}


def prompts(p: Path) -> set[str]:
    return {t for role, t in active_texts(p) if role == "user"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_every_shape_is_repaired_through_the_cli(tmp_path: Path, shape: str, mode: str) -> None:
    src = SHAPES[shape]().write(tmp_path / "project" / f"{SID}.jsonl")
    before = sha(src)
    out = tmp_path / "out dir"
    out.mkdir()
    done = run_cli("rewind", str(src), "--mode", mode, "--out", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    copy = Path(result["path"])
    assert serious(findings(copy)) == [], findings(copy)
    assert not [f for f in findings(copy) if f.rule == "tool-use-concurrency-400"]
    assert sha(src) == before
    assert_well_formed(copy, src)
    if mode == "patch":
        assert prompts(src) <= prompts(copy)
    assert "Please report" not in done.stdout + done.stderr


def test_retries_each_recording_a_400_are_left_out_and_said(tmp_path: Path) -> None:
    src = retries_after_a_lost_result().write(tmp_path / f"{SID}.jsonl")
    rules = [(f.rule, f.severity) for f in errors(findings(src))]
    assert ("orphan-tool-use", Severity.ERROR) in rules
    done = run_cli("rewind", str(src), "--mode", "patch")
    assert done.returncode == 0, done.stderr
    assert "  - left out 2 recorded API error(s) (never sent to the API; the original keeps them)" in done.stdout
    copy = Path(done.stdout.split("Wrote ", 1)[1].split(" (patch)", 1)[0])
    assert {"continue", "please continue", "run the tests"} <= prompts(copy)
    assert not [d for d in map(json.loads, copy.read_text().splitlines()) if d.get("isApiErrorMessage")]


def test_a_recorded_400_that_pairs_is_one_warning_and_truncate_cuts_before_its_prompt(tmp_path: Path) -> None:
    b = recorded_400_that_pairs()
    src = b.write(tmp_path / f"{SID}.jsonl")
    fs = findings(src)
    assert [(f.rule, f.severity) for f in fs] == [("tool-use-concurrency-400", Severity.WARNING)]
    done = run_cli("rewind", str(src))
    assert done.returncode == 0, done.stderr
    copy = Path(done.stdout.split("Wrote ", 1)[1].split(" (truncate)", 1)[0])
    assert prompts(copy) == {"look at app.py"}
    assert findings(copy) == []


def test_advisor_split_is_found_at_its_result_with_the_api_wording(tmp_path: Path) -> None:
    b = advisor_split_by_a_local_command()
    src = b.write(tmp_path / f"{SID}.jsonl")
    fs = errors(findings(src))
    result_line = next(i + 1 for i, x in enumerate(b.lines)
                       if isinstance(x, dict) and x["type"] == "assistant"
                       and x["message"]["content"][0]["type"] == "advisor_tool_result")
    use_line = result_line - 2
    got = {(f.rule, f.start.line) for f in fs}
    assert got == {("orphan-tool-result", result_line), ("orphan-tool-use", use_line)}
    res = next(f for f in fs if f.rule == "orphan-tool-result")
    assert res.message == (
        f"unexpected tool_use_id found in advisor_tool_result blocks: {ADVISOR_ID}. Each advisor_tool_result block "
        f"must have a corresponding server_tool_use block before it: line {use_line + 1} (system) was written "
        "between them, so they reach the API in different messages"
    )
    assert res.tool_use_id == ADVISOR_ID


def test_advisor_result_whose_use_is_gone_is_found(tmp_path: Path) -> None:
    src = advisor_result_without_its_use().write(tmp_path / f"{SID}.jsonl")
    (f,) = errors(findings(src))
    assert (f.rule, f.tool_use_id) == ("orphan-tool-result", ADVISOR_ID)
    assert f.message.startswith(f"unexpected tool_use_id found in advisor_tool_result blocks: {ADVISOR_ID}.")


def test_a_healthy_advisor_reply_checks_clean(tmp_path: Path) -> None:
    b = Builder()
    b.user("plan")
    b.assistant(text("Asking."), msg_id="msg_OK")
    b.assistant(server_use(), msg_id="msg_OK")
    b.assistant(advisor_result(), msg_id="msg_OK")
    b.assistant(text("Done."), msg_id="msg_OK")
    b.user("thanks")
    b.assistant(text("welcome"))
    assert findings(b.write(tmp_path / f"{SID}.jsonl")) == []


@pytest.mark.parametrize("which", ["tool_use", "tool_result", "prompt"])
def test_a_line_written_twice_collapses_as_in_claude_code(tmp_path: Path, which: str) -> None:
    """Claude Code's loader keys entries by uuid: a line written twice byte for byte is one entry
    (the last copy wins), so the API sees the id once and nothing is reported."""
    b = Builder()
    b.user("go")
    lines = b.tool_turn(["toolu_01TWICE"])
    b.assistant(text("done"))
    b.user("next")
    b.assistant(text("ok"))
    twice = {"tool_use": lines["toolu_01TWICE"], "tool_result": lines["r:toolu_01TWICE"], "prompt": b.lines[0]}[which]
    b.lines.insert(b.line_of(twice), dict(twice))
    src = b.write(tmp_path / f"{SID}.jsonl")
    assert findings(src) == []
    done = run_cli("check", str(src), "--format", "json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_an_orphan_result_whose_parent_is_missing_says_so_and_counts_from_the_break(tmp_path: Path) -> None:
    """Claude Code's loader stops at a missing parent: the API's messages.N counts from that line."""
    b = Builder()
    b.user("one")
    b.assistant(text("reply one"))
    b.user("two")
    b.assistant(text("reply two"))
    lost = b.result("toolu_01LOSTUSE", parent="u-not-in-the-file")
    b.assistant(text("went on"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    (f,) = errors(findings(src))
    assert (f.rule, f.start.line) == ("orphan-tool-result", b.line_of(lost))
    assert f.message == ("tool_result for toolu_01LOSTUSE answers no tool_use: its parentUuid u-not-in-the-file "
                         "names no line of the file: the assistant message it answered is missing")
    assert f.facts["messages_index"] == "0"


def test_a_fork_is_not_broken_for_what_its_parent_holds(tmp_path: Path) -> None:
    """Since 2.1.118 `/fork` writes a pointer (`fork-context-ref`) and Claude Code reads the parent's
    part from the parent session: a first tool_result answering the parent's tool_use is information."""
    b = Builder()
    b.raw(json.dumps({"type": "fork-context-ref", "forkedSessionId": "22222222-2222-4222-8222-222222222222",
                      "upToMessageId": "a-in-parent"}))
    b.result("toolu_01INPARENT", parent="a-in-parent")
    b.assistant(text("continuing in the fork"))
    b.user("and now?")
    b.assistant(text("done"))
    fs = findings(b.write(tmp_path / f"{SID}.jsonl"))
    (f,) = fs
    assert (f.rule, f.severity.label) == ("orphan-tool-result", "information")
    assert f.message == ("tool_result for toolu_01INPARENT answers no tool_use: its parentUuid a-in-parent is in the "
                         "conversation this session was forked from (a fork-context-ref line: Claude Code reads that "
                         "part from the parent session)")


@pytest.mark.parametrize("marker", ["text-after", "own-line"])
def test_a_tool_call_marked_interrupted_is_not_a_break(tmp_path: Path, marker: str) -> None:
    """Since 2.1.265 the tool call of a process that died mid-tool is kept on disk, marked interrupted,
    and left out on resume: information, not an error (the assumed shapes: docs/CONTRACT.md)."""
    b = Builder()
    b.user("run it")
    use = tu("toolu_01INTR")
    line = b.assistant(use)
    if marker == "own-line":
        line["interrupted"] = True
        b.user("what happened?")
    else:
        b.user([text("[Request interrupted by user for tool use]")])
    b.assistant(text("It was interrupted."))
    (f,) = findings(b.write(tmp_path / f"{SID}.jsonl"))
    if marker == "text-after":
        # Claude Code writes a result for a call it interrupts: without one, a line was lost.
        assert (f.rule, f.severity.label) == ("orphan-tool-use", "error")
        return
    assert (f.rule, f.severity.label) == ("orphan-tool-use", "information")
    assert f.message.endswith(" (marked interrupted: Claude Code keeps an interrupted tool call on disk and leaves "
                              "it out when the session is resumed)")


def test_the_live_conversation_ends_at_the_newest_leaf_as_resume_picks_it(tmp_path: Path) -> None:
    """`claude --resume` continues from the user/assistant leaf with the newest timestamp, not from the
    file's last line: a branch written last with older timestamps (another tool rewrote the file) is
    history, and the newest branch is the one judged."""
    b = Builder()
    b.user("start", timestamp="2026-03-01T10:00:00.000Z")
    a = b.assistant(text("ok"), timestamp="2026-03-01T10:00:01.000Z")
    b.user("run it", timestamp="2026-03-01T10:00:05.000Z")
    lost = b.assistant(tu("toolu_01NEWEST"), timestamp="2026-03-01T10:00:06.000Z")
    b.user("hello?", parent=lost["uuid"], timestamp="2026-03-01T10:00:09.000Z")
    b.user("another way", parent=a["uuid"], timestamp="2026-03-01T10:00:02.000Z")  # last line, older
    b.assistant(text("done"), timestamp="2026-03-01T10:00:03.000Z")
    path = b.write(tmp_path / f"{SID}.jsonl")
    assert summary(serious(findings(path))) == [("orphan-tool-use", "error", 4, "toolu_01NEWEST")]
    conversations = rebuild(read_transcript(str(path)).entries)
    main = next(c for c in conversations if c.kind == "main")
    assert main.leaf is not None and main.leaf.line == 5
