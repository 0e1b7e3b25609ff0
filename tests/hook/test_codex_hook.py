"""The same hook for Codex CLI: installed in Codex's hooks.json, run as Codex runs it (a process with
Codex's UserPromptSubmit / SessionStart JSON on stdin, its command line run by a shell), answering in
the shape Codex's hook output schema allows (codex-rs/hooks/schema/generated/*.command.output.schema.json:
additionalProperties false)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = Path(sys.executable).with_name("rewind-lsp")
pytestmark = pytest.mark.skipif(not ENTRY.exists(), reason="the rewind-lsp entry point is not installed")

SID = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
CALL = "call_0002abcdEFGHfu"
# The keys Codex's output schemas allow (UserPromptSubmit; SessionStart takes the same but decision/reason).
PROMPT_OUTPUT_KEYS = {"continue", "decision", "hookSpecificOutput", "reason", "stopReason", "suppressOutput",
                      "systemMessage"}
SESSION_START_OUTPUT_KEYS = {"continue", "hookSpecificOutput", "stopReason", "suppressOutput", "systemMessage"}


def _rollout(cwd: str, answered: bool) -> str:
    items: list[tuple[str, dict[str, object]]] = [
        ("session_meta", {"id": SID, "timestamp": "2026-11-30T10:00:00.000Z", "cwd": cwd, "originator": "codex_cli_rs",
                          "cli_version": "0.63.0"}),
        ("response_item", {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list"}]}),
        ("response_item", {"type": "function_call", "name": "shell", "arguments": '{"command":["ls"]}',
                           "call_id": CALL}),
    ]
    if answered:
        items.append(("response_item", {"type": "function_call_output", "call_id": CALL, "output": "a b"}))
    items.append(("response_item", {"type": "message", "role": "user",
                                    "content": [{"type": "input_text", "text": "hello?"}]}))
    return "".join(json.dumps({"timestamp": f"2026-11-30T10:00:0{i}.000Z", "type": t, "payload": p}) + "\n"
                   for i, (t, p) in enumerate(items))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home with space"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    bindir = str(ENTRY.parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir)
    return {**os.environ, "PATH": path, "CODEX_HOME": str(home / ".codex"),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"), "REWIND_LSP_CACHE_DIR": str(home / "cache"),
            "REWIND_LSP_LOG_DIR": str(home / "logs")}


def _write(home: Path, answered: bool, cwd: str = "/nonexistent/codex-project") -> Path:
    path = home / ".codex" / "sessions" / "2026" / "11" / "30" / f"rollout-2026-11-30T10-00-00-{SID}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_rollout(cwd, answered))
    return path


def _prompt(path: Path) -> dict[str, object]:
    """Codex's UserPromptSubmit input: every field its input schema requires."""
    return {"session_id": SID, "turn_id": "1", "transcript_path": str(path), "cwd": "/tmp", "model": "gpt-5-codex",
            "permission_mode": "default", "hook_event_name": "UserPromptSubmit", "prompt": "next step"}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(ENTRY), *args], capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in done.stderr
    return done


def _installed_command(home: Path) -> str:
    data = json.loads((home / ".codex" / "hooks.json").read_text())
    (group,) = data["hooks"]["UserPromptSubmit"]
    return str(group["hooks"][0]["command"])


def _run_installed(home: Path, env: dict[str, str], payload: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """As Codex runs a command hook: its command line through a shell, the event's JSON on stdin."""
    return subprocess.run(["/bin/sh", "-c", _installed_command(home)], input=json.dumps(payload), text=True,
                          capture_output=True, env=env, timeout=60)


def test_install_hook_codex_writes_codex_s_hooks_json_and_says_to_turn_hooks_on(home: Path,
                                                                                env: dict[str, str]) -> None:
    done = _cli(env, "install-hook", "--codex")
    hooks = home / ".codex" / "hooks.json"
    config = home / ".codex" / "config.toml"
    assert done.returncode == 0
    assert done.stdout == (f"{hooks}: hook installed\nCodex runs hooks only when they are turned on: add these two "
                           f"lines to {config}:\n  [features]\n  codex_hooks = true\n")
    data = json.loads(hooks.read_text())
    command = shlex.join([str(ENTRY), "hook"])
    assert data == {"hooks": {
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": command, "timeout": 30}]}],
        "SessionStart": [{"matcher": "resume", "hooks": [{"type": "command", "command": command, "timeout": 30}]}],
    }}
    config.write_text('model = "gpt-5-codex"\n\n[features]\nweb_search = true\n')
    again = _cli(env, "install-hook", "--codex")
    assert again.stdout == (f"{hooks}: nothing to change (already installed)\nCodex runs hooks only when they are "
                            f"turned on: add `codex_hooks = true` under [features] in {config}\n")
    config.write_text('[features]\ncodex_hooks = true\n')
    assert _cli(env, "install-hook", "--codex").stdout == f"{hooks}: nothing to change (already installed)\n"
    assert not (home / ".claude" / "settings.json").exists()  # Claude Code's settings are not touched
    gone = _cli(env, "uninstall-hook", "--codex")
    assert gone.returncode == 0 and gone.stdout.startswith(f"{hooks}: hook removed; backup at ")
    assert json.loads(hooks.read_text()) == {}
    local = _cli(env, "install-hook", "--codex", "--local")
    assert (local.returncode, local.stdout, local.stderr) == (
        2, "", "rewind-lsp: Codex has no local hooks file: use --user ($CODEX_HOME/hooks.json) or --project "
               "(.codex/hooks.json)\n")


def test_the_installed_hook_blocks_a_broken_rollout_in_codex_s_words(home: Path, env: dict[str, str]) -> None:
    assert _cli(env, "install-hook", "--codex").returncode == 0
    path = _write(home, answered=False)
    before = path.read_bytes()
    done = _run_installed(home, env, _prompt(path))
    assert (done.returncode, done.stderr) == (0, "")
    out = json.loads(done.stdout)
    assert set(out) <= PROMPT_OUTPUT_KEYS and out["decision"] == "block"
    fix = shlex.join([str(ENTRY), "rewind", "--mode", "patch", str(path)])
    assert out["reason"] == (
        "rewind-lsp: this session's tool calls no longer pair up, so Codex's next request would fail with 'No tool "
        "output found for function call …' (the Responses API refuses the history).\n"
        f"- codex-orphan-call at line 3: function_call {CALL} has no function_call_output after it. The Responses "
        f'API refuses the history: "No tool output found for function call {CALL}."\n'
        "Fix it without losing the session (the original file stays untouched):\n"
        f"  {fix}\n"
        "then run the `codex resume <new id>` line it prints.")
    assert path.read_bytes() == before
    # The printed fix runs as printed, from the same shell without the installation on PATH.
    fixed = subprocess.run(["/bin/sh", "-c", fix], capture_output=True, text=True, env=env, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    (copy,) = [p for p in path.parent.glob("rollout-*.jsonl") if p != path]
    assert f"codex resume {copy.name[-42:-6]}" in fixed.stdout
    healthy = _run_installed(home, env, _prompt(copy))
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "", "")


def test_a_healthy_rollout_passes_and_session_start_on_resume_warns(home: Path, env: dict[str, str]) -> None:
    path = _write(home, answered=True)
    hook = [str(ENTRY), "hook"]
    done = subprocess.run(hook, input=json.dumps(_prompt(path)), text=True, capture_output=True, env=env, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    broken = _write(home, answered=False)
    start = {"session_id": SID, "transcript_path": str(broken), "cwd": "/tmp", "hook_event_name": "SessionStart",
             "source": "resume", "model": "gpt-5-codex", "permission_mode": "default"}
    out = json.loads(subprocess.run(hook, input=json.dumps(start), text=True, capture_output=True, env=env,
                                    timeout=60).stdout)
    assert set(out) <= SESSION_START_OUTPUT_KEYS
    assert set(out["hookSpecificOutput"]) == {"hookEventName", "additionalContext"}
    assert out["systemMessage"].startswith("rewind-lsp: this session's tool calls no longer pair up, so Codex's")
    assert "codex resume <new id>" in out["hookSpecificOutput"]["additionalContext"]


def test_auto_repair_writes_a_new_rollout_and_names_its_codex_resume(home: Path, env: dict[str, str]) -> None:
    work = home / "work dir"
    work.mkdir(parents=True)
    path = _write(home, answered=False, cwd=str(work))
    done = subprocess.run([str(ENTRY), "hook", "--auto-repair"], input=json.dumps(_prompt(path)), text=True,
                          capture_output=True, env=env, timeout=60)
    out = json.loads(done.stdout)
    (copy,) = [p for p in path.parent.glob("rollout-*.jsonl") if p != path]
    new_id = copy.name[-42:-6]
    resume = f"cd {shlex.quote(str(work))} && codex resume {new_id}"
    assert out["reason"].endswith(f"rewind-lsp repaired it into a new session (the original is untouched): {copy}\n"
                                  f"Resume that one instead:\n  {resume}")
    assert set(out) <= PROMPT_OUTPUT_KEYS
