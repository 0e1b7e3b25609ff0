"""The pygls internals rewind-lsp overrides (all in lsp/protocol.py) still take effect with the pygls
installed: a pygls upgrade that renames or reshapes them fails here, not silently in an editor."""

from __future__ import annotations

import json
import subprocess

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


def test_a_real_server_keeps_open_documents_out_of_pyglss_workspace() -> None:
    """Over stdio, everything written at once: the hover right after didOpen is answered from the
    server's own store (it waits for that version's one check)."""
    uri = (ROOT / "override.jsonl").as_uri()
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": ROOT.as_uri(),
                                                                      "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "jsonl", "version": 1, "text": BROKEN}}},
        {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}}},
        {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    out = subprocess.run(SERVER, input=b"".join(frame(m) for m in messages), capture_output=True, env=ENV,
                         timeout=60, check=False).stdout
    assert b'"id": 2' in out and b"toolu_01ABC" in out
