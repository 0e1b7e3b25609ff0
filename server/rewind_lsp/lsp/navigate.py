"""The transcript as a navigable document, over LSP: outline, folding, workspace symbols, jumps
between the halves of a tool call, `messages.N` inlay hints and rewind-to-here code lenses; and the
list of watched sessions with their health (`rewind-lsp/sessions`).

Thin handlers over `navigation.build`: one map per (open document, version), built on the server's
worker thread and kept until the document changes or closes; every request of that version reads
it. Only open transcripts are mapped, and workspace symbols search open transcripts too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ..check import CONCURRENCY_400, check_transcript_bytes, is_subagent_transcript, is_transcript_path
from ..codex import message_text
from ..codex_map import build_rollout_map
from ..codex_repair import rollout_drops
from ..findings import Finding, Severity
from ..lookup import NoSuchPlace, Place, Transcript
from ..navigation import TranscriptMap, build, parse_ref
from ..redact import redact
from ..repair_plan import rewind_drops
from ..transcript import Entry
from .actions import CMD_OPEN_MESSAGE, transcript_for_log
from .documents import Lines
from .hints import code_lenses, inlay_hints
from .jumps import Jumps
from .outline import document_symbols, folding_ranges, workspace_symbols
from .positions import units
from .server import RewindLanguageServer

log = logging.getLogger(__name__)


class _Mapped:
    """A document version's map, and its line index (a request must not scan a 100 MB text to find the
    length of its last line: documentSymbol did, 48 ms p50)."""

    __slots__ = ("broken", "drops", "lines", "map", "version")

    def __init__(self, version: int | None, m: TranscriptMap, drops: dict[int, int], broken: bool,
                 lines: Lines) -> None:
        self.version, self.map, self.drops, self.broken, self.lines = version, m, drops, broken, lines


_maps: dict[str, _Mapped] = {}


def _build(source: str, version: int | None) -> _Mapped:
    data = source.encode("utf-8", errors="surrogatepass")
    check = check_transcript_bytes(data)
    broken = any(f.severity == Severity.ERROR for f in check.findings)
    boundaries = [e for e in check.transcript.entries if e.is_compact_boundary and not e.sidechain]
    if check.main is not None and check.main.api == "responses":
        # A Codex rollout: its own map (no `messages.N`), rewind points as `rewind --to` takes them.
        rollout = build_rollout_map(check.conversations, lambda o, n: data[o:o + n], boundaries)
        return _Mapped(version, rollout, rollout_drops(check, _text_in(data)), broken, Lines(source).index_all())
    m = build(check.conversations, lambda o, n: data[o:o + n], boundaries)
    drops = rewind_drops(check.main) if check.main is not None else {}
    return _Mapped(version, m, drops, broken, Lines(source).index_all())


def _text_in(data: bytes) -> Callable[[Entry], str]:
    """A rollout message entry's text, read from the document's bytes."""
    def text(e: Entry) -> str:
        try:
            return message_text(json.loads(data[e.offset:e.offset + e.length].decode("utf-8", errors="replace")))
        except (ValueError, RecursionError):
            return ""
    return text


async def _mapped(ls: RewindLanguageServer, uri: str) -> _Mapped | None:
    doc = ls.documents.get(uri)
    if doc is None or not doc.is_transcript:
        return None
    for gone in [u for u in _maps if u not in ls.documents]:  # closed since: their maps go
        del _maps[gone]
    known = _maps.get(uri)
    if known is not None and known.version == doc.version:
        return known
    version, text = doc.version, doc.text
    mapped = await ls.on_worker(_build, text, version)
    _maps[uri] = mapped
    return mapped


def _line_text(ls: RewindLanguageServer, uri: str) -> Callable[[int], str]:
    doc = ls.documents.get(uri)
    if doc is None:
        return lambda line: ""
    known = _maps.get(uri)
    return known.lines if known is not None and known.version == doc.version else Lines(doc.text)


def _line_length(ls: RewindLanguageServer, uri: str) -> Callable[[int], int]:
    text, encoding = _line_text(ls, uri), ls.position_encoding

    def length(line0: int) -> int:
        return units(text(line0 + 1), encoding)

    return length


def _failed(name: str) -> None:
    log.exception("rewind-lsp: %s failed", name)


async def document_symbol(ls: RewindLanguageServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    uri = params.text_document.uri
    try:
        mapped = await _mapped(ls, uri)
        return document_symbols(mapped.map, _line_length(ls, uri)) if mapped else []
    except Exception:
        _failed("documentSymbol")
        return []


async def folding_range(ls: RewindLanguageServer, params: types.FoldingRangeParams) -> list[types.FoldingRange]:
    try:
        mapped = await _mapped(ls, params.text_document.uri)
        return folding_ranges(mapped.map) if mapped else []
    except Exception:
        _failed("foldingRange")
        return []


async def workspace_symbol(ls: RewindLanguageServer, params: types.WorkspaceSymbolParams
                           ) -> list[types.WorkspaceSymbol]:
    try:
        maps = []
        for uri in [d.uri for d in ls.documents]:
            mapped = await _mapped(ls, uri)
            if mapped is not None:
                maps.append((uri, mapped.map))
        # Off the event loop: a query that matches nothing reads every prompt of every open session.
        return await ls.on_worker(workspace_symbols, params.query, maps)
    except Exception:
        _failed("workspace/symbol")
        return []


async def _jumps(ls: RewindLanguageServer, uri: str) -> Jumps | None:
    mapped = await _mapped(ls, uri)
    return Jumps(mapped.map, _line_text(ls, uri), ls.position_encoding) if mapped else None


async def definition(ls: RewindLanguageServer, params: types.DefinitionParams) -> list[types.Location]:
    uri = params.text_document.uri
    try:
        jumps = await _jumps(ls, uri)
        return jumps.definition(uri, params.position) if jumps else []
    except Exception:
        _failed("definition")
        return []


async def references(ls: RewindLanguageServer, params: types.ReferenceParams) -> list[types.Location]:
    uri = params.text_document.uri
    try:
        jumps = await _jumps(ls, uri)
        return jumps.references(uri, params.position, params.context.include_declaration) if jumps else []
    except Exception:
        _failed("references")
        return []


async def document_highlight(ls: RewindLanguageServer, params: types.DocumentHighlightParams
                             ) -> list[types.DocumentHighlight]:
    try:
        jumps = await _jumps(ls, params.text_document.uri)
        return jumps.highlights(params.position) if jumps else []
    except Exception:
        _failed("documentHighlight")
        return []


async def inlay_hint(ls: RewindLanguageServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    if not ls.settings.inlay_hints:
        return []
    try:
        mapped = await _mapped(ls, params.text_document.uri)
        return inlay_hints(mapped.map, params.range.start.line, params.range.end.line) if mapped else []
    except Exception:
        _failed("inlayHint")
        return []


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


# --- from a terminal log to the failing message in its session ---------------------------------



def log_ref(f: Finding) -> str | None:
    """`messages.N[.content.M]`, or else the tool id, that a log finding names; None if neither."""
    n = f.facts.get("messages_index")
    if n is not None:
        content = f.facts.get("content_index")
        return f"messages.{n}" + (f".content.{content}" if content is not None else "")
    return f.tool_use_id


def _places(transcript: str, refs: list[str]) -> list[Place | None]:
    """Each reference's place in `transcript`, checked once (on the worker)."""
    t = Transcript(transcript)
    out: list[Place | None] = []
    for ref in refs:
        parsed = parse_ref(ref)
        try:
            out.append(t.message(*parsed) if parsed is not None else t.call(ref))
        except NoSuchPlace:
            out.append(None)
    return out


def _target(place: Place) -> str:
    uri = from_fs_path(str(place.path)) or str(place.path)
    return f"{uri}#L{place.line},{place.column}"


async def _log_places(ls: RewindLanguageServer, uri: str) -> list[tuple[Finding, str, Place]]:
    """The log's tool-use 400s that name a place, each with its reference and where that is."""
    if is_transcript_path(to_fs_path(uri) or uri):
        return []
    named = [(f, ref) for f in await ls.findings_for(uri) if f.rule == CONCURRENCY_400 and (ref := log_ref(f))]
    if not named:
        return []
    try:
        transcript = await transcript_for_log(ls, uri)
    except (ValueError, OSError):
        return []
    if transcript is None:
        return []
    places = await ls.on_worker(_places, transcript, [ref for _, ref in named])
    return [(f, ref, place) for (f, ref), place in zip(named, places, strict=True) if place is not None]


def subagent_file(transcript: str, agent_id: str) -> Path | None:
    """`<session>/subagents/agent-<id>.jsonl` beside the transcript, if it is there (a regular file)."""
    if not agent_id.replace("-", "").isalnum():
        return None
    p = Path(transcript).parent / Path(transcript).stem / "subagents" / f"agent-{agent_id}.jsonl"
    return p if p.is_file() and not p.is_symlink() else None


async def _subagent_links(ls: RewindLanguageServer, uri: str, tooltips: bool) -> list[types.DocumentLink]:
    """In a transcript: each Task/Agent call links to its subagent's transcript."""
    mapped = await _mapped(ls, uri)
    path = to_fs_path(uri)
    if mapped is None or path is None:
        return []
    jumps = Jumps(mapped.map, _line_text(ls, uri), ls.position_encoding)
    links = []
    for c in mapped.map.calls:
        target = subagent_file(path, c.agent_id) if c.agent_id else None
        if target is not None:
            tip = redact(f"subagent {c.agent_id}: {target.name}") if tooltips else None
            links.append(types.DocumentLink(range=jumps.range(c.use), target=target.as_uri(), tooltip=tip))
    return links


async def document_link(ls: RewindLanguageServer, params: types.DocumentLinkParams) -> list[types.DocumentLink]:
    """In a terminal log: each tool-use 400 that names `messages.N` or a tool id links to that line
    of the session the log is about."""
    uri = params.text_document.uri
    td = ls.client_capabilities.text_document
    tooltips = bool(td and td.document_link and td.document_link.tooltip_support)
    try:
        if is_transcript_path(to_fs_path(uri) or uri):
            return await _subagent_links(ls, uri, tooltips)
        return [
            types.DocumentLink(range=ls.diagnostics(uri, [f])[0].range, target=_target(place),
                               tooltip=f"{ref} is line {place.line:,} of {place.path.name}" if tooltips else None)
            for f, ref, place in await _log_places(ls, uri)
        ]
    except Exception:
        _failed("documentLink")
        return []


async def open_message(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    """`[log uri, "messages.N[.content.M]" or a tool id]`: show the session's transcript at that line
    (window/showDocument, where the client can) and answer where it is."""
    if len(args) < 2 or not all(isinstance(a, str) for a in args[:2]):
        return {"error": "rewind-lsp: openMessage needs [log uri, messages.N or a tool id]"}
    uri, ref = args[0], args[1]
    try:
        transcript = await transcript_for_log(ls, uri)
    except (ValueError, OSError) as exc:
        return {"error": f"rewind-lsp: {exc}"}
    if transcript is None:
        return {"error": "rewind-lsp: the log names no session on this machine"}
    (place,) = await ls.on_worker(_places, transcript, [ref])
    if place is None:
        return {"error": f"rewind-lsp: {ref} is not in {Path(transcript).name}"}
    target = from_fs_path(str(place.path)) or str(place.path)
    at = types.Position(place.line - 1, 0)
    window = ls.client_capabilities.window
    if window is not None and window.show_document is not None and window.show_document.support:
        ls.spawn(ls.window_show_document_async(types.ShowDocumentParams(
            uri=target, take_focus=True, selection=types.Range(at, at))))
    return {"uri": target, "line": place.line - 1, "column": place.column - 1}


def register(server: RewindLanguageServer) -> None:
    """The navigation features on `server` (server.make_server calls this after the core handlers)."""
    server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)(document_symbol)
    server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)(folding_range)
    server.feature(types.WORKSPACE_SYMBOL)(workspace_symbol)
    server.feature(types.TEXT_DOCUMENT_DEFINITION)(definition)
    server.feature(types.TEXT_DOCUMENT_REFERENCES)(references)
    server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)(document_highlight)
    server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))(inlay_hint)
    server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))(code_lens)
    server.feature(SESSIONS)(sessions)
    server.feature(types.TEXT_DOCUMENT_DOCUMENT_LINK)(document_link)
    server.command(CMD_OPEN_MESSAGE)(open_message)


async def place_note(ls: RewindLanguageServer, uri: str, f: Finding) -> str | None:
    """For a log's 400 that names a place: `messages.212 is line 3,046 of <file>` (for the hover)."""
    ref = log_ref(f) if f.rule == CONCURRENCY_400 and not is_transcript_path(to_fs_path(uri) or uri) else None
    if ref is None:
        return None
    try:
        transcript = await transcript_for_log(ls, uri)
    except (ValueError, OSError):
        return None
    if transcript is None:
        return None
    (place,) = await ls.on_worker(_places, transcript, [ref])
    return f"{ref} is line {place.line:,} of {place.path.name}" if place is not None else None
