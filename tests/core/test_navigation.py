"""The transcript as a document (navigation.py): turns, calls and their results, messages.N."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_support import CORPUS, SID, Builder, corpus_files, text, tu
from hypothesis import HealthCheck, given, settings
from repair_strategies import Session, sessions

from rewind_lsp.check import check_transcript_file
from rewind_lsp.navigation import Spot, TranscriptMap, build
from rewind_lsp.transcript import TOOL_RESULT


def _map(path: Path) -> TranscriptMap:
    check = check_transcript_file(str(path))
    data = path.read_bytes()
    boundaries = [e for e in check.transcript.entries if e.is_compact_boundary and not e.sidechain]
    return build(check.conversations, lambda o, n: data[o:o + n], boundaries)


def test_turns_calls_and_the_api_index_of_a_small_session(tmp_path: Path) -> None:
    b = Builder()
    b.user("fix the failing test in app.py please")
    b.tool_turn(["toolu_01A", "toolu_01B"], "dag")
    b.assistant(text("Fixed."))
    b.user([text("now run "), text("the suite")])
    use = tu("toolu_01C", command="npm test")
    b.assistant(use)
    b.result("toolu_01C", "passed")
    b.assistant(text("All green."))
    m = _map(b.write(tmp_path / f"{SID}.jsonl"))
    assert [(t.prompt.line, t.text, t.message) for t in m.turns] == [
        (1, "fix the failing test in app.py please", 0), (8, "now run the suite", 4)]
    first, second = m.turns
    assert [(c.tool_id, c.summary, c.use.line, [r.line for r in c.results], c.message) for c in first.calls] == [
        ("toolu_01A", "Bash ls", 3, [5], 1), ("toolu_01B", "Bash ls", 4, [6], 1)]
    assert ([(r.line, r.text) for r in first.replies], first.last_line) == ([(2, "Let me look."), (7, "Fixed.")], 7)
    assert [(c.summary, c.paired) for c in second.calls] == [("Bash npm test", True)]
    assert m.total_messages == 8
    # messages.1 is the reply of three lines; its content.2 is the second tool_use.
    assert m.message_lines[1] == [2, 3, 4]
    assert m.line_of(1, 2) == Spot(4, 0)
    assert m.line_of(4, 1) == Spot(8, 1)
    assert m.line_of(8) is None and m.line_of(1, 3) is None
    assert m.message_of[5] == m.message_of[6] == 2
    # Either half of a call leads to the call.
    call = m.call_at(Spot(6, 0))
    assert call is not None and call.use == Spot(4, 0)
    assert m.call_at(Spot(4)) is call


def _tool_use_ids(line: dict[str, Any]) -> list[str]:
    content = (line.get("message") or {}).get("content")
    return [b["id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_use"] \
        if isinstance(content, list) else []


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_result_of_a_real_session_leads_to_its_tool_use(path: Path) -> None:
    """Real sessions (both layouts of parallel calls, subagents, compaction): one turn per prompt
    of the live conversation, and every tool_result's call is on the line that holds that id."""
    m = _map(path)
    check = check_transcript_file(str(path))
    main = check.main or next(c for c in check.conversations if c.kind == "sidechain")
    prompts = {e.line for e in main.order if e.type == "user" and e.is_message and not e.has_tool_result}
    merged_prompt_lines = {ln for t in m.turns for ln in m.message_lines[t.message] if ln in prompts}
    assert {t.prompt.line for t in m.turns} <= prompts and merged_prompt_lines == prompts & set(m.message_of)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert m.turns, "every real session starts with a prompt"
    for e in main.order:
        for b in e.blocks:
            if b.kind == TOOL_RESULT and b.tool_id:
                call = m.call_at(Spot(e.line, b.index))
                assert call is not None, (e.line, b.tool_id)
                assert b.tool_id in _tool_use_ids(json.loads(lines[call.use.line - 1]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(s=sessions(breaking=True))
def test_the_index_of_every_line_is_the_one_the_checker_names(s: Session, tmp_path_factory: Any) -> None:
    """Every finding on the live conversation that names a `messages.N` is on a line the map gives the
    same N: one count for hints, hovers, `locate` and the checker."""
    path = s.write(tmp_path_factory.mktemp("nav"))
    check = check_transcript_file(str(path))
    m = _map(path)
    for f in check.findings:
        n = f.facts.get("messages_index")
        if n is None or f.facts.get("recorded_400") or f.start.line not in m.message_of:
            continue
        if f.facts.get("conversation", "main conversation") != "main conversation":
            continue
        assert m.message_of[f.start.line] == int(n), (f.rule, f.start.line, n)


def test_a_call_shared_by_the_live_conversation_and_another_is_listed_once(tmp_path: Path) -> None:
    """A rewound branch carries the lines before its fork too. When its leaf is the newest (the one
    `claude --resume` continues) the chain through the file's last line is the other conversation:
    the calls both hold are the live conversation's, once each, and their hints say so once."""
    from rewind_lsp.lsp.hints import hint_label

    b = Builder()
    b.user("look around", timestamp="2026-05-01T10:00:00.000Z")
    b.assistant(tu("toolu_01S", command="ls"), timestamp="2026-05-01T10:00:01.000Z")
    b.result("toolu_01S", "a.py", timestamp="2026-05-01T10:00:02.000Z")
    fork = b.lines[-1]
    b.assistant(text("Seen it."), timestamp="2026-05-01T10:00:03.000Z")
    b.user("now the other way", timestamp="2026-05-01T10:00:04.000Z")
    b.assistant(text("Done that way."), parent=fork["uuid"], timestamp="2026-05-01T10:09:00.000Z")  # newest leaf
    m = _map(b.write(tmp_path / f"{SID}.jsonl"))
    assert [(c.tool_id, c.use.line, [r.line for r in c.results], c.message) for c in m.calls] == [
        ("toolu_01S", 2, [3], 1)]
    assert hint_label(m, 2) == "messages.1 → result line 3"
    assert hint_label(m, 6) == "messages.3" and hint_label(m, 4) is None  # line 4 is off the live one now
