"""Shared pieces of the reliability tests: transcripts, a raw JSON-RPC client, a pytest-lsp session.

The raw client speaks LSP over the server's stdio byte for byte, so tests can send what no
typed client would (wrong parameter types, unknown methods, garbage, an abrupt hang-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

# How many generated cases each fuzz target ran in this session (printed in the terminal summary).
FUZZ_CASES: Counter[str] = Counter()
# How many kill points / injected faults each crash-safety test exercised.
FAULTS: Counter[str] = Counter()

REPO = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "rewind_lsp", "serve"]
CLI = [sys.executable, "-m", "rewind_lsp"]
SID = "11111111-1111-4111-8111-111111111111"
MSG_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."


# --- transcripts ----------------------------------------------------------------------------


def entry(kind: str, uid: str, parent: str | None, content: object, msg_id: str | None = None,
          session: str = SID, **extra: object) -> str:
    message: dict[str, object] = {"role": kind, "content": content}
    if msg_id:
        message["id"] = msg_id
    return json.dumps({"type": kind, "uuid": uid, "parentUuid": parent, "sessionId": session, "cwd": "/tmp/proj",
                       "version": "2.1.30", "message": message, **extra}, separators=(",", ":"))


def tool_use(tid: str, **inp: object) -> dict[str, object]:
    return {"type": "tool_use", "id": tid, "name": "Bash", "input": inp or {"command": "ls"}}


def tool_result(tid: str, content: str = "ok") -> dict[str, object]:
    return {"type": "tool_result", "tool_use_id": tid, "content": content}


def broken_lines(session: str = SID, secret: str = "") -> list[str]:
    """user, assistant with a tool_use, a user prompt with no tool_result: orphan-tool-use on line 2."""
    return [
        entry("user", "u1", None, "list files", session=session),
        entry("assistant", "a1", "u1", [tool_use("toolu_01ABC", command=f"ls {secret}".strip())], "msg_1",
              session=session),
        entry("user", "u2", "a1", "hello?", session=session),
    ]


def broken(session: str = SID, secret: str = "") -> str:
    return "\n".join(broken_lines(session, secret)) + "\n"


def healthy(session: str = SID) -> str:
    return "\n".join([
        entry("user", "u1", None, "list files", session=session),
        entry("assistant", "a1", "u1", [tool_use("toolu_01OK")], "msg_1", session=session),
        entry("user", "u2", "a1", [tool_result("toolu_01OK")], session=session),
        entry("assistant", "a2", "u2", [{"type": "text", "text": "done"}], "msg_2", session=session),
    ]) + "\n"


def isolated_env(root: Path) -> dict[str, str]:
    """An environment whose Claude config dir, log dir and cache dir are scratch folders under `root`."""
    env = {**os.environ,
           "CLAUDE_CONFIG_DIR": str(root / "claude"),
           "REWIND_LSP_LOG_DIR": str(root / "logs"),
           "REWIND_LSP_CACHE_DIR": str(root / "cache"),
           "HOME": str(root / "home")}
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or the time is up (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(interval)


# --- a raw JSON-RPC client over the server's stdio -------------------------------------------


def _answer(request: dict[str, Any]) -> Any:
    """What a minimal client answers to a request from the server."""
    method = request["method"]
    if method == "window/showDocument":
        return {"success": True}
    if method == "workspace/configuration":
        return [None for _ in request.get("params", {}).get("items", [])]
    return None  # showMessageRequest (no choice), workDoneProgress/create, registerCapability


class RawServer:
    """`rewind-lsp serve` as a subprocess, driven with hand-made JSON-RPC frames.

    Requests from the server (configuration, progress, showDocument, showMessageRequest) are
    answered with null, as a minimal client would.
    """

    def __init__(self, env: dict[str, str], cwd: Path | None = None, command: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(command or SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env=env, cwd=cwd)
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.server_requests: list[dict[str, Any]] = []
        self.stderr = b""
        self._cond = threading.Condition()
        self._next_id = 1000
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        self.frames_read = 0

    # framing
    def send_raw(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def send(self, payload: dict[str, Any]) -> None:
        self.send_raw(json.dumps(payload).encode("utf-8"))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self.stderr += chunk

    def _read_loop(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            headers: dict[str, str] = {}
            while True:
                line = out.readline()
                if not line:
                    with self._cond:
                        self._cond.notify_all()
                    return
                line = line.strip()
                if not line:
                    break
                k, _, v = line.decode("ascii", "replace").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = out.read(int(headers.get("content-length", "0")))
            msg = json.loads(body)
            self.frames_read += 1
            if "method" in msg and "id" in msg:
                self.server_requests.append(msg)
                with contextlib.suppress(OSError, ValueError):  # the test may have hung up already
                    self.send({"jsonrpc": "2.0", "id": msg["id"], "result": _answer(msg)})
            with self._cond:
                if "method" in msg and "id" not in msg:
                    self.notifications.append(msg)
                elif "id" in msg and "method" not in msg:
                    self.responses[msg["id"]] = msg
                self._cond.notify_all()

    # requests
    def request_async(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        if msg_id is None:
            self._next_id += 1
            msg_id = self._next_id
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            payload["params"] = params
        self.send(payload)
        return msg_id

    def response(self, msg_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self._cond.wait(left)
            if msg_id not in self.responses:
                raise TimeoutError(f"no answer to request {msg_id} within {timeout} s "
                                   f"(server {'exited' if self.proc.poll() is not None else 'running'})")
            return self.responses[msg_id]

    def request(self, method: str, params: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        return self.response(self.request_async(method, params), timeout)

    def notify(self, method: str, params: Any = None) -> None:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            payload["params"] = params
        self.send(payload)

    def wait_notification(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                          start: int = 0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in self.notifications[start:]:
                    if predicate(n):
                        return n
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(left)

    def log_messages(self) -> list[str]:
        with self._cond:
            return [n["params"]["message"] for n in self.notifications if n["method"] == "window/logMessage"]

    def shown_messages(self) -> list[str]:
        with self._cond:
            return [n["params"]["message"] for n in self.notifications if n["method"] == "window/showMessage"]

    def initialize(self, root: Path, options: dict[str, Any] | None = None,
                   capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.request("initialize", {
            "processId": os.getpid(),
            "rootUri": root.as_uri(),
            "workspaceFolders": [{"uri": root.as_uri(), "name": "root"}],
            "capabilities": capabilities if capabilities is not None else {
                "textDocument": {"hover": {"contentFormat": ["markdown"]}, "publishDiagnostics": {}},
                "window": {"showDocument": {"support": True}},
            },
            "initializationOptions": options or {},
        }, timeout=30)
        self.notify("initialized", {})
        # `initialize` is answered before the server has loaded (rewind_lsp.lsp.early): a round trip
        # waits for the load, so a test starts from a running server.
        self.request("textDocument/hover", {"textDocument": {"uri": (root / "nowhere.jsonl").as_uri()},
                                            "position": {"line": 0, "character": 0}}, timeout=30)
        return answer

    def open(self, path: Path, text: str | None = None, language: str = "jsonl") -> str:
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language, "version": 1,
            "text": path.read_text(encoding="utf-8", errors="replace") if text is None else text}})
        return uri

    def alive(self) -> bool:
        """The server answers a fresh request (a hover on nothing) in time."""
        reply = self.request("textDocument/hover", {
            "textDocument": {"uri": "file:///nonexistent/alive.log"}, "position": {"line": 0, "character": 0}},
            timeout=10)
        return "result" in reply or "error" in reply

    def close(self, timeout: float = 10.0) -> int:
        """shutdown + exit; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.request("shutdown", None, timeout=timeout)
            with contextlib.suppress(Exception):
                self.notify("exit")
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._err_reader.join(timeout=2)


@contextlib.contextmanager
def raw_server(root: Path, options: dict[str, Any] | None = None,
               capabilities: dict[str, Any] | None = None, command: list[str] | None = None,
               workspace: Path | None = None) -> Iterator[RawServer]:
    """A raw server whose config, log and cache dirs are under `root`; `workspace` (default `root`) is its
    workspace folder and working directory."""
    (root / "claude" / "projects").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    workspace = workspace or root
    workspace.mkdir(parents=True, exist_ok=True)
    srv = RawServer(isolated_env(root), cwd=workspace, command=command)
    try:
        srv.initialize(workspace, options, capabilities)
        yield srv
    finally:
        srv.close()


# --- a pytest-lsp client, as tests/lsp drives the server -------------------------------------


@contextlib.asynccontextmanager
async def lsp_session(root: Path, watch_roots: list[Path], profile: str = "neovim@v0.10.0",
                      ) -> AsyncIterator[Any]:
    """The real server over stdio with a pytest-lsp client in a real client's capability profile."""
    from lsprotocol import types
    from pytest_lsp import client_capabilities, make_test_lsp_client

    (root / "claude" / "projects").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    client = make_test_lsp_client()
    await client.start_io(*SERVER, env=isolated_env(root), cwd=str(root))
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities(profile),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="root")],
            initialization_options={"watchRoots": [str(p) for p in watch_roots]},
        ))
        yield client
        await asyncio.wait_for(client.shutdown_session(), 15)
        assert client._server is not None and client._server.returncode == 0, "the server did not exit cleanly"
    finally:
        server = client._server
        if server is not None and server.returncode is None:  # a failed test: never hang on the way out
            with contextlib.suppress(ProcessLookupError):
                server.kill()
        await asyncio.wait_for(client.stop(), 15)
