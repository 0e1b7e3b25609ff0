"""Files that move under the language server: the real server over stdio, real files, real watchdog
events. Truncation, rotation, deletion and re-creation, symlink loops, unreadable files, 10,000
files at startup, a file growing while it is read. The server keeps serving (a request afterwards
is answered) and says what it could not read (window/logMessage)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from rel_support import (
    FAULTS,
    MSG_400,
    SID,
    broken,
    entry,
    healthy,
    isolated_env,
    lsp_session,
    raw_server,
    run_cli,
    tool_use,
    wait_until,
)

PROFILE = "visual-studio-code"


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = predicate()
        if got or loop.time() > deadline:
            return got
        await asyncio.sleep(0.02)


def lines_of(client: LanguageClient, path: Path) -> list[tuple[str, int]] | None:
    """(rule, 0-based line) of the diagnostics last pushed for `path`; None before the first push."""
    diags = client.diagnostics.get(path.as_uri())
    if diags is None:
        return None
    return sorted((str(d.code), d.range.start.line) for d in diags)


async def answered(client: LanguageClient, timeout: float = 5.0) -> float:
    """A request to the server is answered; returns how long it took."""
    t = time.monotonic()
    await asyncio.wait_for(client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=Path("/nonexistent/x.log").as_uri()),
        position=types.Position(line=0, character=0))), timeout)
    return time.monotonic() - t


def logged(client: LanguageClient, needle: str) -> list[str]:
    return [m.message for m in client.log_messages if needle in m.message]


def roots(tmp_path: Path) -> tuple[Path, Path]:
    projects = tmp_path / "claude" / "projects"
    logs = tmp_path / "logs"
    (projects / "p").mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    return projects, logs


async def test_log_truncated_rotated_deleted_recreated(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    log = logs / "claude.log"
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        log.write_text("starting\nworking\n" * 20 + MSG_400 + "\n")
        assert await until(lambda: lines_of(client, log) == [("tool-use-concurrency-400", 40)])
        # Truncated in place and rewritten: the 400 now on the first line.
        log.write_text(MSG_400 + "\n")
        assert await until(lambda: lines_of(client, log) == [("tool-use-concurrency-400", 0)])
        # Rotated: renamed away, a new file at the path.
        log.rename(logs / "claude.log.1")
        assert await until(lambda: lines_of(client, log) == [])
        log.write_text("fresh\n" + MSG_400 + "\n")
        assert await until(lambda: lines_of(client, log) == [("tool-use-concurrency-400", 1)])
        # Deleted: its diagnostics go; re-created: they come back.
        log.unlink()
        assert await until(lambda: lines_of(client, log) == [])
        log.write_text("a\nb\n" + MSG_400 + "\n")
        assert await until(lambda: lines_of(client, log) == [("tool-use-concurrency-400", 2)])
        await answered(client)
    FAULTS["files moved: log truncated, rotated, deleted, re-created"] += 4


async def test_transcript_truncated_deleted_recreated(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    path = projects / "p" / f"{SID}.jsonl"
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        path.write_text(broken())
        assert await until(lambda: lines_of(client, path) == [("orphan-tool-use", 1)])
        path.write_text(healthy())  # rewritten in place (what a hand edit does)
        assert await until(lambda: lines_of(client, path) == [])
        path.write_text(broken())
        assert await until(lambda: lines_of(client, path) == [("orphan-tool-use", 1)])
        with open(path, "r+b") as f:
            f.truncate(len(broken().splitlines()[0]) + 1)
        assert await until(lambda: lines_of(client, path) == [])
        path.unlink()
        await asyncio.sleep(0.3)
        assert lines_of(client, path) == []
        path.write_text(broken())
        assert await until(lambda: lines_of(client, path) == [("orphan-tool-use", 1)])
        moved = projects / "p" / "22222222-2222-4222-8222-222222222222.jsonl"
        path.rename(moved)  # renamed within the root: the old name is cleared, the new one checked
        assert await until(lambda: lines_of(client, path) == [] and lines_of(client, moved) == [("orphan-tool-use", 1)])
        await answered(client)
    FAULTS["files moved: transcript truncated, deleted, re-created, renamed"] += 5


async def test_symlink_loops_inside_a_watched_root(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    os.symlink(".", projects / "p" / "loop")  # a folder that contains itself
    os.symlink("..", projects / "p" / "up")
    os.symlink("b.jsonl", projects / "p" / "a.jsonl")  # two files pointing at each other
    os.symlink("a.jsonl", projects / "p" / "b.jsonl")
    good = projects / "p" / f"{SID}.jsonl"
    good.write_text(broken())
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        # The startup scan ends (no endless walk through the loop) and finds the broken session.
        assert await until(lambda: lines_of(client, good) == [("orphan-tool-use", 1)], timeout=15)
        assert await until(lambda: any(isinstance(v, types.WorkDoneProgressEnd)
                                       for r in client.progress_reports.values() for v in r), timeout=15)
        os.symlink("d.log", logs / "c.log")  # a new loop while running
        os.symlink("c.log", logs / "d.log")
        (logs / "after.log").write_text(MSG_400 + "\n")
        assert await until(lambda: lines_of(client, logs / "after.log") == [("tool-use-concurrency-400", 0)])
        assert await answered(client) < 2
        # Nothing was published under a path through the loop.
        assert not [u for u in client.diagnostics if "/loop/" in u or "/up/" in u]
    FAULTS["files moved: symlink loops (folder and file)"] += 3


async def test_symlink_loop_file_is_reported(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    os.symlink("b.jsonl", projects / "p" / "a.jsonl")
    os.symlink("a.jsonl", projects / "p" / "b.jsonl")
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        await until(lambda: any(isinstance(v, types.WorkDoneProgressEnd)
                                for r in client.progress_reports.values() for v in r), timeout=15)
        assert await until(lambda: logged(client, "a.jsonl"), timeout=1.5)
        assert "Too many levels of symbolic links" in logged(client, "a.jsonl")[0]
        os.symlink("d.log", logs / "c.log")  # a loop made while running: reported too, not taken for a deletion
        os.symlink("c.log", logs / "d.log")
        assert await until(lambda: logged(client, "c.log"))
        assert await answered(client) < 2


async def test_unreadable_files_are_reported_and_serving_goes_on(tmp_path: Path) -> None:
    """A read error (EIO: a log that is a symlink to /proc/self/mem, readable by no one, root included)
    at startup and while running is logged with the path; the rest is still checked."""
    projects, logs = roots(tmp_path)
    os.symlink("/proc/self/mem", logs / "eio-at-start.log")
    (projects / "p" / "a-folder.jsonl").mkdir()  # a folder with a transcript's name: never read as one
    good = projects / "p" / f"{SID}.jsonl"
    good.write_text(broken())
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        assert await until(lambda: logged(client, "eio-at-start.log"), timeout=15)
        assert "Input/output error" in logged(client, "eio-at-start.log")[0]
        assert await until(lambda: lines_of(client, good) == [("orphan-tool-use", 1)])
        os.symlink("/proc/self/mem", logs / "eio-later.log")
        assert await until(lambda: logged(client, "eio-later.log"))
        (logs / "fine.log").write_text(MSG_400 + "\n")
        assert await until(lambda: lines_of(client, logs / "fine.log") == [("tool-use-concurrency-400", 0)])
        assert await answered(client) < 2
        assert (projects / "p" / "a-folder.jsonl").as_uri() not in client.diagnostics
    FAULTS["files moved: unreadable (EIO) at startup and while running"] += 2


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not deny root a read "
                    "(the EIO test covers a read error for root)")
async def test_permission_denied_is_reported(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    locked = logs / "locked-at-start.log"
    locked.write_text(MSG_400 + "\n")
    locked.chmod(0)
    try:
        async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
            assert await until(lambda: logged(client, "locked-at-start.log"), timeout=15)
            assert "ermission denied" in logged(client, "locked-at-start.log")[0]
            later = logs / "locked-later.log"
            later.write_text("x\n")
            later.chmod(0)
            later.touch()
            assert await until(lambda: logged(client, "locked-later.log"))
            assert await answered(client) < 2
    finally:
        for p in logs.glob("locked-*.log"):
            p.chmod(0o644)
    FAULTS["files moved: permission denied"] += 2


def test_fifo_named_like_a_transcript_does_not_hang_the_server(tmp_path: Path) -> None:
    """A FIFO is never opened (that would block the worker thread until a writer came): the startup scan
    and the watcher skip it and say so, Rewind works, `exit` ends the process."""
    projects, _ = roots(tmp_path)
    fifo = projects / "p" / "pipe.jsonl"
    os.mkfifo(fifo)
    target = projects / "p" / f"{SID}.jsonl"  # sorted before the FIFO: checked first
    target.write_text(broken())
    later = projects / "p" / "later.log"
    with raw_server(tmp_path, {"watchRoots": [str(projects)]},
                    capabilities={"window": {"workDoneProgress": True}}) as srv:
        try:
            # "1/2 files" is reported right after the first file; the FIFO's check comes next.
            assert srv.wait_notification(lambda n: n["method"] == "$/progress"
                                         and n["params"]["value"].get("message") == "1/2 files", timeout=10)
            assert srv.alive()  # the event loop is free...
            reply = srv.request("workspace/executeCommand", {"command": "rewind-lsp.rewind",
                                                             "arguments": [target.as_uri()]}, timeout=2)
            assert "path" in reply["result"], reply  # ...and so is the worker thread
            assert srv.wait_notification(lambda n: n["method"] == "$/progress"
                                         and n["params"]["value"]["kind"] == "end", timeout=5)
            assert [m for m in srv.log_messages() if "pipe.jsonl" in m and "not a regular file" in m]
            os.mkfifo(later)  # one made while running: the watcher's check skips it too
            assert wait_until(lambda: [m for m in srv.log_messages() if "later.log" in m], 5)
            assert [m for m in srv.log_messages() if "later.log" in m and "not a regular file" in m]
            assert srv.alive()
        finally:
            # Should the server have opened a FIFO after all, unblock it so that the test ends.
            for f in (fifo, later):
                with contextlib.suppress(OSError):
                    os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
    assert srv.proc.returncode == 0  # shutdown + exit ended the process


def test_cli_check_of_a_folder_with_a_fifo(tmp_path: Path) -> None:
    projects, _ = roots(tmp_path)
    os.mkfifo(projects / "p" / "pipe.jsonl")
    (projects / "p" / f"{SID}.jsonl").write_text(broken())
    out = run_cli(["check", str(projects)], isolated_env(tmp_path), timeout=3)
    assert out.returncode == 1 and "orphan-tool-use" in out.stdout


async def test_10000_files_at_startup_stay_responsive(tmp_path: Path) -> None:
    projects, logs = roots(tmp_path)
    for i in range(100):
        d = projects / f"p{i:03d}"
        d.mkdir(exist_ok=True)
        for j in range(100):
            (d / f"{i:03d}{j:03d}.{'jsonl' if j % 2 else 'log'}").write_text(healthy() if j % 2 else "output\n")
    bad = projects / "p099" / "zz-broken.jsonl"
    bad.write_text(broken())
    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:

        def ended() -> bool:
            return any(isinstance(v, types.WorkDoneProgressEnd) for r in client.progress_reports.values() for v in r)

        assert await until(lambda: client.progress_reports, timeout=10)
        latencies = []
        during_scan = 0
        open_doc = tmp_path / "open.jsonl"
        open_doc.write_text(broken())
        uri = open_doc.as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="jsonl", version=1, text=open_doc.read_text())))
        for _ in range(10):
            scanning = not ended()
            t = time.monotonic()
            hover = await asyncio.wait_for(client.text_document_hover_async(types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=1, character=200))), 2)
            actions = await asyncio.wait_for(client.text_document_code_action_async(types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=types.Range(start=types.Position(line=1, character=0), end=types.Position(line=1, character=1)),
                context=types.CodeActionContext(diagnostics=[]))), 2)
            latencies.append(time.monotonic() - t)
            assert hover is not None and "toolu_01ABC" in hover.contents.value  # type: ignore[union-attr]
            assert actions
            during_scan += scanning and not ended()
            await asyncio.sleep(0.05)
        assert during_scan >= 3, "the requests were not made while the scan ran"
        assert max(latencies) < 2.0, latencies
        assert await until(ended, timeout=60)
        reports = [v for r in client.progress_reports.values() for v in r
                   if isinstance(v, types.WorkDoneProgressReport)]
        assert reports[-1].message == "10001/10001 files"
        assert lines_of(client, bad) == [("orphan-tool-use", 1)]
    FAULTS["files moved: 10,000 files at startup"] += 10001


async def test_files_growing_while_read(tmp_path: Path) -> None:
    """A log and a transcript appended to by writers while the server reads them: the torn last line is
    never reported, the 400s land at their exact lines, the broken pairing at its line."""
    projects, logs = roots(tmp_path)
    log = logs / "growing.log"
    transcript = projects / "p" / f"{SID}.jsonl"
    log.write_text("")
    transcript.write_text("")
    lines_400 = {150, 410, 777}

    def write_log() -> None:
        with open(log, "ab", buffering=0) as f:
            for i in range(800):
                line = (MSG_400 if i in lines_400 else f"working {i} " + "." * (i % 50)).encode() + b"\n"
                f.write(line[:7])  # each line arrives in two pieces: the reader sees torn lines
                f.write(line[7:])
                if i % 40 == 0:
                    time.sleep(0.01)

    def write_transcript() -> None:
        parent = None
        with open(transcript, "ab", buffering=0) as f:
            for i in range(150):
                uid = f"u{i}"
                if i == 100:
                    body = entry("assistant", uid, parent, [tool_use("toolu_GROW")], f"m{i}")
                else:
                    kind = "user" if i % 2 == 0 else "assistant"
                    body = entry(kind, uid, parent, "x" * 300 if kind == "user" else [{"type": "text", "text": "y"}],
                                 f"m{i}" if kind == "assistant" else None)
                data = (body + "\n").encode()
                f.write(data[: len(data) // 2])
                f.write(data[len(data) // 2:])
                parent = uid
                if i % 15 == 0:
                    time.sleep(0.01)

    async with lsp_session(tmp_path, [projects, logs], PROFILE) as client:
        threads = [threading.Thread(target=write_log), threading.Thread(target=write_transcript)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await answered(client)  # serving all along
            await asyncio.sleep(0.05)
        want_log = sorted(("tool-use-concurrency-400", i) for i in lines_400)
        assert await until(lambda: lines_of(client, log) == want_log), lines_of(client, log)
        # toolu_GROW on line 101 is followed by a user line (102) that does not answer it.
        assert await until(lambda: lines_of(client, transcript) == [("orphan-tool-use", 100)]), \
            lines_of(client, transcript)
        assert await answered(client) < 2
    FAULTS["files moved: growing while read (log and transcript)"] += 2
