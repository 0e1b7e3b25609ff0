"""What the world outside rewind does to a session while it is repaired, with real files and processes.

A writer cut off mid-line, recorded content that carries its own `sessionId`, an editor saving
over the source, a second rewind of the same session, a full disk, a symlinked subagent folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rel_support import SID, broken_lines, entry, raw_server, tool_use, wait_until

from rewind_lsp import holders, placement
from rewind_lsp.repair_plan import Plan
from rewind_lsp.rewind import RewindError, rewind

TORN = b'{"type":"user","uuid":"u9","parentUuid":"u2","sessionId":"' + SID.encode() + b'","message":{"role":"us'


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path} ends in a partial line: {data[-60:]!r}"
    return data[:-1].split(b"\n")


def assert_all_complete(path: Path) -> None:
    for n, raw in enumerate(lines_of(path), 1):
        assert isinstance(json.loads(raw), dict), f"{path}:{n} is not one JSON object: {raw[:80]!r}"


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bak"))


# --- 1. a torn last line --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["truncate", "patch"])
@pytest.mark.parametrize("in_place", [False, True])
def test_torn_last_line_is_left_out_and_the_copy_ends_in_a_newline(tmp_path: Path, mode: str,
                                                                   in_place: bool) -> None:
    src = tmp_path / f"{SID}.jsonl"
    original = ("\n".join(broken_lines()) + "\n").encode() + TORN
    src.write_bytes(original)
    result = rewind(src, mode=mode, in_place=in_place)
    assert_all_complete(result.path)
    assert TORN not in result.path.read_bytes()
    if in_place:
        (backup,) = backups(tmp_path)
        assert backup.read_bytes() == original  # the torn bytes are kept
    else:
        assert src.read_bytes() == original


@pytest.mark.parametrize("mode", ["truncate", "patch"])
def test_a_complete_last_line_without_newline_gets_one(tmp_path: Path, mode: str) -> None:
    """The synthetic tool_result patch adds after the last assistant line starts a line of its own."""
    src = tmp_path / f"{SID}.jsonl"
    lines = broken_lines()[:2]  # ends with the assistant's tool_use, no final newline
    src.write_text("\n".join(lines))
    result = rewind(src, mode=mode)
    assert_all_complete(result.path)


def write_copy_of(src: Path, plan: Plan, session_id: str | None) -> tuple[bytes, list[str]]:
    out = src.with_name("copy.out")
    src_fd = os.open(src, os.O_RDONLY)
    try:
        tmp_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        left_out = placement.write_copy(src_fd, tmp_fd, plan, session_id, os.fstat(src_fd))
    finally:
        os.close(src_fd)
    return out.read_bytes(), left_out


def test_write_copy_says_what_it_left_out(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_bytes(("\n".join(broken_lines()) + "\n").encode() + TORN)
    data, left_out = write_copy_of(src, Plan(), None)
    assert data == ("\n".join(broken_lines()) + "\n").encode()
    assert left_out == [f"line 4: a half-written last line ({len(TORN)} bytes) was left out; it stays in the original"]


def test_write_copy_inserts_after_an_unterminated_last_line_on_a_line_of_its_own(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()))
    plan = Plan()
    plan.insert_after[3].append({"type": "user", "uuid": "x"})
    data, left_out = write_copy_of(src, plan, None)
    assert data == ("\n".join(broken_lines()) + "\n" + '{"type":"user","uuid":"x"}\n').encode()
    assert left_out == []


def test_write_copy_copies_only_what_was_analysed(tmp_path: Path) -> None:
    """Lines a writer appends after the analysis are not the plan's: they stay in the original
    (rewind then refuses, the digest having changed), and a line half-written when it was read is
    left out even once the writer has finished it."""
    src = tmp_path / f"{SID}.jsonl"
    analysed = ("\n".join(broken_lines()) + "\n").encode()
    for late in (b'{"type":"user","uuid":"late","message":{"role":"user","content":"more"}}\n', TORN):
        src.write_bytes(analysed + late)
        plan = Plan()
        plan.source_size = len(analysed)
        data, left_out = write_copy_of(src, plan, None)
        assert (data, left_out) == (analysed, [])
        (src.parent / "copy.out").unlink()
    src.write_bytes(analysed + TORN + b'"}}\n')  # finished after it was read torn
    plan = Plan()
    plan.source_size = len(analysed) + len(TORN)
    data, left_out = write_copy_of(src, plan, None)
    assert data == analysed
    assert left_out == [f"line 4: a half-written last line ({len(TORN)} bytes) was left out; it stays in the original"]


# --- 2. only the entry's own sessionId is rewritten ------------------------------------------------

NESTED = "99999999-9999-4999-8999-999999999999"


def nested_lines() -> list[str]:
    lines = broken_lines()
    lines[1] = entry("assistant", "a1", "u1", [tool_use("toolu_01ABC", sessionId=NESTED)], "msg_1",
                     toolUseResult={"sessionId": NESTED, "text": 'say "sessionId":"x"'})
    return lines


def test_nested_session_ids_in_recorded_content_are_kept(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(nested_lines()) + "\n")
    agent = tmp_path / SID / "subagents" / "agent-a1.jsonl"
    agent.parent.mkdir(parents=True)
    agent_line = entry("user", "s1", None, [tool_use("toolu_S", sessionId=NESTED)], isSidechain=True)
    agent.write_text(agent_line + "\n")
    result = rewind(src, mode="patch")
    new = result.session_id
    copied = lines_of(result.path)
    # Every byte but the entry's own id is as it was.
    assert copied[1] == nested_lines()[1].replace(f'"sessionId":"{SID}"', f'"sessionId":"{new}"', 1).encode()
    d = json.loads(copied[1])
    assert d["sessionId"] == new
    assert d["message"]["content"][0]["input"]["sessionId"] == NESTED
    assert d["toolUseResult"]["sessionId"] == NESTED
    (agent_copy,) = (tmp_path / new).rglob("agent-a1.jsonl")
    want = agent_line.replace(f'"sessionId":"{SID}"', f'"sessionId":"{new}"', 1)
    assert agent_copy.read_bytes() == want.encode() + b"\n"


@pytest.mark.parametrize(("raw", "want"), [
    (b'{"a":{"sessionId":"x"},"sessionId" : "old"}', b'{"a":{"sessionId":"x"},"sessionId" : "new"}'),
    (b'{"a":"\\"sessionId\\":\\"x\\"", "sessionId":"old"}\r\n',
     b'{"a":"\\"sessionId\\":\\"x\\"", "sessionId":"new"}\r\n'),
    (b'{"sessionId":"old","t":"\xff\xfe"}', b'{"sessionId":"new","t":"\xff\xfe"}'),
    (b'{"a":{"sessionId":"x"}', b'{"a":{"sessionId":"x"}'),  # not one object: left as it is
    (b'[{"sessionId":"x"}]', b'[{"sessionId":"x"}]'),
    # The one spelled-out occurrence is nested; the top-level key is escaped (the walk finds it).
    (b'{"a":{"sessionId":"x"},"session\\u0049d":"old"}', b'{"a":{"sessionId":"x"},"session\\u0049d":"new"}'),
    (b'{"a":{"sessionId":"x"}}', b'{"a":{"sessionId":"x"}}'),  # only nested: left as it is
    (b'{"k":"sessionId","sessionId":"old"}', b'{"k":"sessionId","sessionId":"new"}'),  # the name as a value
    (b'{"sessionId":null,"b":1}', b'{"sessionId":"new","b":1}'),  # not a string: still the entry's own
    (b' {"sessionId"\t:\n"o\\"ld"} ', b' {"sessionId"\t:\n"new"} '),
    (b'{"sessionId":"old","sessionId":"old2"}', b'{"sessionId":"new","sessionId":"new"}'),  # both, as before
    (b'{"sessionId":"old","a":NaN}', b'{"sessionId":"new","a":NaN}'),  # Python's json reads NaN: the walk does
])
def test_with_session_id_changes_only_the_top_level_value(raw: bytes, want: bytes) -> None:
    assert placement.with_session_id(raw, "new") == want


# Lines of every shape the session id rewrite meets, for the copy's chunked path to be judged
# against the line-by-line one (`with_session_id` on each line, as the copy once did).
COPY_SHAPES = [
    entry("user", "u9", None, "hi"),
    entry("assistant", "a9", "u9", [tool_use("toolu_N", sessionId=NESTED)], "msg_9",
          toolUseResult={"sessionId": NESTED}),
    '{"a":{"sessionId":"x"},"session\\u0049d":"' + SID + '","type":"user"}',  # escaped key, nested literal
    '{"a":{"sessionId":"' + SID + '"},"session\\u0049d":"' + SID + '","type":"user"}',  # ... of the same value
    '{"a":{"sessionId":"' + SID + '"},"\\u0073essio\\u006Eid":"' + SID + '","type":"user"}',  # other letters
    '{"type":"user","sessionId" : "' + SID + '"}',  # spaces around the colon
    '{"type":"user","sessionId":"a\\/b"}',  # an escaped slash in the value
    '{"type":"user","sessionId":"' + SID + '","t":"\\u001b[31m"}',  # a \u escape elsewhere
    '{"type":"user","sessionId":"' + SID + '","sessionId":"' + NESTED + '"}',  # the key twice
    '{"type":"user","sessionId":"' + NESTED + '"}',  # another session's line
    '{"type":"user","sessionId":null}',
    '{"type":"user"}',
    "{not json",
    "",
    '{"type":"user","sessionId":"' + SID + '","r":{"sessionId":"' + SID + '"}}',  # nested, of the same value
    '{"type":"user","sessionId":"' + SID + '","big":"' + "x" * (1 << 20) + '"}',  # longer than a chunk
]


@pytest.mark.parametrize(("raw", "fast"), [
    (b'{"parentUuid":"p","sessionId":"s","t":"x"}', True),
    (b'{"sessionId":"s","a":1,"parentUuid":null}', True),  # the other order, a null parent
    (b'{"parentUuid" : "p" ,"sessionId"\t:\t"s"}', True),  # spaces around the colons
    (b'{"parentUuid":"p","sessionId":"s","t":"\xff\xfe"}', True),  # invalid UTF-8 elsewhere
    (b'{"parentUuid":"p","sessionId":"s","r":{"sessionId":"s"}}', False),  # nested: one at a time
    (b'{"parentUuid":"p","r":{"parentUuid":"q"},"sessionId":"s"}', False),
    (b'{"parentUuid":"p","session\\u0049d":"s","a":{"sessionId":"s"}}', False),  # an escaped key
    (b'{"parentUuid":1,"sessionId":"s"}', False),  # not a string
    (b'{"sessionId":"s"}', False),  # no parent of its own
    (b'{"a":{"parentUuid":"x"},"sessionId":"s"}', False),
])
def test_the_parent_and_session_are_set_in_one_pass_as_one_after_the_other(raw: bytes, fast: bool) -> None:
    """Patch's relinked lines in a new session: one pass where provable, else the two steps."""
    got = placement.with_parent_and_session(raw, "new-parent", "new-session")
    assert (got is not None) == fast
    relinked = placement.with_top_level(raw, "parentUuid", "new-parent")
    if got is not None:
        assert relinked is not None
        assert got == placement.with_session_id(relinked, "new-session")


@pytest.mark.parametrize("seed", range(24))
def test_the_chunked_copy_writes_what_a_line_by_line_copy_writes(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole blocks of lines written at once (each line's own id replaced in one pass), runs of them
    between dropped lines, lines one by one, lines longer than a chunk: all as `with_session_id` on
    each line, the dropped lines left out."""
    import random

    from rewind_lsp.repair_plan import LineSessionIds
    from rewind_lsp.transcript import iter_lines, read_transcript

    rng = random.Random(seed)
    # Mostly plain lines of this session, as a real transcript is: blocks of them take the fast path.
    lines = [COPY_SHAPES[0] if rng.random() < 0.7 else rng.choice(COPY_SHAPES) for _ in range(rng.randint(1, 200))]
    ends = [rng.choice([b"\n", b"\n", b"\r\n"]) if seed % 2 else b"\n" for _ in lines]
    data = b"".join(x.encode() + e for x, e in zip(lines, ends, strict=True))
    if seed % 3 == 0:
        data = data.rstrip(b"\r\n")  # the last line without its newline
    monkeypatch.setattr(placement, "_CHUNK", rng.choice([300, 4096, 1 << 20]))
    src = tmp_path / f"{SID}.jsonl"
    src.write_bytes(data)
    plan = Plan()
    plan.session_ids = LineSessionIds(read_transcript(str(src)).entries)
    # Dropped lines are acted on: between them, runs of untouched lines are written a run at a time.
    dropping = rng.choice([0.0, 0.05, 0.3, 0.9])
    plan.drop = {n for n in range(1, len(lines) + 1) if rng.random() < dropping}
    # Relinked lines (patch) are acted on too: those with a parentUuid of their own.
    own_parent = {n for n, x in enumerate(lines, 1) if placement.with_top_level(x.encode(), "parentUuid", "x")}
    plan.reparent = {n: f"parent-{n}" for n in sorted(own_parent - plan.drop) if rng.random() < 0.2}
    new = "12345678-1234-4234-8234-123456789abc"
    got, _ = write_copy_of(src, plan, new)
    want = b""
    with src.open("rb") as f:
        for line, _offset, body, ended in iter_lines(f):
            if line in plan.reparent:
                relinked = placement.with_top_level(body, "parentUuid", plan.reparent[line])
                assert relinked is not None
                body = relinked
            if line not in plan.drop and (ended or placement.is_json_object(body)):
                want += placement.with_session_id(body, new) + b"\n"
    assert got == want
    (tmp_path / "again").mkdir()
    kept, _ = write_copy_of(src.rename(tmp_path / "again" / src.name), Plan(), None)  # in place: bytes as they are
    assert kept == b"".join(body + b"\n" for _l, _o, body, ended in iter_lines(io_bytes(data))
                            if ended or placement.is_json_object(body))


@pytest.mark.parametrize("pair", [(14, 5), (14, 11), (3, 0), (0, 3), (4, 0)])
def test_a_block_of_lines_is_rewritten_only_where_each_line_s_own_id_is(pair: tuple[int, int], tmp_path: Path) -> None:
    """Two lines whose `"sessionId"` keys and values add up to one each, though not line by line:
    the block is rewritten line by line."""
    from rewind_lsp.repair_plan import LineSessionIds
    from rewind_lsp.transcript import read_transcript

    data = b"".join(COPY_SHAPES[i].encode() + b"\n" for i in pair)
    src = tmp_path / f"{SID}.jsonl"
    src.write_bytes(data)
    plan = Plan()
    plan.session_ids = LineSessionIds(read_transcript(str(src)).entries)
    new = "12345678-1234-4234-8234-123456789abc"
    got, _ = write_copy_of(src, plan, new)
    assert got == b"".join(placement.with_session_id(COPY_SHAPES[i].encode(), new) + b"\n" for i in pair)


def io_bytes(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


@pytest.mark.parametrize(("raw", "want"), [
    (b'{"parentUuid":null,"a":{"parentUuid":"x"}}', b'{"parentUuid":"new","a":{"parentUuid":"x"}}'),
    (b'{"a":{"parentUuid":"x"},"parentUuid" : "old","t":"\xff"}',
     b'{"a":{"parentUuid":"x"},"parentUuid" : "new","t":"\xff"}'),
    (b'{"parentUuid":"o\\u0041"}', b'{"parentUuid":"new"}'),  # an escape: the walk
    (b'{"a":{"parentUuid":"x"}}', None),  # only nested: not the line's own
    (b'[{"parentUuid":"x"}]', None),
])
def test_with_top_level_sets_the_line_s_own_parent(raw: bytes, want: bytes | None) -> None:
    """Patch relinks a line by its bytes (`Plan.reparent`): only its own top-level parentUuid changes."""
    assert placement.with_top_level(raw, "parentUuid", "new") == want


# --- 3. a source replaced by rename while rewind runs ----------------------------------------------

REWIND_IN_CHILD = (
    "import sys\n"
    "from rewind_lsp import placement\n"
    "from rewind_lsp.rewind import RewindError, rewind\n"
    "placement.LOCK_WAIT_SECONDS = float(sys.argv[3])\n"
    "try:\n"
    "    r = rewind(sys.argv[1], mode='patch', in_place=sys.argv[2] == 'in-place')\n"
    "except RewindError as e:\n"
    "    print('refused:', e)\n"
    "    sys.exit(3)\n"
    "print('done:', r.path)\n"
)


def start_rewind(src: Path, in_place: bool, wait: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", REWIND_IN_CHILD, str(src), "in-place" if in_place else "copy",
                             str(wait)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:
        return False


@pytest.mark.parametrize("in_place", [False, True])
def test_source_replaced_by_rename_is_refused_cleanly(tmp_path: Path, in_place: bool) -> None:
    """The test holds the session lock, so the child is stopped at the latest at the lock; once it
    has the source open, an editor-style save (write a new file, rename it over) replaces it."""
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    saved = "\n".join([*broken_lines(), entry("user", "u3", "u2", "typed in an editor")]) + "\n"
    with open(src, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        child = start_rewind(src, in_place, 60)
        wait_until(lambda: has_open(child.pid, src), timeout=30)
        other = tmp_path / "editor.tmp"
        other.write_text(saved)
        os.replace(other, src)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert out == (f"refused: {src} changed while it was being repaired (is the session still running?); nothing "
                   "was written. Close the session and try again.\n")
    assert err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
    assert src.read_text() == saved


def test_write_copy_reads_the_file_it_was_given_not_the_path(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    first = "\n".join(broken_lines()) + "\n"
    src.write_text(first)
    src_fd = os.open(src, os.O_RDONLY)
    try:
        other = tmp_path / "other"
        other.write_text("something else\n")
        os.replace(other, src)
        tmp_fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        placement.write_copy(src_fd, tmp_fd, Plan(), None, os.fstat(src_fd))
    finally:
        os.close(src_fd)
    assert (tmp_path / "out").read_text() == first


# --- 4. two --in-place rewinds of one session --------------------------------------------------------


def test_a_rewind_waits_for_another_rewind_of_the_same_session_then_refuses(tmp_path: Path) -> None:
    """The test holds the session lock as a running rewind would: the child waits its bound, then
    refuses with nothing written."""
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    original = src.read_bytes()
    with open(src, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        child = start_rewind(src, True, 0.5)
        out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert out == (f"refused: {src} is being repaired by another rewind; nothing was written. Wait for it to "
                   "finish and try again.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
    assert src.read_bytes() == original


def test_a_rewind_proceeds_once_the_other_rewind_lets_go(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    original = src.read_bytes()
    with open(src, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        child = start_rewind(src, True, 60)
        wait_until(lambda: has_open(child.pid, src), timeout=30)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, (out, err)
    (backup,) = backups(tmp_path)
    assert backup.read_bytes() == original


def test_backups_never_overwrite_an_existing_file(tmp_path: Path) -> None:
    """Every name a backup of this second (and the next few) could take already exists: the backup
    goes under a new name, and the files that were there are left as they were."""
    import time

    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    original = src.read_bytes()
    now = time.time()
    taken = {}
    for dt in range(6):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + dt))
        p = tmp_path / f"{src.name}.{stamp}.bak"
        p.write_text(f"someone else's {dt}")
        taken[p] = p.read_bytes()
    result = rewind(src, mode="patch", in_place=True)
    assert result.backup is not None and result.backup not in taken
    assert result.backup.read_bytes() == original
    assert {p: p.read_bytes() for p in taken} == taken


@pytest.mark.parametrize("run", range(5))
def test_two_in_place_rewinds_racing_keep_the_original(tmp_path: Path, run: int) -> None:
    """Two real processes repair one session at once: whatever the interleaving, the original is in a
    backup, the session is repaired, and the loser is refused clearly (never a traceback)."""
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    original = src.read_bytes()
    children = [start_rewind(src, True, 30) for _ in range(2)]
    results = [c.communicate(timeout=120) for c in children]
    codes = sorted(c.returncode for c in children)
    assert codes in ([0, 0], [0, 3]), results
    for (out, err), c in zip(results, children, strict=True):
        assert err == "", err
        if c.returncode == 3:
            assert out in (
                f"refused: {src} changed while it was being repaired (is the session still running?); nothing "
                "was written. Close the session and try again.\n",
                f"refused: {src}: the session already pairs; nothing to repair\n",
            ), out
    assert original in [b.read_bytes() for b in backups(tmp_path)]
    assert_all_complete(src)
    with pytest.raises(RewindError, match="nothing to repair"):
        rewind(src, mode="patch", in_place=True)


# --- 5. a full disk at every write step -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def big_broken_session(folder: Path) -> Path:
    """About 40 KB, with a subagent transcript: the copy, the subagent copy and the backup each need pages."""
    lines = broken_lines()
    lines[0] = entry("user", "u1", None, "list files " + "x" * 40_000)
    src = folder / f"{SID}.jsonl"
    src.write_text("\n".join(lines) + "\n")
    agent = folder / SID / "subagents" / "agent-a1.jsonl"
    agent.parent.mkdir(parents=True)
    agent.write_text(entry("user", "s1", None, "y" * 20_000, isSidechain=True) + "\n")
    return src


@pytest.mark.parametrize("in_place", [False, True])
def test_a_full_disk_at_every_step_leaves_the_original_and_no_temporary(small_disk: Path, in_place: bool) -> None:
    """The free space is cut down 4 KB at a time below what a rewind needs: each run either completes or
    is refused saying the disk is full, with the original as it was and nothing else in the folder."""
    refused = completed = 0
    for free_pages in range(0, 40):
        folder = small_disk / f"run{free_pages}"
        folder.mkdir()
        src = big_broken_session(folder)
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        filler = small_disk / "filler"
        free = os.statvfs(small_disk)
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free.f_bavail * free.f_frsize - free_pages * 4096))
        try:
            rewind(src, mode="patch", in_place=in_place)
        except RewindError as exc:
            assert str(exc) == (f"no space left on the disk holding {folder}; nothing was written (the original is "
                                "untouched)")
            now = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            assert now == before, f"{free_pages} pages free: the folder changed"
            assert sorted(p.name for p in folder.iterdir()) == sorted([src.name, SID]), free_pages
            refused += 1
        else:
            completed += 1
        filler.unlink()
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        if completed >= 2:
            break
    assert refused >= 3 and completed >= 1, (refused, completed)


# --- 6. a symlinked subagent folder ----------------------------------------------------------------


def outside_secrets(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "subagents").mkdir(parents=True)
    (outside / "subagents" / "agent-x.jsonl").write_text(entry("user", "s1", None, "secret", isSidechain=True) + "\n")
    (outside / "id_rsa").write_text("private\n")
    return outside


@pytest.mark.parametrize("link", ["session folder", "subagents folder", "subagent file"])
def test_a_symlink_out_of_the_session_folder_is_refused(tmp_path: Path, link: str) -> None:
    folder = tmp_path / "projects" / "p"
    folder.mkdir(parents=True)
    src = folder / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    outside = outside_secrets(tmp_path)
    if link == "session folder":
        named = folder / SID
        os.symlink(outside, named)
    elif link == "subagents folder":
        (folder / SID).mkdir()
        named = folder / SID / "subagents"
        os.symlink(outside / "subagents", named)
    else:
        (folder / SID / "subagents").mkdir(parents=True)
        named = folder / SID / "subagents" / "agent-y.jsonl"
        os.symlink(outside / "subagents" / "agent-x.jsonl", named)
    with pytest.raises(RewindError) as refused:
        rewind(src, mode="patch")
    inside = folder / SID
    assert str(refused.value) == (f"{named} is a symbolic link out of the session's folder "
                                  f"{inside.parent if link == 'session folder' else inside}; nothing was written. "
                                  "Replace the link with the files themselves and try again.")
    assert sorted(p.name for p in folder.iterdir()) == sorted([src.name, SID])


@pytest.mark.parametrize("command", ["rewind-lsp.rewind", "rewind-lsp.repair"])
def test_the_server_refuses_a_subagent_folder_linked_out_of_the_session(tmp_path: Path, command: str) -> None:
    """Rewind and Repair from the editor: the same refusal as the CLI's, as the command's result and
    as an error message; nothing is copied from the link's target."""
    folder = tmp_path / "claude" / "projects" / "p"
    folder.mkdir(parents=True)
    src = folder / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    outside = outside_secrets(tmp_path)
    (folder / SID).mkdir()
    named = folder / SID / "subagents"
    os.symlink(outside / "subagents", named)
    with raw_server(tmp_path, {"watchRoots": [str(folder.parent)]}) as srv:
        reply = srv.request("workspace/executeCommand", {"command": command, "arguments": [src.as_uri()]},
                            timeout=60)
        shown = wait_until(lambda: [m for m in srv.shown_messages() if "symbolic link" in m], 10)
    message = (f"rewind-lsp: {named} is a symbolic link out of the session's folder {folder / SID}; nothing was "
               "written. Replace the link with the files themselves and try again.")
    assert reply["result"] == {"error": message}
    assert shown == [message]
    assert sorted(p.name for p in folder.iterdir()) == sorted([src.name, SID])
    assert sorted(p.name for p in (folder / SID).iterdir()) == ["subagents"]


def test_only_subagent_transcripts_are_copied(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    agents = tmp_path / SID / "subagents"
    agents.mkdir(parents=True)
    (agents / "agent-1.jsonl").write_text(entry("user", "s1", None, "x", isSidechain=True) + "\n")
    (agents / "agent-1.meta.json").write_text('{"agentType":"general"}')
    (agents / "notes.txt").write_text("not a transcript\n")
    os.mkfifo(agents / "agent-2.jsonl")
    os.symlink(agents / "agent-1.jsonl", agents / "agent-3.jsonl")  # within the folder: left out, not refused
    result = rewind(src, mode="patch")
    copied = tmp_path / result.session_id / "subagents"
    assert sorted(p.name for p in copied.iterdir()) == ["agent-1.jsonl", "agent-1.meta.json"]
    assert (copied / "agent-1.meta.json").read_text() == '{"agentType":"general"}'


# --- 7. a writer holding the file open while --in-place swaps it ------------------------------------

WRITER = (
    "import os, sys, json, random, time\n"
    "path, stop = sys.argv[1], sys.argv[2]\n"
    "random.seed(int(sys.argv[3]))\n"
    "fd = os.open(path, os.O_WRONLY | os.O_APPEND)\n"
    "print('open', flush=True)\n"
    "i = 0\n"
    "while not os.path.exists(stop):\n"
    "    os.write(fd, (json.dumps({'type': 'system', 'uuid': f'late-{i}'}) + '\\n').encode())\n"
    "    i += 1\n"
    "    time.sleep(random.choice((0, 0, 0.001, 0.005, 0.02)))  # bursts and pauses, like a live session\n"
    "print(i, flush=True)\n"
)


def test_a_writer_appending_throughout_is_never_swapped_under(tmp_path: Path) -> None:
    """A real process holds the session open and appends lines in a loop (Claude Code still running)
    while --in-place runs, 20 times. It holds the file from before the rewind starts to after it
    ends, so every run is refused (the file changed, or it is open for writing): a swap would send
    its next lines to a file no name reaches. The file is the writer's, all of it, and alone."""
    for run in range(20):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        src = folder / f"{SID}.jsonl"
        original = ("\n".join(broken_lines()) + "\n").encode()
        src.write_bytes(original)
        stop = folder / ".stop"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(stop), str(run)], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout is not None and writer.stdout.readline() == "open\n"
        try:
            with pytest.raises(RewindError) as refused:
                rewind(src, mode="patch", in_place=True)
        finally:
            stop.touch()
            written = int(writer.communicate(timeout=60)[0])
        assert str(refused.value) in (changed_error_text(src), str(placement.writers_error(
            src, [holders.Holder(writer.pid, f"{sys.executable} -c {WRITER}"[:79] + "…")])))
        late = [json.dumps({"type": "system", "uuid": f"late-{i}"}).encode() for i in range(written)]
        assert src.read_bytes() == original + b"".join(line + b"\n" for line in late)
        stop.unlink()
        assert sorted(p.name for p in folder.iterdir()) == [src.name]


def changed_error_text(src: Path) -> str:
    return (f"{src} changed while it was being repaired (is the session still running?); nothing was written. "
            "Close the session and try again.")


def test_rescue_late_bytes_keeps_what_reached_the_replaced_file(tmp_path: Path) -> None:
    """After the swap, a line a real process appends to the old file (it opened it before) is put at the
    end of the backup."""
    src = tmp_path / f"{SID}.jsonl"
    original = ("\n".join(broken_lines()) + "\n").encode()
    src.write_bytes(original)
    backup = tmp_path / "b.bak"
    backup.write_bytes(original)
    src_fd = os.open(src, os.O_RDONLY)
    try:
        writer = subprocess.Popen([sys.executable, "-c", "import os, sys\n"
                                   "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
                                   "print('open', flush=True)\n"
                                   "sys.stdin.readline()\n"
                                   "os.write(fd, b'{\"type\":\"system\",\"uuid\":\"late\"}\\n')\n", str(src)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "open\n"
        new = tmp_path / "new"
        new.write_text("repaired\n")
        os.replace(new, src)  # the swap --in-place makes
        writer.stdin.write("go\n")
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
        late = placement.rescue_late_bytes(src_fd, len(original), backup)
    finally:
        os.close(src_fd)
    assert late == len(b'{"type":"system","uuid":"late"}\n')
    assert backup.read_bytes() == original + b'{"type":"system","uuid":"late"}\n'
    assert src.read_text() == "repaired\n"


# --- what place() reports, and a failing disk ------------------------------------------------------


def place_directly(src: Path, in_place: bool) -> placement.Placed:
    src_fd = os.open(src, os.O_RDONLY)
    try:
        target, sid = placement.choose_target(src, None, in_place)
        return placement.place(src, src_fd, placement.fingerprint(src), Plan(), target, sid,
                               placement.CheckedOnceWritten(lambda _copy: None))
    finally:
        os.close(src_fd)


def test_place_reports_the_half_written_line_it_left_out(tmp_path: Path) -> None:
    src = tmp_path / f"{SID}.jsonl"
    src.write_bytes(("\n".join(broken_lines()) + "\n").encode() + TORN)
    copy = place_directly(src, False)
    assert copy.left_out == [
        f"line 4: a half-written last line ({len(TORN)} bytes) was left out; it stays in the original"
    ]
    swapped = place_directly(src, True)
    assert swapped.left_out == [
        f"line 4: a half-written last line ({len(TORN)} bytes) was left out; it is kept in the backup {swapped.backup}"
    ]


def test_a_disk_that_fails_to_write_is_refused_with_nothing_written(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO at fsync (a failing disk, a pulled USB stick): the boundary is the OS call, so it is faked there."""
    import errno

    src = tmp_path / f"{SID}.jsonl"
    src.write_text("\n".join(broken_lines()) + "\n")
    original = src.read_bytes()

    def failing_fsync(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    for in_place in (False, True):
        with pytest.raises(RewindError) as refused:
            rewind(src, mode="patch", in_place=in_place)
        assert str(refused.value) == (f"the disk holding {tmp_path} failed to write (Input/output error); nothing "
                                      "was written (the original is untouched)")
        assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
        assert src.read_bytes() == original
