"""Codex CLI rollouts: found by their content, checked by the same engine (the Responses API's
pairing rules), placed at the exact line and column, and repaired in both modes into a new session
`codex resume` finds, the original untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from codex_support import CODEX_SID, Rollout, rollouts, unanswered_second_turn, user_messages
from core_support import CORPUS, corpus_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewind_lsp.check import check_log_text, check_path, check_transcript_bytes, check_transcript_file
from rewind_lsp.codex import is_rollout_file
from rewind_lsp.codex_map import build_rollout_map
from rewind_lsp.codex_repair import session_id_of_rollout
from rewind_lsp.findings import Severity
from rewind_lsp.incremental import TranscriptState, check_transcript_incremental
from rewind_lsp.rewind import RewindError, preview, rewind

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _errors(path: Path) -> list[Any]:
    return [f for f in check_transcript_file(str(path)).findings if f.severity == Severity.ERROR]


def _broken_turn(tmp_path: Path) -> tuple[Rollout, Path]:
    r = unanswered_second_turn()
    r.prompt("hello?")
    r.reply("Sorry, where were we?")
    return r, r.write(tmp_path)


def test_a_lost_output_is_one_error_at_the_call_s_payload_naming_its_call_id(tmp_path: Path) -> None:
    _, path = _broken_turn(tmp_path)
    lines = path.read_text().splitlines()
    (f,) = check_transcript_file(str(path)).findings
    call_line = next(n for n, x in enumerate(lines, 1) if '"call_0002' in x)
    start = lines[call_line - 1].index('"payload":') + len('"payload":')
    assert (f.rule, f.severity, f.tool_use_id, f.start.line, f.start.column, f.end.column) == (
        "codex-orphan-call", Severity.ERROR, "call_0002abcdEFGHfu", call_line, start + 1, len(lines[call_line - 1]))
    assert f.message == ("function_call call_0002abcdEFGHfu has no function_call_output after it. The Responses API "
                         'refuses the history: "No tool output found for function call call_0002abcdEFGHfu."')
    assert f.facts["session_id"] == CODEX_SID and f.facts["agent"] == "codex"


def test_each_break_is_named_with_codex_s_own_wording(tmp_path: Path) -> None:
    r = Rollout()
    r.meta()
    r.prompt("go")
    a, _ = r.call("custom_tool_call")
    r.output(a, "function_call")  # answered by the wrong kind
    b, kind = r.call("local_shell_call")
    r.output(b, kind)
    r.output("call_ZZZZorphan01", "function_call")  # its call is gone
    r.add("response_item", dict(r.lines[-3]["payload"]))  # local_shell_call written twice
    r.output(b, kind)
    r.reply("ok")
    found = {(f.rule, f.tool_use_id): f.message for f in check_transcript_file(str(r.write(tmp_path))).findings}
    assert found == {
        ("codex-orphan-call", a): f"custom_tool_call {a} has no custom_tool_call_output after it. The Responses API "
                                  f'refuses the history: "No tool output found for custom tool call {a}."',
        ("codex-orphan-output", a): f"function_call_output for {a} answers no call: the call with this id (line 5) "
                                    "is a custom_tool_call, answered by a custom_tool_call_output. The Responses API "
                                    'refuses the history: "No tool call found for function call output with call_id '
                                    f'{a}."',
        ("codex-orphan-output", "call_ZZZZorphan01"): (
            "function_call_output for call_ZZZZorphan01 answers no call: no call before it has this call_id. The "
            'Responses API refuses the history: "No tool call found for function call output with call_id '
            'call_ZZZZorphan01."'),
        ("codex-duplicate-call-id", b): f"call_id {b} is used a second time (first at line 7); call ids must be unique",
    }


def test_a_call_still_running_at_the_end_is_a_warning_not_an_error(tmp_path: Path) -> None:
    r = Rollout()
    r.meta()
    r.prompt("run it")
    r.call("function_call")
    (f,) = check_transcript_file(str(r.write(tmp_path))).findings
    assert (f.rule, f.severity) == ("codex-orphan-call", Severity.WARNING)
    assert f.message.startswith("function_call call_0001abcdEFGHfu has no output yet: the tool may still be running")


def test_an_output_whose_call_a_compaction_dropped_is_an_error_and_history_before_is_not_judged(tmp_path: Path) -> None:
    r = Rollout()
    r.meta()
    r.prompt("one")
    r.call("function_call")  # before the compaction: never sent again, so no error
    r.compact()
    r.prompt("two")
    r.output("call_0001abcdEFGHfu", "function_call")
    r.reply("ok")
    found = [(f.rule, f.severity, f.start.line) for f in check_transcript_file(str(r.write(tmp_path))).findings]
    assert found == [("codex-orphan-output", Severity.ERROR, 10)]


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_no_claude_code_transcript_is_taken_for_a_rollout(path: Path) -> None:
    assert not is_rollout_file(str(path))


@SETTINGS
@given(r=rollouts())
def test_healthy_rollouts_check_clean_on_every_path(r: Rollout, tmp_path_factory: Any) -> None:
    path = r.write(tmp_path_factory.mktemp("codex"))
    whole = check_transcript_file(str(path)).findings
    assert [f for f in whole if f.severity <= Severity.WARNING] == []
    assert check_transcript_bytes(path.read_bytes()).findings == whole
    assert check_path(str(path)) == whole == check_path(str(path), jobs=2)
    state = TranscriptState()
    assert check_transcript_incremental(str(path), state) == whole
    assert check_transcript_incremental(str(path), state) == whole and state.stats.reused


@SETTINGS
@given(r=rollouts(breaking=True))
def test_broken_rollouts_are_errors_and_both_repairs_check_clean_keeping_the_prompts(
    r: Rollout, tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("codex")
    path = r.write(folder)
    original = path.read_bytes()
    errors = _errors(path)
    assert errors and all(f.rule.startswith("codex-") and f.tool_use_id for f in errors), r.breaks
    lines = path.read_text().splitlines()
    for f in errors:
        assert f.tool_use_id in lines[f.start.line - 1]  # the line of the call or output at fault
    prompts = user_messages(path)
    patched = rewind(path, "patch")
    assert patched.agent == "codex" and patched.resumable
    assert patched.resume_command == f"codex resume {patched.session_id}"
    assert _errors(patched.path) == [] and user_messages(patched.path) == prompts
    assert patched.session_id in patched.path.read_text().splitlines()[0]
    cut = rewind(path, "truncate")
    assert _errors(cut.path) == [] and cut.resumable
    kept = user_messages(cut.path)
    assert kept and kept == prompts[:len(kept)] and cut.kept_messages < cut.dropped_messages + cut.kept_messages
    assert path.read_bytes() == original
    for p in (patched.path, cut.path):
        assert p.read_bytes().endswith(b"\n") and all(json.loads(x) for x in p.read_text().splitlines())


@SETTINGS
@given(r=st.one_of(rollouts(), rollouts(breaking=True)))
def test_every_rollout_maps_its_prompts_and_calls_once_each(r: Rollout) -> None:
    """The document map of any rollout (both layouts, parallel calls, compaction, every ending): the
    live conversation's prompts in order, each call under one turn, a healthy call paired with an
    output after it, and a call left unpaired only where the checker finds an error."""
    data = r.text().encode("utf-8")
    check = check_transcript_bytes(data)
    boundaries = [e for e in check.transcript.entries if e.is_compact_boundary]
    m = build_rollout_map(check.conversations, lambda o, n: data[o:o + n], boundaries)
    texts = [t.text for t in m.turns]
    assert texts == r.prompts[len(r.prompts) - len(texts):]
    live = [c for c in m.calls if c.scope == "main conversation"]
    assert sorted(id(c) for t in m.turns for c in t.calls) == sorted(id(c) for c in live)
    assert all(res.line > c.use.line for c in m.calls for res in c.results)
    erred = {f.tool_use_id for f in check.findings if f.severity == Severity.ERROR}
    assert {c.tool_id for c in live if not c.paired} <= erred
    if not r.breaks:
        assert all(c.paired for c in m.calls)


@SETTINGS
@given(r=st.one_of(rollouts(), rollouts(breaking=True)), pick=st.integers(0, 10))
def test_every_rewind_point_the_editor_offers_is_one_rewind_to_takes(r: Rollout, pick: int,
                                                                     tmp_path_factory: Any) -> None:
    import rewind_lsp.lsp.server  # noqa: F401  # navigate registers itself on the server it imports
    from rewind_lsp.lsp import navigate

    path = r.write(tmp_path_factory.mktemp("codex"))
    drops = navigate._build(path.read_bytes().decode("utf-8", errors="surrogateescape"), 1).drops
    if not drops:
        return
    line = sorted(drops)[pick % len(drops)]
    cut = rewind(path, "truncate", to=str(line))
    assert cut.dropped_messages == drops[line] and _errors(cut.path) == []
    assert user_messages(cut.path) == user_messages(path)[:len(user_messages(cut.path))]


def test_patch_adds_the_output_codex_s_normalizer_would_and_names_the_new_session_as_codex_does(tmp_path: Path) -> None:
    _, path = _broken_turn(tmp_path)
    result = rewind(path, "patch")
    assert result.fixed == [f"line {_line_of(path, 'call_0002')}: added the missing output of function_call "
                            "call_0002abcdEFGHfu ('aborted')"]
    assert session_id_of_rollout(result.path) == result.session_id != CODEX_SID
    assert result.path.parent == path.parent and result.path.name.startswith("rollout-")
    copy = [json.loads(x) for x in result.path.read_text().splitlines()]
    assert copy[0]["payload"]["id"] == result.session_id
    at = next(k for k, x in enumerate(copy) if x["payload"].get("call_id") == "call_0002abcdEFGHfu")
    assert copy[at + 1]["payload"] == {"type": "function_call_output", "call_id": "call_0002abcdEFGHfu",
                                       "output": "aborted"}
    assert result.cwd == "/tmp/codex-project"


def test_truncate_cuts_before_the_broken_turn_and_preview_says_so_first(tmp_path: Path) -> None:
    _, path = _broken_turn(tmp_path)
    truncate, patch = preview(path)
    assert (truncate.mode, truncate.refused, truncate.last_prompt_text) == ("truncate", None, "list the files")
    assert (patch.mode, patch.refused, patch.added_results, patch.dropped_messages) == ("patch", None, 1, 0)
    result = rewind(path, "truncate")
    assert user_messages(result.path) == ["list the files"]
    assert (result.kept_messages, result.kept_messages + result.dropped_messages) == (
        truncate.kept_messages, truncate.total_messages)


def test_a_break_in_the_first_turn_cannot_be_truncated_and_says_to_patch(tmp_path: Path) -> None:
    r = Rollout()
    r.meta()
    r.prompt("only turn")
    r.call("function_call")
    r.prompt("again")
    with pytest.raises(RewindError, match="broken from its first turn: nothing to keep; use --mode patch"):
        rewind(r.write(tmp_path), "truncate")


def test_a_healthy_rollout_is_not_repaired(tmp_path: Path) -> None:
    r = Rollout()
    r.meta()
    r.prompt("hi")
    r.reply("hello")
    with pytest.raises(RewindError, match="already pairs; nothing to repair"):
        rewind(r.write(tmp_path), "patch")


def test_the_terminal_400_of_codex_is_found_with_its_call_id() -> None:
    log = ("› continue\n"
           "■ unexpected status 400 Bad Request: {\n"
           '  "error": {\n'
           '    "message": "No tool output found for function call call_Gx1y2Z3abcDEF.",\n'
           '    "type": "invalid_request_error",\n'
           '    "param": "input"\n'
           "  }\n"
           "}\n"
           "› No tool output found for function call call_typedAtThePrompt\n")
    found = [(f.rule, f.start.line, f.tool_use_id) for f in check_log_text(log)]
    assert found == [("codex-tool-pairing-400", 4, "call_Gx1y2Z3abcDEF")]


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, x in enumerate(path.read_text().splitlines(), 1) if needle in x)


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_main_job_lists_broken_codex_sessions_and_its_commands_run_as_printed(tmp_path: Path) -> None:
    """From a shell where the installation is not on PATH, in a folder whose path has a space."""
    home = tmp_path / "a home"
    day = home / ".codex" / "sessions" / "2026" / "11" / "30"
    day.mkdir(parents=True)
    (home / ".claude" / "projects").mkdir(parents=True)
    Path("/tmp/codex-project").mkdir(exist_ok=True)
    _, path = _broken_turn(day)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    exe = str(Path(sys.executable).with_name("rewind-lsp"))
    job = _run([exe], env, home)
    assert job.returncode == 1, job.stderr
    assert "Checked 1 Codex session under " + str(home / ".codex" / "sessions") + "." in job.stdout
    assert f"BROKEN  {path}" in job.stdout
    assert "then run the `codex resume <id>` line it prints." in job.stdout
    fix = next(x.split("fix:", 1)[1].strip() for x in job.stdout.splitlines() if x.strip().startswith("fix:"))
    done = _run(["/bin/sh", "-c", fix], env, home)
    assert done.returncode == 0, done.stderr
    resume = done.stdout.strip().splitlines()[-1].strip()
    new_id = resume.rsplit(" ", 1)[1]
    assert resume == f"cd /tmp/codex-project && codex resume {new_id}"
    copy = next(day.glob(f"rollout-*-{new_id}.jsonl"))
    assert _errors(copy) == []
    as_json = json.loads(_run([exe, "--format", "json"], env, home).stdout)
    assert (as_json["codex_sessions"], as_json["codex_root"]) == (2, str(home / ".codex" / "sessions"))
    assert [b["session"] for b in as_json["broken"]] == []  # the original is now recorded as repaired
    assert [r["session_id"] for r in as_json["repaired"]] == [new_id]
    assert os.path.exists(path)


def test_locate_says_a_codex_session_has_no_messages_index(tmp_path: Path) -> None:
    _, path = _broken_turn(tmp_path)
    exe = str(Path(sys.executable).with_name("rewind-lsp"))
    done = _run([exe, "locate", str(path), "messages.2"], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"rewind-lsp: {path}: a Codex session: the Responses API names a call by its call_id, not "
                           "by messages.N (`rewind-lsp check` gives the line of each call it refuses)\n")


def test_the_server_maps_a_rollout_without_messages_index(tmp_path: Path) -> None:
    """A rollout's map is the Responses API's view: its prompts and calls, no `messages.N`; its rewind
    point is the prompt `rewind --to` takes (the whole LSP answers: tests/lsp/test_transcript_navigation.py)."""
    import rewind_lsp.lsp.server  # noqa: F401  # navigate registers itself on the server it imports
    from rewind_lsp.lsp import navigate

    r, path = _broken_turn(tmp_path)
    mapped = navigate._build(path.read_text(), 1)
    lines = path.read_text().splitlines()
    second = next(n for n, x in enumerate(lines, 1) if "now run the tests" in x and '"response_item"' in x)
    after = sum(1 for x in lines[second - 1:] if '"type":"message"' in x or '"call_id"' in x)
    assert (mapped.broken, mapped.map.api, mapped.map.message_of, mapped.map.content, mapped.drops) == (
        True, "responses", {}, [], {second: after})
    # The point the lens offers is one `rewind --to` accepts, dropping what the lens says.
    cut = rewind(path, "truncate", to=str(second))
    assert cut.dropped_messages == after and _errors(cut.path) == []
    assert [t.text for t in mapped.map.turns] == r.prompts
    assert [c.paired for c in mapped.map.calls] == [True] * (len(mapped.map.calls) - 1) + [False]


@pytest.mark.parametrize("first", [
    b'{"type": ["session_meta"], "payload": {}}', b'{"type": {"a": 1}, "payload": {}}', b'[1, 2]', b'"text"',
    b'{"id": 5, "timestamp": [], "instructions": null}', b'\xff\xfe{"type"', b"",
])
def test_a_first_line_of_any_shape_is_no_rollout_and_no_crash(first: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(first + b"\n" + b'{"type":"user","message":{"role":"user","content":"hi"},"uuid":"u1"}\n')
    assert not is_rollout_file(str(path))
    check_transcript_file(str(path))
