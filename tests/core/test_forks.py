"""A `/fork` pointer is followed into the parent session (2.1.118+ `fork-context-ref`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core_support import SID, Builder, findings, summary, text, tu

from rewind_lsp.findings import Severity
from rewind_lsp.forks import follow, parent_file, pointer
from rewind_lsp.rewind import rewind

PARENT = "22222222-2222-4222-8222-222222222222"


def _parent(folder: Path, *, last_use: str = "toolu_01INPARENT") -> str:
    """A parent session of four API messages whose last one calls `last_use`; its last line's uuid."""
    b = Builder(session_id=PARENT)
    b.user("start")
    b.assistant(text("sure"))
    b.user("run the tests")
    last = b.assistant(tu(last_use))
    folder.mkdir(parents=True, exist_ok=True)
    b.write(folder / f"{PARENT}.jsonl")
    return str(last["uuid"])


def _fork(folder: Path, up_to: str, *, answers: str = "toolu_01INPARENT", broken_later: bool = False) -> Path:
    b = Builder()
    b.raw(json.dumps({"type": "fork-context-ref", "forkedSessionId": PARENT, "upToMessageId": up_to}))
    b.result(answers, parent=up_to)
    b.assistant(text("continuing in the fork"))
    b.user("and now?")
    if broken_later:
        b.assistant(tu("toolu_01LATER"))
        b.user("no result came")
    b.assistant(text("done"))
    folder.mkdir(parents=True, exist_ok=True)
    return b.write(folder / f"{SID}.jsonl")


def test_a_first_result_that_answers_the_parents_last_call_is_no_finding(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-tmp-project"
    fork = _fork(project, _parent(project))
    assert follow(str(fork), findings(fork)) == []


def test_messages_n_counts_the_parents_messages(tmp_path: Path) -> None:
    """The API is sent the parent's four messages, then the fork's: the orphan tool_use in the fork's
    fourth message is the API's messages.7."""
    project = tmp_path / "projects" / "-tmp-project"
    fork = _fork(project, _parent(project), broken_later=True)
    alone = findings(fork)
    assert summary(alone) == [("orphan-tool-result", "information", 2, "toolu_01INPARENT"),
                              ("orphan-tool-use", "error", 5, "toolu_01LATER")]
    assert alone[1].facts["messages_index"] == "3"
    (f,) = follow(str(fork), alone)
    assert (f.rule, f.start.line, f.facts["messages_index"]) == ("orphan-tool-use", 5, "7")


def test_a_first_result_the_parent_never_asked_for_is_an_error(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-tmp-project"
    fork = _fork(project, _parent(project), answers="toolu_01NOWHERE")
    use, f = follow(str(fork), findings(fork))
    assert (use.rule, use.severity, use.start.line, use.start.column, use.facts["messages_index"]) == (
        "orphan-tool-use", Severity.ERROR, 2, 1, "3")
    assert use.message == (f"tool_use toolu_01INPARENT ends the conversation this session was forked from "
                           f"({PARENT}.jsonl, line 4) and has no tool_result in this session's first message")
    assert (f.rule, f.severity, f.start.line, f.facts["messages_index"]) == (
        "orphan-tool-result", Severity.ERROR, 2, "4")
    assert f.message == (f"tool_result for toolu_01NOWHERE answers no tool_use: the conversation this session was "
                         f"forked from ({PARENT}.jsonl, up to line 4) does not end with a tool_use with this id")
    assert f.facts["fork"] == "unanswered"


def test_the_parent_is_found_in_another_project_folder(tmp_path: Path) -> None:
    """Since 2.1.221 a fork gets a worktree of its own, so the parent sits in another project folder."""
    projects = tmp_path / "projects"
    up_to = _parent(projects / "-tmp-project")
    fork = _fork(projects / "-tmp-project-fork", up_to)
    assert parent_file(str(fork), PARENT) == projects / "-tmp-project" / f"{PARENT}.jsonl"
    assert follow(str(fork), findings(fork)) == []


def test_without_the_parent_the_note_says_so(tmp_path: Path) -> None:
    fork = _fork(tmp_path / "projects" / "-tmp-project", "a-in-parent")
    (f,) = follow(str(fork), findings(fork))
    assert (f.rule, f.severity) == ("orphan-tool-result", Severity.INFORMATION)
    assert f.message == ("tool_result for toolu_01INPARENT answers no tool_use: its parentUuid a-in-parent is in the "
                         "conversation this session was forked from (a fork-context-ref line: Claude Code reads that "
                         f"part from the parent session); the parent session {PARENT} is not on this machine")


def test_a_parent_without_the_pointed_line_says_so(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-tmp-project"
    _parent(project)
    fork = _fork(project, "a-gone")
    (f,) = follow(str(fork), findings(fork))
    assert f.severity == Severity.INFORMATION
    assert f.message.endswith(f"; the parent session's file {project / (PARENT + '.jsonl')} has no line a-gone")


def test_the_pointer_names_no_path_and_follows_no_symlink(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-tmp-project"
    project.mkdir(parents=True)
    assert parent_file(str(project / f"{SID}.jsonl"), "../../etc/passwd") is None
    elsewhere = tmp_path / "elsewhere"
    up_to = _parent(elsewhere)
    os.symlink(elsewhere / f"{PARENT}.jsonl", project / f"{PARENT}.jsonl")
    fork = _fork(project, up_to)
    assert parent_file(str(fork), PARENT) is None
    (f,) = follow(str(fork), findings(fork))
    assert f.severity == Severity.INFORMATION and f.message.endswith("is not on this machine")


def test_the_pointer_line_is_read_from_a_file_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"type":"user"}\n{"type":"fork-context-ref","forkedSessionId":"' + PARENT.encode()
                     + b'","upToMessageId":"u-1"}')
    ref = pointer(str(path))
    assert ref is not None and (ref.session_id, ref.up_to, ref.line) == (PARENT, "u-1", 2)


def test_a_fork_from_a_prompt_merges_with_the_parents_last_user_message(tmp_path: Path) -> None:
    """Forked right after a prompt: the fork's first user message and the parent's last one are one API
    message, so the parent adds one message less to the count."""
    project = tmp_path / "projects" / "-tmp-project"
    p = Builder(session_id=PARENT)
    p.user("start")
    p.assistant(text("sure"))
    up_to = str(p.user("run the tests")["uuid"])
    project.mkdir(parents=True)
    p.write(project / f"{PARENT}.jsonl")
    b = Builder()
    b.raw(json.dumps({"type": "fork-context-ref", "forkedSessionId": PARENT, "upToMessageId": up_to}))
    b.user("in the fork, please", parent=up_to)
    b.assistant(tu("toolu_01LATER"))
    b.user("no result came")
    b.assistant(text("done"))
    fork = b.write(project / f"{SID}.jsonl")
    (alone,) = findings(fork)
    assert (alone.rule, alone.facts["messages_index"]) == ("orphan-tool-use", "1")
    (f,) = follow(str(fork), [alone])
    assert f.facts["messages_index"] == "3"  # start, sure, (run the tests + in the fork), the call


def _repaired(fork: Path, tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    out = tmp_path / "out"
    out.mkdir()
    result = rewind(fork, mode="patch", out=out)
    copy = result.path
    # The copy sits elsewhere: its parent is looked up where the original lives, as Claude Code
    # finds a session's parent by id among the project folders.
    return copy, [json.loads(line) for line in copy.read_text().splitlines()]


def test_patch_keeps_the_result_that_answers_the_parent(tmp_path: Path) -> None:
    """Turning the fork's first result into text would leave the parent's last call unanswered in the
    hydrated conversation, which the API refuses: patch leaves it a tool_result."""
    project = tmp_path / "projects" / "-tmp-project"
    fork = _fork(project, _parent(project), broken_later=True)
    copy, lines = _repaired(fork, tmp_path)
    first = lines[1]["message"]["content"][0]  # type: ignore[index]
    assert (first["type"], first["tool_use_id"]) == ("tool_result", "toolu_01INPARENT")
    remaining = follow(str(copy), findings(copy), where=str(fork))
    assert [f for f in remaining if f.severity <= Severity.WARNING] == []


def test_a_fork_whose_first_result_answers_nothing_in_the_parent_is_repaired(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-tmp-project"
    fork = _fork(project, _parent(project), answers="toolu_01NOWHERE")
    assert [f.severity for f in follow(str(fork), findings(fork))] == [Severity.ERROR, Severity.ERROR]
    copy, lines = _repaired(fork, tmp_path)
    results = [c for line in lines for c in (line.get("message") or {}).get("content", [])  # type: ignore[union-attr, attr-defined]
               if isinstance(c, dict) and c.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["toolu_01INPARENT"]  # the parent's call, answered
    assert follow(str(copy), findings(copy), where=str(fork)) == []


def test_check_follows_the_pointer_and_the_hook_too(tmp_path: Path) -> None:
    """`check` (and the cached check the hook and the main job use) judge a fork with its parent."""
    from core_support import run_cli

    from rewind_lsp.index import check_cached

    project = tmp_path / "projects" / "-tmp-project"
    up_to = _parent(project)
    healthy = _fork(project, up_to)
    r = run_cli("check", "--format", "json", str(healthy))
    assert (r.returncode, json.loads(r.stdout)) == (0, [])
    broken = _fork(project / "other", up_to, answers="toolu_01NOWHERE")
    (project / "other" / f"{PARENT}.jsonl").write_bytes((project / f"{PARENT}.jsonl").read_bytes())
    r = run_cli("check", "--format", "json", str(broken))
    assert r.returncode == 1
    assert [(f["rule"], f["line"]) for f in json.loads(r.stdout)] == [("orphan-tool-use", 2), ("orphan-tool-result", 2)]
    for _ in range(2):  # computed, then read back from the saved state: the same answer
        found, _state = check_cached(str(broken), tmp_path / "cache")
        assert [(f.rule, f.severity) for f in found] == [("orphan-tool-use", Severity.ERROR),
                                                         ("orphan-tool-result", Severity.ERROR)]
