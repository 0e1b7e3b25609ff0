"""The Claude Code hook, run as Claude Code runs it: a process with JSON on stdin."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real"
SESSION = "11111111-1111-4111-8111-111111111111"


def line(kind: str, uid: str, parent: str | None, content: object, msg_id: str | None = None) -> str:
    message: dict[str, object] = {"role": kind, "content": content}
    if msg_id:
        message["id"] = msg_id
    return json.dumps(
        {"type": kind, "uuid": uid, "parentUuid": parent, "sessionId": SESSION, "cwd": "/tmp/proj", "message": message}
    )


USE = {"type": "tool_use", "id": "toolu_01HOOK", "name": "Bash", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_01HOOK", "content": "ok"}
BROKEN = (
    "\n".join(
        [
            line("user", "u1", None, "go"),
            line("assistant", "a1", "u1", [USE], "m1"),
            line("user", "u2", "a1", "still there?"),
        ]
    )
    + "\n"
)
HEALTHY = (
    "\n".join(
        [
            line("user", "u1", None, "go"),
            line("assistant", "a1", "u1", [USE], "m1"),
            line("user", "u2", "a1", [RESULT]),
            line("assistant", "a2", "u2", [{"type": "text", "text": "ok"}], "m2"),
        ]
    )
    + "\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache"),
        "REWIND_LSP_LOG_DIR": str(tmp_path / "logs"),
    }


def run_hook(payload: object, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run(
        [sys.executable, "-m", "rewind_lsp", "hook", *extra],
        input=text,
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )


def prompt(path: Path) -> dict[str, str]:
    return {
        "session_id": SESSION,
        "transcript_path": str(path),
        "cwd": "/tmp/proj",
        "hook_event_name": "UserPromptSubmit",
        "prompt": "next step",
    }


def test_healthy_session_passes_silently(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(HEALTHY)
    done = run_hook(prompt(path), env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_broken_session_is_blocked_with_the_exact_fix(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(BROKEN)
    done = run_hook(prompt(path), env)
    assert done.returncode == 0
    decision = json.loads(done.stdout)
    assert decision["decision"] == "block"
    reason = decision["reason"]
    assert "orphan-tool-use at line 2" in reason and "toolu_01HOOK" in reason
    fix = shlex.join([sys.executable, "-m", "rewind_lsp", "rewind", "--mode", "patch", str(path)])
    assert f"\n  {fix}\n" in reason  # this installation, as it was run (not on PATH here)
    assert "claude --resume" in reason
    assert path.read_text() == BROKEN


def test_auto_repair_writes_a_new_session_and_names_it(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(BROKEN)
    done = run_hook(prompt(path), env, "--auto-repair")
    reason = json.loads(done.stdout)["reason"]
    new = [p for p in tmp_path.glob("*.jsonl") if p != path]
    assert len(new) == 1 and f"claude --resume {new[0].stem}" in reason
    assert path.read_text() == BROKEN
    again = run_hook(prompt(new[0]), env)
    assert again.stdout == ""


def test_session_start_resume_warns_and_adds_context(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(BROKEN)
    payload = {
        "session_id": SESSION,
        "transcript_path": str(path),
        "hook_event_name": "SessionStart",
        "source": "resume",
    }
    out = json.loads(run_hook(payload, env).stdout)
    assert "toolu_01HOOK" in out["systemMessage"]
    assert out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert "-m rewind_lsp rewind --mode patch" in out["hookSpecificOutput"]["additionalContext"]
    startup = {**payload, "source": "startup"}
    assert run_hook(startup, env).stdout == ""


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        "[1, 2]",
        json.dumps({"hook_event_name": "UserPromptSubmit"}),
        json.dumps({"hook_event_name": "UserPromptSubmit", "transcript_path": "/nonexistent/x.jsonl"}),
        json.dumps({"hook_event_name": "PostToolUse", "transcript_path": "/etc/passwd"}),
    ],
)
def test_fails_open_on_anything_unexpected(payload: str, env: dict[str, str]) -> None:
    done = run_hook(payload, env)
    assert (done.returncode, done.stdout) == (0, "")


def test_unreadable_transcript_fails_open_and_is_logged(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / f"{SESSION}.jsonl"
    folder.mkdir()  # a folder where the file should be: reading it fails
    done = run_hook(prompt(folder), env)
    assert (done.returncode, done.stdout) == (0, "")


def test_saved_state_reads_only_appended_bytes(tmp_path: Path) -> None:
    from rewind_lsp.index import check_cached, state_file

    path = tmp_path / "s.jsonl"
    path.write_text(HEALTHY)
    cache = tmp_path / "cache"
    first, state = check_cached(str(path), cache)
    assert first == [] and state.stats.bytes_read == len(HEALTHY.encode())
    assert state_file(cache, str(path)).stat().st_size < 1024  # offsets and findings, no entries
    _, state = check_cached(str(path), cache)
    assert state.stats.reused and state.stats.bytes_read == 0
    extra = line("user", "u3", "a2", "more") + "\n"
    with path.open("a") as f:
        f.write(extra)
    second, state = check_cached(str(path), cache)
    assert second == [] and state.stats.bytes_read == len(extra.encode()) and state.stats.full_reads == 0
    # No compaction yet, so the open region (re-read from the file, never stored) is the whole file.
    assert state.stats.bytes_reread == len(HEALTHY.encode())
    path.write_text(BROKEN)  # rewritten: the state notices and starts over
    third, state = check_cached(str(path), cache)
    assert state.stats.full_reads == 1 and [f.rule for f in third] == ["orphan-tool-use"]
    state_file(cache, str(path)).write_bytes(b"not a state")  # a damaged state file is a full read
    fourth, state = check_cached(str(path), cache)
    assert state.stats.full_reads == 1 and fourth == third


def _subagent(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(HEALTHY)
    agents = tmp_path / SESSION / "subagents"
    agents.mkdir(parents=True)
    sidechain = "".join(
        json.dumps({**json.loads(x), "isSidechain": True, "agentId": "a1b2c3d"}) + "\n" for x in text.splitlines()
    )
    (agents / "agent-a1b2c3d.jsonl").write_text(sidechain)
    return path


def test_broken_subagent_transcript_is_blocked(tmp_path: Path, env: dict[str, str]) -> None:
    path = _subagent(tmp_path, BROKEN)
    done = run_hook(prompt(path), env)
    reason = json.loads(done.stdout)["reason"]
    assert f"orphan-tool-use at line 2 of the subagent transcript {SESSION}/subagents/agent-a1b2c3d.jsonl" in reason
    assert shlex.join([sys.executable, "-m", "rewind_lsp", "rewind", "--mode", "patch", "--in-place"]) in reason
    assert "agent-a1b2c3d.jsonl" in reason
    assert path.read_text() == HEALTHY


def test_healthy_subagent_transcript_passes(tmp_path: Path, env: dict[str, str]) -> None:
    path = _subagent(tmp_path, HEALTHY)
    done = run_hook(prompt(path), env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def corpus_sessions() -> list[Path]:
    return sorted(CORPUS.rglob("*.jsonl")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus/real is not present")
def test_real_corpus_passes_through_untouched(env: dict[str, str]) -> None:
    for path in corpus_sessions():
        done = run_hook(prompt(path), env)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), path


# --- install-hook / uninstall-hook on real settings files ------------------------------------

OTHER_TOOLS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "hooks": {
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "other-tool check"}]}],
        "PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "prettier --write"}]}],
    },
}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rewind_lsp", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_install_merges_is_idempotent_and_uninstall_restores(tmp_path: Path, env: dict[str, str]) -> None:
    settings = tmp_path / "claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(OTHER_TOOLS, indent=2) + "\n")
    assert cli(env, "install-hook", "--user").returncode == 0
    data = json.loads(settings.read_text())
    assert data["model"] == "opus" and data["permissions"] == OTHER_TOOLS["permissions"]
    assert data["hooks"]["PostToolUse"] == OTHER_TOOLS["hooks"]["PostToolUse"]
    ups = data["hooks"]["UserPromptSubmit"]
    assert ups[0] == OTHER_TOOLS["hooks"]["UserPromptSubmit"][0]
    assert any("hook" in h["command"] and "rewind" in h["command"] for g in ups for h in g["hooks"])
    assert data["hooks"]["SessionStart"][0]["matcher"] == "resume"
    assert list(tmp_path.joinpath("claude").glob("settings.json.*.bak"))
    snapshot = settings.read_text()
    second = cli(env, "install-hook", "--user")
    assert "nothing to change" in second.stdout and settings.read_text() == snapshot
    assert settings.read_text().startswith("{\n  ")  # readable, indented
    assert cli(env, "uninstall-hook", "--user").returncode == 0
    assert json.loads(settings.read_text()) == OTHER_TOOLS


def test_project_scope_and_invalid_settings_refused(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    bad = project / ".claude" / "settings.json"
    bad.write_text('{"hooks": {,}}')
    done = cli(env, "install-hook", "--project", cwd=project)
    assert done.returncode == 2 and "settings.json:1:" in done.stderr and "not valid JSON" in done.stderr
    assert bad.read_text() == '{"hooks": {,}}'
    bad.unlink()
    assert cli(env, "install-hook", "--project", cwd=project).returncode == 0
    assert "UserPromptSubmit" in json.loads(bad.read_text())["hooks"]


RECORDED = json.dumps({
    "type": "assistant", "uuid": "e1", "parentUuid": "u3", "sessionId": SESSION, "cwd": "/tmp/proj",
    "isApiErrorMessage": True,
    "message": {"role": "assistant", "model": "<synthetic>", "id": "synthetic-1", "content": [
        {"type": "text", "text": "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the "
                                 "conversation."}]},
})


def test_a_recorded_400_that_pairs_is_a_warning_as_in_check(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(HEALTHY + line("user", "u3", "a2", "next") + "\n" + RECORDED + "\n")
    done = run_hook(prompt(path), env)
    out = json.loads(done.stdout)
    assert "decision" not in out
    check = subprocess.run([sys.executable, "-m", "rewind_lsp", "check", "--format", "json", str(path)],
                           capture_output=True, text=True, env=env, timeout=60)
    (finding,) = json.loads(check.stdout)
    assert (finding["rule"], finding["severity"]) == ("tool-use-concurrency-400", "warning")
    me = [sys.executable, "-m", "rewind_lsp", "rewind"]
    assert out["systemMessage"] == (
        f"rewind-lsp: line 6: {finding['message']}.\n  {shlex.join([*me, str(path)])}\n"
        "    (cuts before the prompt whose request was refused)\n"
        f"  {shlex.join([*me, '--mode', 'patch', str(path)])}\n    (keeps everything but the recorded error)"
    )


@pytest.mark.parametrize("secret", ["sk-ant-api03-" + "K" * 40, "AKIA" + "Q" * 16, "ghp_" + "z" * 36])
def test_session_start_output_is_redacted(tmp_path: Path, env: dict[str, str], secret: str) -> None:
    """A secret planted in the tool_use id reaches the fault's message: redacted in both fields."""
    path = tmp_path / f"{SESSION}.jsonl"
    path.write_text(BROKEN.replace("toolu_01HOOK", f"toolu_{secret}"))
    payload = {"session_id": SESSION, "transcript_path": str(path), "hook_event_name": "SessionStart",
               "source": "resume"}
    done = run_hook(payload, env)
    assert secret not in done.stdout
    out = json.loads(done.stdout)
    assert "[redacted]" in out["systemMessage"]
    assert out["systemMessage"] == out["hookSpecificOutput"]["additionalContext"]


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc/<pid>/wchan")
@pytest.mark.parametrize("entry", [["-m", "rewind_lsp", "hook"], ["-m", "rewind_lsp.hook"]])
def test_ctrl_c_while_the_hook_waits_for_its_payload_stops_it_quietly(entry: list[str], env: dict[str, str]) -> None:
    """SIGINT (Ctrl-C, or Claude Code cancelling the hook) while it reads its payload: exit 130 and
    nothing on stderr, from both ways of starting it (the second printed a KeyboardInterrupt
    traceback). The signal is sent once the process sleeps in its read of stdin (not mid-import)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, *entry], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        wchan = Path(f"/proc/{proc.pid}/wchan")
        deadline = time.monotonic() + 30
        while "pipe" not in wchan.read_text() and time.monotonic() < deadline:  # pipe_read, anon_pipe_read
            time.sleep(0.01)
        assert "pipe" in wchan.read_text(), wchan.read_text()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        if proc.stdin:
            proc.stdin.close()
    assert (proc.returncode, out, err) == (130, b"", b"")
