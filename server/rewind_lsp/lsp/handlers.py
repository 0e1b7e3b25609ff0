"""The LSP handlers: each a few lines over the server's state (server.py), open documents
(documents.py), code actions and commands (actions.py) and the startup scan (scan.py).

Every handler is guarded: an error in one is logged to the client and answered, none stops the server.
Requests about open documents read the findings kept for the document's version and never check.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import traceback
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ..findings import Finding
from ..paths import user_cache_dir, user_log_dir
from . import actions, navigate
from .fileio import append_regular
from .hover import hover_text, wants_markdown

# At run time, not only for type checking: pygls reads the commands' type hints. server.py imports this
# module once its class is defined (make_server).
from .server import RewindLanguageServer

TERMINAL_OUTPUT = "rewindLsp/terminalOutput"
WORKSPACE_PULL_WAIT = 60.0  # seconds a workspace pull with nothing new is held open


def guard(ls: RewindLanguageServer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every handler error is logged to the client and answered; none stops the server."""

    def report() -> None:
        ls.window_log_message(
            types.LogMessageParams(types.MessageType.Error, f"rewind-lsp: {name} failed:\n{traceback.format_exc()}")
        )

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    report()
                    return None

            return async_inner

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                report()
                return None

        return inner

    return wrap


def result_id(findings: list[Finding]) -> str:
    return format(hash(tuple((f.rule, f.severity, f.start, f.end, f.message) for f in findings)) & (2**64 - 1), "x")


def at_line(findings: list[Finding], line0: int) -> list[Finding]:
    return [f for f in findings if f.start.line - 1 <= line0 <= f.end.line - 1]


def register(server: RewindLanguageServer) -> None:  # one short handler per LSP method
    # --- lifecycle --------------------------------------------------------------------------

    @server.feature(types.INITIALIZE)
    @guard(server, "initialize")
    def initialize(ls: RewindLanguageServer, params: types.InitializeParams) -> None:
        ls.initialization_options = params.initialization_options  # applied in `initialized`: answer first

    @server.feature(types.INITIALIZED)
    @guard(server, "initialized")
    async def initialized(ls: RewindLanguageServer, params: types.InitializedParams) -> None:
        from .config import SECTION
        from .scan import claim

        ls.apply_settings(ls.initialization_options)
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:
            try:
                configs = await ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
                )
                if configs and configs[0] is not None:
                    ls.apply_settings(configs[0])
                    ls.documents.recheck_all()
            except Exception as exc:
                ls.window_log_message(types.LogMessageParams(
                    types.MessageType.Info, f"rewind-lsp: workspace/configuration failed: {exc}"))
        ls.start_watching()
        claim(ls, user_cache_dir() / "locks")

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: RewindLanguageServer, params: None) -> None:
        if ls.watcher is not None:
            ls.watcher.stop()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    @guard(server, "didChangeConfiguration")
    async def did_change_configuration(ls: RewindLanguageServer, params: types.DidChangeConfigurationParams) -> None:
        from .config import SECTION
        from .scan import claim

        raw = params.settings
        if raw is None or (isinstance(raw, dict) and SECTION not in raw and not raw):
            ws = ls.client_capabilities.workspace
            if ws is not None and ws.configuration:
                configs = await ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
                )
                raw = configs[0] if configs else None
        roots = ls.watcher.roots if ls.watcher is not None else None
        ls.apply_settings(raw)
        ls.start_watching()
        if ls.watcher is not None and ls.watcher.roots != roots:
            claim(ls, user_cache_dir() / "locks")  # other folders: another lock
        ls.documents.recheck_all()  # published when each check is done
        for path in list(ls.disk_findings):
            await ls.refresh_path(path, announce=ls.changed_since_watching(path))

    # --- documents --------------------------------------------------------------------------
    # Synchronous on purpose: the edits of one document apply in the order they came.

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @guard(server, "didOpen")
    def did_open(ls: RewindLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        ls.documents.did_open(doc.uri, doc.version, doc.text)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @guard(server, "didChange")
    def did_change(ls: RewindLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = params.text_document
        ls.documents.did_change(doc.uri, doc.version, list(params.content_changes), ls.position_encoding)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @guard(server, "didSave")
    def did_save(ls: RewindLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        pass  # the buffer did not change: its findings stand

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @guard(server, "didClose")
    async def did_close(ls: RewindLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.did_close(uri)  # a check still running for it is obsolete: never published
        path = to_fs_path(uri)
        if path and ls.is_watched(path) and os.path.exists(path):
            await ls.refresh_path(path, announce=False)  # back to what is on disk
        else:
            ls.publish(uri, [])

    # --- diagnostics ------------------------------------------------------------------------

    @server.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(identifier="rewind-lsp", inter_file_dependencies=False, workspace_diagnostics=True),
    )
    @guard(server, "textDocument/diagnostic")
    async def document_diagnostic(
        ls: RewindLanguageServer, params: types.DocumentDiagnosticParams
    ) -> types.FullDocumentDiagnosticReport:
        uri = params.text_document.uri
        return types.FullDocumentDiagnosticReport(items=ls.diagnostics(uri, await ls.findings_for(uri)))

    @server.feature(types.WORKSPACE_DIAGNOSTIC)
    @guard(server, "workspace/diagnostic")
    async def workspace_diagnostic(
        ls: RewindLanguageServer, params: types.WorkspaceDiagnosticParams
    ) -> types.WorkspaceDiagnosticReport:
        """Reports for files on disk that are not open. When the client already has every current
        report, the request is held until something changes (the protocol's long poll), so the
        client does not ask again every few seconds."""
        previous = {p.uri: p.value for p in params.previous_result_ids}
        for _ in range(2):
            current = {}
            for path in sorted(ls.disk_findings):
                uri = from_fs_path(path) or path
                if uri not in ls.documents:
                    findings = ls.adjust(ls.disk_findings.get(path, []))
                    current[uri] = (result_id(findings), findings)
            if (
                not previous
                or any(previous.get(u) != rid for u, (rid, _) in current.items())
                or set(previous) - set(current)
            ):
                break
            ls.disk_changed.clear()
            try:
                await asyncio.wait_for(ls.disk_changed.wait(), WORKSPACE_PULL_WAIT)
            except TimeoutError:
                break
        items: list[types.WorkspaceFullDocumentDiagnosticReport | types.WorkspaceUnchangedDocumentDiagnosticReport] = []
        for uri, (rid, findings) in current.items():
            if previous.get(uri) == rid:
                items.append(types.WorkspaceUnchangedDocumentDiagnosticReport(uri=uri, result_id=rid, version=None))
            else:
                items.append(
                    types.WorkspaceFullDocumentDiagnosticReport(
                        uri=uri, version=None, result_id=rid, items=ls.diagnostics(uri, findings)
                    )
                )
        for uri in set(previous) - set(current):  # gone from disk: clear it in the client
            items.append(types.WorkspaceFullDocumentDiagnosticReport(uri=uri, version=None, items=[]))
        return types.WorkspaceDiagnosticReport(items=items)

    # --- hover and code actions -------------------------------------------------------------

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @guard(server, "hover")
    async def hover(ls: RewindLanguageServer, params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        here = at_line(await ls.findings_for(uri), params.position.line)
        if not here:
            return None
        diags = ls.diagnostics(uri, here[:1])
        td = ls.client_capabilities.text_document
        asked = td.hover.content_format if td is not None and td.hover is not None else None
        markdown = wants_markdown([str(k.value) for k in asked] if asked else None)
        kind = types.MarkupKind.Markdown if markdown else types.MarkupKind.PlainText
        text = hover_text(here, ls.rules, markdown)
        note = await navigate.place_note(ls, uri, here[0])  # a log's 400: where that message is
        if note is not None:
            text += "\n\n" + note
        return types.Hover(contents=types.MarkupContent(kind=kind, value=text), range=diags[0].range)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
    )
    @guard(server, "codeAction")
    async def code_action(ls: RewindLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        ours = [d for d in params.context.diagnostics if d.source == "rewind-lsp"]
        if not ours:
            ours = ls.diagnostics(uri, at_line(await ls.findings_for(uri), params.range.start.line))
        return await actions.code_actions(ls, uri, ours) if ours else []

    # --- commands ---------------------------------------------------------------------------

    @server.command(actions.CMD_REWIND)
    @guard(server, actions.CMD_REWIND)
    async def cmd_rewind(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
        return await actions.do_rewind(ls, args[0] if args else None, "truncate")

    @server.command(actions.CMD_REWIND_TO)
    @guard(server, actions.CMD_REWIND_TO)
    async def cmd_rewind_to(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
        """`[uri, point]`: cut back to just before that user prompt (its line number or uuid), as `rewind --to`."""
        if len(args) < 2:
            message = "rewind-lsp: rewindTo needs [uri, line number or uuid of a user prompt]"
            ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            return {"error": message}
        return await actions.do_rewind(ls, args[0], "truncate", args[1])

    @server.command(actions.CMD_REPAIR)
    @guard(server, actions.CMD_REPAIR)
    async def cmd_repair(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
        return await actions.do_rewind(ls, args[0] if args else None, "patch")

    @server.command(actions.CMD_SHOW_FIX)
    @guard(server, actions.CMD_SHOW_FIX)
    async def cmd_show_fix(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
        return await actions.do_show_fix(ls, args[0] if args else None)

    @server.command(actions.CMD_COPY_RESUME)
    @guard(server, actions.CMD_COPY_RESUME)
    def cmd_copy_resume(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
        return actions.copy_resume(ls, args[0] if args else None)

    # --- terminal output streamed by a client -----------------------------------------------

    @server.feature(TERMINAL_OUTPUT)
    @guard(server, TERMINAL_OUTPUT)
    async def terminal_output(ls: RewindLanguageServer, params: Any) -> None:
        name = getattr(params, "terminal", None) if not isinstance(params, dict) else params.get("terminal")
        data = getattr(params, "data", None) if not isinstance(params, dict) else params.get("data")
        if not isinstance(data, str) or not data:
            return
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name or "terminal"))[:64].strip("-.") or "terminal"
        folder = user_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"terminal-{safe}.log"
        append_regular(str(path), data)
        await ls.refresh_path(str(path))
