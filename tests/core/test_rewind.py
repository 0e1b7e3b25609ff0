"""Rewind (truncate) and repair (patch): the copy checks clean, the original is untouched, patch
loses nothing, the copy is a new session with a printed resume command, writes are atomic, and
a source that changes meanwhile is refused."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest
from core_support import (
    BROKEN,
    CORPUS,
    SID,
    Builder,
    active_texts,
    all_texts,
    assert_new_session,
    assert_well_formed,
    broken,
    corpus_files,
    dumps,
    entries,
    errors,
    findings,
    run_cli,
    serious,
    sha,
    tu,
)
from core_support import summary as fsummary
from core_support import text as text_block

from rewind_lsp.check import check_transcript_file
from rewind_lsp.conversation import rebuild
from rewind_lsp.placement import ensure_unchanged as _ensure_unchanged
from rewind_lsp.placement import fingerprint as _fingerprint
from rewind_lsp.rewind import (
    MISSING_RESULT_TEXT,
    STALE_TEMP_SECONDS,
    RewindError,
    rewind,
    session_id_of,
)
from rewind_lsp.transcript import read_transcript

# --- every broken fixture, both modes -------------------------------------------------------

TRUNCATE_REFUSES = {"sidechain": "patch"}  # the main conversation pairs: nothing to cut back


@pytest.mark.parametrize("name", BROKEN)
@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_rewind_broken_fixture(tmp_path: Path, name: str, mode: str) -> None:
    src = broken(name).write(tmp_path / f"{SID}.jsonl")
    before = sha(src)
    assert serious(findings(src)), "the fixture must be broken"
    if mode == "truncate" and name in TRUNCATE_REFUSES:
        with pytest.raises(RewindError, match=TRUNCATE_REFUSES[name]):
            rewind(src, mode)
        assert sorted(x.name for x in tmp_path.iterdir()) == [src.name]
        return
    result = rewind(src, mode)
    assert sha(src) == before, "the original must stay byte-identical"
    assert result.path.parent == src.parent and result.path != src
    assert result.backup is None and result.fixed
    out_findings = findings(result.path)
    assert serious(out_findings) == [], fsummary(out_findings)
    new_sid = assert_new_session(result.path, SID)
    assert result.session_id == new_sid and result.resume_command == f"claude --resume {new_sid}"
    assert result.cwd == "/tmp/project"
    assert_well_formed(result.path)
    # No temporary file left behind.
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([src.name, result.path.name])
    if mode == "patch":
        assert active_texts(src) <= all_texts(result.path), "patch must keep every prompt and reply"
        assert active_texts(src) <= active_texts(result.path), "and keep them on the live conversation"
    else:
        kept = active_texts(result.path)
        assert ("user", "first prompt: look at the repo") in kept
        assert ("user", "final prompt: summarize") not in kept


def test_rewind_of_a_tool_use_answered_only_by_a_later_reply(tmp_path: Path) -> None:
    """The last turn: tool_use, then a reply of another message.id, no result (an error, not pending)."""
    b = Builder()
    b.user("go")
    b.tool_turn(["toolu_01OK"])
    b.assistant(text_block("fine"))
    b.user("and now the other thing")
    b.assistant(tu("toolu_01Z"))
    b.assistant(text_block("done without waiting for the result"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    assert [f.rule for f in errors(findings(src))] == ["orphan-tool-use"]
    for mode in ("truncate", "patch"):
        result = rewind(src, mode)
        assert serious(findings(result.path)) == []
        assert_well_formed(result.path, src)
        if mode == "patch":
            assert active_texts(src) <= active_texts(result.path)


def test_session_ids_with_spaces_are_replaced_too(tmp_path: Path) -> None:
    """A transcript re-serialized with `json.dumps` defaults (spaces after `:` and `,`)."""
    b = broken("orphan-tool-use")
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in b.lines))
    for mode in ("truncate", "patch"):
        result = rewind(src, mode)
        assert_new_session(result.path, SID)
        assert serious(findings(result.path)) == []


@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_invalid_utf8_in_the_source_does_not_stop_a_rewind(tmp_path: Path, mode: str) -> None:
    """The reader takes a stray invalid byte with replacement (as Claude Code does); so must rewind,
    on every line it reads: the broken ones it rewrites, and the last message it takes the cwd from."""
    src = broken("orphan-tool-result").write(tmp_path / f"{SID}.jsonl")
    data = src.read_bytes().replace(b"edited 3 lines", b"edited \xff lines")
    data = data.replace(b"Summary: all good.", b"Summary: \xc3 good.")
    src.write_bytes(data)
    assert [f.rule for f in errors(findings(src))] == ["orphan-tool-result"]
    result = rewind(src, mode)
    assert serious(findings(result.path)) == []
    assert src.read_bytes() == data
    assert result.cwd == "/tmp/project"


def test_patch_adds_a_result_worded_like_claude_code(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    result = rewind(src, "patch")
    added = [b for d in entries(result.path) if d.get("type") == "user" and isinstance(d["message"]["content"], list)
             for b in d["message"]["content"] if b.get("tool_use_id") == "toolu_01TST"]
    assert added == [{"type": "tool_result", "tool_use_id": "toolu_01TST", "content": MISSING_RESULT_TEXT,
                      "is_error": True}]


def test_patch_keeps_an_orphaned_result_as_text(tmp_path: Path) -> None:
    src = broken("orphan-tool-result").write(tmp_path / f"{SID}.jsonl")
    result = rewind(src, "patch")
    body = result.path.read_text()
    assert "edited 3 lines" in body
    assert '"tool_use_id":"toolu_01LOST"' not in body


def test_patch_renames_a_duplicate_id_with_its_result(tmp_path: Path) -> None:
    src = broken("duplicate-tool-use-id").write(tmp_path / f"{SID}.jsonl")
    result = rewind(src, "patch")
    ds = entries(result.path)
    uses = [b["id"] for d in ds if d.get("type") == "assistant" for b in d["message"]["content"]
            if b.get("type") == "tool_use"]
    assert len(uses) == len(set(uses)) == 3
    new_id = next(i for i in uses if i.startswith("toolu_rw"))
    assert any(b.get("tool_use_id") == new_id for d in ds if d.get("type") == "user"
               and isinstance(d["message"]["content"], list) for b in d["message"]["content"])


@pytest.mark.parametrize(("uses", "answers"), [(2, 1), (3, 1), (3, 2)])
def test_patch_renames_duplicates_within_one_message(tmp_path: Path, uses: int, answers: int) -> None:
    """Several tool_use blocks of one message sharing an id: the first keeps it and its result, each
    renamed one is answered as missing (a second result for the id is an orphan, kept as text). Once
    every rename but the last was left unanswered, and the copy was refused."""
    use = {"type": "tool_use", "id": "toolu_01SAME", "name": "Bash", "input": {}}
    answer = {"type": "tool_result", "tool_use_id": "toolu_01SAME", "content": "ok"}
    head = {"sessionId": SID, "cwd": "/tmp/proj"}
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("".join(json.dumps({**head, **d}) + "\n" for d in [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": {"role": "user", "content": "go"}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1",
         "message": {"id": "m1", "role": "assistant", "content": [use] * uses}},
        {"type": "user", "uuid": "u2", "parentUuid": "a1", "message": {"role": "user", "content": [answer] * answers}},
    ]))
    result = rewind(src, "patch")
    assert not errors(findings(result.path))
    ds = entries(result.path)
    ids = [b["id"] for d in ds if d["type"] == "assistant" for b in d["message"]["content"]]
    assert ids[0] == "toolu_01SAME" and len(set(ids)) == uses
    blocks = [b for d in ds if d["type"] == "user" and isinstance(d["message"]["content"], list)
              for b in d["message"]["content"]]
    results = {b["tool_use_id"]: b["content"] for b in blocks if b["type"] == "tool_result"}
    assert results == {ids[0]: "ok", **{i: MISSING_RESULT_TEXT for i in ids[1:]}}
    assert sum(b["type"] == "text" and b["text"].endswith("\nok") for b in blocks) == answers - 1


def test_patch_moves_the_result_first(tmp_path: Path) -> None:
    src = broken("tool-result-not-first").write(tmp_path / f"{SID}.jsonl")
    result = rewind(src, "patch")
    users = [d for d in entries(result.path) if d.get("type") == "user" and isinstance(d["message"]["content"], list)]
    line = next(d for d in users if any(b.get("tool_use_id") == "toolu_01NF" for b in d["message"]["content"]))
    assert [b["type"] for b in line["message"]["content"]] == ["tool_result", "text"]


# --- real sessions broken by removing one result ----------------------------------------------

REAL = [p for p in corpus_files("*.jsonl") if "/subagents/" not in str(p) and b'"tool_result"' in p.read_bytes()]


def _break_real(path: Path, dest: Path) -> tuple[Path, str]:
    """Copy `path` without the first tool_result line of its live main conversation that is not pending."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    main = next(c for c in rebuild(read_transcript(str(path)).entries) if c.kind == "main")
    last = main.messages[-1]
    candidates = [e for m in main.messages for e in m.entries
                  if e.has_tool_result and not (m is last and len(m.entries) == 1)]
    victim = candidates[len(candidates) // 2]
    tid = next(b.tool_id for b in victim.blocks if b.kind == "tool_result")
    dest.write_bytes(b"\n".join(lines[: victim.line - 1] + lines[victim.line :]))
    assert tid is not None
    return dest, tid


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared real corpus is absent ({CORPUS})")
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_rewind_real_session_broken_by_removing_a_result(tmp_path: Path, path: Path, mode: str) -> None:
    sid = str(uuid.uuid4())
    src, tid = _break_real(path, tmp_path / f"{sid}.jsonl")
    before = sha(src)
    fs = errors(findings(src))
    assert [(f.rule, f.tool_use_id) for f in fs] == [("orphan-tool-use", tid)]
    result = rewind(src, mode)
    assert sha(src) == before
    assert errors(findings(result.path)) == []
    assert serious(findings(result.path)) == []
    assert_new_session(result.path, read_transcript(str(src)).entries[-1].session_id or sid)
    if mode == "patch":
        assert active_texts(src) <= active_texts(result.path)
    assert len(entries(result.path)) <= len(entries(src)) + 2
    assert_well_formed(result.path, src)


# --- CLI: output places, resume command, refusals ----------------------------------------------


def test_cli_prints_the_resume_command_for_the_new_file(tmp_path: Path) -> None:
    """`cd <cwd> && claude --resume <id>` when the cwd is the folder Claude Code files the session under;
    without the `cd`, and saying why, when it is not (the project moved)."""
    project = tmp_path / "app"
    project.mkdir()
    b = broken("orphan-tool-use")
    for line in b.lines:
        if isinstance(line, dict) and "cwd" in line:
            line["cwd"] = str(project)
    folder = tmp_path / "projects" / str(project).replace("/", "-").replace("_", "-")
    src = b.write(folder / f"{SID}.jsonl")
    before = sha(src)
    proc = run_cli("rewind", str(src))
    assert proc.returncode == 0, proc.stderr
    new = [p for p in folder.iterdir() if p != src]
    assert len(new) == 1
    assert f"\nResume it with:\n  cd {project} && claude --resume {new[0].stem}\n" in proc.stdout
    assert sha(src) == before
    assert errors(findings(new[0])) == []
    moved = b.write(tmp_path / "elsewhere" / f"{SID}.jsonl")
    proc = run_cli("rewind", str(moved))
    sid = next(p.stem for p in moved.parent.iterdir() if p != moved)
    assert proc.stdout.endswith(
        f"\nResume it with:\n  claude --resume {sid}\n  (the session was recorded in {project}, which is not the "
        "folder Claude Code files it under (elsewhere): run the command from the folder whose path gives that name)\n")


def test_cli_json_output(tmp_path: Path) -> None:
    src = broken("orphan-tool-result").write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("rewind", "--mode", "patch", "--format", "json", str(src))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["path"]).is_file() and out["mode"] == "patch"
    assert out["session_id"] == Path(out["path"]).stem
    assert out["resume_command"] == f"claude --resume {out['session_id']}"


def test_cli_out_writes_there(tmp_path: Path) -> None:
    src = broken("duplicate-tool-use-id").write(tmp_path / "a" / f"{SID}.jsonl")
    target_sid = "22222222-2222-4222-8222-222222222222"
    out = tmp_path / "b" / f"{target_sid}.jsonl"
    out.parent.mkdir()
    proc = run_cli("rewind", "--mode", "patch", "--out", str(out), str(src))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and errors(findings(out)) == []
    assert assert_new_session(out, SID) == target_sid
    assert f"claude --resume {target_sid}" in proc.stdout
    assert sorted(x.name for x in src.parent.iterdir()) == [src.name]
    # An existing target is never overwritten.
    before = sha(out)
    proc = run_cli("rewind", "--mode", "patch", "--out", str(out), str(src))
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert sha(out) == before


def test_cli_in_place_keeps_a_backup(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    original = src.read_bytes()
    proc = run_cli("rewind", "--in-place", str(src))
    assert proc.returncode == 0, proc.stderr
    backups = list(tmp_path.glob(f"{SID}.jsonl.*.bak"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == original
    assert src.read_bytes() != original
    assert errors(findings(src)) == []
    assert all(d.get("sessionId", SID) == SID for d in entries(src))  # same session, resumable as before
    assert f"claude --resume {SID}" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, backups[0].name])


def test_cli_out_and_in_place_together_is_a_usage_error(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("rewind", "--in-place", "--out", str(tmp_path / "x.jsonl"), str(src))
    assert proc.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_cli_refuses_a_healthy_session(tmp_path: Path) -> None:
    b = Builder()
    b.user("hi")
    b.tool_turn(["toolu_01OK"])
    b.assistant(text_block("fine"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    before = sha(src)
    for mode in ("truncate", "patch"):
        proc = run_cli("rewind", "--mode", mode, str(src))
        assert proc.returncode == 2
        assert "nothing to repair" in proc.stderr
    assert sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


@pytest.mark.parametrize("args", [["rewind", "missing.jsonl"], ["rewind", "notes.txt"], ["rewind"],
                                  ["rewind", "--mode", "bogus", "x.jsonl"]])
def test_cli_rewind_usage_errors(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip()


def test_subagents_are_copied_with_the_new_session(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    agent = Builder()
    agent.user("p", parent=None, sidechain=True, agent_id="abc1234")
    agent.assistant({"type": "text", "text": "done"}, sidechain=True, agent_id="abc1234")
    sub = agent.write(tmp_path / SID / "subagents" / "agent-abc1234.jsonl")
    sub_before = sha(sub)
    result = rewind(src, "patch")
    copied = result.path.with_suffix("") / "subagents" / "agent-abc1234.jsonl"
    assert copied.is_file()
    assert all(d["sessionId"] == result.session_id for d in entries(copied))
    assert sha(sub) == sub_before


def _agent_file(folder: Path) -> Path:
    agent = Builder()
    agent.user("p", parent=None, sidechain=True, agent_id="abc1234")
    agent.assistant({"type": "text", "text": "done"}, sidechain=True, agent_id="abc1234")
    return agent.write(folder / SID / "subagents" / "agent-abc1234.jsonl")


def test_a_subagent_copy_is_counted_and_one_that_lost_a_line_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy of each subagent file is read back and counted like the session's: a writer that
    lost a line (injected here) leaves nothing written, and says what the copy lacks."""
    import rewind_lsp.placement as placement

    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    sub = _agent_file(tmp_path)
    real = placement.with_session_id

    def losing(raw: bytes, session_id: str) -> bytes:
        return b"" if b'"assistant"' in raw and b'"done"' in raw else real(raw, session_id)

    monkeypatch.setattr(placement, "with_session_id", losing)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RewindError) as refused:
        rewind(src, "patch")
    assert str(refused.value) == (
        f"the copy of {sub} does not hold what that file holds (1 line instead of 2; 0 assistant replies "
        "instead of 1); nothing was written. Please report this with `rewind-lsp doctor`."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_subagent_file_with_a_torn_tail_and_a_crlf_line_is_copied_as_it_is(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    sub = _agent_file(tmp_path)
    lines = sub.read_bytes().split(b"\n")
    sub.write_bytes(lines[0] + b"\r\n" + b"\n".join(lines[1:]) + b'{"type":"user","uuid":"torn')
    result = rewind(src, "patch")
    copied = result.path.with_suffix("") / "subagents" / sub.name
    assert copied.read_bytes() == sub.read_bytes().replace(SID.encode(), result.session_id.encode())


# --- --out names: the printed resume command must work ------------------------------------------

OTHER_SID = "2222abcd-2222-4222-8222-22222222cdef"


@pytest.mark.parametrize("name", [
    "repaired.jsonl",  # not a UUID: `claude --resume repaired` finds nothing
    OTHER_SID.upper() + ".jsonl",  # uuid.UUID takes these spellings; Claude Code's id would differ
    OTHER_SID.replace("-", "") + ".jsonl",
    "{" + OTHER_SID + "}.jsonl",
    "urn:uuid:" + OTHER_SID + ".jsonl",
    OTHER_SID + ".json",  # not a transcript name
    OTHER_SID,
])
def test_cli_out_refuses_a_name_that_is_no_session_id(tmp_path: Path, name: str) -> None:
    src = broken("orphan-tool-use").write(tmp_path / "a" / f"{SID}.jsonl")
    (tmp_path / "b").mkdir()
    proc = run_cli("rewind", "--mode", "patch", "--out", str(tmp_path / "b" / name), str(src))
    assert proc.returncode == 2
    assert "<session id>.jsonl" in proc.stderr and "nothing was written" in proc.stderr
    assert "claude --resume" not in proc.stdout
    assert sorted(x.name for x in src.parent.iterdir()) == [src.name]
    assert list((tmp_path / "b").iterdir()) == []


def test_cli_help_documents_the_out_names() -> None:
    proc = run_cli("rewind", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "<session id>.jsonl" in text and "any other name is refused" in text and "folder" in text


def test_session_id_of_takes_only_claude_codes_spelling() -> None:
    assert session_id_of(Path(f"/x/{OTHER_SID}.jsonl")) == OTHER_SID
    assert session_id_of(Path(f"/x/{OTHER_SID.upper()}.jsonl")) is None
    assert session_id_of(Path("/x/notes.jsonl")) is None


def test_cli_out_folder_gets_a_new_session_file(tmp_path: Path) -> None:
    """--out FOLDER: a new `<uuid>.jsonl` in it, whose name is the sessionId inside. Outside the
    original's folder the CLI says to move it there first (Claude Code looks only there)."""
    src = broken("orphan-tool-use").write(tmp_path / "a" / f"{SID}.jsonl")
    dest = tmp_path / "b"
    dest.mkdir()
    proc = run_cli("rewind", "--out", str(dest), str(src))
    assert proc.returncode == 0, proc.stderr
    [new] = list(dest.iterdir())
    sid = assert_new_session(new, SID)
    assert f"claude --resume {sid}" in proc.stdout
    assert "move" in proc.stdout and str(src.parent) in proc.stdout
    # The original's own folder: beside it, no move needed.
    proc = run_cli("rewind", "--format", "json", "--out", str(src.parent), str(src))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert Path(out["path"]).parent == src.parent and out["beside_original"] is True
    assert out["resume_command"] == f"claude --resume {Path(out['path']).stem}"
    assert assert_new_session(Path(out["path"]), SID) == out["session_id"]


def test_cli_out_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    proc = run_cli("rewind", "--out", str(tmp_path / "nope" / f"{OTHER_SID}.jsonl"), str(src))
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == [src.name]


def test_in_place_on_a_file_not_named_by_its_session_prints_no_resume_command(tmp_path: Path) -> None:
    """In place keeps the ids; a file named `broken.jsonl` is no session Claude Code can find by
    name, so no `claude --resume broken` is printed (text) and the JSON command is null."""
    for fmt in ("text", "json"):
        src = broken("orphan-tool-use").write(tmp_path / fmt / "broken.jsonl")
        result_proc = run_cli("rewind", "--in-place", "--format", fmt, str(src))
        assert result_proc.returncode == 0, result_proc.stderr
        assert errors(findings(src)) == []
        if fmt == "json":
            assert json.loads(result_proc.stdout)["resume_command"] is None
        else:
            assert "claude --resume broken" not in result_proc.stdout and "Resume it" not in result_proc.stdout
            assert "cannot find it" in result_proc.stdout


def test_out_onto_an_existing_subagent_folder_is_refused(tmp_path: Path) -> None:
    """The new session's `<id>/` folder exists already (an interrupted run's, say): never merged
    into or overwritten, and no session file without its subagents is written."""
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    Builder().write(tmp_path / SID / "subagents" / "agent-abc.jsonl")
    (tmp_path / OTHER_SID).mkdir()
    (tmp_path / OTHER_SID / "mine.txt").write_text("keep")
    with pytest.raises(RewindError, match="already exists"):
        rewind(src, "patch", out=tmp_path / f"{OTHER_SID}.jsonl")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([src.name, SID, OTHER_SID])
    assert (tmp_path / OTHER_SID / "mine.txt").read_text() == "keep"


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444])
def test_the_copy_gets_the_originals_permission_bits(tmp_path: Path, mode: int) -> None:
    """mkstemp makes 0600 files; the copy (beside, --out, in place) and the subagent copies must have
    the original's bits instead, whatever the umask."""
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    agent = Builder()
    agent.user("p", parent=None, sidechain=True, agent_id="abc1234")
    agent.assistant({"type": "text", "text": "done"}, sidechain=True, agent_id="abc1234")
    sub = agent.write(tmp_path / SID / "subagents" / "agent-abc1234.jsonl")
    os.chmod(sub, 0o640)
    os.chmod(sub.parent, 0o750)
    os.chmod(src, mode)
    old_umask = os.umask(0o077)  # a strict umask must not leak into the copy either
    try:
        beside = rewind(src, "patch")
        out = rewind(src, "patch", out=tmp_path / f"{OTHER_SID}.jsonl")
        in_place = rewind(src, "patch", in_place=True)
    finally:
        os.umask(old_umask)
    for result in (beside, out, in_place):
        assert stat.S_IMODE(result.path.stat().st_mode) == mode, result.path
    for result in (beside, out):
        copy = result.path.with_suffix("") / "subagents" / "agent-abc1234.jsonl"
        assert stat.S_IMODE(copy.stat().st_mode) == 0o640
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o750
        assert stat.S_IMODE(copy.parent.parent.stat().st_mode) == stat.S_IMODE((tmp_path / SID).stat().st_mode)
    assert in_place.backup is not None and stat.S_IMODE(in_place.backup.stat().st_mode) == mode


# --- leftovers of a killed rewind -------------------------------------------------------------


def test_stale_temporaries_are_swept_recent_ones_kept(tmp_path: Path) -> None:
    """A rewind killed with -9 leaves hidden `.*.rewind-tmp` copies; the next rewind in the folder
    removes those old enough to be dead, and leaves recent ones (a rewind running now)."""
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    old_file = tmp_path / f".{OTHER_SID}.jsonl.abcd.rewind-tmp"
    old_file.write_text("partial")
    old_dir = tmp_path / f".{OTHER_SID}.efgh.rewind-tmp"
    (old_dir / "subagents").mkdir(parents=True)
    (old_dir / "subagents" / "agent-x.jsonl").write_text("partial")
    fresh = tmp_path / f".{OTHER_SID}.jsonl.ijkl.rewind-tmp"
    fresh.write_text("in progress")
    not_ours = tmp_path / "notes.rewind-tmp"  # not hidden: not a name rewind makes
    not_ours.write_text("mine")
    past = time.time() - STALE_TEMP_SECONDS - 60
    for p in (old_file, old_dir, not_ours):
        os.utime(p, (past, past))
    result = rewind(src, "patch")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([src.name, result.path.name, fresh.name,
                                                                 not_ours.name])


# --- a source that changes meanwhile ----------------------------------------------------------


def test_ensure_unchanged_refuses_a_changed_source(tmp_path: Path) -> None:
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    before = _fingerprint(src)
    _ensure_unchanged(src, before)  # unchanged: fine
    with open(src, "a", encoding="utf-8") as f:
        f.write(dumps({"type": "progress", "uuid": "late", "parentUuid": None}) + "\n")
    with pytest.raises(RewindError, match="changed while it was being repaired"):
        _ensure_unchanged(src, before)
    # Same size and mtime but other bytes are caught too (the content hash is part of it).
    data = bytearray(src.read_bytes())
    st = src.stat()
    now = _fingerprint(src)
    data[-3:-1] = b"XX"
    src.write_bytes(bytes(data))
    import os

    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(RewindError):
        _ensure_unchanged(src, now)


@pytest.mark.parametrize("child", [True, False])
def test_the_source_is_fingerprinted_beside_its_analysis_and_its_failure_is_rewind_s(
    child: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest is taken while the source is analysed: here while a forked child analyses it,
    or, where no child can be forked (a thread running), in a thread of its own. What it raises is
    raised by rewind, nothing is written, and no thread or child is left behind (a fork later would
    refuse)."""
    from rewind_lsp import placement

    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    threads: list[str] = []

    def failing(path: Path) -> tuple[int, int, int, str]:
        threads.append(threading.current_thread().name)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(placement, "fingerprint", failing)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="another thread")
    if not child:
        other.start()
    try:
        with pytest.raises(PermissionError):
            rewind(src, "patch")
    finally:
        stop.set()
        if other.is_alive():
            other.join()
    assert threads == (["MainThread"] if child else ["rewind-lsp fingerprint_0"])
    assert threading.active_count() == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of this process left, running or unreaped
    assert sorted(x.name for x in tmp_path.iterdir()) == [src.name]


def test_rewind_of_a_session_still_being_written_is_refused(tmp_path: Path) -> None:
    """A writer appends to the session during the whole rewind: nothing may be written."""
    b = broken("orphan-tool-use")
    for k in range(3000):  # big enough that the rewind takes a while
        b.user(f"filler prompt {k}")
        b.assistant({"type": "text", "text": f"filler answer {k}" * 5})
    src = b.write(tmp_path / f"{SID}.jsonl")
    stop = threading.Event()
    started = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            with open(src, "a", encoding="utf-8") as f:
                f.write(dumps({"type": "progress", "uuid": f"w{n}", "parentUuid": None, "sessionId": SID}) + "\n")
            n += 1
            started.set()
            stop.wait(0.001)

    t = threading.Thread(target=writer)
    t.start()
    try:
        started.wait(5)
        with pytest.raises(RewindError, match="changed while it was being repaired"):
            rewind(src, "patch")
    finally:
        stop.set()
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name], "nothing written, no temp file left"


def test_result_is_validated_before_it_goes_into_place(tmp_path: Path) -> None:
    """The repaired copy is checked from the temporary file; only a clean one is linked in place."""
    src = broken("orphan-tool-use").write(tmp_path / f"{SID}.jsonl")
    result = rewind(src, "truncate")
    assert check_transcript_file(str(result.path)).findings == []


def test_truncate_names_the_last_prompt_of_a_message_of_two_and_keeps_every_earlier_line(tmp_path: Path) -> None:
    """Two prompts in a row are one user message: the prompt the cut keeps last is the second."""
    from rewind_lsp.rewind import preview

    b = Builder()
    b.user("first")
    b.assistant(text_block("hi"))
    b.user("second")
    b.user("third")
    b.assistant(tu("toolu_01GONE"))  # never answered: the break
    b.user("fourth")
    b.assistant(text_block("done"))
    src = b.write(tmp_path / f"{SID}.jsonl")
    truncate = next(p for p in preview(src) if p.mode == "truncate")
    assert (truncate.last_prompt_line, truncate.last_prompt_text) == (4, "third")
    assert (truncate.kept_messages, truncate.total_messages) == (3, 6)
    result = rewind(src, "truncate")
    assert [d["message"]["content"] for d in entries(result.path)] == ["first", [text_block("hi")], "second", "third"]
