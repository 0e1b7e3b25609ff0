"""The readiness baseline: the smallest pygls server that does what a user waits for, one diagnostic
published for a document as soon as it is opened. `python benchmarks/minimal_server.py` serves stdio.

It pays what every pygls server pays (the interpreter, pygls and lsprotocol imports, the handshake)
and nothing of rewind-lsp's, so rewind-lsp's start → first diagnostics is set against it."""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("minimal-bench-server", "0")


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    where = types.Range(types.Position(0, 0), types.Position(0, 1))
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(
            uri=params.text_document.uri,
            version=params.text_document.version,
            diagnostics=[types.Diagnostic(where, "one diagnostic", severity=types.DiagnosticSeverity.Error)],
        )
    )


if __name__ == "__main__":
    server.start_io()
