"""Server robustness: malformed requests, unknown methods, cancellation, garbage command arguments, a
protocol fuzz, and clients that go away. No handler error may kill the server; every request must be
answered; a client that disappears makes the server exit cleanly.

Driven with a raw JSON-RPC client (rel_support.RawServer): a typed client cannot send what is sent here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import rel_support
from hypothesis import given, settings
from hypothesis import strategies as st
from rel_strategies import FUZZ, examples, json_values
from rel_support import (
    FUZZ_CASES,
    MSG_400,
    SERVER,
    SID,
    RawServer,
    broken,
    broken_lines,
    entry,
    isolated_env,
    raw_server,
    wait_until,
)

from rewind_lsp.check import check_transcript_file
from rewind_lsp.findings import Severity

UNHANDLED = ("Task exception was never retrieved", "Exception ignored", "Exception in thread", "Fatal Python error",
             "Segmentation fault")


def setup_root(tmp_path: Path) -> tuple[Path, Path]:
    projects = tmp_path / "claude" / "projects"
    (projects / "p").mkdir(parents=True, exist_ok=True)
    transcript = projects / "p" / f"{SID}.jsonl"
    transcript.write_text(broken())
    return projects, transcript


def hover_names_the_tool(srv: RawServer, transcript: Path) -> bool:
    """The server still serves: a hover on the broken transcript names its tool. Asked until the answer
    comes (up to 10 s): where the transcript is not opened, its findings come from the startup scan,
    which may still be running on a busy machine."""
    uri = transcript.as_uri()

    def named() -> bool:
        reply = srv.request("textDocument/hover",
                            {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 200}})
        result = reply.get("result")
        return bool(result) and "toolu_01ABC" in result["contents"]["value"]

    return bool(wait_until(named, 10, interval=0.1))


# Requests whose params do not fit the method's types: each deserves an error answer (-32602).
ILL_TYPED = [
    ("textDocument/hover", {"textDocument": {"uri": 5}, "position": "x"}),
    ("textDocument/hover", None),
    ("textDocument/hover", [1, 2, 3]),
    ("textDocument/codeAction", {"textDocument": {"uri": "file:///x.jsonl"}, "range": 3, "context": {}}),
    ("textDocument/codeAction", {"textDocument": None}),
    ("textDocument/diagnostic", {"textDocument": "nope"}),
    ("workspace/executeCommand", {"command": ["rewind-lsp.rewind"]}),
    ("workspace/executeCommand", "rewind-lsp.rewind"),
    ("textDocument/hover", {"textDocument": {"uri": "file:///x.log"}, "position": {"line": 0, "character": -1}}),
]
# Well-typed requests with nonsense values: answered normally.
NONSENSE = [
    ("textDocument/hover", {"textDocument": {"uri": "not a uri"}, "position": {"line": 2**31 - 1, "character": 0}}),
    ("textDocument/hover", {"textDocument": {"uri": "file:///nonexistent/x.jsonl"},
                            "position": {"line": 0, "character": 0}}),
    ("textDocument/codeAction", {"textDocument": {"uri": "file:///nonexistent/x.log"},
                                 "range": {"start": {"line": 5, "character": 0}, "end": {"line": 0, "character": 0}},
                                 "context": {"diagnostics": [{"range": {"start": {"line": 0, "character": 0},
                                                                        "end": {"line": 0, "character": 0}},
                                                              "message": "x", "source": "rewind-lsp",
                                                              "code": "no-such-rule", "severity": 1}]}}),
    ("textDocument/diagnostic", {"textDocument": {"uri": "untitled:Untitled-1"}}),
    ("workspace/diagnostic", {"previousResultIds": []}),
    ("workspace/executeCommand", {"command": "rewind-lsp.nope"}),
    ("workspace/executeCommand", {"command": "rewind-lsp.rewind", "arguments": "zz"}),
]
# Command arguments that are not a document URI at all: every command must refuse them.
NOT_URIS: list[Any] = [[], [None], [123], [1.5], [True], [{"uri": "file:///x.jsonl"}], [["nested"]], [""]]
# Strings that name no transcript or log the server serves.
NOT_OURS = ["\x00", "file://", "file:///%00", "untitled:Untitled-1", "https://example.com/x.jsonl",
            "../../../../etc/passwd", "~/.ssh/id_rsa", "file:///etc/passwd", "file:///" + "a" * 100_000 + ".jsonl",
            "relative/x.log"]
COMMANDS = ["rewind-lsp.rewind", "rewind-lsp.repair", "rewind-lsp.showFix", "rewind-lsp.copyResumeCommand"]


def test_malformed_and_nonsense_requests_leave_the_server_serving(tmp_path: Path) -> None:
    projects, transcript = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        srv.open(transcript)
        for method, params in ILL_TYPED:  # (their answers: test_ill_typed_requests_are_answered)
            srv.request_async(method, params)
        for method, params in NONSENSE:
            reply = srv.request(method, params)
            assert "result" in reply or reply["error"]["code"] in (-32602, -32601, -32603), (method, reply)
        for raw in [b"{not json", b"[]", b"5", b'"str"', b'{"jsonrpc":"1.0","id":1,"method":"x"}',
                    b'{"jsonrpc":"2.0","id":{"obj":1},"method":"textDocument/hover"}', b"\xff\xfe\x00garbage",
                    b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":7}}',
                    b'{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///never-opened.log","version":2},"contentChanges":[{"text":"x"}]}}',
                    b'{"jsonrpc":"2.0","method":"textDocument/didClose","params":{"textDocument":{"uri":"file:///never-opened.log"}}}',
                    b'{"jsonrpc":"2.0","method":"rewindLsp/terminalOutput","params":[1,2]}',
                    b'{"jsonrpc":"2.0","method":"rewindLsp/terminalOutput","params":{"terminal":{"a":1},"data":5}}',
                    b'{"jsonrpc":"2.0","method":"workspace/didChangeConfiguration","params":{"settings":{"rewind-lsp":{"watchRoots":5,"severity":{"orphan-tool-use":"fatal"},"logGlobs":"*.log"}}}}']:
            srv.send_raw(raw)
        FUZZ_CASES["server: malformed requests and frames"] += len(ILL_TYPED) + len(NONSENSE) + 13
        assert srv.alive()
        assert hover_names_the_tool(srv, transcript)
        # The bad settings were reported, and the defaults used where they were bad.
        assert wait_until(lambda: [m for m in srv.shown_messages() if "bad settings" in m], 5)
        assert srv.proc.poll() is None
    assert srv.proc.returncode == 0
    assert not [u for u in UNHANDLED if u in srv.stderr.decode(errors="replace")], srv.stderr[-3000:]


def test_ill_typed_requests_are_answered(tmp_path: Path) -> None:
    projects, _ = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        ids = {srv.request_async(m, p): m for m, p in ILL_TYPED}
        wait_until(lambda: all(i in srv.responses for i in ids), 2)
        unanswered = [ids[i] for i in ids if i not in srv.responses]
        assert srv.alive()
    assert not unanswered, f"never answered: {unanswered}"
    for i in ids:
        assert srv.responses[i]["error"]["code"] == -32602, (ids[i], srv.responses[i])


def test_ill_typed_notifications_are_logged_and_dropped(tmp_path: Path) -> None:
    """A notification with bad params has no one to answer: it is dropped, and the client's log says so."""
    projects, transcript = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        srv.notify("textDocument/didOpen", {"textDocument": 7})
        srv.notify("textDocument/didClose", None)
        assert wait_until(lambda: len([m for m in srv.log_messages() if "invalid params" in m]) == 2, 5)
        assert any("textDocument/didOpen" in m and "$.params" in m for m in srv.log_messages())
        # A request with an id that is no JSON-RPC id is answered with id null (it cannot be echoed).
        srv.send_raw(b'{"jsonrpc":"2.0","id":{"obj":1},"method":"textDocument/hover","params":5}')
        assert srv.response(None, timeout=5)["error"]["code"] == -32600
        assert hover_names_the_tool(srv, transcript)


def test_an_unreadable_answer_from_the_client_fails_only_that_request(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The client answers workspace/configuration with something that is no configuration: the server's
    request fails (it does not wait forever), and the startup goes on with the initializationOptions."""
    projects, transcript = setup_root(tmp_path)
    answer = rel_support._answer
    monkeypatch.setattr(rel_support, "_answer",
                        lambda request: 5 if request["method"] == "workspace/configuration" else answer(request))
    with raw_server(tmp_path, {"watchRoots": [str(projects)]},
                    capabilities={"workspace": {"configuration": True}}) as srv:
        assert srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                     and n["params"]["uri"] == transcript.as_uri(), timeout=10)
        assert [r for r in srv.server_requests if r["method"] == "workspace/configuration"]
        assert hover_names_the_tool(srv, transcript)


def test_unknown_methods(tmp_path: Path) -> None:
    projects, transcript = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        for method in ["foo/bar", "textDocument/nope", "$/unknownRequest", "rewindLsp/terminalOutput2", ""]:
            reply = srv.request(method, {})
            assert reply["error"]["code"] == -32601, (method, reply)
        for method in ["$/unknownNotification", "foo/notify", "$/setTrace", "$/logTrace"]:
            srv.notify(method, {"value": "off"})
        FUZZ_CASES["server: unknown methods"] += 9
        assert hover_names_the_tool(srv, transcript)


def test_cancel_an_in_flight_rewind(tmp_path: Path) -> None:
    """Cancelling a running Repair answers the request at once; the rewind already under way either
    finishes atomically (a complete copy that checks clean) or leaves nothing; the original is untouched."""
    projects, transcript = setup_root(tmp_path)
    lines = broken_lines() + [entry("user", f"x{i}", "u2" if i == 0 else f"x{i - 1}", "y" * 2000) for i in range(15000)]
    transcript.write_text("\n".join(lines) + "\n")  # ~30 MB: a repair takes a while
    original = transcript.read_bytes()
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        rid = srv.request_async("workspace/executeCommand",
                                {"command": "rewind-lsp.repair", "arguments": [transcript.as_uri()]})
        time.sleep(0.05)
        srv.notify("$/cancelRequest", {"id": rid})
        srv.notify("$/cancelRequest", {"id": 987654})  # an id that does not exist
        t = time.monotonic()
        reply = srv.response(rid, timeout=30)
        answered_in = time.monotonic() - t
        assert srv.alive()
        assert "error" in reply or "result" in reply
        if "error" in reply:
            assert reply["error"]["code"] == -32800 and answered_in < 2
        # Wait for the worker to be done (a temp file is there while it writes).
        folder = transcript.parent
        wait_until(lambda: not [p for p in folder.iterdir() if p.name.endswith(".rewind-tmp")], 30)
        time.sleep(0.2)
        assert not [p for p in folder.iterdir() if p.name.endswith(".rewind-tmp")]
        for p in folder.glob("*.jsonl"):
            if p != transcript:
                errors = [f for f in check_transcript_file(str(p)).findings if f.severity == Severity.ERROR]
                assert not errors
        assert transcript.read_bytes() == original
        FUZZ_CASES["server: cancelled requests"] += 2


def _refused(reply: dict[str, Any]) -> bool:
    result = reply.get("result")
    return "error" in reply or (isinstance(result, dict) and "error" in result)


def test_execute_command_with_garbage_arguments(tmp_path: Path) -> None:
    projects, transcript = setup_root(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        for command in COMMANDS:
            for args in NOT_URIS:
                reply = srv.request("workspace/executeCommand", {"command": command, "arguments": args})
                assert _refused(reply), (command, args, reply)
                FUZZ_CASES["server: executeCommand garbage arguments"] += 1
        for command in ("rewind-lsp.showFix", "rewind-lsp.copyResumeCommand"):
            for arg in NOT_OURS:
                reply = srv.request("workspace/executeCommand", {"command": command, "arguments": [arg]})
                assert _refused(reply), (command, arg, reply)
                FUZZ_CASES["server: executeCommand garbage arguments"] += 1
        assert hover_names_the_tool(srv, transcript)
    new = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in new if p.suffix == ".jsonl"], new  # nothing was repaired from garbage


def test_rewind_with_a_garbage_argument_repairs_nothing(tmp_path: Path) -> None:
    projects, _ = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        accepted = []
        for command in ("rewind-lsp.rewind", "rewind-lsp.repair"):
            for arg in NOT_OURS:
                reply = srv.request("workspace/executeCommand", {"command": command, "arguments": [arg]})
                if not _refused(reply):
                    accepted.append((command, arg[:40], reply.get("result")))
    assert not accepted, accepted


def _capped(limit: int = 1 << 30) -> list[str]:
    """The server command, its address space capped: a read that never ends fails instead of eating the machine."""
    return [sys.executable, "-c", f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
            "from rewind_lsp.cli import main; sys.exit(main(['serve']))"]


def test_rewind_of_a_device_or_fifo_is_refused_quickly(tmp_path: Path) -> None:
    projects, _ = setup_root(tmp_path)
    fifo = tmp_path / "outside-fifo"
    fifos = [fifo, projects / "p" / "pipe.log", projects / "p" / "pipe.jsonl"]  # outside, then inside the root
    for f in fifos:
        os.mkfifo(f)
    slow = []
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}, command=_capped()) as srv:
        for arg in ["file:///dev/zero", *(f.as_uri() for f in fifos)]:
            try:
                reply = srv.request("workspace/executeCommand", {"command": "rewind-lsp.rewind", "arguments": [arg]},
                                    timeout=2)
                if not _refused(reply):
                    slow.append((arg, reply))
            except TimeoutError:
                slow.append((arg, "no answer in 2 s"))
                break
            finally:
                for f in fifos:
                    with contextlib.suppress(OSError):  # let a blocked open() of the FIFO return
                        os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
    assert not slow, slow


def test_rewind_of_a_served_log_acts_on_its_session(tmp_path: Path) -> None:
    """A log the server serves stays a good argument: Rewind/Repair act on the session it names, or, when it
    names none, on the newest broken session. A file in a served folder that is no log is refused."""
    projects, newest = setup_root(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    other_sid = "22222222-2222-4222-8222-222222222222"
    other = projects / "p" / f"{other_sid}.jsonl"
    other.write_text(broken(other_sid, secret="OTHER-SESSION"))
    later = time.time() + 60
    os.utime(newest, (later, later))
    naming = logs / "naming.log"
    naming.write_text(f"$ claude --resume {other_sid}\n{MSG_400}\n")
    silent = logs / "silent.log"
    silent.write_text(MSG_400 + "\n")
    notes = logs / "notes.txt"
    notes.write_text(MSG_400 + "\n")
    with raw_server(tmp_path, {"watchRoots": [str(projects), str(logs)]}) as srv:
        for t in (newest, other):  # the startup scan has found both broken sessions
            assert srv.wait_notification(lambda n, t=t: n["method"] == "textDocument/publishDiagnostics"
                                         and n["params"]["uri"] == t.as_uri(), timeout=20)

        def repair(path: Path) -> dict[str, Any]:
            return srv.request("workspace/executeCommand", {"command": "rewind-lsp.repair",
                                                            "arguments": [path.as_uri()]})

        named = repair(naming)["result"]
        assert "OTHER-SESSION" in Path(named["path"]).read_text()
        fallback = repair(silent)["result"]
        assert Path(fallback["path"]).parent == newest.parent
        assert "OTHER-SESSION" not in Path(fallback["path"]).read_text()
        assert "error" in repair(notes)["result"]


# --- a protocol fuzz --------------------------------------------------------------------------

METHODS = ["textDocument/hover", "textDocument/codeAction", "textDocument/diagnostic", "workspace/diagnostic",
           "workspace/executeCommand", "textDocument/didOpen", "textDocument/didChange", "textDocument/didClose",
           "textDocument/didSave", "$/cancelRequest", "rewindLsp/terminalOutput", "workspace/symbol", "x/y"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(METHODS))
    params = draw(json_values | st.fixed_dictionaries({
        "textDocument": st.fixed_dictionaries({"uri": st.sampled_from(["file:///tmp/x.log", "file:///tmp/y.jsonl",
                                                                       "untitled:1", ""]) | json_values,
                                               "text": st.text(max_size=200) | json_values,
                                               "version": st.integers()}),
        "position": st.fixed_dictionaries({"line": st.integers(), "character": st.integers()}) | json_values,
        "command": st.sampled_from(COMMANDS) | json_values,
        "arguments": st.lists(json_values, max_size=3) | json_values,
        "terminal": json_values, "data": st.text(max_size=100) | json_values,
        "contentChanges": st.lists(st.fixed_dictionaries({"text": st.text(max_size=50)}), max_size=2) | json_values,
        "id": json_values}))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if draw(st.booleans()):
        msg["id"] = draw(st.integers(min_value=1, max_value=10**6) | st.text(min_size=1, max_size=5))
    return msg


def test_protocol_fuzz_never_kills_the_server(tmp_path: Path) -> None:
    projects, transcript = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:

        @settings(FUZZ, max_examples=examples(300))
        @given(messages())
        def send(msg: dict[str, Any]) -> None:
            FUZZ_CASES["server: random JSON-RPC messages"] += 1
            try:
                body = json.dumps(msg, allow_nan=True).encode("utf-8", errors="surrogatepass")
            except (ValueError, TypeError):
                return
            srv.send_raw(body)
            assert srv.proc.poll() is None, f"the server died on {msg!r}"

        before = FUZZ_CASES["server: random JSON-RPC messages"]
        send()
        assert FUZZ_CASES["server: random JSON-RPC messages"] - before >= examples(300) // 2
        assert srv.alive()
        assert hover_names_the_tool(srv, transcript)


def test_document_with_a_lone_surrogate_is_checked(tmp_path: Path) -> None:
    """A lone surrogate (a legal JSON escape, '\\ud800': half an emoji from a terminal buffer) in a document."""
    projects, _ = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        uri = (tmp_path / "term.log").as_uri()
        srv.send_raw(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "log", "version": 1, "text": "\ud800 half an emoji\n" + MSG_400 + "\n"}}},
            ensure_ascii=True).encode())
        got = srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                    and n["params"]["uri"] == uri and n["params"]["diagnostics"], timeout=3)
        assert srv.alive()
    assert got is not None


def test_handler_errors_are_logged_and_the_server_goes_on(tmp_path: Path) -> None:
    """terminalOutput with a chunk that cannot be written as UTF-8: the guarded handler fails, the error
    goes to window/logMessage, the server goes on."""
    projects, transcript = setup_root(tmp_path)
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        srv.send_raw(json.dumps({"jsonrpc": "2.0", "method": "rewindLsp/terminalOutput",
                                 "params": {"terminal": "t1", "data": "\udc80 broken"}}).encode())
        assert wait_until(lambda: [m for m in srv.log_messages() if "terminalOutput failed" in m], 5)
        srv.notify("rewindLsp/terminalOutput", {"terminal": "t1", "data": MSG_400 + "\n"})
        log_uri = (tmp_path / "logs" / "terminal-t1.log").as_uri()
        assert srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                     and n["params"]["uri"] == log_uri and n["params"]["diagnostics"], timeout=5)
        assert hover_names_the_tool(srv, transcript)


def test_terminal_output_into_a_fifo_does_not_block(tmp_path: Path) -> None:
    """A FIFO where a terminal's log goes: the chunk is refused at once (the event loop never waits in
    open() for a reader), the failure is logged, the server goes on."""
    projects, transcript = setup_root(tmp_path)
    (tmp_path / "logs").mkdir(parents=True, exist_ok=True)
    os.mkfifo(tmp_path / "logs" / "terminal-t1.log")
    with raw_server(tmp_path, {"watchRoots": [str(projects)]}) as srv:
        srv.notify("rewindLsp/terminalOutput", {"terminal": "t1", "data": MSG_400 + "\n"})
        assert wait_until(lambda: [m for m in srv.log_messages() if "terminalOutput failed" in m], 5)
        assert hover_names_the_tool(srv, transcript)


# --- clients that go away ---------------------------------------------------------------------


def _exited(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(line.startswith("State:") and ("Z" in line or "X" in line) for line in status.splitlines())


@pytest.mark.parametrize("how", ["stdin closed", "closed mid-frame", "closed with requests in flight"])
def test_client_hangs_up(tmp_path: Path, how: str) -> None:
    projects, transcript = setup_root(tmp_path)
    srv = RawServer(isolated_env(tmp_path), cwd=tmp_path)
    try:
        srv.initialize(tmp_path, {"watchRoots": [str(projects)]})
        assert srv.alive()
        assert srv.proc.stdin is not None
        if how == "closed mid-frame":
            srv.proc.stdin.write(b'Content-Length: 500\r\n\r\n{"jsonrpc":"2.0","id":9,"method":"textDoc')
            srv.proc.stdin.flush()
        elif how == "closed with requests in flight":
            srv.request_async("workspace/diagnostic", {"previousResultIds": []})
            srv.request_async("textDocument/hover", {"textDocument": {"uri": transcript.as_uri()},
                                                     "position": {"line": 1, "character": 200}})
        srv.proc.stdin.close()
        code = srv.proc.wait(timeout=5)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        srv._err_reader.join(timeout=2)
    assert code == 0
    err = srv.stderr.decode(errors="replace")
    assert not [u for u in UNHANDLED if u in err], err[-3000:]
    if how != "closed mid-frame":  # there pygls logs the undecodable frame, with its traceback
        assert "Traceback" not in err, err[-3000:]
    FUZZ_CASES["server: client hang-ups"] += 1


def test_client_hangs_up_while_a_repair_runs(tmp_path: Path) -> None:
    projects, transcript = setup_root(tmp_path)
    lines = broken_lines() + [entry("user", f"x{i}", "u2" if i == 0 else f"x{i - 1}", "y" * 2000) for i in range(15000)]
    transcript.write_text("\n".join(lines) + "\n")  # ~30 MB: the repair outlives the connection
    srv = RawServer(isolated_env(tmp_path), cwd=tmp_path)
    try:
        srv.initialize(tmp_path, {"watchRoots": [str(projects)]})
        # The startup scan has checked the transcript: the worker thread is free for the repair.
        assert srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                     and n["params"]["uri"] == transcript.as_uri(), timeout=20)
        srv.request_async("workspace/executeCommand", {"command": "rewind-lsp.repair",
                                                       "arguments": [transcript.as_uri()]})
        time.sleep(0.1)
        assert srv.proc.stdin is not None
        srv.proc.stdin.close()
        time.sleep(0.3)
        assert srv.proc.poll() is None, "the repair ended too soon for this test"
        (projects / "p" / "another.log").write_text("Claude Code goes on writing\n")
        code = srv.proc.wait(timeout=30)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        srv._err_reader.join(timeout=2)
    err = srv.stderr.decode(errors="replace")
    assert code == 0
    assert not [u for u in UNHANDLED if u in err], err[-3000:]


_STUCK_WORKER = r"""
import asyncio, threading
from rewind_lsp.lsp import server as srv
srv.EXIT_WAIT_CHECK = 0.5
ls = srv.RewindLanguageServer()
never = threading.Event()
async def main():
    ls.spawn(ls.on_worker(never.wait))  # a check that never returns (as an open() of a FIFO would)
    await asyncio.sleep(0.1)
asyncio.run(main())  # the connection ends: pygls closes the loop, then calls shutdown()
ls.shutdown()
print("shutdown returned", flush=True)
"""


def test_exit_does_not_wait_forever_for_a_stuck_worker(tmp_path: Path) -> None:
    """The worker thread is not a daemon: the interpreter would join it forever at exit. A read-only check
    still running after the grace period is abandoned; the process exits 0."""
    out = subprocess.run([sys.executable, "-c", _STUCK_WORKER], env=isolated_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "shutdown returned" not in out.stdout
    assert "did not finish" in out.stderr
    assert not [u for u in UNHANDLED if u in out.stderr], out.stderr[-3000:]


_DYING_CLIENT = r"""
import json, os, subprocess, sys
uri, err_path = sys.argv[1], sys.argv[2]
server = subprocess.Popen(json.loads(sys.argv[3]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=open(err_path, "wb"))
def send(msg):
    body = json.dumps(msg).encode()
    server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    server.stdin.flush()
def read():
    length = 0
    while True:
        line = server.stdout.readline().strip()
        if not line:
            break
        if line.lower().startswith(b"content-length"):
            length = int(line.split(b":")[1])
    return json.loads(server.stdout.read(length))
send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None,
      "capabilities": {"window": {"showDocument": {"support": True}}}}})
while read().get("id") != 1:
    pass
send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
send({"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover",
      "params": {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 200}}})
send({"jsonrpc": "2.0", "id": 3, "method": "workspace/diagnostic", "params": {"previousResultIds": []}})
print(server.pid, flush=True)
os._exit(9)  # the client dies: no shutdown, no exit, its pipes close with requests in flight
"""


def test_client_process_killed_mid_session(tmp_path: Path) -> None:
    """The editor crashes with requests in flight (a hover, a held workspace/diagnostic long poll): the
    server notices (EOF, broken pipe) and exits within seconds."""
    _, transcript = setup_root(tmp_path)
    err_path = tmp_path / "server-stderr.txt"
    options_env = isolated_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", _DYING_CLIENT, transcript.as_uri(), str(err_path), json.dumps(SERVER)],
                         env=options_env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 9, out.stderr
    pid = int(out.stdout.split()[0])
    assert wait_until(lambda: _exited(pid), 5), f"server {pid} still running 5 s after its client died"
    err = err_path.read_text(errors="replace")
    assert not [u for u in UNHANDLED if u in err], err[-3000:]
    FUZZ_CASES["server: client hang-ups"] += 1
    if not _exited(pid):  # pragma: no cover - only when the assertion above failed
        os.kill(pid, 9)


def test_one_server_of_the_machine_scans_and_announces_and_another_takes_over(tmp_path: Path) -> None:
    """Two real servers watching the same folders (two editor windows): the first holds the watch lock,
    scans and announces; the second says why it does not, still answers for open documents and watched
    changes, and takes over the notifications when the first exits."""
    from rewind_lsp.lsp.scan import NOT_HOLDER, TOOK_OVER
    from rewind_lsp.lsp.summary import broken_summary

    projects, transcript = setup_root(tmp_path)
    options = {"watchRoots": [str(projects)]}
    summary = broken_summary([str(transcript)])

    def asked(srv: RawServer, name: str) -> bool:
        return any(r["method"] == "window/showMessageRequest" and name in r["params"]["message"]
                   for r in srv.server_requests)

    def published(srv: RawServer, path: Path) -> bool:
        return srv.wait_notification(lambda n: n["method"] == "textDocument/publishDiagnostics"
                                     and n["params"]["uri"] == path.as_uri() and bool(n["params"]["diagnostics"]),
                                     timeout=10) is not None

    with raw_server(tmp_path, options) as first:
        assert wait_until(lambda: summary in first.shown_messages(), 15)
        with raw_server(tmp_path, options) as second:
            watching = wait_until(
                lambda: [m for m in second.log_messages() if m.startswith("rewind-lsp: watching ")], 10)
            roots = watching[0].removeprefix("rewind-lsp: watching ")
            said = NOT_HOLDER.format(pid=first.proc.pid, roots=roots)
            assert said == (f"rewind-lsp: another rewind-lsp server (pid {first.proc.pid}) runs the startup scan and "
                            f"the notifications for {roots}; this one answers for open documents and watched changes, "
                            "and takes over when that one exits")
            assert wait_until(lambda: said in second.log_messages(), 10)
            second.open(transcript)
            assert published(second, transcript)  # open documents: answered
            newly = transcript.with_name("33333333-3333-4333-8333-333333333333.jsonl")
            newly.write_text(broken("33333333-3333-4333-8333-333333333333"))
            assert published(second, newly)  # watched changes: answered
            assert wait_until(lambda: asked(first, newly.name), 10)  # ... and announced by the holder only
            time.sleep(0.5)
            assert not asked(second, newly.name) and summary not in second.shown_messages()

            assert first.close() == 0
            took = TOOK_OVER.format(roots=roots)
            assert took == f"rewind-lsp: took over the startup scan and the notifications for {roots}"
            assert wait_until(lambda: took in second.log_messages(), 10)
            later = transcript.with_name("44444444-4444-4444-8444-444444444444.jsonl")
            later.write_text(broken("44444444-4444-4444-8444-444444444444"))
            assert wait_until(lambda: asked(second, later.name), 10)
            assert summary not in second.shown_messages()  # a takeover shows no second summary
