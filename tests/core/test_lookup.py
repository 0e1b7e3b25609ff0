"""`rewind-lsp locate FILE messages.N[.content.M]`: the line the API means, as the checker counts."""

from __future__ import annotations

import json
from pathlib import Path

from core_support import SID, Builder, findings, run_cli, text, tu


def _broken(tmp_path: Path) -> tuple[Path, list[str]]:
    b = Builder()
    b.user("fix the test")
    b.tool_turn(["toolu_01A", "toolu_01B"], "dag")
    b.assistant(text("Fixed."))
    b.user("run it")
    b.assistant(tu("toolu_01LOST", command="npm test"))
    b.user("hello?")
    b.assistant(text("Sorry."))
    path = b.write(tmp_path / "a folder" / f"{SID}.jsonl")
    return path, path.read_text().splitlines()


def test_locate_names_the_line_and_the_block(tmp_path: Path) -> None:
    path, lines = _broken(tmp_path)
    r = run_cli("locate", str(path), "messages.1.content.2")
    col = lines[3].index('{"type":"tool_use"') + 1
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{path}:4:{col}: messages.1.content.2 is line 4 (tool_use toolu_01B)\n"
    r = run_cli("locate", str(path), "messages.0")
    assert r.stdout == f"{path}:1:1: messages.0 is line 1\n"
    r = run_cli("locate", "--format", "json", str(path), "messages.5.content.0")
    assert json.loads(r.stdout) == {"path": str(path), "line": 9, "column": lines[8].index('{"type":"tool_use"') + 1,
                                    "message": 5, "content": 0, "kind": "tool_use", "tool_use_id": "toolu_01LOST"}


def test_locate_agrees_with_the_checker(tmp_path: Path) -> None:
    """The finding names messages.N; locate sends that N back to the finding's own line."""
    path, _ = _broken(tmp_path)
    (f,) = [f for f in findings(path) if f.rule == "orphan-tool-use"]
    n = f.facts["messages_index"]
    r = run_cli("locate", "--format", "json", str(path), f"messages.{n}")
    assert json.loads(r.stdout)["line"] == f.start.line


def test_what_locate_refuses_it_says(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path)
    r = run_cli("locate", str(path), "messages.12")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"rewind-lsp: {path}: messages.12: the conversation the API is sent has 8 messages "
                        "(messages.0 to messages.7)\n")
    r = run_cli("locate", str(path), "messages.1.content.9")
    assert (r.returncode, r.stderr) == (
        1, f"rewind-lsp: {path}: messages.1 has 3 content blocks (content.0 to content.2)\n")
    r = run_cli("locate", str(path), "line 12")
    assert (r.returncode, r.stderr) == (
        2, "rewind-lsp: 'line 12' is not a message reference: use messages.N or messages.N.content.M\n")
    log = tmp_path / "x.log"
    log.write_text("hi\n")
    r = run_cli("locate", str(log), "messages.1")
    assert (r.returncode, r.stderr) == (2, f"rewind-lsp: {log}: not a transcript file (a .jsonl session)\n")


def test_locate_in_a_fork_counts_the_parent_first(tmp_path: Path) -> None:
    """Below the parent's message count, the line is the parent's."""
    parent_id = "22222222-2222-4222-8222-222222222222"
    project = tmp_path / "projects" / "-tmp-project"
    project.mkdir(parents=True)
    p = Builder(session_id=parent_id)
    p.user("start")
    p.assistant(text("sure"))
    p.user("run")
    last = p.assistant(tu("toolu_01P"))
    p.write(project / f"{parent_id}.jsonl")
    b = Builder()
    b.raw(json.dumps({"type": "fork-context-ref", "forkedSessionId": parent_id, "upToMessageId": last["uuid"]}))
    b.result("toolu_01P", parent=last["uuid"])
    b.assistant(text("in the fork"))
    fork = b.write(project / f"{SID}.jsonl")
    r = run_cli("locate", str(fork), "messages.2")
    assert r.stdout == f"{project / (parent_id + '.jsonl')}:3:1: messages.2 is line 3\n"
    r = run_cli("locate", "--format", "json", str(fork), "messages.5")
    assert (json.loads(r.stdout)["path"], json.loads(r.stdout)["line"]) == (str(fork), 3)
