"""The pygls internals rewind-lsp overrides (all in lsp/protocol.py) still take effect with the pygls
installed: a pygls upgrade that renames or reshapes them fails here, not silently in an editor."""

from __future__ import annotations

import json
import subprocess
from typing import IO, Any

from lsp_support import BROKEN, ENV, ROOT, SERVER
from lsprotocol import types

from rewind_lsp.lsp.protocol import RewindProtocol
from rewind_lsp.lsp.server import RewindLanguageServer

DOCUMENT_METHODS = {
    types.TEXT_DOCUMENT_DID_OPEN: RewindProtocol.lsp_text_document__did_open,
    types.TEXT_DOCUMENT_DID_CHANGE: RewindProtocol.lsp_text_document__did_change,
    types.TEXT_DOCUMENT_DID_CLOSE: RewindProtocol.lsp_text_document__did_close,
}


def test_document_notifications_go_to_the_servers_store_not_pyglss_workspace() -> None:
    server = RewindLanguageServer()
    try:
        builtins = server.protocol.fm.builtin_features
        for method, mine in DOCUMENT_METHODS.items():
            assert builtins[method].__func__ is mine, method  # type: ignore[attr-defined]
    finally:
        server.io.shutdown()
        server.documents.shutdown()


def frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _read_frame(stream: IO[bytes]) -> dict[str, Any]:
    length = 0
    while (header := stream.readline()) not in (b"\r\n", b""):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return json.loads(stream.read(length)) if length else {}


def test_a_real_server_keeps_open_documents_out_of_pyglss_workspace() -> None:
    """Over stdio, everything up to the hover written at once: the hover right after didOpen is
    answered from the server's own store (it waits for that version's one check). Shutdown and exit
    follow its answer, as a client's would: sent with it, pygls 2.0 cancels the pending hover."""
    uri = (ROOT / "override.jsonl").as_uri()
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": ROOT.as_uri(),
                                                                      "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "jsonl", "version": 1, "text": BROKEN}}},
        {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}}},
    ]
    with subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=ENV) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"".join(frame(m) for m in messages))
        proc.stdin.flush()
        answer: dict[str, Any] = {}
        while answer.get("id") != 2:  # notifications (logMessage, diagnostics) and initialize's answer first
            answer = _read_frame(proc.stdout)
            assert answer, "the server closed its output before answering the hover"
        proc.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
                         + frame({"jsonrpc": "2.0", "method": "exit"}))
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert "toolu_01ABC" in json.dumps(answer["result"])
