"""The startup scan's summary, word for word, from a real server over folders of broken files."""

from __future__ import annotations

import json
from pathlib import Path

from rel_support import MSG_400, broken, raw_server, wait_until

from rewind_lsp.lsp.summary import broken_summary

S1 = "11111111-1111-4111-8111-111111111111"
S2 = "22222222-2222-4222-8222-222222222222"


def test_summary_counts_sessions_subagent_transcripts_and_logs(tmp_path: Path) -> None:
    project = tmp_path / "claude" / "projects" / "p"
    (project / S1 / "subagents").mkdir(parents=True)
    (project / f"{S1}.jsonl").write_text(broken())
    (project / f"{S2}.jsonl").write_text(broken())
    (project / S1 / "subagents" / "agent-a1.jsonl").write_text(broken())
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "terminal-1.log").write_text(MSG_400 + "\n")
    with raw_server(tmp_path) as srv:
        shown = wait_until(lambda: [m for m in srv.shown_messages() if "broken" in m], 20, interval=0.1)
        assert shown == [
            "rewind-lsp: 2 broken Claude Code sessions, 1 broken subagent transcript and 1 broken log: "
            "open one to see where it breaks"
        ]


def test_summary_of_one_kind() -> None:
    assert broken_summary([f"/p/{S1}.jsonl"]) == (
        "rewind-lsp: 1 broken Claude Code session: open one to see where it breaks"
    )
    assert broken_summary(["/logs/a.log", "/logs/b.log"]) == (
        "rewind-lsp: 2 broken Claude Code logs: open one to see where it breaks"
    )
    assert broken_summary([]) == ""


def test_summary_names_codex_sessions_as_codex(tmp_path: Path) -> None:
    sid = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    lines = [
        {"type": "session_meta", "payload": {"id": sid, "cwd": str(tmp_path), "originator": "codex_cli_rs"}},
        {"type": "response_item", "payload": {"type": "function_call", "name": "shell", "arguments": "{}",
                                              "call_id": "call_0001abcdEFGH"}},
    ]
    rollout = tmp_path / f"rollout-2026-11-30T10-00-00-{sid}.jsonl"
    rollout.write_text("".join(json.dumps({"timestamp": "2026-11-30T10:00:00.000Z", **d}) + "\n" for d in lines))
    transcript = tmp_path / f"{S1}.jsonl"
    transcript.write_text(broken())
    assert broken_summary([str(rollout)]) == "rewind-lsp: 1 broken Codex session: open one to see where it breaks"
    assert broken_summary([str(transcript), str(rollout)]) == (
        "rewind-lsp: 1 broken Claude Code session and 1 broken Codex session: open one to see where it breaks"
    )
