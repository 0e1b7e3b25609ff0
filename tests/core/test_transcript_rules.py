"""One small hand-written transcript per rule and per variant of how Claude Code writes files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_support import (
    INTERRUPTED,
    SID,
    Builder,
    block_column,
    dumps,
    errors,
    findings,
    serious,
    summary,
    text,
    tr,
    tu,
)

from rewind_lsp.check import check_transcript_bytes, check_transcript_file
from rewind_lsp.conversation import rebuild
from rewind_lsp.findings import Severity
from rewind_lsp.transcript import read_transcript


def _only(fs, rule):
    got = [f for f in fs if f.rule == rule]
    assert len(got) == 1, summary(fs)
    return got[0]


# --- orphan-tool-use ------------------------------------------------------------------------


def test_contract_minimal_broken_transcript(tmp_path: Path) -> None:
    """The example of docs/CONTRACT.md, byte for byte."""
    sid = "11111111-1111-4111-8111-111111111111"
    lines = [
        {"type": "user", "uuid": "u1", "parentUuid": None, "sessionId": sid,
         "message": {"role": "user", "content": "list files"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": sid,
         "message": {"id": "msg_1", "role": "assistant",
                     "content": [{"type": "tool_use", "id": "toolu_01ABC", "name": "Bash",
                                  "input": {"command": "ls"}}]}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "sessionId": sid,
         "message": {"role": "user", "content": "hello?"}},
    ]
    p = tmp_path / f"{sid}.jsonl"
    p.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))
    fs = findings(p)
    f = _only(fs, "orphan-tool-use")
    assert f.severity == Severity.ERROR
    assert f.start.line == 2
    line2 = p.read_text().splitlines()[1]
    assert f.start.column == line2.index('{"type":"tool_use"') + 1
    assert f.start.utf16 == f.start.column - 1
    assert f.tool_use_id == "toolu_01ABC"
    assert serious(fs) == [f]


def test_orphan_tool_use_in_the_middle_is_an_error_at_the_block(b: Builder, tmp_path: Path) -> None:
    b.user("run two things")
    turn = b.tool_turn(["toolu_A1", "toolu_A2"], skip_results=["toolu_A2"])
    b.assistant(text("done"))
    b.user("thanks")
    b.assistant(text("you're welcome"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "orphan-tool-use")
    assert (f.severity, f.tool_use_id) == (Severity.ERROR, "toolu_A2")
    assert f.start.line == b.line_of(turn["toolu_A2"])
    line = p.read_text().splitlines()[f.start.line - 1]
    assert f.start.column == block_column(line, tu("toolu_A2"))
    # The range covers the whole block, ending after its closing brace.
    assert f.end.line == f.start.line
    assert f.end.column == f.start.column + len(dumps(tu("toolu_A2")))
    assert summary(serious(fs)) == [("orphan-tool-use", "error", f.start.line, "toolu_A2")]


def test_column_counts_characters_not_bytes(b: Builder, tmp_path: Path) -> None:
    """Non-ASCII text before the block: the column is in characters, utf16 in UTF-16 units."""
    b.user("go")
    a = b.assistant(text("héllo 😀 wörld"), tu("toolu_U1"))
    b.user("next")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    f = _only(findings(p), "orphan-tool-use")
    line = p.read_text(encoding="utf-8").splitlines()[b.line_of(a) - 1]
    col = block_column(line, tu("toolu_U1"))
    assert f.start.column == col
    assert f.start.utf16 == len(line[: col - 1].encode("utf-16-le")) // 2 == col  # the emoji is 2 units


def test_pending_trailing_tool_use_is_a_warning(b: Builder, tmp_path: Path) -> None:
    b.user("run it")
    a = b.assistant(text("running"), tu("toolu_P1"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(fs) == [("orphan-tool-use", "warning", b.line_of(a), "toolu_P1")]
    assert errors(fs) == []


def test_parallel_trailing_tools_partly_answered_is_an_error(b: Builder, tmp_path: Path) -> None:
    """Parallel calls where some results were written: the next user message exists and lacks one."""
    b.user("go")
    turn = b.tool_turn(["toolu_Q1", "toolu_Q2", "toolu_Q3"], skip_results=["toolu_Q3"])
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(serious(fs)) == [("orphan-tool-use", "error", b.line_of(turn["toolu_Q3"]), "toolu_Q3")]


def test_tool_use_followed_by_assistant_is_an_error(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    a = b.assistant(tu("toolu_N1"))
    b.assistant(text("I changed my mind"))  # another message.id: merged into one assistant turn
    b.user("and now?")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [("orphan-tool-use", "error", b.line_of(a), "toolu_N1")]


def test_tool_use_answered_by_a_later_reply_at_the_end_is_an_error(b: Builder, tmp_path: Path) -> None:
    """The last turn: a tool_use, then a reply of another message.id and no result. The turn is
    over (the model answered after it), so the tool is not still running: an error, not pending."""
    b.user("go")
    a = b.assistant(tu("toolu_E1"))
    b.assistant(text("I've finished"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(fs) == [("orphan-tool-use", "error", b.line_of(a), "toolu_E1")]
    assert fs[0].related and fs[0].related[0][0].line == b.line_of(a) + 1


def test_later_blocks_of_the_same_reply_keep_a_tool_use_pending(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    a = b.assistant(tu("toolu_E2"), msg_id="msg_streaming")
    b.assistant(text("still streaming"), msg_id="msg_streaming")
    p = b.write(tmp_path / "s.jsonl")
    assert summary(findings(p)) == [("orphan-tool-use", "warning", b.line_of(a), "toolu_E2")]


# --- orphan-tool-result -------------------------------------------------------------------


def test_orphan_tool_result_after_compaction_dropped_its_tool_use(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.tool_turn(["toolu_C1"])
    b.assistant(text("done"))
    b.compact()
    # Compaction kept a result whose tool_use went into the summary.
    r = b.result("toolu_C1", "late output")
    b.assistant(text("continuing"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "orphan-tool-result")
    assert (f.severity, f.start.line, f.tool_use_id) == (Severity.ERROR, b.line_of(r), "toolu_C1")
    line = p.read_text().splitlines()[f.start.line - 1]
    assert f.start.column == block_column(line, tr("toolu_C1", "late output"))
    assert len(serious(fs)) == 1


def test_orphan_tool_result_when_the_assistant_line_was_dropped(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    a = b.assistant(text("thinking"))
    r = b.result("toolu_GONE", parent=a["uuid"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [("orphan-tool-result", "error", b.line_of(r), "toolu_GONE")]


def test_second_result_for_one_tool_use_is_an_orphan(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    turn = b.tool_turn(["toolu_D1"])
    r2 = b.result("toolu_D1", "again", parent=turn["r:toolu_D1"]["uuid"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [("orphan-tool-result", "error", b.line_of(r2), "toolu_D1")]


# --- duplicate-tool-use-id ----------------------------------------------------------------


def test_duplicate_tool_use_id_is_reported_at_the_second_occurrence(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    first = b.tool_turn(["toolu_DUP"])
    b.assistant(text("again"))
    b.user("once more")
    second = b.tool_turn(["toolu_DUP"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "duplicate-tool-use-id")
    assert (f.severity, f.start.line, f.tool_use_id) == (Severity.ERROR, b.line_of(second["toolu_DUP"]), "toolu_DUP")
    assert f.related and f.related[0][0].line == b.line_of(first["toolu_DUP"])
    assert len(serious(fs)) == 1


def test_duplicate_tool_use_id_within_one_message(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    mid = "msg_same"
    b.assistant(tu("toolu_TWICE"), msg_id=mid)
    a2 = b.assistant(tu("toolu_TWICE"), msg_id=mid)
    b.result("toolu_TWICE")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    f = _only(findings(p), "duplicate-tool-use-id")
    assert (f.start.line, f.severity) == (b.line_of(a2), Severity.ERROR)


# --- tool-result-not-first ----------------------------------------------------------------


def test_text_before_tool_result_in_one_user_message(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(tu("toolu_T1"))
    u = b.user([text("a note first"), tr("toolu_T1")])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "tool-result-not-first")
    assert (f.severity, f.start.line, f.tool_use_id) == (Severity.ERROR, b.line_of(u), "toolu_T1")
    line = p.read_text().splitlines()[f.start.line - 1]
    assert f.start.column == block_column(line, tr("toolu_T1"))
    assert len(serious(fs)) == 1


def test_text_line_before_result_line_of_one_user_message(b: Builder, tmp_path: Path) -> None:
    """Two user lines that form one API message: a string prompt then the result."""
    b.user("go")
    b.assistant(tu("toolu_T2"))
    b.user("typed while the tool ran")
    r = b.result("toolu_T2")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    # The tool_use is answered (in the same merged message), but not first: one finding.
    assert summary(findings(p)) == [("tool-result-not-first", "error", b.line_of(r), "toolu_T2")]


def test_text_after_results_is_fine(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(tu("toolu_T3"))
    b.user([tr("toolu_T3"), text("and a note")])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert serious(findings(p)) == []


# --- malformed-line -----------------------------------------------------------------------


def test_malformed_line_mid_file_is_a_warning_and_checking_goes_on(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.raw('{"type":"user", "message": {oops')
    a = b.assistant(tu("toolu_M1"))
    b.user("hello?")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    m = _only(fs, "malformed-line")
    assert (m.severity, m.start.line) == (Severity.WARNING, 2)
    assert 1 <= m.start.column <= len('{"type":"user", "message": {oops') + 1
    o = _only(fs, "orphan-tool-use")  # the check went on past the bad line
    assert (o.start.line, o.severity) == (b.line_of(a), Severity.ERROR)


@pytest.mark.parametrize("bad", ["[1, 2, 3]", '"just a string"', "\x00\x01 binary", "null"])
def test_lines_that_are_not_entry_objects_are_malformed(b: Builder, tmp_path: Path, bad: str) -> None:
    b.user("go")
    b.raw(bad)
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(fs) == [("malformed-line", "warning", 2, None)]


def test_invalid_utf8_is_read_with_replacement_like_claude_code(b: Builder, tmp_path: Path) -> None:
    """Claude Code reads transcripts as UTF-8 with replacement: a stray byte in a tool's output
    (here inside a tool_result line) neither crashes the check nor drops the line."""
    b.user("go")
    a = b.assistant(tu("toolu_UTF"))
    b.result("toolu_UTF", "OUTPUT", of=a)
    b.assistant(text("ok"))
    b.user("PROMPT")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    p.write_bytes(p.read_bytes().replace(b"OUTPUT", b"out\xff\xfeput").replace(b"PROMPT", b"pr\xc3omp"))
    assert findings(p) == []


def test_deeply_nested_line_is_malformed_not_a_crash(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.raw('{"type":"user","message":' + "[" * 100_000 + "]" * 100_000 + "}")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(findings(p)) == [("malformed-line", "warning", 2, None)]


def test_torn_last_line_without_newline_is_not_a_finding(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(text("ok"))
    b.raw('{"parentUuid":"x","type":"user","message":{"role":"user","content":"hal')
    p = b.write(tmp_path / "s.jsonl", trailing_newline=False)
    t = read_transcript(str(p))
    assert t.torn_tail is True
    assert findings(p) == []


def test_torn_last_line_with_newline_is_malformed(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(text("ok"))
    b.raw('{"type":"user","message":{"role":"user","content":"hal')
    p = b.write(tmp_path / "s.jsonl", trailing_newline=True)
    assert summary(findings(p)) == [("malformed-line", "warning", 3, None)]


def test_blank_lines_crlf_unknown_fields_and_types_are_tolerated(b: Builder, tmp_path: Path) -> None:
    b.user("go", someNewField={"nested": [1, 2]})
    turn = b.tool_turn(["toolu_X1"])
    b.raw(dumps({"type": "brand-new-entry-type", "uuid": "zz", "payload": 1}))
    b.raw("")
    b.assistant(text("ok"), {"type": "future_block", "whatever": True})
    b.bookkeeping()
    p = b.write(tmp_path / "s.jsonl")
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    assert findings(p) == []
    # Schema drift on a typed field (a number where a string was) is read by the slow path.
    data = p.read_text().splitlines()
    k = b.line_of(turn["toolu_X1"]) - 1
    drift = json.loads(data[k])
    drift["version"] = 2.139
    drift["isSidechain"] = "no"
    data[k] = dumps(drift)
    p.write_text("\n".join(data) + "\n")
    assert findings(p) == []


# --- server tools ---------------------------------------------------------------------------


def test_server_tool_use_with_its_result_in_the_same_message_is_fine(b: Builder, tmp_path: Path) -> None:
    b.user("search the web")
    mid = "msg_srv"
    b.assistant({"type": "server_tool_use", "id": "srvtoolu_01S", "name": "web_search", "input": {"query": "x"}},
                msg_id=mid)
    b.assistant({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01S", "content": []}, msg_id=mid)
    b.assistant(text("found it"), msg_id=mid)
    b.user("thanks")
    b.assistant(text("np"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


def test_server_tool_result_without_server_tool_use_is_an_orphan(b: Builder, tmp_path: Path) -> None:
    b.user("search the web")
    a = b.assistant({"type": "advisor_tool_result", "tool_use_id": "srvtoolu_01Z", "content": []}, text("hm"))
    b.user("thanks")
    b.assistant(text("np"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(serious(fs)) == [("orphan-tool-result", "error", b.line_of(a), "srvtoolu_01Z")]
    line = p.read_text().splitlines()[b.line_of(a) - 1]
    assert fs[0].start.column == line.index('{"type":"advisor_tool_result"') + 1


def test_server_tool_use_mixed_with_client_tool_use(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    mid = "msg_mix"
    b.assistant({"type": "server_tool_use", "id": "srvtoolu_02", "name": "web_search", "input": {}}, msg_id=mid)
    b.assistant({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_02", "content": []}, msg_id=mid)
    a = b.assistant(tu("toolu_CL"), msg_id=mid)
    b.result("toolu_CL", of=a)
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- synthetic API error entries ----------------------------------------------------------


def _api_error(b: Builder, body: str, **kw):
    e = b.assistant(text(body), msg_id="5d0e2c3a-0000-4000-8000-000000000000", isApiErrorMessage=True, **kw)
    e["message"]["model"] = "<synthetic>"
    return e


def test_synthetic_api_error_entries_are_not_sent(b: Builder, tmp_path: Path) -> None:
    """An isApiErrorMessage entry between a tool_use and its result does not break the pairing."""
    b.user("go")
    a = b.assistant(tu("toolu_S1"))
    _api_error(b, "API Error: 529 overloaded")
    b.result("toolu_S1", of=a, parent=b.lines[-1]["uuid"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []
    main = next(c for c in rebuild(read_transcript(str(p)).entries) if c.kind == "main")
    assert [m.role for m in main.messages] == ["user", "assistant", "user", "assistant"]


def test_recorded_400_is_reported(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.tool_turn(["toolu_R1"])
    b.assistant(text("ok"))
    b.user("next")
    e = _api_error(b, "API Error: 400 {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
                      "\"messages.3: `tool_use` ids were found without `tool_result` blocks immediately after: "
                      "toolu_01XYZ. Each `tool_use` block must have a corresponding `tool_result` block in the next "
                      "message.\"}}")
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "tool-use-concurrency-400")
    # Every call pairs: one verdict everywhere, a warning that says so and what to do.
    assert (f.start.line, f.severity, f.tool_use_id) == (b.line_of(e), Severity.WARNING, "toolu_01XYZ")
    assert f.message == (
        "Claude Code recorded the tool-use 400 here (toolu_01XYZ) at messages.3, but every tool call of this "
        "conversation pairs now: the request it refused may have held something the transcript does not (a block "
        "compaction or a hook changed, an MCP tool gone on resume). Rewind to the prompt before it: `rewind` cuts "
        "there, `rewind --mode patch` keeps everything and leaves the recorded error out"
    )
    line = p.read_text().splitlines()[f.start.line - 1]
    assert line[f.start.column - 1 :].startswith("API Error: 400") or "tool_use" in line[f.start.column - 1 :]


def test_recorded_400_with_a_pairing_fault_is_an_error(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(tu("toolu_B1"))
    b.user("where is my result?")
    e = _api_error(b, "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.")
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    f = _only(fs, "tool-use-concurrency-400")
    assert (f.start.line, f.severity) == (b.line_of(e), Severity.ERROR)
    assert f.message == ("Claude Code recorded the tool-use 400 here: the conversation's tool calls no longer pair "
                         "up (the error on this conversation says where)")
    assert _only(fs, "orphan-tool-use").severity == Severity.ERROR


def test_recorded_400_the_session_went_on_after_is_information(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    _api_error(b, "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.")
    b.user("retry")
    b.assistant(text("fine now"))
    p = b.write(tmp_path / "s.jsonl")
    f = _only(findings(p), "tool-use-concurrency-400")
    assert f.severity == Severity.INFORMATION
    assert f.message == "Claude Code recorded the tool-use 400 here (the session went on after it)"


# --- interrupted tools ---------------------------------------------------------------------


def test_interrupted_tool_pairs_fine(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.tool_turn(["toolu_I1", "toolu_I2"], interrupted=["toolu_I2"])
    b.user([text(INTERRUPTED)])
    b.user("do something else")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- layouts of parallel calls --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["linear", "dag", "streaming"])
def test_parallel_layouts_are_healthy(b: Builder, tmp_path: Path, layout: str) -> None:
    b.user("go")
    ids = [f"toolu_{layout}_{i}" for i in range(5)]
    b.tool_turn(ids, layout)
    b.assistant(text("summary"))
    b.user("more")
    b.tool_turn([i + "x" for i in ids[:3]], layout)
    b.assistant(text("done"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []
    main = next(c for c in rebuild(read_transcript(str(p)).entries) if c.kind == "main")
    assert [m.role for m in main.messages] == ["user", "assistant", "user", "assistant", "user", "assistant",
                                                "user", "assistant"]


@pytest.mark.parametrize("layout", ["linear", "dag", "streaming"])
@pytest.mark.parametrize("missing", [0, 2, 4])
def test_parallel_layouts_missing_one_result(b: Builder, tmp_path: Path, layout: str, missing: int) -> None:
    b.user("go")
    ids = [f"toolu_{layout}_{i}" for i in range(5)]
    turn = b.tool_turn(ids, layout, skip_results=[ids[missing]])
    b.assistant(text("summary"))
    b.user("more")
    b.assistant(text("done"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [
        ("orphan-tool-use", "error", b.line_of(turn[ids[missing]]), ids[missing])
    ]


def test_results_out_of_order_in_the_file(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    mid = "msg_ooo"
    a1 = b.assistant(tu("toolu_O1"), msg_id=mid)
    a2 = b.assistant(tu("toolu_O2"), msg_id=mid)
    a3 = b.assistant(tu("toolu_O3"), msg_id=mid)
    b.result("toolu_O3", of=a3)
    b.result("toolu_O1", of=a1)
    r2 = b.result("toolu_O2", of=a2)
    b.assistant(text("ok"), parent=r2["uuid"])
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


def test_progress_entries_inside_the_chain(b: Builder, tmp_path: Path) -> None:
    b.progress(parent=None)
    b.user("go")
    mid = "msg_prog"
    a1 = b.assistant(tu("toolu_G1"), msg_id=mid)
    b.progress()
    a2 = b.assistant(tu("toolu_G2"), msg_id=mid)  # parentUuid: the progress line
    b.progress(parent=a1["uuid"])  # an agent_progress dead end off a tool_use
    b.result("toolu_G1", of=a1)
    r = b.result("toolu_G2", of=a2)
    b.progress(parent=r["uuid"])
    b.assistant(text("ok"))
    b.progress()
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- compaction -----------------------------------------------------------------------------


def test_breaks_before_a_compaction_are_history_information(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    turn = b.tool_turn(["toolu_H1", "toolu_H2"], skip_results=["toolu_H1"])
    b.assistant(text("summary"))
    b.user("more")
    b.assistant(text("ok"))
    boundary = b.compact()
    b.assistant(text("continuing after compaction"))
    b.user("and more")
    b.tool_turn(["toolu_H3"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert errors(fs) == [] and serious(fs) == []
    f = _only(fs, "orphan-tool-use")
    assert (f.severity, f.start.line, f.tool_use_id) == (Severity.INFORMATION, b.line_of(turn["toolu_H1"]), "toolu_H1")
    main = next(c for c in rebuild(read_transcript(str(p)).entries) if c.kind == "main")
    assert main.order[0].line == b.line_of(boundary)


def test_pending_tool_use_just_before_compaction_is_silent(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.assistant(tu("toolu_B1"))
    b.compact()
    b.assistant(text("after"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- rewound branches --------------------------------------------------------------------


def test_rewound_branch_with_a_broken_pairing_is_information_only(b: Builder, tmp_path: Path) -> None:
    b.user("start")
    fork = b.assistant(text("hi"))["uuid"]
    b.user("do it")
    dead = b.tool_turn(["toolu_DEAD1", "toolu_DEAD2"], skip_results=["toolu_DEAD2"])
    b.assistant(text("summary on the dead branch"))
    b.user("more on the dead branch")
    b.assistant(text("ok"))
    # /rewind: the conversation continues from `fork`.
    b.user("do it differently", parent=fork)
    b.tool_turn(["toolu_LIVE1"])
    b.assistant(text("done"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert errors(fs) == [] and serious(fs) == []
    f = _only(fs, "orphan-tool-use")
    assert (f.severity, f.start.line) == (Severity.INFORMATION, b.line_of(dead["toolu_DEAD2"]))


def test_pending_tool_use_on_a_rewound_branch_is_silent(b: Builder, tmp_path: Path) -> None:
    b.user("start")
    fork = b.assistant(text("hi"))["uuid"]
    b.user("do it")
    b.assistant(tu("toolu_ESC"))  # the user pressed Esc and rewound before any result
    b.user("never mind", parent=fork)
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- sidechains -----------------------------------------------------------------------------


def test_inline_sidechain_is_its_own_conversation(b: Builder, tmp_path: Path) -> None:
    b.user("delegate")
    task = b.assistant(tu("toolu_TASK", "Task", prompt="look around"))
    # The subagent's own conversation: rooted at null, inline in the same file.
    b.user("look around", parent=None, sidechain=True)
    b.tool_turn(["toolu_SUB1", "toolu_SUB2"], "linear", sidechain=True)
    b.assistant(text("found things"), sidechain=True)
    b.result("toolu_TASK", "found things", of=task)
    b.assistant(text("the agent found things"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []
    kinds = sorted(c.kind for c in rebuild(read_transcript(str(p)).entries))
    assert kinds == ["main", "sidechain"]


def test_broken_inline_sidechain_is_an_error_labelled_with_it(b: Builder, tmp_path: Path) -> None:
    b.user("delegate")
    task = b.assistant(tu("toolu_TASK2", "Task", prompt="look"))
    b.user("look", parent=None, sidechain=True)
    side = b.tool_turn(["toolu_SB1", "toolu_SB2"], "linear", sidechain=True, skip_results=["toolu_SB1"])
    b.assistant(text("found"), sidechain=True)
    b.result("toolu_TASK2", "found", of=task)
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    fs = findings(p)
    assert summary(serious(fs)) == [("orphan-tool-use", "error", b.line_of(side["toolu_SB1"]), "toolu_SB1")]
    assert "sidechain" in fs[0].message or "subagent" in fs[0].message


def test_sidechain_result_does_not_answer_a_main_tool_use(b: Builder, tmp_path: Path) -> None:
    """Same ids in two conversations do not pair across them."""
    b.user("go")
    a = b.assistant(tu("toolu_CROSS"))
    b.user("sub", parent=None, sidechain=True)
    b.assistant(tu("toolu_CROSS"), sidechain=True)
    b.result("toolu_CROSS", sidechain=True)
    b.assistant(text("done"), sidechain=True)
    b.user("main goes on", parent=a["uuid"])
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [("orphan-tool-use", "error", b.line_of(a), "toolu_CROSS")]


def test_subagent_files_check_on_their_own(tmp_path: Path) -> None:
    session = tmp_path / "projects" / "-tmp-project" / "11111111-1111-4111-8111-111111111111.jsonl"
    main = Builder()
    main.user("delegate")
    task = main.assistant(tu("toolu_TK", "Task", prompt="p"))
    main.result("toolu_TK", "agent done", of=task)
    main.assistant(text("ok"))
    main.write(session)
    agent = Builder()
    agent.user("p", parent=None, sidechain=True, agent_id="a1b2c3d")
    turn = agent.tool_turn(["toolu_W1", "toolu_W2", "toolu_W3", "toolu_W4"], "streaming", sidechain=True,
                           agent_id="a1b2c3d")
    agent.assistant(text("agent done"), sidechain=True, agent_id="a1b2c3d")
    sub = agent.write(session.with_suffix("") / "subagents" / "agent-a1b2c3d.jsonl")
    assert findings(session) == [] and findings(sub) == []
    # Break the subagent: its own check reports the error, the session's does not.
    lines = sub.read_text().splitlines()
    del lines[agent.line_of(turn["r:toolu_W3"]) - 1]
    sub.write_text("\n".join(lines) + "\n")
    fs = findings(sub)
    assert summary(serious(fs)) == [("orphan-tool-use", "error", agent.line_of(turn["toolu_W3"]), "toolu_W3")]
    assert findings(session) == []


def test_two_subagents_in_one_file_with_the_same_message_ids(b: Builder, tmp_path: Path) -> None:
    """Sibling grouping is per sidechain agent: one agent's lines never complete another's message."""
    b.user("go")
    task = b.assistant(tu("toolu_TA", "Task"), tu("toolu_TB", "Task"))
    for agent in ("agentA", "agentB"):
        b.user("p", parent=None, sidechain=True, agent_id=agent)
        b.assistant(tu(f"toolu_{agent}"), msg_id="msg_shared", sidechain=True, agent_id=agent)
        b.result(f"toolu_{agent}", sidechain=True, agent_id=agent)
        b.assistant(text("done"), sidechain=True, agent_id=agent)
    b.result("toolu_TA", of=task)
    b.result("toolu_TB", of=task)
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert findings(p) == []


# --- conversation rebuild details ---------------------------------------------------------


def test_missing_parent_line_bridges_to_the_chain(b: Builder, tmp_path: Path) -> None:
    """A line whose parent is not in the file: the rest of the conversation is still checked."""
    b.user("go")
    a = b.assistant(tu("toolu_BR"))
    b.user("hello?", parent="uuid-of-a-lost-line")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(serious(findings(p))) == [("orphan-tool-use", "error", b.line_of(a), "toolu_BR")]


def test_parent_cycle_does_not_hang(b: Builder, tmp_path: Path) -> None:
    u1 = b.user("go", uuid="c1", parent="c2")
    b.assistant(text("hi"), uuid="c2", parent="c1")
    p = b.write(tmp_path / "s.jsonl")
    assert u1 and errors(findings(p)) == []


def test_empty_and_bookkeeping_only_files(b: Builder, tmp_path: Path) -> None:
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    assert findings(p) == []
    b.bookkeeping()
    assert findings(b.write(tmp_path / "book.jsonl")) == []


def test_check_bytes_matches_check_file(b: Builder, tmp_path: Path) -> None:
    b.user("go")
    b.tool_turn(["toolu_BY1", "toolu_BY2"], skip_results=["toolu_BY1"])
    b.assistant(text("x"))
    p = b.write(tmp_path / "s.jsonl")
    assert summary(check_transcript_bytes(p.read_bytes()).findings) == summary(check_transcript_file(str(p)).findings)


def test_rebuilt_history_is_bounded_per_segment(b: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rewound branch is rebuilt as its whole chain from the root: a long session without
    compaction and with many rewinds held branches x depth lines (1 GB: 77 s). The lines held per
    segment are bounded (conversation.MAX_HISTORY_LINES): the newest branches are examined first,
    and beyond the bound the older ones are not (their findings are information only)."""
    import rewind_lsp.conversation as conversation

    chain = []
    for k in range(300):
        chain.append(b.user(f"prompt {k}"))
        chain.append(b.assistant({"type": "text", "text": f"answer {k}"}))
    tip = chain[-1]["uuid"]
    for depth in (500, 400, 300, 200, 100):  # rewound branches, the shallowest written last
        b.assistant(tu(f"toolu_b{depth}"), parent=chain[depth - 1]["uuid"])
        b.user("never mind")
    b.user("go on", parent=tip)  # the live conversation goes on last
    path = b.write(tmp_path / f"{SID}.jsonl")

    def branches() -> list[str]:
        found = check_transcript_file(str(path)).findings
        assert all(f.severity == Severity.INFORMATION for f in found)
        return sorted(f.tool_use_id or "" for f in found if f.rule == "orphan-tool-use")

    assert branches() == ["toolu_b100", "toolu_b200", "toolu_b300", "toolu_b400", "toolu_b500"]
    monkeypatch.setattr(conversation, "MAX_HISTORY_LINES", 700)  # 102 + 202 + 302 lines fit, 402 more do not
    assert branches() == ["toolu_b100", "toolu_b200", "toolu_b300"]


def test_two_lines_of_one_reply_hanging_off_the_same_prompt_are_one_message(b: Builder, tmp_path: Path) -> None:
    """The walk up from the leaf passes the second line only; the first, its sibling (same
    message.id, same parent), is re-attached: both uses are answered by the next message."""
    b.user("go")
    prompt = b.last[(False, None)]
    first = b.assistant(tu("toolu_SIB1"), msg_id="msg_SIB", parent=prompt)
    second = b.assistant(tu("toolu_SIB2"), msg_id="msg_SIB", parent=prompt)
    b.user([tr("toolu_SIB1"), tr("toolu_SIB2")], parent=second["uuid"])
    b.assistant(text("done"))
    p = b.write(tmp_path / "s.jsonl")
    assert serious(findings(p)) == []
    (main,) = [c for c in rebuild(read_transcript(str(p)).entries) if c.kind == "main"]
    assert [(m.role, [e.uuid for e in m.entries]) for m in main.messages][:2] == [
        ("user", [prompt]), ("assistant", [first["uuid"], second["uuid"]])]


def test_a_prompt_written_between_two_lines_of_a_reply_counts_as_the_api_counts(b: Builder, tmp_path: Path) -> None:
    """The reply reaches the API cut in two around the prompt: its second line is messages.3."""
    b.user("go")                                                    # messages.0
    b.assistant(text("part one"), msg_id="msg_SPLIT")               # messages.1
    b.user("also this")                                             # messages.2, written mid-reply
    use = b.assistant(tu("toolu_SPLIT"), msg_id="msg_SPLIT")        # messages.3: never answered
    b.user("next")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "s.jsonl")
    f = _only(findings(p), "orphan-tool-use")
    assert (f.start.line, f.tool_use_id, f.facts["messages_index"]) == (b.line_of(use), "toolu_SPLIT", "3")
