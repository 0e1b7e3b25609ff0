"""The public CLI contract, through the installed entry point in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from core_support import CLI, DATA, SID, Builder, broken, dumps, run_cli, text

JSON_KEYS = ["path", "line", "column", "end_line", "end_column", "rule", "severity", "message", "tool_use_id"]
LOG_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation.\n"


def healthy(path: Path, session_id: str = SID) -> Path:
    b = Builder(session_id=session_id)
    b.user("hello")
    b.tool_turn(["toolu_01H1", "toolu_01H2"])
    b.assistant(text("all fine"))
    return b.write(path)


def test_contract_example_json(tmp_path: Path) -> None:
    p = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("check", "--format", "json", str(p))
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out, list) and out
    for obj in out:
        assert list(obj) == JSON_KEYS
        assert isinstance(obj["line"], int) and obj["line"] >= 1 and obj["column"] >= 1
        assert obj["end_line"] >= obj["line"]
        assert obj["severity"] in ("error", "warning", "information", "hint")
        assert obj["tool_use_id"] is None or obj["tool_use_id"].startswith("toolu_")
        assert obj["path"] == str(p)
    err = [o for o in out if o["severity"] == "error"]
    assert [(o["rule"], o["tool_use_id"]) for o in err] == [("orphan-tool-use", "toolu_01TST")]
    line = p.read_text().splitlines()[err[0]["line"] - 1]
    assert line[err[0]["column"] - 1 :].startswith('{"type":"tool_use","id":"toolu_01TST"')


def test_exit_0_on_healthy_and_empty_json_list(tmp_path: Path) -> None:
    p = healthy(tmp_path / "ok.jsonl")
    proc = run_cli("check", "--format", "json", str(p))
    assert (proc.returncode, json.loads(proc.stdout)) == (0, [])
    proc = run_cli("check", str(p))
    assert (proc.returncode, proc.stdout.strip()) == (0, "")


def test_exit_0_when_only_warnings(tmp_path: Path) -> None:
    p = broken("pending").write(tmp_path / "pending.jsonl")
    proc = run_cli("check", "--format", "json", str(p))
    assert proc.returncode == 0
    assert [o["severity"] for o in json.loads(proc.stdout)] == ["warning"]


def test_text_format(tmp_path: Path) -> None:
    p = broken("duplicate-tool-use-id").write(tmp_path / "d.jsonl")
    proc = run_cli("check", str(p))
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"{p}:") and "error duplicate-tool-use-id" in first and "[toolu_01PRE1]" in first


@pytest.mark.parametrize("args", [
    ["check", "does-not-exist.jsonl"],
    ["check"],
    ["check", "--format", "xml", "x.jsonl"],
    ["frobnicate"],
    ["check", "--min-severity", "loud", "x.jsonl"],
])
def test_exit_2_on_missing_files_and_bad_usage(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip()


def test_missing_file_wins_over_findings(tmp_path: Path) -> None:
    p = broken("orphan-tool-use").write(tmp_path / "b.jsonl")
    proc = run_cli("check", "--format", "json", str(p), str(tmp_path / "nope.log"))
    assert proc.returncode == 2
    assert json.loads(proc.stdout)  # the findings of the readable file are still printed
    assert "nope.log" in proc.stderr


def test_folders_are_searched_recursively_for_jsonl_and_log(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    deep = broken("orphan-tool-result").write(root / "a" / "b" / "deep.jsonl")
    lost = next(i for i, line in enumerate(deep.read_text().splitlines(), 1) if '"tool_use_id":"toolu_01LOST"' in line)
    healthy(root / "ok.jsonl")
    (root / "c").mkdir()
    (root / "c" / "term.log").write_text("x\n" + LOG_400)
    (root / "c" / "notes.txt").write_text(LOG_400)  # neither .jsonl nor .log: not searched
    (root / "c" / "data.json").write_text("{not json")
    proc = run_cli("check", "--format", "json", str(root))
    assert proc.returncode == 1, proc.stderr
    got = sorted({(Path(o["path"]).name, o["rule"], o["line"]) for o in json.loads(proc.stdout)})
    assert got == [("deep.jsonl", "orphan-tool-result", lost), ("term.log", "tool-use-concurrency-400", 2)]


def test_named_files_of_any_suffix_are_checked_as_logs(tmp_path: Path) -> None:
    p = tmp_path / "capture.txt"
    p.write_text("hello\n  ⎿  " + LOG_400)
    proc = run_cli("check", "--format", "json", str(p))
    assert proc.returncode == 1
    assert [(o["rule"], o["line"], o["column"]) for o in json.loads(proc.stdout)] == [
        ("tool-use-concurrency-400", 2, 6)]


def test_min_severity_filters(tmp_path: Path) -> None:
    b = broken("orphan-tool-use")
    b.raw("{oops")
    b.user("after the bad line")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "m.jsonl")
    all_ = json.loads(run_cli("check", "--format", "json", str(p)).stdout)
    only = json.loads(run_cli("check", "--format", "json", "--min-severity", "error", str(p)).stdout)
    assert {o["severity"] for o in all_} == {"error", "warning"}
    assert {o["severity"] for o in only} == {"error"}


def test_sarif(tmp_path: Path) -> None:
    p = broken("tool-result-not-first").write(tmp_path / "s.jsonl")
    log = tmp_path / "t.log"
    log.write_text(LOG_400)
    proc = run_cli("check", "--format", "sarif", str(p), str(log))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["version"] == "2.1.0" and "sarif" in doc["$schema"]
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "rewind-lsp"
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    results = run["results"]
    assert {r["ruleId"] for r in results} == rule_ids == {"tool-result-not-first", "tool-use-concurrency-400"}
    for r in results:
        assert r["level"] in ("error", "warning", "note")
        region = r["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
    healthy_doc = json.loads(run_cli("check", "--format", "sarif", str(healthy(tmp_path / "h.jsonl"))).stdout)
    assert healthy_doc["runs"][0]["results"] == []


def test_no_argument_mode_lists_only_the_broken_session(tmp_path: Path) -> None:
    config = tmp_path / "claude"
    project = config / "projects" / "-home-me-proj"
    bad_sid = "33333333-3333-4333-8333-333333333333"
    good_sid = "44444444-4444-4444-8444-444444444444"
    bad = broken("orphan-tool-use")
    bad.session_id = bad_sid
    for line in bad.lines:
        if isinstance(line, dict) and "sessionId" in line:
            line["sessionId"] = bad_sid
    bad_path = bad.write(project / f"{bad_sid}.jsonl")
    good_path = healthy(project / f"{good_sid}.jsonl", good_sid)
    # A broken subagent transcript is not a session of its own.
    sub = broken("orphan-tool-use").write(project / good_sid / "subagents" / "agent-a1.jsonl")
    old_style = broken("orphan-tool-use").write(project / "agent-b2c3d4e5.jsonl")  # 1.0.x layout
    assert sub.is_file() and old_style.is_file()
    env = {"CLAUDE_CONFIG_DIR": str(config), "PATH": "/usr/bin:/bin"}
    proc = run_cli(env=env)
    assert proc.returncode == 1, proc.stderr
    cli = str(CLI)  # not on PATH here: the printed commands name this installation
    assert proc.stdout.startswith(
        f"Checked 2 Claude Code sessions (2 subagent transcripts) under {config / 'projects'}.\n")
    # The session whose subagent broke is listed under its own name, with the subagent's fix.
    assert f"\nBROKEN  {good_path}\n  subagent transcript {sub}: 1 error; first: line " in proc.stdout
    assert f"    {cli} rewind --mode patch --in-place {sub}\n" in proc.stdout
    assert f"\nBROKEN  {bad_path}\n" in proc.stdout
    assert f"  fix:    {cli} rewind --mode patch {bad_path}\n" in proc.stdout
    assert f"     or:  {cli} rewind {bad_path}\n" in proc.stdout
    # A 1.0.x subagent file whose session is not there is listed on its own.
    assert f"\nBROKEN  {old_style}\n" in proc.stdout
    assert "claude --resume" in proc.stdout
    doc = json.loads(run_cli("--format", "json", env=env).stdout)
    assert (doc["sessions"], doc["subagent_transcripts"]) == (2, 2)
    assert sorted(x["session"] for x in doc["broken"]) == sorted(map(str, (bad_path, good_path, old_style)))


def test_no_argument_mode_with_no_sessions(tmp_path: Path) -> None:
    proc = run_cli(env={"CLAUDE_CONFIG_DIR": str(tmp_path / "none")})
    assert proc.returncode == 0
    assert "No Claude Code sessions found" in proc.stdout
    (tmp_path / "cfg" / "projects" / "p").mkdir(parents=True)
    healthy(tmp_path / "cfg" / "projects" / "p" / f"{SID}.jsonl")
    proc = run_cli(env={"CLAUDE_CONFIG_DIR": str(tmp_path / "cfg")})
    assert proc.returncode == 0 and "No broken sessions" in proc.stdout


def test_doctor_redacts_secrets(tmp_path: Path) -> None:
    config = tmp_path / "claude"
    key = "sk-ant-api03-" + "Zx9" * 30 + "-AbCdEf"
    b = broken("orphan-tool-use")
    b.user(f"my key is {key} and mail me at someone@example.org")
    b.assistant(text(f"Do not share {key}."))
    for line in b.lines:
        if isinstance(line, dict) and line.get("type") == "assistant":
            line["message"]["model"] = "claude-opus-4-6"
            line["version"] = "2.1.39"
    path = b.write(config / "projects" / "p" / f"{SID}.jsonl")
    # Put the key where doctor quotes text: a finding message (a tool_use id that is the key).
    extra = Builder()
    extra.user("x")
    extra.assistant(text("y"), {"type": "tool_use", "id": f"toolu_{key}", "name": "Bash", "input": {}})
    extra.user("z")
    extra.assistant(text("w"))
    extra.write(config / "projects" / "p" / "55555555-5555-4555-8555-555555555555.jsonl")
    proc = run_cli("doctor", env={"CLAUDE_CONFIG_DIR": str(config)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sk-ant-api03" not in out and key not in out
    assert "[redacted]" in out
    assert "2.1.39" in out and "claude-opus-4-6" in out
    assert "orphan-tool-use" in out
    # With explicit paths too.
    proc = run_cli("doctor", str(path), env={"CLAUDE_CONFIG_DIR": str(config)})
    assert proc.returncode == 0 and key not in proc.stdout


def test_json_messages_are_redacted(tmp_path: Path) -> None:
    key = "sk-ant-api03-" + "Q" * 40
    b = Builder()
    b.user("go")
    b.assistant({"type": "tool_use", "id": f"toolu_{key}", "name": "Bash", "input": {}})
    b.user("next")
    b.assistant(text("ok"))
    p = b.write(tmp_path / "k.jsonl")
    proc = run_cli("check", "--format", "json", str(p))
    assert proc.returncode == 1
    assert all(key not in o["message"] for o in json.loads(proc.stdout))


def test_version_flag() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("rewind-lsp ")


def test_bookkeeping_only_transcript_and_empty_log(tmp_path: Path) -> None:
    p = tmp_path / "book.jsonl"
    p.write_text(dumps({"type": "summary", "summary": "x", "leafUuid": "y"}) + "\n")
    log = tmp_path / "empty.log"
    log.write_text("")
    proc = run_cli("check", "--format", "json", str(p), str(log))
    assert (proc.returncode, json.loads(proc.stdout)) == (0, [])


def test_data_fixtures_give_exactly_the_expected_findings() -> None:
    """tests/core/data: the CONTRACT.md example, and a raw terminal capture with every trap at once
    (OSC title, CR spinner redraw, colour codes splitting words, a prompt quoting the error, a 429,
    a SyntaxError, a 400 JSON wrapped mid-word, the CLI message wrapped mid-word)."""
    proc = run_cli("check", "--format", "json", str(DATA))
    assert proc.returncode == 1, proc.stderr
    got = [(Path(o["path"]).name, o["line"], o["column"], o["rule"], o["severity"], o["tool_use_id"])
           for o in json.loads(proc.stdout)]
    contract_line = (DATA / "contract-broken.jsonl").read_text().splitlines()[1]
    assert got == [
        ("contract-broken.jsonl", 2, contract_line.index('{"type":"tool_use"') + 1, "orphan-tool-use", "error",
         "toolu_01ABC"),
        ("terminal-400.log", 6, 11, "rate-limit-429", "warning", None),
        ("terminal-400.log", 8, 11, "tool-use-concurrency-400", "error", "toolu_01AbCdEfGhIjKl"),
        ("terminal-400.log", 12, 6, "syntax-error-unexpected-token", "information", None),
        ("terminal-400.log", 13, 8, "tool-use-concurrency-400", "error", None),
    ]
    messages = {o["line"]: o["message"] for o in json.loads(proc.stdout) if o["path"].endswith(".log")}
    assert "messages.14" in messages[8]


def _secret_session(path: Path, key: str) -> Path:
    b = Builder()
    b.user("go")
    b.assistant({"type": "tool_use", "id": f"toolu_{key}", "name": "Bash", "input": {}})
    b.user("next")
    b.assistant(text("ok"))
    return b.write(path)


def test_text_outputs_are_redacted_too(tmp_path: Path) -> None:
    """A secret-shaped tool_use id is printed by `check` (text), `rewind` and the main job: redacted."""
    key = "sk-ant-api03-" + "W" * 40
    config = tmp_path / "claude"
    path = _secret_session(config / "projects" / "p" / f"{SID}.jsonl", key)
    env = {"CLAUDE_CONFIG_DIR": str(config)}
    outputs = {
        "check": run_cli("check", str(path), env=env),
        "main job": run_cli(env=env),
        "rewind": run_cli("rewind", "--mode", "patch", str(path), env=env),
    }
    for name, proc in outputs.items():
        assert proc.returncode in (0, 1), (name, proc.stderr)
        assert key not in proc.stdout + proc.stderr, name
        assert "[redacted]" in proc.stdout, name


def test_resume_line_quotes_the_cwd(tmp_path: Path) -> None:
    """Pasting the printed line into a shell: `cd` gets the cwd as one word and nothing in it runs."""
    evil = str(tmp_path / "My Projects" / "$(touch pwned)")
    b = broken("orphan-tool-use")
    for line in b.lines:
        if isinstance(line, dict) and "cwd" in line:
            line["cwd"] = evil
    os.makedirs(evil)
    src = b.write(tmp_path / "projects" / re.sub(r"[^A-Za-z0-9]", "-", evil) / f"{SID}.jsonl")
    proc = run_cli("rewind", str(src))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "claude --resume" in x).strip()
    got = tmp_path / "cd-argument"
    stubs = f'cd() {{ printf "%s" "$1" > "{got}"; }}; claude() {{ :; }}; '
    subprocess.run(["bash", "-c", stubs + line], cwd=tmp_path, check=False, timeout=10)
    assert not (tmp_path / "pwned").exists()
    assert got.read_text() == evil


def test_a_pipe_named_directly_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    proc = run_cli("check", str(fifo))
    assert proc.returncode == 2
    assert f"{fifo}: not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_rewind_modes_are_the_engines() -> None:
    from rewind_lsp.cli import REWIND_MODES
    from rewind_lsp.rewind import MODES

    assert REWIND_MODES == MODES


def test_the_command_line_loads_no_engine_until_a_command_needs_it() -> None:
    """`serve` and `hook` start often (every editor launch, every prompt): importing the CLI must not
    load the rules (TOML, RE2), the log scanner or rewind."""
    code = "import sys, rewind_lsp.cli; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not loaded & {"rewind_lsp.rules", "rewind_lsp.logscan", "rewind_lsp.rewind", "rewind_lsp.check"}


def test_a_clean_check_never_loads_the_rules(tmp_path: Path) -> None:
    """The shipped rules (TOML, RE2: a good part of a short check's time) load only when a
    finding needs one."""
    p = healthy(tmp_path / f"{SID}.jsonl")
    code = ("import sys; from rewind_lsp.cli import main; rc = main(['check', sys.argv[1]]); "
            "print(rc, 'rewind_lsp.rules' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"], out.stderr


# --- the progress line ---------------------------------------------------------------------------


def test_progress_wording() -> None:
    from rewind_lsp.progress import progress_text

    assert progress_text(0, 12, 0, 40_000_000, 0.0) == "rewind-lsp: checked 0 of 12 files, 0.0 of 40.0 MB"
    assert progress_text(3, 12, 10_000_000, 40_000_000, 2.0) == (
        "rewind-lsp: checked 3 of 12 files, 10.0 of 40.0 MB, about 6 s left")
    assert progress_text(100, 1000, 500_000_000, 5_100_000_000, 60.0) == (
        "rewind-lsp: checked 100 of 1000 files, 500 of 5100 MB, about 9 min left")


def test_progress_is_redrawn_at_most_every_tenth_of_a_second_and_cleared() -> None:
    import io

    from rewind_lsp.progress import Progress

    now = [0.0]
    out = io.StringIO()
    p = Progress(out, True, 3, 3_000_000, clock=lambda: now[0])
    now[0] = 0.05
    p.advance(1_000_000)  # too soon after the first line: not drawn
    now[0] = 1.0
    p.advance(1_000_000)
    p.clear()
    assert out.getvalue() == ("\r\x1b[Krewind-lsp: checked 0 of 3 files, 0.0 of 3.0 MB"
                              "\r\x1b[Krewind-lsp: checked 2 of 3 files, 2.0 of 3.0 MB, about 1 s left"
                              "\r\x1b[K")
    quiet = io.StringIO()
    q = Progress(quiet, False, 3, 3_000_000)
    q.advance(1)
    q.clear()
    assert quiet.getvalue() == ""


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a real pseudo-terminal (stdout a pipe): exit code, stdout, what
    the terminal showed."""
    import pty

    master, slave = pty.openpty()
    exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "rewind_lsp"]
    proc = subprocess.Popen([*exe, *args], stdout=subprocess.PIPE, stderr=slave, env={**os.environ, **env})
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=60), out, shown.decode()


PROGRESS_LINE = re.compile(r"rewind-lsp: checked (\d+) of (\d+) files, [\d.]+ of [\d.]+ MB(, about \d+ (s|min) left)?")


@pytest.mark.parametrize("command", [["check", "--jobs", "1"], ["check", "--no-cache", "--jobs", "2"], []],
                         ids=["check", "check-pool", "main"])
def test_a_progress_line_on_a_terminal_only(tmp_path: Path, command: list[str]) -> None:
    folder = tmp_path / "claude" / "projects" / "-tmp-p"
    for i in range(3):
        broken("orphan-tool-use").write(folder / f"{i}{SID[1:]}.jsonl")
    env = {"CLAUDE_CONFIG_DIR": str(tmp_path / "claude"), "REWIND_LSP_CACHE_DIR": str(tmp_path / "cache")}
    args = [*command, str(folder)] if command else []
    piped = run_cli(*args, env=env)
    assert piped.stderr == ""  # not a terminal: no progress line
    code, out, shown = on_a_terminal(*args, env=env)
    assert (code, out) == (piped.returncode, piped.stdout)
    assert shown.startswith("\r\x1b[Krewind-lsp: checked 0 of 3 files, 0.0 of ")
    assert shown.endswith("\r\x1b[K")  # cleared: the terminal line is empty again
    drawn = [d for d in shown.split("\r\x1b[K") if d]
    assert drawn and all(PROGRESS_LINE.fullmatch(d) for d in drawn), drawn
    code, out, shown = on_a_terminal(*args[:1], "--quiet", *args[1:], env=env) if args else on_a_terminal(
        "--quiet", env=env)
    assert (code, out, shown) == (piped.returncode, piped.stdout, "")
