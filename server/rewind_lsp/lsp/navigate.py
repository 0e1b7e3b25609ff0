"""The transcript as a navigable document, over LSP: outline, folding, workspace symbols, jumps
between the halves of a tool call, `messages.N` inlay hints and rewind-to-here code lenses; and the
list of watched sessions with their health (`rewind-lsp/sessions`).

Thin handlers over `navigation.build`: one map per (open document, version), built on the server's
worker thread and kept until the document changes or closes; every request of that version reads
it. Only open transcripts are mapped, and workspace symbols search open transcripts too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ..check import check_transcript_bytes, is_subagent_transcript, is_transcript_path
from ..findings import Severity
from ..navigation import TranscriptMap, build
from ..redact import redact
from ..repair_plan import rewind_drops
from .hints import code_lenses, inlay_hints
from .jumps import Jumps
from .outline import document_symbols, folding_ranges, workspace_symbols
from .server import RewindLanguageServer, server

log = logging.getLogger(__name__)


class _Mapped:
    __slots__ = ("broken", "drops", "map", "version")

    def __init__(self, version: int | None, m: TranscriptMap, drops: dict[int, int], broken: bool) -> None:
        self.version, self.map, self.drops, self.broken = version, m, drops, broken


_maps: dict[str, _Mapped] = {}


def _build(source: str, version: int | None) -> _Mapped:
    data = source.encode("utf-8", errors="surrogatepass")
    check = check_transcript_bytes(data)
    boundaries = [e for e in check.transcript.entries if e.is_compact_boundary and not e.sidechain]
    m = build(check.conversations, lambda o, n: data[o:o + n], boundaries)
    drops = rewind_drops(check.main) if check.main is not None else {}
    broken = any(f.severity == Severity.ERROR for f in check.findings)
    return _Mapped(version, m, drops, broken)


async def _mapped(ls: RewindLanguageServer, uri: str) -> _Mapped | None:
    if not ls.is_open(uri) or not is_transcript_path(to_fs_path(uri) or ""):
        return None
    for gone in [u for u in _maps if not ls.is_open(u)]:  # closed since: their maps go
        del _maps[gone]
    doc = ls.workspace.get_text_document(uri)
    known = _maps.get(uri)
    if known is not None and known.version == doc.version:
        return known
    mapped = await ls.on_worker(_build, doc.source, doc.version)
    _maps[uri] = mapped
    return mapped


def _encoding(ls: RewindLanguageServer) -> str:
    return str(ls.workspace.position_encoding or types.PositionEncodingKind.Utf16)


def _line_text(ls: RewindLanguageServer, uri: str) -> Callable[[int], str]:
    lines = ls.workspace.get_text_document(uri).lines

    def text(line: int) -> str:
        return lines[line - 1].rstrip("\r\n") if 0 < line <= len(lines) else ""

    return text


def _line_length(ls: RewindLanguageServer, uri: str) -> Callable[[int], int]:
    text, encoding = _line_text(ls, uri), _encoding(ls)

    def length(line0: int) -> int:
        t = text(line0 + 1)
        if encoding == types.PositionEncodingKind.Utf32:
            return len(t)
        if encoding == types.PositionEncodingKind.Utf8:
            return len(t.encode("utf-8", errors="surrogatepass"))
        return len(t.encode("utf-16-le", errors="surrogatepass")) // 2

    return length


def _failed(name: str) -> None:
    log.exception("rewind-lsp: %s failed", name)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbol(ls: RewindLanguageServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    uri = params.text_document.uri
    try:
        mapped = await _mapped(ls, uri)
        return document_symbols(mapped.map, _line_length(ls, uri)) if mapped else []
    except Exception:
        _failed("documentSymbol")
        return []


@server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)
async def folding_range(ls: RewindLanguageServer, params: types.FoldingRangeParams) -> list[types.FoldingRange]:
    try:
        mapped = await _mapped(ls, params.text_document.uri)
        return folding_ranges(mapped.map) if mapped else []
    except Exception:
        _failed("foldingRange")
        return []


@server.feature(types.WORKSPACE_SYMBOL)
async def workspace_symbol(ls: RewindLanguageServer, params: types.WorkspaceSymbolParams
                           ) -> list[types.WorkspaceSymbol]:
    try:
        maps = []
        for uri in list(ls.workspace.text_documents):
            mapped = await _mapped(ls, uri)
            if mapped is not None:
                maps.append((uri, mapped.map))
        return workspace_symbols(params.query, maps)
    except Exception:
        _failed("workspace/symbol")
        return []


async def _jumps(ls: RewindLanguageServer, uri: str) -> Jumps | None:
    mapped = await _mapped(ls, uri)
    return Jumps(mapped.map, _line_text(ls, uri), _encoding(ls)) if mapped else None


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
async def definition(ls: RewindLanguageServer, params: types.DefinitionParams) -> list[types.Location]:
    uri = params.text_document.uri
    try:
        jumps = await _jumps(ls, uri)
        return jumps.definition(uri, params.position) if jumps else []
    except Exception:
        _failed("definition")
        return []


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
async def references(ls: RewindLanguageServer, params: types.ReferenceParams) -> list[types.Location]:
    uri = params.text_document.uri
    try:
        jumps = await _jumps(ls, uri)
        return jumps.references(uri, params.position, params.context.include_declaration) if jumps else []
    except Exception:
        _failed("references")
        return []


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
async def document_highlight(ls: RewindLanguageServer, params: types.DocumentHighlightParams
                             ) -> list[types.DocumentHighlight]:
    try:
        jumps = await _jumps(ls, params.text_document.uri)
        return jumps.highlights(params.position) if jumps else []
    except Exception:
        _failed("documentHighlight")
        return []


@server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
async def inlay_hint(ls: RewindLanguageServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    if not ls.settings.inlay_hints:
        return []
    try:
        mapped = await _mapped(ls, params.text_document.uri)
        return inlay_hints(mapped.map, params.range.start.line, params.range.end.line) if mapped else []
    except Exception:
        _failed("inlayHint")
        return []


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
async def code_lens(ls: RewindLanguageServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    try:
        mapped = await _mapped(ls, uri)
        return code_lenses(uri, mapped.map, mapped.drops, mapped.broken) if mapped else []
    except Exception:
        _failed("codeLens")
        return []


SESSIONS = "rewind-lsp/sessions"


def _kind(path: str) -> str:
    if not is_transcript_path(path):
        return "log"
    return "subagent transcript" if is_subagent_transcript(path) else "session"


@server.feature(SESSIONS)
def sessions(ls: RewindLanguageServer, params: Any) -> dict[str, Any]:
    """The watched files the server has checked, broken first (most errors first), then by name: for
    a client's list of sessions (VS Code's `Claude sessions` view). Findings as the client sees them
    (settings applied); `firstError.line` is 0-based."""
    out: list[tuple[int, str, dict[str, Any]]] = []
    for path, raw in list(ls.disk_findings.items()):
        findings = ls.adjust(raw)
        errors = [f for f in findings if f.severity == Severity.ERROR]
        first = min(errors, key=lambda f: f.sort_key) if errors else None
        out.append((-len(errors), path, {
            "uri": from_fs_path(path) or path, "path": path, "kind": _kind(path),
            "sessionId": Path(path).stem if is_transcript_path(path) else None,
            "errors": len(errors), "warnings": sum(f.severity == Severity.WARNING for f in findings),
            "firstError": {"line": first.start.line - 1, "message": redact(first.message)} if first else None,
        }))
    out.sort(key=lambda x: (x[0], x[1]))
    return {"sessions": [x[2] for x in out]}
