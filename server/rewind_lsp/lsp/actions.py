"""Code actions and commands: Rewind, Repair, Show fix steps, Copy resume command, and what they act on."""

from __future__ import annotations

import asyncio
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ..check import is_regular_file, is_transcript_path
from ..findings import Severity
from .fileio import mtime, read_tail, real_inside, shown

if TYPE_CHECKING:
    from .server import RewindLanguageServer

CMD_REWIND = "rewind-lsp.rewind"
CMD_REPAIR = "rewind-lsp.repair"
CMD_REWIND_TO = "rewind-lsp.rewindTo"
CMD_SHOW_FIX = "rewind-lsp.showFix"
CMD_COPY_RESUME = "rewind-lsp.copyResumeCommand"
CMD_OPEN_MESSAGE = "rewind-lsp.openMessage"
OPEN_MESSAGE_TITLE = "Open the failing message in the session"
LOG_TAIL = 1 << 20  # bytes of a log read to find the session it names
_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def allowed_path(ls: RewindLanguageServer, uri: Any, roots: list[str] | None = None) -> str:
    """A transcript path from a command argument, confined to `roots` (default: every folder the
    server serves for reading: the watch roots, the workspace folders, the open documents' folders)."""
    if not isinstance(uri, str) or not uri:
        raise ValueError("expected a document URI")
    path = to_fs_path(uri) if uri.startswith("file:") else (uri if os.path.isabs(uri) else None)
    if not path:
        raise ValueError(f"not a file: {shown(uri)}")
    if roots is None:
        roots = [*ls.settings.watch_roots, *ls.workspace_paths()]
        roots += [os.path.dirname(to_fs_path(d.uri) or "") for d in ls.documents]
    real = real_inside(path, roots)
    if real is not None:
        return real
    raise ValueError(f"{shown(path)} is outside the folders rewind-lsp serves")


async def log_text(ls: RewindLanguageServer, uri: str, limit: int = LOG_TAIL) -> str:
    """The end of a log or terminal document the server serves: the editor's buffer when open (terminal
    buffers too), else the file, confined to the served folders BEFORE anything is opened, regular files
    only, a bounded tail read off the event loop. ValueError for anything else."""
    doc = ls.documents.get(uri)
    if doc is not None:
        return doc.tail(limit)
    path = allowed_path(ls, uri)
    if not ls.is_log_path(path):
        raise ValueError(f"{shown(path)} is not a log rewind-lsp serves")
    if not is_regular_file(path):
        raise ValueError(f"{shown(path)} is not a regular file")
    return await asyncio.get_running_loop().run_in_executor(None, read_tail, path, limit)


async def transcript_for_log(ls: RewindLanguageServer, uri: str) -> str | None:
    """The session a log or terminal document is about: the last session id named in it that has a
    transcript; when it names none, the newest broken session. ValueError when `uri` is no log or terminal
    the server serves (never a guess for an argument that names nothing)."""
    text = await log_text(ls, uri)
    ids = _SESSION_ID.findall(text)
    if ids:
        by_stem = {Path(p).stem: p for p in ls.disk_findings if is_transcript_path(p)}
        for sid in reversed(ids):
            if sid in by_stem:
                return by_stem[sid]
            for root in ls.settings.watch_roots:
                for candidate in Path(root).glob(f"*/{sid}.jsonl"):
                    return str(candidate)
        return None
    broken = [
        (when, p)
        for p, fs in ls.disk_findings.items()
        if is_transcript_path(p)
        and any(f.severity == Severity.ERROR for f in fs)
        and (when := mtime(p)) is not None
    ]
    return max(broken)[1] if broken else None


async def rewind_target(ls: RewindLanguageServer, uri: Any) -> str:
    """The transcript a Rewind/Repair argument means: a transcript's URI, or a log or terminal document
    the server serves (then the session it names). What is written is written beside it, so it must lie
    under the watch roots: an open document elsewhere may be read, never written beside. Anything else
    is refused, never read."""
    if not isinstance(uri, str) or not uri:
        raise ValueError("expected a document URI")
    if is_transcript_path(uri):
        path = allowed_path(ls, uri)
    else:  # a log or a terminal: act on the session it names
        found = await transcript_for_log(ls, uri)
        if not found:
            raise ValueError("no Claude Code transcript found for this log")
        path = allowed_path(ls, found)
    try:
        path = allowed_path(ls, path, ls.settings.watch_roots)
    except ValueError:
        raise ValueError(
            f"{shown(path)} is outside the watched folders (watchRoots): "
            "rewind-lsp rewinds and repairs only sessions there"
        ) from None
    if not is_regular_file(path):  # a FIFO would block the worker, a device never end
        raise ValueError(f"{shown(path)} is not a regular file")
    return path


async def do_rewind(ls: RewindLanguageServer, uri: Any, mode: str, to: Any = None) -> dict[str, Any]:
    from ..advice import resume_command
    from ..redact import redact
    from ..rewind import RewindError, rewind

    try:
        if to is not None and not isinstance(to, (str, int)):
            raise ValueError(f"the rewind point must be a line number or a uuid, not {shown(repr(to))}")
        path = await rewind_target(ls, uri)
        result = await ls.on_worker(
            functools.partial(rewind, path, mode=mode, to=None if to is None else str(to)), writes=True
        )
    except (ValueError, RewindError, OSError) as exc:
        message = redact(f"rewind-lsp: {exc}")
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
        return {"error": message}
    ls.rewound[path] = result
    ls.previews.pop(path, None)
    resume, note = resume_command(result.session_id, result.cwd, path)
    ls.window_show_message(
        types.ShowMessageParams(
            types.MessageType.Info,
            redact(f"rewind-lsp: wrote {result.path.name} ({mode}); the original is untouched. "
                   f"Resume it with: {resume}" + (f" ({note})" if note else "")),
        )
    )
    new_uri = from_fs_path(str(result.path)) or str(result.path)
    ls.show_document(new_uri, take_focus=False)
    return {
        "path": str(result.path),
        "sessionId": result.session_id,
        "resumeCommand": resume,
        "uri": new_uri,
        "fixed": [redact(x) for x in result.fixed],
        "keptMessages": result.kept_messages,
        "droppedMessages": result.dropped_messages,
    }


async def preview_costs(ls: RewindLanguageServer, uri: str) -> dict[str, Any]:
    """What Rewind and Repair would cost for the session at `uri` ({} when it cannot be said), cached
    per file state: code actions are asked for on every cursor move."""
    from ..rewind import RewindError, preview

    try:
        path = allowed_path(ls, uri)
        st = os.stat(path)
    except (ValueError, OSError):
        return {}
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = ls.previews.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        got = await ls.on_worker(preview, path, pool=ls.preview_pool)
    except (RewindError, OSError):
        return {}
    costs = {p.mode: p for p in got}
    ls.previews[path] = (key, costs)
    return costs


async def do_show_fix(ls: RewindLanguageServer, rule_id: Any) -> dict[str, Any]:
    rule = ls.rules.get(rule_id) if isinstance(rule_id, str) else None
    if rule is None:
        message = f"rewind-lsp: unknown rule {rule_id!r}"
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
        return {"error": message}
    ls.show_document(rule.fix_uri, take_focus=True)
    return {"uri": rule.fix_uri}


def copy_resume(ls: RewindLanguageServer, uri: Any) -> dict[str, Any]:
    try:
        path = allowed_path(ls, uri)
    except ValueError as exc:
        return {"error": f"rewind-lsp: {exc}"}
    from ..advice import resume_command, rewind_command
    from ..repairs import repaired_copy

    done = ls.rewound.get(path)
    if done is not None:
        # The same command the Rewind/Repair message showed: built in one place (advice).
        return {"resumeCommand": resume_command(done.session_id, done.cwd, path)[0], "path": str(done.path)}
    earlier = repaired_copy(path)  # repaired before (the CLI, the hook, another editor), unchanged since
    if earlier is not None:
        return {"resumeCommand": resume_command(earlier.session_id, earlier.cwd, path)[0], "path": str(earlier.copy)}
    message = rewind_command(path, "--mode", "patch")
    ls.window_show_message(
        types.ShowMessageParams(
            types.MessageType.Info,
            f"rewind-lsp: this session has no repaired copy yet; run Rewind or Repair first (or `{message}`)",
        )
    )
    return {"resumeCommand": None, "rewindCommand": message}


async def code_actions(ls: RewindLanguageServer, uri: str, ours: list[types.Diagnostic]) -> list[types.CodeAction]:
    """Show fix steps per rule; Rewind, Repair and Copy resume command for what they can fix."""
    if is_transcript_path(uri):
        target: str | None = uri
    else:
        try:
            found = await transcript_for_log(ls, uri)
        except (ValueError, OSError):  # a document the server does not serve: no session to act on
            found = None
        target = from_fs_path(found) if found else None
    actions: list[types.CodeAction] = []
    for rule in dict.fromkeys(str(d.code) for d in ours):
        diags = [d for d in ours if str(d.code) == rule]
        actions.append(
            types.CodeAction(
                title="Show fix steps",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=diags,
                command=types.Command(title="Show fix steps", command=CMD_SHOW_FIX, arguments=[rule]),
            )
        )
    if target is not None and not is_transcript_path(uri):
        actions.extend(_open_message_actions(uri, ours))
    repairable = [d for d in ours if d.severity == types.DiagnosticSeverity.Error or (
        str(d.code) == "tool-use-concurrency-400" and d.severity == types.DiagnosticSeverity.Warning)]
    if target is not None and repairable:
        costs = await preview_costs(ls, target)
        actions.extend(repair_actions(target, repairable, costs))
    return actions


def _open_message_actions(uri: str, diags: list[types.Diagnostic]) -> list[types.CodeAction]:
    """In a log: a 400 that names `messages.N` (or a tool id) opens that line of the session."""
    out: list[types.CodeAction] = []
    for d in diags:
        data = d.data if isinstance(d.data, dict) else {}
        ref = data.get("messagesRef") or data.get("toolUseId")
        if str(d.code) != "tool-use-concurrency-400" or not isinstance(ref, str):
            continue
        out.append(types.CodeAction(
            title=OPEN_MESSAGE_TITLE, kind=types.CodeActionKind.QuickFix, diagnostics=[d],
            command=types.Command(title=OPEN_MESSAGE_TITLE, command=CMD_OPEN_MESSAGE, arguments=[uri, ref]),
        ))
        break  # one: the log is about one session
    return out


def repair_actions(target: str, diags: list[types.Diagnostic], costs: dict[str, Any]) -> list[types.CodeAction]:
    """Rewind, Repair and Copy resume command, each title saying what it costs; the preferred one is
    the one that loses nothing (Repair), unless only Rewind can be made."""
    cut, patch = costs.get("truncate"), costs.get("patch")
    rewind_title = "Rewind session (truncate)"
    if cut is not None and cut.refused is None:
        rewind_title = f"Rewind session (drops {cut.dropped_messages} of {cut.total_messages} messages)"
    repair_title = "Repair session (patch)"
    if patch is not None and patch.refused is None:
        repair_title = "Repair session (keeps everything)"
    patch_works = patch is None or patch.refused is None
    out: list[types.CodeAction] = []
    for title, command, preferred in (
        (repair_title, CMD_REPAIR, patch_works),
        (rewind_title, CMD_REWIND, not patch_works),
        ("Copy resume command", CMD_COPY_RESUME, False),
    ):
        out.append(types.CodeAction(
            title=title, kind=types.CodeActionKind.QuickFix, diagnostics=diags, is_preferred=preferred or None,
            command=types.Command(title=title, command=command, arguments=[target]),
        ))
    return out
