"""Security properties: command paths confined to the served roots, no shell, linear-time user regexes,
secrets redacted wherever text is shown, nothing leaves the machine."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rel_support import (
    FUZZ_CASES,
    MSG_400,
    REPO,
    SID,
    broken,
    entry,
    isolated_env,
    raw_server,
    run_cli,
    tool_use,
    wait_until,
)

from rewind_lsp.check import check_log_text
from rewind_lsp.rewind import RewindError, rewind
from rewind_lsp.rules import load_rules

PACKAGE = REPO / "server" / "rewind_lsp"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"<link/dir>")
            for p in sorted(folder.rglob("*"))}


def refused(reply: dict[str, Any]) -> bool:
    result = reply.get("result")
    return "error" in reply or (isinstance(result, dict) and "error" in result)


# --- paths confined to the roots ------------------------------------------------------------


def test_execute_command_paths_are_confined(tmp_path: Path) -> None:
    home = tmp_path / "home"
    projects = home / "claude" / "projects"
    inside = projects / "p" / f"{SID}.jsonl"
    inside.parent.mkdir(parents=True)
    inside.write_text(broken())
    outside = tmp_path / "outside"
    (outside / "p").mkdir(parents=True)
    target = outside / "p" / "33333333-3333-4333-8333-333333333333.jsonl"
    target.write_text(broken("33333333-3333-4333-8333-333333333333"))
    sibling = home / "claude" / "projects-evil" / "44444444-4444-4444-8444-444444444444.jsonl"
    sibling.parent.mkdir(parents=True)
    sibling.write_text(broken("44444444-4444-4444-8444-444444444444"))
    os.symlink(target, projects / "p" / "link.jsonl")  # a file symlink out of the root
    os.symlink(outside / "p", projects / "linkdir")  # a folder symlink out of the root
    escapes = [
        target.as_uri(),
        str(target),
        f"file://{projects}/p/../../../../outside/p/{target.name}",
        f"file://{projects}/p/%2e%2e/%2e%2e/%2e%2e/%2e%2e/outside/p/{target.name}",
        f"{projects}/p/../../../../outside/p/{target.name}",
        (projects / "p" / "link.jsonl").as_uri(),
        (projects / "linkdir" / target.name).as_uri(),
        sibling.as_uri(),
    ]
    before_outside, before_sibling = snapshot(outside), sibling.read_bytes()
    with raw_server(home, {"watchRoots": [str(projects)]}, workspace=home / "ws") as srv:
        for uri in escapes:
            for command in ("rewind-lsp.rewind", "rewind-lsp.repair", "rewind-lsp.copyResumeCommand"):
                reply = srv.request("workspace/executeCommand", {"command": command, "arguments": [uri]})
                assert refused(reply), (command, uri, reply)
                FUZZ_CASES["security: path escapes refused"] += 1
        assert [m for m in srv.shown_messages() if "outside the folders" in m]
        # The control: a transcript inside the root is repaired, beside itself.
        reply = srv.request("workspace/executeCommand",
                            {"command": "rewind-lsp.repair", "arguments": [inside.as_uri()]})
        assert Path(reply["result"]["path"]).parent == inside.parent
    assert snapshot(outside) == before_outside
    assert sibling.read_bytes() == before_sibling and len(list(sibling.parent.iterdir())) == 1


def test_terminal_names_cannot_leave_the_log_folder(tmp_path: Path) -> None:
    names = ["../../escape", "/etc/passwd", "..", ".", "a/b\\c", "\x00", "~", "x" * 500, "ok name", {"obj": 1}, None]
    for folder in (tmp_path / "claude" / "projects", tmp_path / "logs"):
        folder.mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*")}
    with raw_server(tmp_path, {"watchRoots": [str(tmp_path / "logs")]}) as srv:
        for name in names:
            srv.notify("rewindLsp/terminalOutput", {"terminal": name, "data": MSG_400 + "\n"})
        assert srv.alive()
        assert wait_until(lambda: len(list((tmp_path / "logs").glob("terminal-*.log"))) >= 5, 5)
    # The server's own cache folder (its watch lock, saved states) is not where a terminal's name leads.
    new = {p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "cache")} - before
    logs = (tmp_path / "logs").resolve()
    assert new and all(p.resolve().parent == logs and p.name.startswith("terminal-") for p in new), sorted(new)
    assert all(len(p.name) < 100 for p in new)
    FUZZ_CASES["security: terminal names"] += len(names)


def test_cli_rewind_writes_only_beside_its_source(tmp_path: Path) -> None:
    """The new session and its subagent copies land beside the source; symlinks in the subagent folder
    are not followed out of it; --out never writes through a symlink."""
    folder = tmp_path / "projects" / "p"
    src = folder / f"{SID}.jsonl"
    src.parent.mkdir(parents=True)
    src.write_text(broken())
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("private\n")
    victim = outside / "victim.jsonl"
    victim.write_text("precious\n")
    agents = folder / SID / "subagents"
    agents.mkdir(parents=True)
    (agents / "agent-1.jsonl").write_text(entry("user", "s1", None, "x", isSidechain=True) + "\n")
    os.symlink(secret, agents / "agent-2.jsonl")
    os.symlink(outside, agents / "linked-folder")
    before = snapshot(outside)
    env = isolated_env(tmp_path)
    out = run_cli(["rewind", "--mode", "patch", str(src)], env)
    # A subagent file linked out of the session's folder: refused, named, nothing written.
    assert out.returncode == 2
    assert out.stderr == (f"rewind-lsp: {agents / 'agent-2.jsonl'} is a symbolic link out of the session's folder "
                          f"{folder / SID}; nothing was written. Replace the link with the files themselves and "
                          "try again.\n")
    assert [p for p in folder.iterdir() if p.suffix == ".jsonl"] == [src]
    (agents / "agent-2.jsonl").unlink()
    out = run_cli(["rewind", "--mode", "patch", str(src)], env)
    assert out.returncode == 0, out.stderr
    new = [p for p in folder.iterdir() if p.suffix == ".jsonl" and p != src]
    assert len(new) == 1
    copied = folder / new[0].stem
    # Only the subagent transcripts are copied: the linked folder is not followed, nor recreated.
    assert sorted(p.name for p in copied.rglob("*")) == ["agent-1.jsonl", "subagents"]
    assert all(b"private" not in p.read_bytes() for p in copied.rglob("*") if p.is_file())
    # --out onto a symlink that points outside, and onto a dangling one: refused, nothing written there.
    os.symlink(victim, folder / "out-link.jsonl")
    os.symlink(outside / "created-through-link.jsonl", folder / "dangling.jsonl")
    for link in ("out-link.jsonl", "dangling.jsonl"):
        res = run_cli(["rewind", "--mode", "patch", "--out", str(folder / link), str(src)], env)
        assert res.returncode == 2, (link, res.stdout, res.stderr)
    assert snapshot(outside) == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".rewind-tmp")]
    FUZZ_CASES["security: CLI write targets"] += 4


# --- no shell ---------------------------------------------------------------------------------


def test_no_shell_anywhere() -> None:
    """No subprocess, os.system/popen/spawn, shell=True, eval/exec in the package. The one exec is
    capture.py's pty child running the user's own argv (a list, never a shell string); the one
    subprocess is holders.py's run of the system's lsof (where /proc is missing): by a fixed absolute
    path, with an argument list."""
    problems: list[str] = []
    execs: list[str] = []
    runs: list[str] = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        rel = str(path.relative_to(PACKAGE))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.append(node.module)
                for n in names:
                    if n == "subprocess" and rel == "holders.py":
                        continue
                    if n and n.split(".")[0] in ("subprocess", "commands", "popen2", "multiprocessing"):
                        problems.append(f"{rel}:{node.lineno}: imports {n}")
            elif isinstance(node, ast.Call):
                f = node.func
                name = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                        else f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else "")
                if name in ("eval", "exec", "os.system", "os.popen", "pty.spawn", "asyncio.create_subprocess_shell",
                            "asyncio.create_subprocess_exec") or re.fullmatch(r"os\.(spawn|posix_spawn)\w*", name):
                    problems.append(f"{rel}:{node.lineno}: calls {name}")
                if name.startswith("subprocess."):
                    runs.append(f"{rel}:{name}")
                    assert isinstance(node.args[0], ast.List), "a command that is not an argument list"
                if re.fullmatch(r"os\.exec\w*", name):
                    execs.append(f"{rel}:{name}")
                    assert not isinstance(node.args[1], ast.Constant), "exec of a constant string"
                for kw in node.keywords:
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        problems.append(f"{rel}:{node.lineno}: shell=")
    assert not problems, problems
    assert execs == ["capture.py:os.execvp"], execs
    assert runs == ["holders.py:subprocess.run"], runs


# --- user regexes are linear-time -------------------------------------------------------------

CATASTROPHIC = r"(a+)+$"


def _user_rules(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil.toml").write_text(
        'id = "evil"\ntitle = "evil"\nhover = "h"\nseverity = "warning"\n'
        f"patterns = ['{CATASTROPHIC}', '(x+x+)+y', '(a|aa)*b$']\nnot_patterns = ['(a|a?)+b']\n")
    (folder / "evil.md").write_text("fix")
    return folder


def test_catastrophic_user_pattern_is_linear_time(tmp_path: Path) -> None:
    rules = load_rules([_user_rules(tmp_path / "rules")])
    # RE2's `$` is the end of the text: the line without its newline is the one that matches.
    for text, matches in [("a" * (1 << 20) + "!\n", False), ("a" * (1 << 20), True), ("x" * (1 << 20) + "\n", False)]:
        t = time.monotonic()
        findings = check_log_text(text, rules)
        elapsed = time.monotonic() - t
        assert elapsed < 1.0, (text[:3], elapsed)
        assert any(f.rule == "evil" for f in findings) == matches
        FUZZ_CASES["security: catastrophic regex on a 1 MB line"] += 1


def test_the_same_pattern_is_catastrophic_for_a_backtracking_engine() -> None:
    """The control: Python's backtracking `re` does not get through 'a' * 30 + '!' within a second (RE2 does
    a megabyte in well under that), so the test above means something."""
    code = f"import re; re.search(r'{CATASTROPHIC}', 'a' * 30 + '!')"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], timeout=1, check=False)


def test_catastrophic_user_pattern_through_the_cli(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("a" * (1 << 20) + "!\n" + MSG_400 + "\n")
    t = time.monotonic()
    out = run_cli(["check", "--format", "json", "--rule-dir", str(_user_rules(tmp_path / "rules")), str(log)],
                  isolated_env(tmp_path), timeout=30)
    assert time.monotonic() - t < 10
    assert [f["rule"] for f in json.loads(out.stdout)] == ["tool-use-concurrency-400"]


# --- secrets are redacted ---------------------------------------------------------------------

KEY = "sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNbVcXzAsDfGhJk"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0cGF5bG9hZA.QmFkU2lnbmF0dXJlWHl6"
EMAIL = "jane.doe@example.com"
ENV_KEY = "sk-ant-api03-EnvDumpSecretValue0123456789abcdefXYZ"
AKIA = "AKIAR7TQ2M9XK4PLW8ZN"
GHP = "ghp_Kp3xQ9wLm2Zr8TvB6nYc4HsJ1dFg7AeU5oWi"
# Glued to what precedes them, as a planted id does (these once slipped past the patterns).
AKIA_GLUED = "toolu_9AKIAV3NB8QX2LM7KT4RY"
GHP_GLUED = "toolu_01ghp_Wq8Er4Ty2Ui6Op0As9Df3Gh7Jk1Lz5Xc3Vb"
SECRET_PARTS = ["Zx9Qw8Er7Ty6", TOKEN[:20], "jane.doe", "EnvDumpSecretValue", "R7TQ2M9XK4PLW8ZN", "Kp3xQ9wLm2Zr8TvB",
                "V3NB8QX2LM7KT4RY", "Wq8Er4Ty2Ui6Op0A"]


def secret_transcript() -> str:
    """A broken session whose echoed fields (tool_use ids, subagent id, model, version) hold secrets."""
    sid = SID
    return "\n".join([
        entry("user", "u1", None, f"my key is {KEY}, mail {EMAIL}", session=sid),
        entry("assistant", "a1", "u1", [tool_use(KEY, command=f"env  # ANTHROPIC_API_KEY={ENV_KEY}")], "msg_1",
              session=sid),
        entry("user", "u2", "a1", "next", session=sid),
        entry("assistant", "a2", "u2", [tool_use(f"Bearer {TOKEN}")], "msg_2", session=sid),
        entry("user", "u3", "a2", "and?", session=sid),
        entry("assistant", "a3", "u3", [tool_use(f"ANTHROPIC_API_KEY={ENV_KEY}")], "msg_3", session=sid),
        entry("user", "u4", "a3", "hm", session=sid),
        entry("assistant", "a4", "u4", [tool_use(EMAIL)], "msg_4", session=sid),
        entry("user", "u5", "a4", "ok", session=sid),
        entry("user", "s1", None, "subtask", session=sid, isSidechain=True, agentId=f"ANTHROPIC_API_KEY={ENV_KEY}"),
        entry("assistant", "s2", "s1", [tool_use("toolu_side")], "msg_s", session=sid, isSidechain=True,
              agentId=f"ANTHROPIC_API_KEY={ENV_KEY}"),
        entry("user", "s3", "s2", "sub next", session=sid, isSidechain=True, agentId=f"ANTHROPIC_API_KEY={ENV_KEY}"),
        entry("assistant", "a5", "u5", [tool_use(AKIA_GLUED)], "msg_5", session=sid),
        entry("user", "u6", "a5", f"aws {AKIA}, gh {GHP}", session=sid),
        entry("assistant", "a6", "u6", [tool_use(GHP_GLUED)], "msg_6", session=sid),
        entry("user", "u7", "a6", "go on", session=sid),
        entry("assistant", "a7", "u7", [tool_use(AKIA), tool_use(GHP)], "msg_7", session=sid),
        entry("user", "u8", "a7", "and now?", session=sid),
    ]) + "\n"


def leaks(text: str) -> list[str]:
    return [s for s in SECRET_PARTS if s in text]


def plant(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = isolated_env(tmp_path)
    path = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "-tmp-proj" / f"{SID}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secret_transcript()
    # The model and version of the assistant lines hold secrets too (doctor lists both).
    text = text.replace('"id":"msg_1"', f'"id":"msg_1","model":"claude {EMAIL} {KEY}"')
    text = text.replace('"version":"2.1.30"', f'"version":"2.1.30 Bearer {TOKEN}"', 1)
    path.write_text(text)
    return path, env


def test_hover_and_diagnostics_are_redacted(tmp_path: Path) -> None:
    path, _ = plant(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(path.parent.parent)]}) as srv:
        uri = srv.open(path)
        diags = srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                      and n["params"]["uri"] == uri and len(n["params"]["diagnostics"]) >= 5, 10)
        assert diags is not None
        assert not leaks(json.dumps([d["message"] for d in diags["params"]["diagnostics"]]))
        hovered = 0
        for line in (1, 3, 5, 7, 10):
            reply = srv.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                       "position": {"line": line, "character": 200}})
            assert reply["result"], line
            value = reply["result"]["contents"]["value"]
            assert "[redacted]" in value or "redacted]" in value
            assert not leaks(value), (line, leaks(value))
            hovered += 1
        assert not leaks(" ".join(srv.shown_messages() + srv.log_messages()))
    FUZZ_CASES["security: redaction (hover, diagnostics)"] += hovered


def test_cli_check_messages_are_redacted(tmp_path: Path) -> None:
    path, env = plant(tmp_path)
    as_json = run_cli(["check", "--format", "json", str(path)], env)
    assert as_json.returncode == 1
    assert not leaks("".join(f["message"] for f in json.loads(as_json.stdout)))
    sarif = run_cli(["check", "--format", "sarif", str(path)], env)
    assert not leaks(json.dumps([r["message"] for r in json.loads(sarif.stdout)["runs"][0]["results"]]))
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 0 and "last errors" in doctor.stdout
    assert not leaks(doctor.stdout + doctor.stderr), leaks(doctor.stdout)
    assert "[redacted]" in doctor.stdout or "redacted]" in doctor.stdout
    FUZZ_CASES["security: redaction (CLI json, sarif, doctor)"] += 3


def test_cli_text_output_is_redacted(tmp_path: Path) -> None:
    """Every line the CLI prints: check's text (with its [tool_use id] suffix), rewind's list of fixes,
    the no-argument main job. (Until fixed, ids and the main job's messages were printed in clear.)"""
    path, env = plant(tmp_path)
    outputs = {
        "check": run_cli(["check", str(path)], env).stdout,
        "rewind": run_cli(["rewind", "--mode", "patch", str(path)], env).stdout,
        "main job": run_cli([], env).stdout,
    }
    assert {k: leaks(v) for k, v in outputs.items() if leaks(v)} == {}


def hook(payload: dict[str, Any], env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rewind_lsp", "hook", *extra], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_rewind_json_dry_run_and_hook_outputs_are_redacted(tmp_path: Path) -> None:
    """Every field of `rewind --format json` (`fixed`, `warnings`), the dry run (JSON and text, which
    quote the last prompt kept), and the hook's SessionStart, UserPromptSubmit and auto-repair output."""
    path, env = plant(tmp_path)
    payload = {"session_id": SID, "transcript_path": str(path), "cwd": "/tmp/proj"}
    outputs = {
        "dry run json": run_cli(["rewind", "--dry-run", "--format", "json", str(path)], env),
        "dry run": run_cli(["rewind", "--dry-run", str(path)], env),
        "hook SessionStart": hook({**payload, "hook_event_name": "SessionStart", "source": "resume"}, env),
        "hook UserPromptSubmit": hook({**payload, "hook_event_name": "UserPromptSubmit", "prompt": "x"}, env),
    }
    for mode in ("truncate", "patch"):
        outputs[f"rewind json {mode}"] = run_cli(["rewind", "--format", "json", "--mode", mode, str(path)], env)
    outputs["hook auto-repair"] = hook({**payload, "hook_event_name": "UserPromptSubmit", "prompt": "x"}, env,
                                       "--auto-repair")
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr)
        assert not leaks(done.stdout + done.stderr), (name, leaks(done.stdout + done.stderr))
        # Truncate cuts before the first fault: its summary names no id.
        assert "redacted]" in done.stdout or name == "rewind json truncate", (name, done.stdout)
    fixed = json.loads(outputs["rewind json patch"].stdout)["fixed"]
    assert any("toolu_9AKIA…[redacted]" in line for line in fixed), fixed
    assert any("toolu_01gh…[redacted]" in line for line in fixed), fixed
    FUZZ_CASES["security: redaction (rewind json, dry run, hook)"] += len(outputs)


def test_server_messages_results_and_navigation_are_redacted(tmp_path: Path) -> None:
    """The server's announcement (`window/showMessageRequest`), the Repair command's result and the
    message after it, and what navigation names from the transcript: outline, workspace symbols,
    inlay hints."""
    env = isolated_env(tmp_path)
    folder = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "-tmp-proj"
    folder.mkdir(parents=True)
    with raw_server(tmp_path, {"watchRoots": [str(folder.parent)]}) as srv:
        path, _ = plant(tmp_path)  # written once the server watches: it announces the break
        announced = wait_until(lambda: [m for m in srv.server_requests if m["method"] == "window/showMessageRequest"],
                               30)
        assert announced, "no announcement"
        uri = srv.open(path)
        lines = len(path.read_text().splitlines())
        replies = {
            "repair": srv.request("workspace/executeCommand", {"command": "rewind-lsp.repair",
                                                               "arguments": [path.as_uri()]}, timeout=60),
            "outline": srv.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}}, timeout=30),
            "workspace symbols": srv.request("workspace/symbol", {"query": ""}, timeout=30),
            "inlay hints": srv.request("textDocument/inlayHint", {"textDocument": {"uri": uri}, "range": {
                "start": {"line": 0, "character": 0}, "end": {"line": lines, "character": 0}}}, timeout=30),
        }
        shown = srv.shown_messages() + srv.log_messages()
    assert "result" in replies["repair"] and replies["repair"]["result"]["fixed"], replies["repair"]
    texts = {name: json.dumps(reply["result"]) for name, reply in replies.items()}
    texts["announcement"] = json.dumps([m["params"]["message"] for m in announced])
    texts["messages"] = json.dumps(shown)
    assert {name: leaks(text) for name, text in texts.items() if leaks(text)} == {}
    for name in ("repair", "outline", "workspace symbols", "inlay hints", "announcement"):
        assert "redacted]" in texts[name], (name, texts[name][:400])
    FUZZ_CASES["security: redaction (server messages, results, navigation)"] += len(texts)


HOSTILE_NAME = "x'; touch PWNED; echo '.jsonl"


def run_pasted(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`line` pasted into bash from `cwd`, with no rewind-lsp on PATH."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
                          capture_output=True, text=True, timeout=120, check=False)


def assert_runs_and_injects_nothing(line: str, src: Path, cwd: Path) -> None:
    assert shlex.split(line)[-1] == str(src), line  # one word, exactly the file's name
    done = run_pasted(line, cwd)
    assert done.returncode == 0, (line, done.stderr)
    assert not (cwd / "PWNED").exists() and not (src.parent / "PWNED").exists(), line
    assert done.stdout.startswith("Wrote "), done.stdout  # it repaired the file it named


def test_the_hook_s_fix_line_quotes_a_hostile_transcript_name(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    src = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "o'neil proj" / HOSTILE_NAME
    src.parent.mkdir(parents=True)
    src.write_text(broken())
    done = hook({"session_id": SID, "transcript_path": str(src), "hook_event_name": "UserPromptSubmit",
                 "prompt": "x", "cwd": "/tmp/proj"}, env)
    reason = json.loads(done.stdout)["reason"]
    (line,) = [ln.strip() for ln in reason.splitlines() if "rewind --mode patch" in ln]
    assert_runs_and_injects_nothing(line, src, tmp_path)


def test_the_hook_s_commands_run_under_a_home_named_like_an_e_mail_address(tmp_path: Path) -> None:
    """SSSD names home folders `user@domain`: redaction hides e-mail addresses, never a folder of the
    path a printed command names (it would no longer run)."""
    home = tmp_path / "jdoe@corp.example.com"
    env = isolated_env(home)
    src = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "my app" / f"{SID}.jsonl"  # a space too
    src.parent.mkdir(parents=True)
    src.write_text(broken())
    done = hook({"session_id": SID, "transcript_path": str(src), "hook_event_name": "UserPromptSubmit",
                 "prompt": "x", "cwd": "/tmp/proj"}, env)
    reason = json.loads(done.stdout)["reason"]
    assert "redacted" not in reason, reason
    (line,) = [ln.strip() for ln in reason.splitlines() if "rewind --mode patch" in ln]
    assert_runs_and_injects_nothing(line, src, home)


def test_copy_resume_command_quotes_a_hostile_transcript_name(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    folder = Path(env["CLAUDE_CONFIG_DIR"]) / "projects" / "o'neil proj"
    folder.mkdir(parents=True)
    src = folder / HOSTILE_NAME
    src.write_text(broken())
    with raw_server(tmp_path, {"watchRoots": [str(folder.parent)]}) as srv:
        reply = srv.request("workspace/executeCommand", {"command": "rewind-lsp.copyResumeCommand",
                                                         "arguments": [src.as_uri()]}, timeout=30)
    line = reply["result"]["rewindCommand"]
    assert reply["result"]["resumeCommand"] is None
    assert_runs_and_injects_nothing(line, src, tmp_path)


def test_resume_command_quotes_the_cwd(tmp_path: Path) -> None:
    """The CLI's resume line, pasted into a shell. (Until fixed: `cd /tmp/My Projects/$(touch pwned) && …`.)"""
    evil = str(tmp_path / "My Projects" / "$(touch pwned)")
    os.makedirs(evil)  # the cd is printed only for a folder that exists and files the session
    folder = tmp_path / re.sub(r"[^A-Za-z0-9]", "-", evil)
    folder.mkdir()
    src = folder / f"{SID}.jsonl"
    src.write_text(broken().replace('"cwd":"/tmp/proj"', json.dumps({"cwd": evil})[1:-1]))
    out = run_cli(["rewind", str(src)], isolated_env(tmp_path))
    line = next(x for x in out.stdout.splitlines() if "claude --resume" in x).strip()
    # What pasting the line into a shell does (with `cd` and `claude` stubbed out): cd gets the cwd as one
    # argument, and nothing in it runs.
    got = tmp_path / "cd-argument"
    stubs = f'cd() {{ printf "%s" "$1" > {got}; }}; claude() {{ :; }}; '
    subprocess.run(["bash", "-c", stubs + line], cwd=tmp_path, check=False, timeout=10)
    assert not (tmp_path / "pwned").exists(), f"pasting {line!r} ran code"
    assert got.exists() and got.read_text() == evil, line


def test_server_resume_message_quotes_the_cwd(tmp_path: Path) -> None:
    projects = tmp_path / "claude" / "projects"
    evil = str(tmp_path / "My Projects" / "$(touch pwned)")
    os.makedirs(evil)
    src = projects / re.sub(r"[^A-Za-z0-9]", "-", evil) / f"{SID}.jsonl"
    src.parent.mkdir(parents=True)
    src.write_text(broken().replace('"cwd":"/tmp/proj"', json.dumps({"cwd": evil})[1:-1]))
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        srv.request("workspace/executeCommand", {"command": "rewind-lsp.repair", "arguments": [src.as_uri()]})
        message = next(m for m in srv.shown_messages() if "claude --resume" in m)
    line = message[message.index("cd "):]
    got = tmp_path / "cd-argument"
    stubs = f'cd() {{ printf "%s" "$1" > {got}; }}; claude() {{ :; }}; '
    subprocess.run(["bash", "-c", stubs + line], cwd=tmp_path, check=False, timeout=10)
    assert not (tmp_path / "pwned").exists(), f"pasting {line!r} ran code"
    assert got.exists() and got.read_text() == evil, line


# --- nothing leaves the machine ---------------------------------------------------------------

_AUDITED_SERVER = r"""
import sys
def hook(event, args):
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo", "socket.gethostbyname",
                 "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect", "webbrowser.open"):
        if event in ("socket.connect", "socket.bind", "socket.sendto"):
            sock = args[0]
            if sock.family == __import__("socket").AF_UNIX:
                return
        sys.stderr.write(f"NETWORK-AUDIT: {event} {args!r}\n")
        sys.stderr.flush()
    elif event == "socket.__new__":
        family = args[1]
        import socket
        if family not in (socket.AF_UNIX, -1):
            sys.stderr.write(f"NETWORK-AUDIT: socket family {family}\n")
            sys.stderr.flush()
sys.addaudithook(hook)
from rewind_lsp.cli import main
sys.exit(main(["serve"]))
"""


def _inet_sockets(pid: int) -> list[str]:
    """Sockets of `pid` that are not Unix-domain (the event loop's self-pipe is a Unix socketpair)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    unix = set()
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 7:
            unix.add(parts[6])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        p = Path(f"/proc/{pid}/net/{table}")
        if not p.exists():
            continue
        for line in p.read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes:
                found.append(f"{table}: {line.strip()}")
    return found + [f"unknown socket {i}" for i in inodes - unix if not found]


def test_server_opens_no_network_socket(tmp_path: Path) -> None:
    """Every feature once (startup scan, diagnostics, hover, code actions, rewind, show fix, terminal
    output, configuration) with an audit hook on every socket and URL API: nothing but the event loop's
    Unix socketpair, no DNS lookup, no connection."""
    path, _ = plant(tmp_path)
    command = [sys.executable, "-c", _AUDITED_SERVER]
    with raw_server(tmp_path, {"watchRoots": [str(path.parent.parent), str(tmp_path / "logs")]},
                    command=command) as srv:
        uri = srv.open(path)
        srv.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 200}})
        srv.request("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": {
            "start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 1}}, "context": {"diagnostics": []}})
        srv.request("workspace/executeCommand", {"command": "rewind-lsp.repair", "arguments": [uri]})
        srv.request("workspace/executeCommand", {"command": "rewind-lsp.showFix",
                                                 "arguments": ["tool-use-concurrency-400"]})
        srv.notify("rewindLsp/terminalOutput", {"terminal": "t", "data": MSG_400 + "\n"})
        srv.notify("workspace/didChangeConfiguration", {"settings": {"rewind-lsp": {"notifications": False}}})
        assert srv.alive()
        assert _inet_sockets(srv.proc.pid) == []
    assert "NETWORK-AUDIT" not in srv.stderr.decode(errors="replace"), srv.stderr.decode(errors="replace")[-2000:]
    assert srv.proc.returncode == 0


def test_rewind_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_text(broken())
    existing = tmp_path / "keep.jsonl"
    existing.write_text("mine\n")
    with pytest.raises(RewindError, match="already exists"):
        rewind(src, out=existing)
    assert existing.read_text() == "mine\n"
