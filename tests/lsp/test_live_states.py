"""Which transcripts the server follows incrementally: live sessions, a bounded number of them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lsp_support import BROKEN, HEALTHY

from rewind_lsp.lsp.server import LIVE_SECONDS, LIVE_STATES, RewindLanguageServer


def test_only_recently_written_transcripts_keep_a_state(tmp_path: Path) -> None:
    server = RewindLanguageServer()
    try:
        old, live = tmp_path / "old.jsonl", tmp_path / "live.jsonl"
        old.write_text(BROKEN)
        live.write_text(BROKEN)
        long_ago = time.time() - LIVE_SECONDS - 60
        os.utime(old, (long_ago, long_ago))
        assert [f.rule for f in server.check_disk(str(old))] == [f.rule for f in server.check_disk(str(live))]
        assert list(server.transcript_states) == [str(live)]
        # Once followed, a session stays followed even if it goes quiet for a while.
        os.utime(live, (long_ago, long_ago))
        server.check_disk(str(live))
        assert list(server.transcript_states) == [str(live)]
    finally:
        server.io.shutdown()


def test_states_are_bounded_and_the_least_recently_checked_goes_first(tmp_path: Path) -> None:
    server = RewindLanguageServer()
    try:
        paths = [tmp_path / f"s{i:02d}.jsonl" for i in range(LIVE_STATES + 3)]
        for p in paths:
            p.write_text(HEALTHY)
            assert server.check_disk(str(p)) == []
        assert list(server.transcript_states) == [str(p) for p in paths[-LIVE_STATES:]]
        server.check_disk(str(paths[-LIVE_STATES]))  # used again: now the most recent
        assert next(reversed(server.transcript_states)) == str(paths[-LIVE_STATES])
    finally:
        server.io.shutdown()


def test_the_server_answers_initialize_before_loading_the_engine() -> None:
    """An editor waits for `initialize` on every start: the rules loader,
    the log scanner and rewind are imported when first used, not with the server."""
    code = "import sys, rewind_lsp.lsp.server; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not set(out.split()) & {"rewind_lsp.rules", "rewind_lsp.logscan", "rewind_lsp.rewind"}


def test_idle_transcripts_go_through_the_shared_state_cache(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What the server's scan checked, a restart (or the hook, or the CLI) finds in the cache: unchanged,
    the file is only stat'ed."""
    from rewind_lsp.index import check_cached
    from rewind_lsp.lsp.server import index_dir

    monkeypatch.setenv("REWIND_LSP_CACHE_DIR", str(tmp_path / "cache"))
    old = tmp_path / "old.jsonl"
    old.write_text(BROKEN)
    long_ago = time.time() - LIVE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    server = RewindLanguageServer()
    try:
        first = server.check_disk(str(old))
    finally:
        server.io.shutdown()
    findings, state = check_cached(str(old), index_dir())
    # The server adds UTF-8 columns to what it keeps; the saved findings are otherwise the same.
    assert state.stats.reused and [(f.rule, f.start.line, f.start.column, f.message) for f in findings] == [
        (f.rule, f.start.line, f.start.column, f.message) for f in first]


def test_the_modules_load_without_collections_and_stay_out_of_later_ones() -> None:
    """gcpause.loading: no collection while the server's modules load, then what they made frozen."""
    code = ("import gc; from rewind_lsp.gcpause import loading\n"
            "with loading():\n    off = not gc.isenabled()\n    import rewind_lsp.lsp.server\n"
            "print(off, gc.isenabled(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["True", "True"]
    assert int(out[2]) > 100_000, out  # lsprotocol's classes and the rest: far more than a few stray objects
