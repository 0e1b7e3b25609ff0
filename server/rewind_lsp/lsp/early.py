"""Answer `initialize` while the language server is still loading.

Importing pygls is most of a start: lsprotocol builds ~1,000 attrs classes at import (0.4-0.6 s
here, more than the rest of the start together), and every editor waits for the `initialize`
answer before it goes on (Emacs's eglot blocks its UI meanwhile). What this server answers
depends on the client only through the position encoding. So `serve` imports the server in a
thread while this module reads the first message itself; an `initialize` it can vouch for is
answered at once from `capabilities.json` (what pygls computes for this server, with the
encoding chosen by pygls's rule; tests/lsp/test_early_initialize.py keeps the two equal for real
clients' capabilities). Then pygls reads that same request again, from a replay of the input, and
initializes as ever (client capabilities, workspace, settings); its own answer, already given, is
dropped by `RewindProtocol` (and logged as an error if it differs). Anything else as the first
message, or params whose shape pygls might refuse, go to pygls untouched: they are answered by it,
after the import. Requests sent meanwhile wait in the pipe, as they would for any slower start.

`REWIND_LSP_EARLY_INITIALIZE=0` turns this off (pygls then answers `initialize` itself).
This module is on the start path: only the standard library, no pygls.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from .. import __version__
from .framing import FrameReader, LockedWriter

ENV_SWITCH = "REWIND_LSP_EARLY_INITIALIZE"
# pygls's ServerCapabilitiesBuilder.choose_position_encoding: the client's first of these, else UTF-16.
ENCODINGS = ("utf-8", "utf-16", "utf-32")
_TRACE = ("off", "messages", "verbose")
_WILL_SAVE = ("willSave", "willSaveWaitUntil")
_CONTENT_TYPE = b"application/vscode-jsonrpc; charset=utf-8"  # as pygls writes it
_MAX_HEADER = 64 * 1024  # header lines of a first message, at most (an unframed stream is no LSP client)


class Reader(Protocol):
    """What is read from: a binary stream, or framing.FrameReader."""

    def readline(self) -> bytes: ...

    def read(self, n: int = -1) -> bytes: ...


class EarlyAnswer:
    """The `initialize` request answered here: its id and the result sent."""

    __slots__ = ("msg_id", "result")

    def __init__(self, msg_id: int | str, result: dict[str, Any]) -> None:
        self.msg_id = msg_id
        self.result = result


class Replay:
    """A binary stream that gives `head` first, then the rest of `stream` (what pygls reads from)."""

    def __init__(self, head: bytes, stream: Reader) -> None:
        self._head = head
        self._stream = stream

    def readline(self) -> bytes:
        if not self._head:
            return self._stream.readline()
        cut = self._head.find(b"\n") + 1
        if not cut:
            line, self._head = self._head, b""
            return line + self._stream.readline()
        line, self._head = self._head[:cut], self._head[cut:]
        return line

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(n)
        if n < 0:
            data, self._head = self._head, b""
            return data + self._stream.read()
        data, self._head = self._head[:n], self._head[n:]
        if len(data) < n:
            data += self._stream.read(n - len(data))
        return data


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def read_message(stream: Reader) -> tuple[bytes, Any]:
    """The raw bytes of the first message (headers and body, as read) and its JSON (None when the
    bytes are no well-framed JSON message: pygls will say so)."""
    raw = b""
    length = -1
    while True:
        line = stream.readline()
        raw += line
        if not line or len(raw) > _MAX_HEADER:
            return raw, None  # end of input, or no framing
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return raw, None
    if length < 0:
        return raw, None
    body = stream.read(length)
    raw += body
    if len(body) < length:
        return raw, None
    try:
        return raw, json.loads(body)
    except (ValueError, RecursionError):
        return raw, None


def is_id(x: Any) -> bool:
    """A JSON-RPC id or progress token: a string or an integer (a bool is an int to Python only)."""
    return isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool))


def _optional(value: Any, ok: Callable[[Any], bool]) -> bool:
    return value is None or ok(value)


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _client_info(x: Any) -> bool:
    return isinstance(x, dict) and isinstance(x.get("name"), str) and _optional(x.get("version"), _is_str)


def _folders(x: Any) -> bool:
    return isinstance(x, list) and all(
        isinstance(f, dict) and isinstance(f.get("uri"), str) and isinstance(f.get("name"), str) for f in x
    )


def _text_document(x: Any) -> bool:
    def sync(s: Any) -> bool:
        return isinstance(s, dict) and all(_optional(s.get(k), lambda v: isinstance(v, bool)) for k in _WILL_SAVE)

    return isinstance(x, dict) and _optional(x.get("synchronization"), sync)


def _general(x: Any) -> bool:
    def encodings(e: Any) -> bool:
        return isinstance(e, list) and all(map(_is_str, e))

    return isinstance(x, dict) and _optional(x.get("positionEncodings"), encodings)


def answerable(message: Any) -> bool:
    """An `initialize` request whose params have the shape lsprotocol reads, in every part the
    answer depends on (checked no looser than pygls: anything else goes to pygls, which answers it)."""
    if not (isinstance(message, dict) and message.get("jsonrpc") == "2.0" and message.get("method") == "initialize"
            and is_id(message.get("id"))):
        return False
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("capabilities"), dict):
        return False
    caps = params["capabilities"]
    return (
        _optional(params.get("processId"), lambda p: isinstance(p, int) and not isinstance(p, bool))
        and all(_optional(params.get(k), _is_str) for k in ("locale", "rootPath", "rootUri"))
        and _optional(params.get("clientInfo"), _client_info)
        and _optional(params.get("trace"), lambda t: t in _TRACE)
        and _optional(params.get("workDoneToken"), is_id)
        and _optional(params.get("workspaceFolders"), _folders)
        and _optional(caps.get("textDocument"), _text_document)
        and _optional(caps.get("general"), _general)
    )


def _sync(params: dict[str, Any]) -> dict[str, Any]:
    sync: dict[str, Any] = (params["capabilities"].get("textDocument") or {}).get("synchronization") or {}
    return sync


def position_encoding(params: dict[str, Any]) -> str:
    general = params["capabilities"].get("general") or {}
    for encoding in general.get("positionEncodings") or ():
        if encoding in ENCODINGS:
            return str(encoding)
    return "utf-16"


def initialize_result(params: dict[str, Any]) -> dict[str, Any]:
    """What pygls answers this server's `initialize` with, for these params."""
    with open(os.path.join(os.path.dirname(__file__), "capabilities.json"), encoding="utf-8") as f:
        capabilities: dict[str, Any] = json.load(f)
    capabilities["positionEncoding"] = position_encoding(params)
    # pygls writes `willSave: capability and feature`: False when the client states the capability
    # at all (this server has neither feature), left out when it does not.
    sync = _sync(params)
    for key in _WILL_SAVE:
        if sync.get(key) is not None:
            capabilities["textDocumentSync"][key] = False
    return {"capabilities": capabilities, "serverInfo": {"name": "rewind-lsp", "version": __version__}}


class _Loader(threading.Thread):
    """Imports the server module (pygls, lsprotocol and the features) meanwhile."""

    def __init__(self) -> None:
        super().__init__(name="rewind-lsp-load", daemon=True)
        self.module: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.module = importlib.import_module("rewind_lsp.lsp.server")
        except BaseException as exc:  # handed to the main thread, raised there
            self.error = exc


def serve_stdio(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Run the language server on these streams, answering `initialize` early when it can."""
    from ..gcpause import loading, tune_for_server

    tune_for_server()
    writer = LockedWriter(stdout)
    frames = FrameReader(stdin.fileno(), writer.notify_log)  # pygls reads well-formed frames only
    if not enabled():
        with loading():
            from .server import server

        server.start_io(frames, writer)  # type: ignore[arg-type]  # both have the methods pygls calls
        return
    early = None
    with loading():
        loader = _Loader()
        loader.start()
        raw, message = read_message(frames)
        if answerable(message):
            early = EarlyAnswer(message["id"], initialize_result(message["params"]))
            body = json.dumps({"jsonrpc": "2.0", "id": early.msg_id, "result": early.result}).encode()
            writer.write(b"Content-Length: %d\r\nContent-Type: %s\r\n\r\n%s" % (len(body), _CONTENT_TYPE, body))
        loader.join()
    if loader.error is not None:
        raise loader.error
    server = loader.module.server
    server.protocol.early_answer = early
    server.start_io(Replay(raw, frames), writer)  # the module is Any: no type check here
