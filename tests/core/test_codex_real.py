"""Real Codex CLI rollouts (tests/core/data/codex, PROVENANCE.md there): healthy as recorded on every
check path; broken the ways real sessions break (an output lost, a call lost, a call written twice),
each an error at the exact line naming the real call_id; both repairs give a copy that checks clean
and keeps every user message; the document map reads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from core_support import DATA

from rewind_lsp.check import check_path, check_transcript_bytes, check_transcript_file
from rewind_lsp.codex import is_rollout_file
from rewind_lsp.codex_map import build_rollout_map
from rewind_lsp.findings import Severity
from rewind_lsp.incremental import TranscriptState, check_transcript_incremental
from rewind_lsp.navigation import PROMPT_WORDS, words
from rewind_lsp.rewind import RewindError, rewind

REAL = sorted((DATA / "codex").glob("rollout-*.jsonl"))
WITH_CALLS = DATA / "codex" / "rollout-2025-11-17T15-30-28-019a93b9-f380-7600-98ff-940e6b99603c.jsonl"


def _items(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _payload(line: dict[str, object]) -> dict[str, object]:
    p = line.get("payload")
    return p if isinstance(p, dict) else {}


def _user_messages(path: Path) -> list[str]:
    return [json.dumps(_payload(d).get("content")) for d in _items(path)
            if _payload(d).get("type") == "message" and _payload(d).get("role") == "user"]


def _errors(path: Path) -> list[tuple[str, int, str | None]]:
    return [(f.rule, f.start.line, f.tool_use_id) for f in check_transcript_file(str(path)).findings
            if f.severity == Severity.ERROR]


def _lines_of(kind: str) -> list[int]:
    return [n for n, d in enumerate(_items(WITH_CALLS), 1) if _payload(d).get("type") == kind]


def test_the_fixtures_are_there() -> None:
    assert len(REAL) == 2 and WITH_CALLS in REAL
    assert len(_lines_of("function_call")) == len(_lines_of("function_call_output")) == 39


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name[:40])
def test_a_real_rollout_checks_clean_on_every_path(path: Path) -> None:
    assert is_rollout_file(str(path))
    whole = check_transcript_file(str(path)).findings
    assert [f for f in whole if f.severity <= Severity.WARNING] == []
    assert check_transcript_bytes(path.read_bytes()).findings == whole == check_path(str(path), jobs=2)
    state = TranscriptState()
    assert check_transcript_incremental(str(path), state) == whole


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name[:40])
def test_a_real_rollout_maps_its_prompt_not_codex_s_context(path: Path) -> None:
    data = path.read_bytes()
    check = check_transcript_bytes(data)
    m = build_rollout_map(check.conversations, lambda o, n: data[o:o + n])
    prompts = [json.loads(c)[0]["text"] for c in _user_messages(path)]
    assert [t.text for t in m.turns] == [words(p, PROMPT_WORDS) for p in prompts
                                         if not p.startswith("<environment_context>")]
    assert len(m.calls) == len(_lines_of("function_call")) if path == WITH_CALLS else m.calls == []
    assert all(c.paired for c in m.calls)
    if path == WITH_CALLS:
        assert {c.name for c in m.calls} == {"shell", "update_plan"}


def _without(tmp_path: Path, drop: int, twice: int | None = None) -> Path:
    """The real rollout with line `drop` gone (and line `twice` written a second time after itself)."""
    lines = WITH_CALLS.read_bytes().split(b"\n")
    out = [x for n, x in enumerate(lines, 1) if n != drop for x in ([x, x] if n == twice else [x])]
    path = tmp_path / WITH_CALLS.name
    path.write_bytes(b"\n".join(out))
    return path


@pytest.mark.parametrize("which", [0, 19, 38])
def test_a_lost_output_is_an_error_at_its_call_and_patch_brings_it_back(which: int, tmp_path: Path) -> None:
    call_line = _lines_of("function_call")[which]
    output_line = next(n for n in _lines_of("function_call_output") if n > call_line)
    call_id = _payload(_items(WITH_CALLS)[call_line - 1])["call_id"]
    path = _without(tmp_path, output_line)
    original = path.read_bytes()
    if which == 38:
        # The last call, nothing after it but events: Codex may still be running it (a warning, as for
        # Claude Code's last tool_use); resuming a session that died there fails, so patch answers it.
        (f,) = check_transcript_file(str(path)).findings
        assert (f.rule, f.severity, f.start.line, f.tool_use_id) == ("codex-orphan-call", Severity.WARNING, call_line,
                                                                     call_id)
        assert f.message.startswith(f"function_call {call_id} has no output yet: the tool may still be running")
    else:
        assert _errors(path) == [("codex-orphan-call", call_line, call_id)]
    prompts = _user_messages(path)
    patched = rewind(path, "patch")
    assert _errors(patched.path) == [] and _user_messages(patched.path) == prompts
    copy = _items(patched.path)
    at = next(k for k, d in enumerate(copy) if _payload(d).get("call_id") == call_id)
    assert _payload(copy[at + 1]) == {"type": "function_call_output", "call_id": call_id, "output": "aborted"}
    # The one prompt starts the broken turn: truncate has nothing to keep, and says so.
    with pytest.raises(RewindError, match="broken from its first turn: nothing to keep; use --mode patch"):
        rewind(path, "truncate")
    assert path.read_bytes() == original


def test_a_lost_call_is_an_error_at_its_output_and_patch_leaves_the_output_out(tmp_path: Path) -> None:
    call_line = _lines_of("function_call")[5]
    call_id = _payload(_items(WITH_CALLS)[call_line - 1])["call_id"]
    output_line = next(n for n in _lines_of("function_call_output") if n > call_line)
    path = _without(tmp_path, call_line)
    assert _errors(path) == [("codex-orphan-output", output_line - 1, call_id)]
    patched = rewind(path, "patch")
    assert _errors(patched.path) == [] and _user_messages(patched.path) == _user_messages(path)
    assert call_id not in patched.path.read_text()


@pytest.mark.parametrize("with_output", [False, True])
def test_a_call_line_written_twice_is_a_duplicate_id_and_patch_leaves_the_copy_out(with_output: bool,
                                                                                   tmp_path: Path) -> None:
    """A writer that retried wrote the call's line twice (and maybe its output's): the copy is no second
    call, so patch leaves it out and the session is the one that was recorded."""
    call_line = _lines_of("function_call")[10]
    output_line = next(n for n in _lines_of("function_call_output") if n > call_line)
    call_id = _payload(_items(WITH_CALLS)[call_line - 1])["call_id"]
    lines = WITH_CALLS.read_bytes().split(b"\n")
    out = [x for n, x in enumerate(lines, 1)
           for x in ([x, x] if n == call_line or (with_output and n == output_line) else [x])]
    path = tmp_path / WITH_CALLS.name
    path.write_bytes(b"\n".join(out))
    assert _errors(path) == [("codex-duplicate-call-id", call_line + 1, call_id)]
    patched = rewind(path, "patch")
    assert _errors(patched.path) == [] and _user_messages(patched.path) == _user_messages(path)
    # What is left is the recorded session, line for line, but for its new id.
    original, copy = _items(WITH_CALLS), _items(patched.path)
    assert len(copy) == len(original) and copy[1:] == original[1:]
    assert (f"line {call_line + 1}: left out the second copy of line {call_line} "
            f"(function_call {call_id} written twice; it stays in the original)") in patched.fixed


def test_a_second_call_with_a_used_id_is_renamed_and_answered_aborted(tmp_path: Path) -> None:
    """Two different calls with one id and one output (the output answers the first): the second is
    renamed and gets the output Codex's normalizer would give it."""
    call_line = _lines_of("function_call")[10]
    items = _items(WITH_CALLS)
    call_id = _payload(items[call_line - 1])["call_id"]
    other = json.loads(json.dumps(items[call_line - 1]))
    other["payload"]["arguments"] = json.dumps({"command": ["bash", "-lc", "echo again"]})
    lines = WITH_CALLS.read_bytes().split(b"\n")
    lines.insert(call_line, json.dumps(other).encode())
    path = tmp_path / WITH_CALLS.name
    path.write_bytes(b"\n".join(lines))
    assert _errors(path) == [("codex-duplicate-call-id", call_line + 1, call_id)]
    patched = rewind(path, "patch")
    assert _errors(patched.path) == [] and _user_messages(patched.path) == _user_messages(path)
    copy = _items(patched.path)
    fresh = _payload(copy[call_line])["call_id"]
    assert isinstance(fresh, str) and fresh.startswith(f"{call_id}_") and _payload(copy[call_line + 1]) == {
        "type": "function_call_output", "call_id": fresh, "output": "aborted"}
    assert _payload(copy[call_line + 2])["call_id"] == call_id  # the one output still answers the first call


def test_the_real_rollout_copied_by_the_main_job_layout_is_found_and_counted(tmp_path: Path) -> None:
    day = tmp_path / "sessions" / "2025" / "11" / "17"
    day.mkdir(parents=True)
    shutil.copy(WITH_CALLS, day / WITH_CALLS.name)
    assert [f for f in check_path(str(day / WITH_CALLS.name)) if f.severity <= Severity.WARNING] == []
