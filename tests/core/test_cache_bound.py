"""The state folder stays under its cap: the least recently used states go first, a state used
again counts as recent, dead writers' temporary files go, and nothing that is not ours is removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from core_support import SID, Builder, run_cli, text

from rewind_lsp import cachedir
from rewind_lsp.index import TOUCH_AFTER_SECONDS, check_cached, check_saved, state_file


def aged(path: Path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


def test_the_least_recently_used_files_are_dropped_first(tmp_path: Path) -> None:
    for i in range(10):
        f = tmp_path / f"{i}.state"
        f.write_bytes(b"x" * 1000)
        aged(f, 1000 - i)  # 0 is the oldest
    assert cachedir.prune(tmp_path, cap=4500) == 4000
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.state" for i in range(6, 10)]
    assert cachedir.prune(tmp_path, cap=4500) == 4000  # under the cap: nothing more goes


def test_temporary_files_of_dead_writers_go_and_live_ones_stay(tmp_path: Path) -> None:
    dead, live = tmp_path / f"{cachedir.TEMP_PREFIX}1-1", tmp_path / f"{cachedir.TEMP_PREFIX}2-2"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    aged(dead, cachedir.STALE_TEMP_SECONDS + 60)
    cachedir.prune(tmp_path, cap=10**9)
    assert not dead.exists() and live.exists()


def test_what_is_not_a_file_is_left_alone_and_a_symlink_is_removed_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo")
    outside = tmp_path / "precious"
    outside.write_bytes(b"y" * 5000)
    (folder / "link.state").symlink_to(outside)
    cachedir.prune(folder, cap=0)
    assert sorted(p.name for p in folder.iterdir()) == ["fifo", "sub"]
    assert outside.read_bytes() == b"y" * 5000


def session(path: Path, n: int) -> Path:
    b = Builder(session_id=SID)
    for i in range(n):
        b.user(f"prompt {i}")
        b.tool_turn([f"toolu_01B{i}"])
        b.assistant(text("ok"))
    return b.write(path)


def test_a_state_used_again_is_the_last_to_go(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    used, unused = session(tmp_path / "used.jsonl", 3), session(tmp_path / "unused.jsonl", 3)
    for p in (used, unused):
        check_saved(str(p), cache)
    aged(state_file(cache, str(unused)), TOUCH_AFTER_SECONDS + 100)
    aged(state_file(cache, str(used)), TOUCH_AFTER_SECONDS + 200)  # older, but read again now
    _, state, wrote = check_saved(str(used), cache)
    assert state.stats.reused and not wrote
    size = state_file(cache, str(used)).stat().st_size
    cachedir.prune(cache, cap=size)
    assert state_file(cache, str(used)).exists() and not state_file(cache, str(unused)).exists()


def test_the_hook_and_server_path_prunes_when_due(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    junk = cache / "old.idx"  # an earlier release's pickled index: dead weight
    junk.write_bytes(b"z" * 3_000_000)
    aged(junk, 10_000)
    monkeypatch.setenv(cachedir.CAP_ENV, "1")
    check_cached(str(session(tmp_path / "a.jsonl", 2)), cache)
    assert not junk.exists()  # the first write prunes (no mark yet)
    junk.write_bytes(b"z" * 3_000_000)
    aged(junk, 10_000)
    check_cached(str(session(tmp_path / "b.jsonl", 2)), cache)
    assert junk.exists()  # pruned a moment ago: not again before PRUNE_EVERY_SECONDS
    aged(cache / ".pruned", cachedir.PRUNE_EVERY_SECONDS + 1)
    check_cached(str(session(tmp_path / "c.jsonl", 2)), cache)
    assert not junk.exists()


def test_the_cli_keeps_the_folder_under_the_cap(tmp_path: Path) -> None:
    folder = tmp_path / "projects"
    for i in range(6):
        session(folder / f"s{i}.jsonl", 40)
    cache = tmp_path / "cache"
    env = {"REWIND_LSP_CACHE_DIR": str(cache), "REWIND_LSP_CACHE_MB": "0"}
    done = run_cli("check", str(folder), env=env)
    assert done.returncode == 0 and done.stderr == ""
    assert not list((cache / "index").glob("*.state"))  # a cap of 0 keeps nothing
    env["REWIND_LSP_CACHE_MB"] = "64"
    run_cli("check", str(folder), env=env)
    assert len(list((cache / "index").glob("*.state"))) == 6


def test_the_cap_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cachedir.CAP_ENV, raising=False)
    assert cachedir.cap_bytes() == cachedir.DEFAULT_CAP_MB * 1_000_000 == 64_000_000
    for value, cap in (("10", 10_000_000), ("0", 0), ("lots", 64_000_000), ("-5", 0)):
        monkeypatch.setenv(cachedir.CAP_ENV, value)
        assert cachedir.cap_bytes() == cap
