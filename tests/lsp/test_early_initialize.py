"""`initialize` answered before pygls is loaded (rewind_lsp.lsp.early) gives what pygls answers.

Every test talks to a real `rewind-lsp serve` over stdio. The early answer must equal the answer
pygls gives with the early path off, for the capabilities of real clients (the profiles pytest-lsp
ships: VS Code, Neovim 0.6-0.11, Emacs) and for every position encoding a client may ask for; and
what the early path cannot vouch for must still be answered by pygls, as before.

After a change to the server's features, write the answer anew with:
    .venv/bin/python tests/lsp/test_early_initialize.py --write
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_support import ENV, SERVER

from rewind_lsp.lsp import early

PROFILES = sorted((Path(pytest_lsp.__file__).parent / "clients").glob("*.json"))
CAPABILITIES_FILE = Path(early.__file__).parent / "capabilities.json"


class Stdio:
    """A bare JSON-RPC client on a server process's pipes (no pygls: the bytes as sent)."""

    def __init__(self, early_on: bool) -> None:
        env = {**ENV, early.ENV_SWITCH: "1" if early_on else "0"}
        self.proc = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def send(self, message: dict[str, Any] | bytes) -> None:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = -1
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server closed its output"
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(self.proc.stdout.read(length))
        return message

    def answer(self, msg_id: int | str) -> dict[str, Any]:
        """The response to `msg_id`; log messages and the like on the way are kept in `seen`."""
        while True:
            message = self.read()
            if message.get("id") == msg_id and "method" not in message:
                return message
            self.seen.append(message)

    seen: list[dict[str, Any]]

    def __enter__(self) -> Stdio:
        self.seen = []
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send({"jsonrpc": "2.0", "id": "bye", "method": "shutdown", "params": None})
            self.answer("bye")
            self.send({"jsonrpc": "2.0", "method": "exit", "params": None})
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


def initialize(params: dict[str, Any], early_on: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answer to `initialize` (and, for the early path, what the server said after pygls
    initialized: an error log message if pygls's own answer differed)."""
    with Stdio(early_on) as srv:
        srv.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        answer = srv.answer(1)
        srv.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        srv.send({"jsonrpc": "2.0", "id": 2, "method": "workspace/diagnostic", "params": {"previousResultIds": []}})
        srv.answer(2)  # pygls has read the replayed initialize by now, and dropped its own answer
        return answer, srv.seen


def profile(path: Path, encodings: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = json.loads(path.read_text())
    params.update(processId=os.getpid(), rootUri=None, initializationOptions={"watchRoots": []})
    if encodings is not None:
        params["capabilities"].setdefault("general", {})["positionEncodings"] = encodings
    return params


def mismatches(seen: list[dict[str, Any]]) -> list[str]:
    return [m["params"]["message"] for m in seen
            if m.get("method") == "window/logMessage" and "answered early" in m["params"]["message"]]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_real_clients_get_what_pygls_answers(path: Path) -> None:
    params = profile(path)
    assert early.answerable({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})  # answered early
    answer, seen = initialize(params, early_on=True)
    assert answer == initialize(params, early_on=False)[0]
    assert mismatches(seen) == []


@pytest.mark.parametrize("sync", [{"willSave": True}, {"willSave": False, "willSaveWaitUntil": True}, {}, None])
def test_will_save_as_the_client_states_it(sync: dict[str, Any] | None) -> None:
    params = {"processId": None, "capabilities": {"textDocument": {"synchronization": sync}}}
    assert early.answerable({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    answer, seen = initialize(params, early_on=True)
    assert answer == initialize(params, early_on=False)[0]
    assert mismatches(seen) == []


@pytest.mark.parametrize("encodings", [["utf-8"], ["utf-32", "utf-16"], ["utf-7", "utf-32"], ["latin-1"], [], None])
def test_every_position_encoding_a_client_may_ask_for(encodings: list[str] | None) -> None:
    params = profile(PROFILES[0], encodings)
    assert early.answerable({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    answer, seen = initialize(params, early_on=True)
    assert answer == initialize(params, early_on=False)[0]
    assert mismatches(seen) == []


def test_the_file_is_what_pygls_answers_today() -> None:
    answer, _ = initialize({"processId": None, "rootUri": None, "capabilities": {}}, early_on=False)
    assert json.loads(CAPABILITIES_FILE.read_text()) == answer["result"]["capabilities"], (
        "the server's capabilities changed: run .venv/bin/python tests/lsp/test_early_initialize.py --write"
    )


@pytest.mark.parametrize("params", [
    {"processId": "12", "capabilities": {}},
    {"processId": True, "capabilities": {}},
    {"processId": None},
    {"processId": None, "capabilities": {"general": {"positionEncodings": "utf-8"}}},
    {"processId": None, "capabilities": {}, "workspaceFolders": [{"uri": 3}]},
    {"processId": None, "capabilities": {}, "clientInfo": {"version": "1"}},
    {"processId": None, "capabilities": {}, "trace": "loud"},
    {"processId": None, "capabilities": {"textDocument": {"synchronization": {"willSave": "yes"}}}},
    {"processId": None, "capabilities": {"textDocument": []}},
    [],
])
def test_params_it_cannot_vouch_for_are_left_to_pygls(params: Any) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    assert not early.answerable(message)
    answer, _ = initialize(params, early_on=True)
    assert answer == initialize(params, early_on=False)[0]


def test_a_first_message_other_than_initialize_goes_to_pygls() -> None:
    for early_on in (True, False):
        with Stdio(early_on) as srv:
            srv.send({"jsonrpc": "2.0", "id": 7, "method": "textDocument/hover",
                      "params": {"textDocument": {"uri": "file:///x.jsonl"}, "position": {"line": 0, "character": 0}}})
            srv.send(b"{not json")
            srv.send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"processId": None, "capabilities": {}}})
            first = srv.answer(1)
            assert first["result"]["serverInfo"]["name"] == "rewind-lsp"


def test_requests_sent_at_once_are_all_answered() -> None:
    """A client that does not wait: initialize, initialized and a request written in one go, before
    the server has loaded."""
    with Stdio(True) as srv:
        params = profile(PROFILES[0])
        srv.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        srv.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        srv.send({"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand",
                  "params": {"command": "rewind-lsp.noSuchCommand", "arguments": []}})
        assert "capabilities" in srv.answer(1)["result"]
        assert "error" in srv.answer(2) or "result" in srv.answer(2)


def test_the_answer_comes_before_the_server_is_loaded() -> None:
    """The point of it: the answer does not wait for pygls. It comes well before the server can
    answer a request that needs it (a ping pygls answers only once loaded)."""
    with Stdio(True) as srv:
        t = time.perf_counter()
        srv.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}})
        srv.answer(1)
        answered = time.perf_counter() - t
        srv.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        srv.send({"jsonrpc": "2.0", "id": 2, "method": "workspace/diagnostic", "params": {"previousResultIds": []}})
        srv.answer(2)
        loaded = time.perf_counter() - t
    assert answered < loaded


def test_end_of_input_before_any_message() -> None:
    for early_on in (True, False):
        env = {**ENV, early.ENV_SWITCH: "1" if early_on else "0"}
        done = subprocess.run(SERVER, input=b"", capture_output=True, env=env, timeout=60)
        assert done.returncode == 0 and b"Traceback" not in done.stderr


def test_replay_gives_the_head_then_the_stream() -> None:
    import io

    r = early.Replay(b"Content-Length: 2\r\n\r\n{}", io.BytesIO(b"tail\nmore"))
    assert r.readline() == b"Content-Length: 2\r\n"
    assert r.readline() == b"\r\n"
    assert r.read(4) == b"{}ta"
    assert r.readline() == b"il\n"
    assert r.read() == b"more"
    assert early.Replay(b"ab", io.BytesIO(b"c\nd")).readline() == b"abc\n"


def write_capabilities_file() -> None:
    answer, _ = initialize({"processId": None, "rootUri": None, "capabilities": {}}, early_on=False)
    CAPABILITIES_FILE.write_text(json.dumps(answer["result"]["capabilities"], indent=2, sort_keys=True) + "\n")
    print(f"wrote {CAPABILITIES_FILE}")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_capabilities_file()


def test_a_different_answer_from_pygls_is_reported_and_dropped() -> None:
    """Should the early answer and pygls's ever part, the client's log says so (and gets no second answer)."""
    from lsprotocol import types

    from rewind_lsp.lsp.server import RewindLanguageServer

    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            written.append(data)

        def close(self) -> None:
            pass

    protocol = RewindLanguageServer().protocol
    protocol.set_writer(Writer())
    protocol.early_answer = early.EarlyAnswer(1, {"capabilities": {"hoverProvider": False}})
    same = types.InitializeResult(capabilities=types.ServerCapabilities(hover_provider=False))
    protocol._send_response(1, same)
    assert written == [] and protocol.early_answer is None  # equal: dropped without a word
    protocol.early_answer = early.EarlyAnswer("a", {"capabilities": {"hoverProvider": False}})
    protocol._send_response("a", types.InitializeResult(capabilities=types.ServerCapabilities(hover_provider=True)))
    assert len(written) == 1 and b"window/logMessage" in written[0] and b"answered early" in written[0]
    protocol._send_response("a", None)  # any later message goes out as ever
    assert len(written) == 2 and b'"id": "a"' in written[1]
