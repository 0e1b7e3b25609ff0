"""What the CLI tells a user, read and executed as a user would: from a shell where the
installation is not on PATH, in folders whose names have spaces and quotes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from core_support import CLI, SID, Builder, broken, findings, run_cli, text, tu

NO_PATH = {"PATH": "/usr/bin:/bin"}


def session_in_project(tmp_path: Path, b: Builder) -> tuple[Path, Path]:
    """A config dir with a space, a project folder with a quote, the session filed as Claude Code files it."""
    project = tmp_path / "o'neil work" / "app"
    project.mkdir(parents=True)
    for line in b.lines:
        if isinstance(line, dict) and "cwd" in line:
            line["cwd"] = str(project)
    config = tmp_path / "my config"
    src = b.write(config / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(project)) / f"{SID}.jsonl")
    return config, src


def run_in_shell(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Paste `line` into bash with no rewind-lsp on PATH and a stub `claude` that records its arguments."""
    stubs = cwd / "stubs"
    stubs.mkdir(exist_ok=True)
    (stubs / "claude").write_text('#!/bin/sh\nprintf "%s|%s" "$PWD" "$*" > "$CLAUDE_ARGS"\n')
    (stubs / "claude").chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CLAUDE_ARGS": str(cwd / "claude-args"), "HOME": str(cwd)}
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_every_command_the_main_job_prints_runs_as_printed(tmp_path: Path) -> None:
    config, src = session_in_project(tmp_path, broken("orphan-tool-use"))
    proc = run_cli(env={**NO_PATH, "CLAUDE_CONFIG_DIR": str(config)})
    assert proc.returncode == 1, proc.stderr
    commands = [ln.split(":", 1)[1].strip() for ln in proc.stdout.splitlines()
                if ln.strip().startswith(("fix:", "or:"))]
    assert len(commands) == 2
    for cmd in commands:
        done = run_in_shell(cmd, tmp_path)
        assert done.returncode == 0, (cmd, done.stderr)
        resume = next(ln.strip() for ln in done.stdout.splitlines() if "claude --resume" in ln)
        ran = run_in_shell(resume, tmp_path)
        assert ran.returncode == 0, (resume, ran.stderr)
        where, args = (tmp_path / "claude-args").read_text().split("|")
        assert where == str(tmp_path / "o'neil work" / "app")
        new_id = args.split()[-1]
        assert (src.parent / f"{new_id}.jsonl").is_file()
        assert findings(src.parent / f"{new_id}.jsonl") == [] or all(
            f.severity.label != "error" for f in findings(src.parent / f"{new_id}.jsonl"))


def test_dry_run_says_what_each_mode_would_cost(tmp_path: Path) -> None:
    b = Builder()
    b.user("first prompt")
    b.assistant(text("one"))
    b.user("second prompt")
    b.assistant(tu("toolu_01GONE"))
    b.user("third prompt")
    b.assistant(text("three"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    before = sorted(tmp_path.iterdir())
    proc = run_cli("rewind", str(src), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    assert proc.stdout == (
        f"What each mode would do to {src} (nothing written):\n"
        "\ntruncate:\n"
        "  keeps 3 of 6 messages (drops 3)\n"
        "  last prompt kept: line 3: 'second prompt'\n"
        "  - kept 3 of 6 messages; cut before line 4\n"
        "\npatch:\n"
        "  keeps 6 of 6 messages (drops 0)\n"
        "  last prompt kept: line 5: 'third prompt'\n"
        "  adds 1 tool_result(s) marked as errors for calls that never got one\n"
        "  - line 4: added the missing tool_result for toolu_01GONE\n"
    )
    doc = json.loads(run_cli("rewind", str(src), "--dry-run", "--format", "json").stdout)
    assert doc["modes"]["truncate"]["dropped_messages"] == 3
    assert doc["modes"]["patch"] == {
        "kept_messages": 6, "dropped_messages": 0, "total_messages": 6,
        "last_prompt_kept": {"line": 5, "text": "third prompt"}, "added_results": 1,
        "fixed": ["line 4: added the missing tool_result for toolu_01GONE"], "left_out": [],
    }


def test_rewind_to_a_chosen_prompt(tmp_path: Path) -> None:
    b = Builder()
    b.user("first prompt")
    b.assistant(text("one"))
    second = b.user("second prompt")
    b.assistant(text("two"))
    b.user("third prompt")
    b.assistant(text("three"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("rewind", str(src), "--to", second["uuid"], "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["kept_messages"], out["dropped_messages"]) == (2, 4)
    copy = Path(out["path"])
    assert [json.loads(x)["message"]["content"] for x in copy.read_text().splitlines()][-1][0]["text"] == "one"
    by_line = run_cli("rewind", str(src), "--to", "3", "--format", "json")
    assert json.loads(by_line.stdout)["kept_messages"] == 2
    bad = run_cli("rewind", str(src), "--to", "2")
    assert bad.returncode == 2
    assert bad.stderr == (
        "rewind-lsp: --to 2: not a user prompt of the live conversation; the prompts it can rewind to are: "
        f"line 1 ({b.lines[0]['uuid']}), line 3 ({second['uuid']}), line 5 ({b.lines[4]['uuid']})\n"
    )


def test_errors_are_json_in_json_mode(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("rewind", str(src), "--out", str(tmp_path / "missing") + "/", "--format", "json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"error": f"--out {tmp_path / 'missing'}/: no such folder; nothing was written"}
    assert proc.stderr == f"rewind-lsp: --out {tmp_path / 'missing'}/: no such folder; nothing was written\n"


def test_main_job_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    for i in range(40):
        broken("orphan-tool-use").write(config / "projects" / "p" / f"{i:08d}-1111-4111-8111-111111111111.jsonl")
    exe = str(CLI)
    done = subprocess.run(f"'{exe}' | head -1", shell=True, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CLAUDE_CONFIG_DIR": str(config)})
    assert done.stdout.startswith("Checked 40 Claude Code sessions")
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_check_says_what_it_checked_when_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty dir"
    empty.mkdir()
    proc = run_cli("check", str(empty))
    assert (proc.returncode, proc.stdout) == (0, "")
    assert proc.stderr == f"rewind-lsp: checked 0 sessions, 0 logs in {empty}\n"


def test_a_jsonl_that_is_no_transcript_is_one_finding(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(f"plain text line {i}\n" for i in range(1146)))
    proc = run_cli("check", str(notes), "--format", "json")
    (f,) = json.loads(proc.stdout)
    assert (f["rule"], f["line"], f["severity"]) == ("malformed-line", 1, "warning")
    assert f["message"] == ("not a Claude Code transcript: none of its 1146 lines is a transcript entry "
                            "(line 1: not valid JSON (Expecting value))")


def test_repairs_do_not_pile_up(tmp_path: Path) -> None:
    """Once repaired, the unchanged original is named with its copy on every surface, never repaired again."""
    config, src = session_in_project(tmp_path, broken("orphan-tool-use"))
    env = {**NO_PATH, "CLAUDE_CONFIG_DIR": str(config), "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli("rewind", str(src), "--mode", "patch", "--format", "json", env=env)
    out = json.loads(done.stdout)
    note = f"already repaired as {out['session_id']}: {out['resume_command']}"
    main = run_cli(env=env)
    assert main.returncode == 0, main.stdout
    assert f"\nREPAIRED {src}\n  {note}\n" in main.stdout
    assert f"BROKEN  {src}" not in main.stdout
    check = run_cli("check", str(src), env=env)
    assert check.returncode == 1
    assert f"rewind-lsp: {src}: {note}\n" in check.stderr
    hook = subprocess.run(
        [str(CLI), "hook", "--auto-repair"], capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        input=json.dumps({"hook_event_name": "UserPromptSubmit", "transcript_path": str(src)}))
    reason = json.loads(hook.stdout)["reason"]
    assert f"rewind-lsp {note}\nResume that session instead (the original is untouched)." in reason
    assert len(list(src.parent.glob("*.jsonl"))) == 2  # the original and its one copy: no second copy
    # Once the original changes, it is broken again and a repair is proposed again.
    last = json.loads(src.read_text().splitlines()[-1])["uuid"]
    with src.open("a") as f:
        f.write(json.dumps({"type": "user", "uuid": "late", "parentUuid": last, "sessionId": SID,
                            "message": {"role": "user", "content": "more"}}) + "\n")
    assert f"BROKEN  {src}" in run_cli(env=env).stdout


def test_doctor_and_the_main_job_count_sessions_alike(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    project = config / "projects" / "p"
    broken("orphan-tool-use").write(project / f"{SID}.jsonl")
    broken("orphan-tool-use").write(project / SID / "subagents" / "agent-a1.jsonl")
    broken("orphan-tool-use").write(project / SID / "subagents" / "agent-a2.jsonl")
    env = {"CLAUDE_CONFIG_DIR": str(config)}
    main = run_cli(env=env)
    assert main.stdout.startswith("Checked 1 Claude Code session (2 subagent transcripts) under ")
    doctor = run_cli("doctor", env=env)
    assert "\nsessions: 1 found (2 subagent transcripts), 3 most recent files examined\n" in doctor.stdout


def test_doctor_counts_codex_sessions_apart_and_lists_their_errors(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    broken("orphan-tool-use").write(config / "projects" / "p" / f"{SID}.jsonl")
    sessions = tmp_path / "codex home" / "sessions" / "2026" / "11" / "30"
    sessions.mkdir(parents=True)
    rollout = sessions / "rollout-2026-11-30T10-00-00-0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.jsonl"
    rollout.write_text("".join(json.dumps({"timestamp": "2026-11-30T10:00:00.000Z", "type": t, "payload": p}) + "\n"
                               for t, p in [("session_meta", {"id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}),
                                            ("response_item", {"type": "function_call", "name": "shell",
                                                               "arguments": "{}", "call_id": "call_0001abcdEFGH"}),
                                            ("response_item", {"type": "message", "role": "user", "content": [
                                                {"type": "input_text", "text": "hello?"}]})]))
    env = {"CLAUDE_CONFIG_DIR": str(config), "CODEX_HOME": str(tmp_path / "codex home")}
    doctor = run_cli("doctor", env=env).stdout
    assert f"\nCodex sessions dir: {tmp_path / 'codex home' / 'sessions'} (present) (from CODEX_HOME)\n" in doctor
    assert "\nsessions: 1 found (0 subagent transcripts), 1 most recent files examined\n" in doctor
    assert "\nCodex sessions: 1 found, 1 most recent examined\n" in doctor
    assert (f"\n  {rollout}:2: error codex-orphan-call: function_call call_0001abcdEFGH has no function_call_output "
            "after it.") in doctor
