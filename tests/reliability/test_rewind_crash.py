"""Crash safety of rewind: killed at every write step, raced by a second writer, run twice.

The kill points come from `rel_faults`: every disk-changing call rewind makes is wrapped, the
run is repeated once per point with the process killed there (`os._exit(137)`, like kill -9),
and after each kill the folder is inspected:

- the original transcript (and its subagent transcripts) are byte-identical (sha256);
- nothing in the folder looks like a valid new session unless it IS the complete new session:
  temp files and folders are `.<name>.*.rewind-tmp` (not `*.jsonl`), any new `*.jsonl` is
  byte-identical to what an uninterrupted run writes, and the new session's subagent folder is
  there in full or not at all (always in full once the session file is);
- with `--in-place`, the path holds the original bytes or the complete repaired copy, and in
  the second case a complete backup exists;
- a normal rewind afterwards still works.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import rel_faults
from rel_support import FAULTS, SID, broken_lines, entry, tool_result, tool_use

from rewind_lsp.check import check_transcript_file
from rewind_lsp.findings import Severity
from rewind_lsp.rewind import RewindError, rewind

AGENT_SID = SID


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_session(folder: Path) -> Path:
    """A broken main conversation (an orphan tool_use, then more turns) with a subagent transcript."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        *broken_lines(),
        entry("assistant", "a2", "u2", [tool_use("toolu_02DEF")], "msg_2"),
        entry("user", "u3", "a2", [tool_result("toolu_02DEF", "done")]),
        entry("assistant", "a3", "u3", [{"type": "text", "text": "all done"}], "msg_3"),
    ]
    src = folder / f"{SID}.jsonl"
    src.write_text("\n".join(lines) + "\n")
    agent = folder / SID / "subagents" / "agent-a1b2c3.jsonl"
    agent.parent.mkdir(parents=True)
    agent.write_text("\n".join([
        entry("user", "s1", None, "subtask", isSidechain=True, agentId="a1b2c3"),
        entry("assistant", "s2", "s1", [{"type": "text", "text": "ok"}], "msg_s", isSidechain=True, agentId="a1b2c3"),
    ]) + "\n")
    return src


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def is_temp(name: str) -> bool:
    """Inside or named as a temporary (`.*.rewind-tmp` at the top of the folder)."""
    top = Path(name).parts[0]
    return top.endswith(".rewind-tmp")


def is_subagent_copy(name: str, src_name: str) -> bool:
    """A file in the new session's `<new id>/` folder (the copied subagent transcripts)."""
    return "/" in name and not name.startswith(Path(src_name).stem + "/") and not is_temp(name)


def check_subagent_copies(now: dict[str, bytes], ref: dict[str, bytes], src_name: str, where: str) -> None:
    """The new session's subagent folder is all there or absent, and all there once the new session
    file exists (a resumable session never lacks its subagent transcripts)."""
    wanted = {n: v for n, v in ref.items() if is_subagent_copy(n, src_name)}
    present = {n: v for n, v in now.items() if is_subagent_copy(n, src_name)}
    assert present in ({}, wanted), f"{where}: a partial subagent folder: {sorted(present)}"
    sessions = [n for n in ref if "/" not in n and n.endswith(".jsonl") and n != src_name]
    if wanted and any(n in now for n in sessions):
        assert present == wanted, f"{where}: the new session is in place without its subagent transcripts"


def is_errorless(path: Path) -> bool:
    return not [f for f in check_transcript_file(str(path)).findings if f.severity == Severity.ERROR]


SCENARIOS = {
    # name: (mode, in_place, out name)
    "truncate beside the original": ("truncate", False, None),
    "patch beside the original": ("patch", False, None),
    "patch --out": ("patch", False, "22222222-2222-4222-8222-222222222222.jsonl"),
    "truncate --in-place": ("truncate", True, None),
    "patch --in-place": ("patch", True, None),
}


def reference(tmp: Path, mode: str, in_place: bool, out: str | None) -> tuple[dict[str, bytes], list[str]]:
    """What an uninterrupted run leaves in the folder (with the same deterministic ids), and its points."""
    folder = tmp / "reference"
    src = make_session(folder)
    log = tmp / "points.json"
    code = rel_faults.run(str(src), mode, in_place, str(folder / out) if out else None, 0, log_path=str(log))
    assert code == rel_faults.DONE
    return snapshot(folder), json.loads(log.read_text())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_killed_at_every_write_step_loses_nothing(tmp_path: Path, scenario: str) -> None:
    mode, in_place, out = SCENARIOS[scenario]
    ref, points = reference(tmp_path, mode, in_place, out)
    original = snapshot(make_session(tmp_path / "pristine").parent)
    assert original
    src_name = f"{SID}.jsonl"
    new_files = {k: v for k, v in ref.items() if k not in original or original[k] != v}
    assert new_files, "the uninterrupted run wrote nothing"
    assert len(points) >= 20, points
    replaced_seen = 0
    for k in range(1, len(points) + 1):
        folder = tmp_path / f"kill-{k:03d}"
        src = make_session(folder)
        code = rel_faults.run(str(src), mode, in_place, str(folder / out) if out else None, k)
        assert code == rel_faults.KILLED, f"kill point {k} ({points[k - 1]}): child ended with {code}"
        FAULTS[f"rewind kill points: {scenario}"] += 1
        now = snapshot(folder)
        where = f"killed at point {k}/{len(points)} ({points[k - 1]})"
        for name, data in now.items():
            if name in original and data == original[name]:
                continue
            if is_temp(name):
                assert name.startswith("."), f"{where}: {name}: a temporary must be hidden"
                continue
            if name.endswith(".bak"):
                assert in_place and original[src_name].startswith(data), f"{where}: {name}: not a prefix"
                continue
            if in_place and name == src_name:
                assert data == ref[src_name], f"{where}: the original path holds neither the original nor the repair"
                backups = [v for n, v in now.items() if n.endswith(".bak")]
                assert original[src_name] in backups, f"{where}: the original was replaced, no complete backup exists"
                replaced_seen += 1
                continue
            assert name in ref, f"{where}: unexpected file {name}"
            assert data == ref[name], f"{where}: {name} is a half-written file"
        check_subagent_copies(now, ref, src_name, where)
        for name, data in original.items():
            if not (in_place and name == src_name):
                assert now.get(name) == data, f"{where}: {name} changed or vanished"
        # A normal rewind still works afterwards.
        if in_place and now[src_name] == ref[src_name]:
            with pytest.raises(RewindError, match="nothing to repair"):
                rewind(src, mode=mode, in_place=True)
        else:
            result = rewind(src, mode=mode, in_place=in_place, out=folder if out else None)
            assert is_errorless(result.path), where
        shutil.rmtree(folder)
    if in_place:
        assert replaced_seen > 0  # the kill points after os.replace were reached and checked


@pytest.mark.parametrize("out", [None, "22222222-2222-4222-8222-222222222222.jsonl"])
def test_killed_while_copying_subagents_leaves_no_half_written_copy(tmp_path: Path, out: str | None) -> None:
    """Killed at every point: the subagent copies are made in a hidden temporary folder, renamed into
    place before the session file is linked; so a new session never exists with its subagent
    transcripts empty, cut short or missing, and no `<new id>/` folder is ever partial."""
    ref, points = reference(tmp_path, "patch", False, out)
    src_name = f"{SID}.jsonl"
    assert [n for n in ref if is_subagent_copy(n, src_name)], "the reference run copied no subagent"
    renamed = points.index("os.rename (after)") + 1
    assert renamed < points.index("os.link (before)") + 1, "the subagent folder goes in before the session"
    states = set()
    for k in range(1, len(points) + 1):
        folder = tmp_path / f"kill-{k:03d}"
        make_session(folder)
        code = rel_faults.run(str(folder / src_name), "patch", False, str(folder / out) if out else None, k)
        assert code == rel_faults.KILLED
        now = snapshot(folder)
        check_subagent_copies(now, ref, src_name, f"killed at point {k} ({points[k - 1]})")
        states.add((any(is_subagent_copy(n, src_name) for n in now), any(is_temp(n) and "/" in n for n in now)))
        shutil.rmtree(folder)
    # Killed while the temporary folder was filled, after it was renamed, and before it existed.
    assert {(False, True), (True, False), (False, False)} <= states, states


def test_subagent_copy_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while the subagent folder is copied (disk full, say): no new session, no new
    subagent folder, no temporary left; the original untouched."""
    src = make_session(tmp_path / "s")
    before = snapshot(src.parent)
    import rewind_lsp.placement as rw

    real = rw.fsync_dir

    def failing(folder: Path) -> None:
        if folder.name.endswith(".rewind-tmp"):
            raise OSError(28, "No space left on device")
        real(folder)

    monkeypatch.setattr(rw, "fsync_dir", failing)
    with pytest.raises(RewindError) as refused:
        rewind(src, mode="patch")
    assert str(refused.value) == (f"no space left on the disk holding {src.parent}; nothing was written "
                                  "(the original is untouched)")
    assert snapshot(src.parent) == before


def test_session_link_failure_takes_the_subagent_folder_back(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The subagent folder is renamed in first; if the session file then cannot be linked, the
    folder is removed again: no orphan `<new id>/` folder, no temporary left."""
    src = make_session(tmp_path / "s")
    before = snapshot(src.parent)
    import rewind_lsp.placement as rw

    def refuse_link(_a: object, _b: object) -> None:
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(rw.os, "link", refuse_link)
    with pytest.raises(FileExistsError):
        rewind(src, mode="patch")
    assert snapshot(src.parent) == before


def test_a_subagent_transcript_changing_during_the_copy_is_refused(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_session(tmp_path / "s")
    agent = src.parent / SID / "subagents" / "agent-a1b2c3.jsonl"
    before = snapshot(src.parent)
    import rewind_lsp.placement as rw

    real_lstat = rw.os.lstat
    seen: list[str] = []

    def lstat(path: object, *a: object, **kw: object) -> object:
        if Path(str(path)) == agent:
            seen.append(str(path))
            if len(seen) == 2:  # between the read and the second look: a subagent appends
                with open(agent, "a", encoding="utf-8") as f:
                    f.write(LATE_LINE)
        return real_lstat(path, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rw.os, "lstat", lstat)
    with pytest.raises(RewindError, match="changed while it was being copied"):
        rewind(src, mode="patch")
    after = snapshot(src.parent)
    assert after.pop(str(agent.relative_to(src.parent))) == before.pop(str(agent.relative_to(src.parent))) + \
        LATE_LINE.encode()
    assert after == before


def test_fault_points_cover_every_disk_call(tmp_path: Path) -> None:
    """The instrumented calls are the ones rewind makes: if rewind starts writing through some other
    call, the kill sweep would miss it, so the inventory is asserted here."""
    _, beside = reference(tmp_path / "a", "patch", False, None)
    _, in_place = reference(tmp_path / "b", "patch", True, None)
    kinds = {p.split(" (")[0] for p in beside + in_place}
    assert {"tempfile.mkstemp", "os.fsync", "os.link", "os.replace",
            "os.mkdir", "os.rename", "os.fchmod", "os.chmod", "fingerprint of the source",
            "stat of the source"} <= kinds
    assert any(k.startswith("write ") for k in kinds)
    # The --in-place backup is written through a wrapped writer (created exclusively, not copied).
    assert any(k.startswith("write ") and k.endswith(".bak") for k in kinds), sorted(kinds)
    assert any(p.endswith("(half written)") for p in beside), "torn writes are injected"


# --- a second writer --------------------------------------------------------------------------

LATE_LINE = entry("user", "late", "a3", "a prompt typed while rewind ran") + "\n"


def last_look(points: list[str], side: str) -> int:
    """The point (1-based) just `side` the last look rewind takes at its source before placing the
    copy: a fingerprint (with the digest), or a stat (inode, size, mtime) after it."""
    looks = (f"fingerprint of the source ({side})", f"stat of the source ({side})")
    return max(i for i, p in enumerate(points, 1) if p in looks)


def appender(src: Path) -> Callable[[str], None]:
    def act(_name: str) -> None:
        with open(src, "a", encoding="utf-8") as f:
            f.write(LATE_LINE)

    return act


@pytest.mark.parametrize("scenario", ["patch beside the original", "truncate --in-place", "patch --in-place"])
def test_append_during_rewind_is_refused_with_nothing_written(tmp_path: Path, scenario: str) -> None:
    """Another writer (Claude Code still running) appends to the source at each step before the
    final check: rewind must notice, refuse, and leave nothing behind."""
    mode, in_place, out = SCENARIOS[scenario]
    _, points = reference(tmp_path, mode, in_place, out)
    # From the moment the source is fingerprinted up to the last check before the commit.
    first = points.index("fingerprint of the source (after)") + 1
    last_check = last_look(points, "before")
    first_fsync = points.index("os.fsync (before)") + 1
    assert first < first_fsync < last_check
    for k in range(first, last_check + 1):
        folder = tmp_path / f"append-{k:03d}"
        src = make_session(folder)
        before = snapshot(folder)
        result = tmp_path / f"result-{k}.json"
        code = rel_faults.run(str(src), mode, in_place, None, k, action=appender(src), result_path=str(result))
        where = f"append at point {k} ({points[k - 1]})"
        assert code == rel_faults.REFUSED, f"{where}: rewind was not refused (exit {code})"
        assert "changed while it was being repaired" in json.loads(result.read_text())["refused"], where
        after = snapshot(folder)
        assert after.pop(src.name) == before.pop(src.name) + LATE_LINE.encode(), where  # the append is kept
        assert after == before, f"{where}: left {sorted(set(after) - set(before))}"
        FAULTS[f"second writer appends (refused): {scenario}"] += 1
        shutil.rmtree(folder)


def test_append_after_the_last_check_is_kept_by_the_original(tmp_path: Path) -> None:
    """No check can close the last window (between the final fingerprint and the link) without a
    lock Claude Code does not take. Beside the original this loses nothing: the late line stays in
    the original, which rewind never writes; the copy simply predates it."""
    _, points = reference(tmp_path, "patch", False, None)
    k = last_look(points, "after")
    src = make_session(tmp_path / "s")
    before = src.read_bytes()
    result = tmp_path / "result.json"
    assert rel_faults.run(str(src), "patch", False, None, k, action=appender(src),
                          result_path=str(result)) == rel_faults.DONE
    assert src.read_bytes() == before + LATE_LINE.encode()
    assert is_errorless(Path(json.loads(result.read_text())["path"]))


def test_in_place_append_after_the_last_check_is_not_lost(tmp_path: Path) -> None:
    """With --in-place no check can close the window between the last fingerprint and os.replace
    either; a line appended there goes to the old file, which os.replace unlinks. rewind keeps the
    old file open and appends whatever lies past what it checked to the backup, and says so. An
    append just after the replace lands in the repaired file. Either way, it is kept exactly once."""
    ref, points = reference(tmp_path, "patch", True, None)
    src_name = f"{SID}.jsonl"
    last = last_look(points, "after")
    replaced = points.index("os.replace (after)") + 1
    assert points[last:replaced - 1] == ["os.replace (before)"], points[last:replaced]
    original = make_session(tmp_path / "pristine").read_bytes()
    late = LATE_LINE.encode()
    for k in range(last, replaced + 1):
        folder = tmp_path / f"late-{k}"
        src = make_session(folder)
        result = tmp_path / f"result-{k}.json"
        assert rel_faults.run(str(src), "patch", True, None, k, action=appender(src),
                              result_path=str(result)) == rel_faults.DONE
        where = f"append at point {k} ({points[k - 1]})"
        done = json.loads(result.read_text())
        backup = Path(done["backup"])
        if k < replaced:  # went to the old file: rescued into the backup, and reported
            assert src.read_bytes() == ref[src_name], where
            assert backup.read_bytes() == original + late, where
            assert len(done["warnings"]) == 1, where
            assert f"{len(late)} byte(s)" in done["warnings"][0] and str(backup) in done["warnings"][0], where
        else:  # went to the repaired file, after the replace
            assert src.read_bytes() == ref[src_name] + late, where
            assert backup.read_bytes() == original and done["warnings"] == [], where
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted([src_name, backup.name]), where
        FAULTS["second writer appends after the last check (kept): patch --in-place"] += 1


def test_cli_reports_a_rescued_late_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI says where the late line went (stderr), and the JSON output carries the warning."""
    import rewind_lsp.placement as rw
    from rewind_lsp.cli import main

    real_replace = rw.os.replace
    for fmt in ("text", "json"):
        src = make_session(tmp_path / fmt)

        def replace(a: str, b: str, _src: Path = src) -> None:
            appender(_src)("late")  # after the last check, into the file about to be unlinked
            real_replace(a, b)

        monkeypatch.setattr(rw.os, "replace", replace)
        assert main(["rewind", "--mode", "patch", "--in-place", "--format", fmt, str(src)]) == 0
        monkeypatch.setattr(rw.os, "replace", real_replace)
        out, err = capsys.readouterr()
        backup = next(src.parent.glob("*.bak"))
        assert backup.read_bytes().endswith(LATE_LINE.encode())
        if fmt == "json":
            assert "not in the repaired file" in json.loads(out)["warnings"][0]
        else:
            assert "warning:" in err and str(backup) in err


def test_append_at_the_first_fsync_is_refused(tmp_path: Path) -> None:
    """The case named in the issue: the append lands between the analysis and the rename, at the
    first fsync (of the temporary copy)."""
    src = make_session(tmp_path / "s")
    _, points = reference(tmp_path, "truncate", False, None)
    k = points.index("os.fsync (before)") + 1
    before = snapshot(src.parent)
    code = rel_faults.run(str(src), "truncate", False, None, k, action=appender(src))
    assert code == rel_faults.REFUSED
    after = snapshot(src.parent)
    assert set(after) == set(before)
    assert not [p for p in src.parent.rglob("*") if p.name.endswith(".rewind-tmp")]


# --- twice ------------------------------------------------------------------------------------


def test_rewind_twice_is_harmless(tmp_path: Path) -> None:
    src = make_session(tmp_path / "s")
    original = sha(src)
    first = rewind(src, mode="patch")
    assert is_errorless(first.path)
    first_bytes = first.path.read_bytes()
    # On the repaired output: nothing to repair, nothing written.
    listing = sorted(p.name for p in src.parent.iterdir())
    with pytest.raises(RewindError, match="nothing to repair"):
        rewind(first.path, mode="patch")
    with pytest.raises(RewindError, match="nothing to repair"):
        rewind(first.path, mode="truncate")
    assert sorted(p.name for p in src.parent.iterdir()) == listing
    # On the original again: a second, distinct copy; the first copy and the original untouched.
    second = rewind(src, mode="patch")
    assert second.path != first.path and second.session_id != first.session_id
    assert is_errorless(second.path)
    assert first.path.read_bytes() == first_bytes
    assert sha(src) == original
    # --out onto an existing file is refused, the file untouched.
    with pytest.raises(RewindError, match="already exists"):
        rewind(src, mode="patch", out=first.path)
    assert first.path.read_bytes() == first_bytes


def test_in_place_twice_keeps_the_first_backup(tmp_path: Path) -> None:
    src = make_session(tmp_path / "s")
    original = src.read_bytes()
    done = rewind(src, mode="patch", in_place=True)
    assert done.backup is not None and done.backup.read_bytes() == original
    repaired = src.read_bytes()
    with pytest.raises(RewindError, match="nothing to repair"):
        rewind(src, mode="patch", in_place=True)
    assert src.read_bytes() == repaired
    assert done.backup.read_bytes() == original
