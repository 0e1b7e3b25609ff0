"""A minimal LSP client over stdio for the benchmarks: JSON-RPC framing, a reader thread that
timestamps every message on arrival, and default answers to the server's own requests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

Message = dict[str, Any]


class LspClient:
    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out: IO[bytes] = self.proc.stdin
        self._next_id = 0
        self._lock = threading.Lock()
        self._responses: dict[int, queue.Queue[tuple[float, Message]]] = {}
        # Notifications, each with the perf_counter() time it was read.
        self.notifications: queue.Queue[tuple[float, Message]] = queue.Queue()
        # Answers to requests from the server, by method; anything else is answered with null.
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "workspace/configuration": lambda params: [None for _ in params.get("items", [])],
            "window/showDocument": lambda params: {"success": False},
        }
        # The server's capabilities, once initialize() has been answered.
        self.capabilities: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read_loop, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _send(self, msg: Message) -> None:
        body = json.dumps(msg).encode()
        with self._lock:
            self._out.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self._out.flush()

    def _read_loop(self, stream: IO[bytes]) -> None:
        while True:
            length = None
            while True:
                header = stream.readline()
                if not header:
                    return  # the server exited
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                continue
            msg: Message = json.loads(stream.read(length))
            now = time.perf_counter()
            if "method" in msg and "id" in msg:
                handler = self.handlers.get(msg["method"])
                self._send(
                    {"jsonrpc": "2.0", "id": msg["id"], "result": handler(msg.get("params") or {}) if handler else None}
                )
            elif "method" in msg:
                self.notifications.put((now, msg))
            else:
                with self._lock:
                    box = self._responses.get(msg.get("id", -1))
                if box is not None:
                    box.put((now, msg))

    def request(self, method: str, params: Any, timeout: float = 30) -> tuple[float, Any]:
        """Send a request; returns (the perf_counter() time the answer arrived, its result)."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            box: queue.Queue[tuple[float, Message]] = queue.Queue()
            self._responses[rid] = box
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        try:
            at, msg = box.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer to {method} within {timeout} s") from None
        if "error" in msg:
            raise RuntimeError(f"{method} failed: {msg['error']}")
        return at, msg.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> tuple[float, Message]:
        """The first notification (from now on, in arrival order) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching notification in time")
            try:
                at, msg = self.notifications.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no matching notification in time") from None
            if predicate(msg):
                return at, msg

    def initialize(self, root: str | None = None, progress: bool = True, options: Any = None) -> float:
        """initialize + initialized; returns the seconds from process start to the initialize answer."""
        caps = {
            "window": {"workDoneProgress": progress, "showMessage": {}, "showDocument": {"support": True}},
            "workspace": {"configuration": False, "workspaceFolders": True},
            "textDocument": {"publishDiagnostics": {"relatedInformation": True}},
        }
        params = {
            "processId": os.getpid(),
            "rootUri": None,
            "capabilities": caps,
            "initializationOptions": options,
            "workspaceFolders": [{"uri": f"file://{root}", "name": "bench"}] if root else None,
        }
        at, result = self.request("initialize", params)
        self.capabilities = (result or {}).get("capabilities") or {}
        self.notify("initialized", {})
        return at - self.started

    def rss_kb(self) -> int:
        """VmRSS of the server process, in kB."""
        return _status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int:
        """VmHWM (peak RSS) of the server process, in kB."""
        return _status_kb(self.pid, "VmHWM")

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
                self.proc.wait(timeout=10)
        except (TimeoutError, RuntimeError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"{field} not in /proc/{pid}/status")
