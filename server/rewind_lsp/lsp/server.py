"""rewind-lsp's language server: LSP features mapped onto the pure core.

Documents: transcripts (`*.jsonl`) and terminal logs (everything else, including terminal
buffers). Files under the watched roots are checked when they change on disk, whether or not
they are open, and a NEW tool-use 400 or broken pairing raises a message with actions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import functools
import logging
import os
import re
import stat
import sys
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__
from ..check import check_transcript_bytes, check_transcript_file, is_regular_file, is_transcript_path
from ..findings import Finding, Severity
from ..incremental import TranscriptState, check_transcript_incremental
from ..paths import user_log_dir
from .diagnostics import to_diagnostic
from .hover import hover_text, wants_markdown
from .protocol import RewindProtocol
from .summary import broken_summary
from .watch import Watcher

if TYPE_CHECKING:
    from ..logscan import LogState
    from ..rewind import RewindResult
    from ..rules import RuleSet
    from .config import Settings

# The settings model (pydantic), the rules loader, the log scanner and rewind are imported when
# first used, not on the way to answering `initialize`: an editor waits for that answer on every start.

log = logging.getLogger(__name__)

CMD_REWIND = "rewind-lsp.rewind"
CMD_REPAIR = "rewind-lsp.repair"
CMD_REWIND_TO = "rewind-lsp.rewindTo"
CMD_SHOW_FIX = "rewind-lsp.showFix"
CMD_COPY_RESUME = "rewind-lsp.copyResumeCommand"
TERMINAL_OUTPUT = "rewindLsp/terminalOutput"
LARGE_DOCUMENT = 1 << 20  # bytes; larger documents are checked after a pause in typing
LOG_TAIL = 1 << 20  # bytes of a log read to find the session it names
# Once the client is gone, how long the process waits for the worker thread before exiting without it.
# A rewind is waited for longer: it is crash-safe either way, but a finished one is what the user asked for.
EXIT_WAIT_CHECK = 10.0
EXIT_WAIT_REWIND = 120.0
DEBOUNCE_SECONDS = 0.3
# File times come from the kernel's coarse clock, up to a tick behind time.time(): a write just after the
# watcher started may carry a time a few milliseconds before it.
MTIME_SLACK = 0.05
# A transcript written this recently is a live session: the server follows it incrementally.
LIVE_SECONDS = 3600.0
LIVE_STATES = 8  # at most this many incremental states (each holds its open segment's entries)
PAIRING_RULES = {
    "tool-use-concurrency-400",
    "orphan-tool-use",
    "orphan-tool-result",
    "duplicate-tool-use-id",
    "tool-result-not-first",
}
T = TypeVar("T")


class NotRegularFileError(OSError):
    """A FIFO, a device or a socket where a file was expected: opening a FIFO blocks until a writer comes,
    reading a device may never end, so neither is ever opened."""

    def __init__(self) -> None:
        super().__init__(0, "not a regular file")


class RewindLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("rewind-lsp", __version__, protocol_cls=RewindProtocol)
        self._settings: Settings | None = None  # the defaults, made on first use
        self.initialization_options: Any = None  # applied once `initialize` is answered
        self._rules: RuleSet | None = None  # loaded on first use
        self.disk_findings: dict[str, list[Finding]] = {}  # path -> findings of the file on disk
        self.log_states: dict[str, LogState] = {}
        # Incremental states of live transcripts, least recently checked first. Only touched on the worker.
        self.transcript_states: OrderedDict[str, TranscriptState] = OrderedDict()
        self.known_errors: dict[str, set[tuple[str, int, str | None]]] = {}
        self.rewound: dict[str, RewindResult] = {}  # source path -> last repaired copy
        self.watcher: Watcher | None = None
        self.watching_since = 0.0  # when the watcher last started (time.time())
        self.startup_done = asyncio.Event()
        self.pending_checks: dict[str, asyncio.Future[Any]] = {}
        # Set (and replaced) whenever findings of a file on disk change: wakes workspace pulls.
        self.disk_changed = asyncio.Event()
        self.background: set[asyncio.Future[Any]] = set()  # strong references: a bare task may be collected
        # One worker: file checks never race each other, and the event loop stays free.
        self.previews: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewind-lsp-check")
        # Jobs submitted to the worker and not done yet -> whether the job writes (a rewind).
        self.worker_jobs: dict[concurrent.futures.Future[Any], bool] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine in the background, holding a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def on_worker(self, fn: Callable[..., T], *args: Any, writes: bool = False) -> T:
        """Run `fn(*args)` on the worker thread, remembered until done so that exit knows what it waits for."""
        job = self.io.submit(fn, *args)
        self.worker_jobs[job] = writes
        job.add_done_callback(lambda j: self.worker_jobs.pop(j, None))
        return await asyncio.wrap_future(job)

    def on_worker_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)` on the worker without waiting: for state only the worker touches."""
        with contextlib.suppress(RuntimeError):  # the worker is already shut down: nothing left to tidy
            self.io.submit(fn, *args)

    def shutdown(self) -> None:
        """The connection is over (`exit`, end of input, broken pipe); pygls calls this after the event
        loop has closed."""
        if self.watcher is not None:
            self.watcher.stop()  # watchdog's thread must not call into the closed loop
        self.io.shutdown(wait=False, cancel_futures=True)
        super().shutdown()  # type: ignore[no-untyped-call]
        running = [(job, writes) for job, writes in list(self.worker_jobs.items()) if not job.done()]
        if not running:
            return
        limit = EXIT_WAIT_REWIND if any(writes for _, writes in running) else EXIT_WAIT_CHECK
        _, not_done = concurrent.futures.wait([job for job, _ in running], timeout=limit)
        if not_done:
            # The interpreter would join the worker forever (it is not a daemon thread). What it is stuck
            # in reads only, or is a rewind, whose writes are crash-safe: exit without it.
            log.warning("rewind-lsp: the worker thread did not finish in %.0f s; exiting without it", limit)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to save
                    stream.flush()
            os._exit(0)

    # --- settings ---------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from .config import Settings

            self._settings = Settings()
        return self._settings

    @property
    def rules(self) -> RuleSet:
        if self._rules is None:
            from ..rules import load_rules

            self._rules = load_rules(self.settings.rule_dirs)
        return self._rules

    def apply_settings(self, raw: Any) -> None:
        from .config import parse_settings, rule_dir_problem

        settings, problem = parse_settings(raw)
        if problem:
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, problem))
        usable = []
        for folder in settings.rule_dirs:
            why = rule_dir_problem(folder)
            if why is None:
                usable.append(folder)
            else:
                self.window_show_message(
                    types.ShowMessageParams(
                        types.MessageType.Error, f"rewind-lsp: rule folder {_shown(folder)}: {why}; it is not used"
                    )
                )
        settings = settings.model_copy(update={"rule_dirs": usable})
        rules: RuleSet | None = None  # the shipped rules alone are loaded when first needed
        if settings.rule_dirs:  # the user's rules are loaded now, so that a bad one is reported now
            from ..rules import RuleError, load_rules

            try:
                rules = load_rules(settings.rule_dirs)
            except (RuleError, OSError, UnicodeDecodeError) as exc:
                self.window_show_message(
                    types.ShowMessageParams(
                        types.MessageType.Error, f"rewind-lsp: {exc}; using the shipped rules only"
                    )
                )
                settings = settings.model_copy(update={"rule_dirs": []})
        self._settings, self._rules = settings, rules
        self.log_states.clear()
        self.on_worker_soon(self.transcript_states.clear)  # a new rule set: states start over anyway

    def adjust(self, findings: list[Finding]) -> list[Finding]:
        """Disabled rules removed, severity overrides applied."""
        out = []
        for f in findings:
            if f.rule in self.settings.disabled_rules:
                continue
            level = self.settings.severity_for(f.rule)
            out.append(f.with_severity(level) if level else f)
        return out

    # --- checking ---------------------------------------------------------------------------

    def check_disk(self, path: str) -> list[Finding]:
        """Runs on the worker thread. Opens regular files only: a FIFO would block the worker in open(),
        a device would never end. A link loop or a dangling link raises its OSError here."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError()
        if is_transcript_path(path):
            return self.check_transcript_disk(path, st.st_mtime)
        from ..logscan import LogState, scan_file

        state = self.log_states.setdefault(path, LogState())
        scan_file(path, state, self.rules)
        return state.all()

    def check_transcript_disk(self, path: str, mtime: float) -> list[Finding]:
        """A live session (written in the last LIVE_SECONDS, or already followed) keeps an incremental
        state, so each append costs what was appended, not the file. Others are checked in one streaming
        pass and leave nothing behind: 1,000 idle sessions must not hold their entries in memory."""
        state = self.transcript_states.pop(path, None)
        if state is None and time.time() - mtime > LIVE_SECONDS:
            return check_transcript_file(path, self.rules).findings
        state = state or TranscriptState()
        findings = check_transcript_incremental(path, state, self.rules)
        self.transcript_states[path] = state  # most recently used last
        while len(self.transcript_states) > LIVE_STATES:
            self.transcript_states.popitem(last=False)
        return findings

    def check_text(self, uri: str, text: str) -> list[Finding]:
        path = to_fs_path(uri) or uri
        if is_transcript_path(path):
            return check_transcript_bytes(text.encode("utf-8"), self.rules).findings
        from ..logscan import scan_text

        return scan_text(text, self.rules.for_logs())

    def is_open(self, uri: str) -> bool:
        return uri in self.workspace.text_documents

    def findings_for_uri(self, uri: str) -> list[Finding]:
        if self.is_open(uri):
            doc = self.workspace.get_text_document(uri)
            return self.adjust(self.check_text(uri, doc.source))
        path = to_fs_path(uri)
        return self.adjust(self.disk_findings.get(path or "", []))

    # --- diagnostics ------------------------------------------------------------------------

    @property
    def pulls_documents(self) -> bool:
        td = self.client_capabilities.text_document
        return td is not None and td.diagnostic is not None

    @property
    def pulls_workspace(self) -> bool:
        ws = self.client_capabilities.workspace
        return self.pulls_documents and ws is not None and ws.diagnostics is not None

    def line_text(self, uri: str) -> Callable[[int], str]:
        """1-based line -> text, for clients that count UTF-8 bytes."""
        cache: dict[int, str] = {}

        def get(line: int) -> str:
            if line not in cache:
                if self.is_open(uri):
                    lines = self.workspace.get_text_document(uri).lines
                    cache[line] = lines[line - 1] if 0 < line <= len(lines) else ""
                else:
                    cache[line] = _read_line(to_fs_path(uri) or "", line)
            return cache[line]

        return get

    def diagnostics(self, uri: str, findings: list[Finding]) -> list[types.Diagnostic]:
        encoding = str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)
        return [to_diagnostic(uri, f, self.rules, encoding, self.line_text(uri)) for f in findings]

    def publish(self, uri: str, findings: list[Finding]) -> None:
        """Push, unless the client pulls this document; then ask it to pull again."""
        open_doc = self.is_open(uri)
        if not open_doc and self.pulls_workspace:
            return  # a workspace pull is waiting for this change (see workspace_diagnostic)
        if open_doc and self.pulls_documents:
            self._refresh_pull()
            return
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=self.diagnostics(uri, findings))
        )

    def _refresh_pull(self) -> None:
        ws = self.client_capabilities.workspace
        if ws is not None and ws.diagnostics is not None and ws.diagnostics.refresh_support:
            self.workspace_diagnostic_refresh(None)

    # --- files on disk ----------------------------------------------------------------------

    def forget_path(self, path: str) -> None:
        """A file gone from disk: its findings go, and the client's diagnostics for it."""
        uri = from_fs_path(path) or path
        if self.disk_findings.pop(path, None) is not None:
            self.disk_changed.set()
        self.log_states.pop(path, None)
        self.on_worker_soon(self.transcript_states.pop, path, None)
        self.known_errors.pop(path, None)
        if not self.is_open(uri):
            self.publish(uri, [])

    async def refresh_path(self, path: str, deleted: bool = False, announce: bool = True) -> None:
        uri = from_fs_path(path) or path
        # lexists, not exists: a symlink loop or a dangling link is there, and unreadable, not deleted.
        if deleted or not os.path.lexists(path):
            self.forget_path(path)
            return
        try:
            findings = await self.on_worker(self.check_disk, path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not os.path.lexists(path):
                self.forget_path(path)  # deleted while it was being checked
                return
            self.window_log_message(
                types.LogMessageParams(
                    types.MessageType.Warning, f"rewind-lsp: cannot read {path}: {exc.strerror or exc}"
                )
            )
            return
        if self.disk_findings.get(path) != findings:
            self.disk_findings[path] = findings
            self.disk_changed.set()
        adjusted = self.adjust(findings)
        if not self.is_open(uri):
            self.publish(uri, adjusted)
        new_errors = self._new_errors(path, adjusted)
        if announce and new_errors and self.settings.notifications:
            self.spawn(self.announce(path, new_errors[0]))

    def _new_errors(self, path: str, findings: list[Finding]) -> list[Finding]:
        errors = [f for f in findings if f.severity == Severity.ERROR and f.rule in PAIRING_RULES]
        keys = {(f.rule, f.start.line, f.tool_use_id) for f in errors}
        before = self.known_errors.get(path, set())
        self.known_errors[path] = keys
        return [f for f in errors if (f.rule, f.start.line, f.tool_use_id) not in before]

    async def announce(self, path: str, finding: Finding) -> None:
        """Tell the user the moment a session breaks, with the actions that fix it."""
        if is_transcript_path(path):
            transcript: str | None = path
        else:
            try:
                transcript = await self.transcript_for_log(from_fs_path(path) or path)
            except (ValueError, OSError):  # the log went away or changed kind meanwhile
                transcript = None
        name = Path(transcript or path).name
        what = "hit the tool-use 400" if finding.rule == "tool-use-concurrency-400" else f"broke ({finding.rule})"
        from ..advice import already_repaired
        from ..redact import redact

        note = already_repaired(transcript) if transcript else None
        if note:  # repaired already and unchanged since: say where, propose no second copy
            self.window_show_message(types.ShowMessageParams(
                types.MessageType.Info, f"rewind-lsp: Claude Code session {name} {what}; {note}"))
            return
        actions = ["Rewind", "Repair"] if transcript else []
        actions += ["Show fix", "Ignore"]
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Error,
            message=redact(f"Claude Code session {name} {what} at line {finding.start.line}: {finding.message}"),
            actions=[types.MessageActionItem(title=a) for a in actions],
        )
        try:
            choice = await self.window_show_message_request_async(params)
        except Exception as exc:  # the client may not support the request
            log.info("showMessageRequest failed: %s", exc)
            return
        title = choice.title if choice else "Ignore"
        if title in ("Rewind", "Repair") and transcript:
            await self.do_rewind(from_fs_path(transcript) or transcript, "truncate" if title == "Rewind" else "patch")
        elif title == "Show fix":
            await self.do_show_fix(finding.rule)

    def is_log_path(self, path: str) -> bool:
        """A file the server checks as a log: one it has checked, or one named like a log."""
        name = os.path.basename(path)
        return path in self.disk_findings or (
            not is_transcript_path(path) and any(fnmatch.fnmatch(name, g) for g in self.settings.log_globs)
        )

    async def log_text(self, uri: str, limit: int = LOG_TAIL) -> str:
        """The end of a log or terminal document the server serves: the editor's buffer when open (terminal
        buffers too), else the file, confined to the served folders BEFORE anything is opened, regular files
        only, a bounded tail read off the event loop. ValueError for anything else."""
        if self.is_open(uri):
            return self.workspace.get_text_document(uri).source[-limit:]
        path = self.allowed_path(uri)
        if not self.is_log_path(path):
            raise ValueError(f"{_shown(path)} is not a log rewind-lsp serves")
        if not is_regular_file(path):
            raise ValueError(f"{_shown(path)} is not a regular file")
        return await asyncio.get_running_loop().run_in_executor(None, _read_tail, path, limit)

    async def transcript_for_log(self, uri: str) -> str | None:
        """The session a log or terminal document is about: the last session id named in it that has a
        transcript; when it names none, the newest broken session. ValueError when `uri` is no log or terminal
        the server serves (never a guess for an argument that names nothing)."""
        text = await self.log_text(uri)
        ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
        if ids:
            by_stem = {Path(p).stem: p for p in self.disk_findings if is_transcript_path(p)}
            for sid in reversed(ids):
                if sid in by_stem:
                    return by_stem[sid]
                for root in self.settings.watch_roots:
                    for candidate in Path(root).glob(f"*/{sid}.jsonl"):
                        return str(candidate)
            return None
        broken = [
            (mtime, p)
            for p, fs in self.disk_findings.items()
            if is_transcript_path(p)
            and any(f.severity == Severity.ERROR for f in fs)
            and (mtime := _mtime(p)) is not None
        ]
        return max(broken)[1] if broken else None

    def show_document(self, uri: str, take_focus: bool) -> None:
        """Ask the client to open a document, if it can; never wait on its answer."""
        window = self.client_capabilities.window
        if window is None or window.show_document is None or not window.show_document.support:
            return

        async def ask() -> None:
            try:
                await asyncio.wait_for(
                    self.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=take_focus)), 30
                )
            except Exception as exc:
                log.info("showDocument failed: %s", exc)

        self.spawn(ask())

    async def startup_scan(self) -> None:
        """Check every watched file once, reporting progress, without blocking requests."""
        watcher = self.watcher
        files = (
            await asyncio.get_running_loop().run_in_executor(None, _watched_files, watcher.roots, watcher.wanted)
            if watcher
            else []
        )
        token: str | None = None
        wdp = self.client_capabilities.window
        if files and wdp is not None and wdp.work_done_progress:
            token = str(uuid.uuid4())
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(
                        title="rewind-lsp: checking Claude Code sessions", percentage=0, cancellable=False
                    ),
                )
            except Exception:
                token = None
        broken: list[str] = []
        for i, path in enumerate(files):
            await self.refresh_path(path, announce=self.changed_since_watching(path))
            if any(f.severity == Severity.ERROR for f in self.disk_findings.get(path, [])):
                broken.append(path)
            if token and (i % 20 == 0 or i == len(files) - 1):
                self.work_done_progress.report(
                    token,
                    types.WorkDoneProgressReport(
                        message=f"{i + 1}/{len(files)} files", percentage=int(100 * (i + 1) / len(files))
                    ),
                )
        summary = broken_summary(broken)
        if token:
            done = summary.removeprefix("rewind-lsp: ").partition(":")[0] if summary else "nothing broken"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=done))
        if summary and self.settings.notifications:
            self.window_show_message(types.ShowMessageParams(types.MessageType.Warning, summary))
        self.startup_done.set()

    def changed_since_watching(self, path: str) -> bool:
        """Whether a file was written after the watcher started: its errors are news, to announce even when a
        sweep over every file (the startup scan, a settings change) reads it before its watch event comes.
        Errors already on disk when watching began are listed, never announced."""
        mtime = _mtime(path)
        return mtime is not None and mtime >= self.watching_since - MTIME_SLACK

    def start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        if self.watcher is not None:
            self.watcher.stop()
        self.watching_since = time.time()

        def changed(path: str, deleted: bool) -> None:
            if self.is_open(from_fs_path(path) or path):
                return  # the editor's buffer is the truth for open documents
            self.spawn(self.refresh_path(path, deleted))

        self.watcher = Watcher(loop, changed, self.settings.log_globs)
        for problem in self.watcher.start(self.settings.watch_roots):
            self.window_log_message(types.LogMessageParams(types.MessageType.Info, f"rewind-lsp: {problem}"))
        # Said once the watcher runs: from here on, a change to a file under these folders is seen.
        roots = ", ".join(self.watcher.roots) or "nothing"
        self.window_log_message(types.LogMessageParams(types.MessageType.Info, f"rewind-lsp: watching {roots}"))

    # --- commands ---------------------------------------------------------------------------

    def allowed_path(self, uri: Any, roots: list[str] | None = None) -> str:
        """A transcript path from a command argument, confined to `roots` (default: every folder the
        server serves for reading: the watch roots, the workspace folders, the open documents' folders)."""
        if not isinstance(uri, str) or not uri:
            raise ValueError("expected a document URI")
        path = to_fs_path(uri) if uri.startswith("file:") else (uri if os.path.isabs(uri) else None)
        if not path:
            raise ValueError(f"not a file: {_shown(uri)}")
        real = os.path.realpath(path)
        if roots is None:
            roots = [*self.settings.watch_roots]
            roots += [to_fs_path(f.uri) or "" for f in (self.workspace.folders or {}).values()]
            roots += [os.path.dirname(to_fs_path(u) or "") for u in self.workspace.text_documents]
        for root in filter(None, roots):
            r = os.path.realpath(root)
            if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
                return real
        raise ValueError(f"{_shown(path)} is outside the folders rewind-lsp serves")

    async def rewind_target(self, uri: Any) -> str:
        """The transcript a Rewind/Repair argument means: a transcript's URI, or a log or terminal document
        the server serves (then the session it names). What is written is written beside it, so it must lie
        under the watch roots: an open document elsewhere may be read, never written beside. Anything else
        is refused, never read."""
        if not isinstance(uri, str) or not uri:
            raise ValueError("expected a document URI")
        if is_transcript_path(uri):
            path = self.allowed_path(uri)
        else:  # a log or a terminal: act on the session it names
            found = await self.transcript_for_log(uri)
            if not found:
                raise ValueError("no Claude Code transcript found for this log")
            path = self.allowed_path(found)
        try:
            path = self.allowed_path(path, self.settings.watch_roots)
        except ValueError:
            raise ValueError(
                f"{_shown(path)} is outside the watched folders (watchRoots): "
                "rewind-lsp rewinds and repairs only sessions there"
            ) from None
        if not is_regular_file(path):  # a FIFO would block the worker, a device never end
            raise ValueError(f"{_shown(path)} is not a regular file")
        return path

    async def do_rewind(self, uri: Any, mode: str, to: Any = None) -> dict[str, Any]:
        from ..advice import resume_command
        from ..redact import redact
        from ..rewind import RewindError, rewind

        try:
            if to is not None and not isinstance(to, (str, int)):
                raise ValueError(f"the rewind point must be a line number or a uuid, not {_shown(repr(to))}")
            path = await self.rewind_target(uri)
            result = await self.on_worker(
                functools.partial(rewind, path, mode=mode, to=None if to is None else str(to)), writes=True
            )
        except (ValueError, RewindError, OSError) as exc:
            message = redact(f"rewind-lsp: {exc}")
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            return {"error": message}
        self.rewound[path] = result
        self.previews.pop(path, None)
        resume, note = resume_command(result.session_id, result.cwd, path)
        self.window_show_message(
            types.ShowMessageParams(
                types.MessageType.Info,
                redact(f"rewind-lsp: wrote {result.path.name} ({mode}); the original is untouched. "
                       f"Resume it with: {resume}" + (f" ({note})" if note else "")),
            )
        )
        new_uri = from_fs_path(str(result.path)) or str(result.path)
        self.show_document(new_uri, take_focus=False)
        return {
            "path": str(result.path),
            "sessionId": result.session_id,
            "resumeCommand": resume,
            "uri": new_uri,
            "fixed": [redact(x) for x in result.fixed],
            "keptMessages": result.kept_messages,
            "droppedMessages": result.dropped_messages,
        }

    async def preview_costs(self, uri: str) -> dict[str, Any]:
        """What Rewind and Repair would cost for the session at `uri` ({} when it cannot be said), cached
        per file state: code actions are asked for on every cursor move."""
        from ..rewind import RewindError, preview

        try:
            path = self.allowed_path(uri)
            st = os.stat(path)
        except (ValueError, OSError):
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self.previews.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            got = await self.on_worker(preview, path)
        except (RewindError, OSError):
            return {}
        costs = {p.mode: p for p in got}
        self.previews[path] = (key, costs)
        return costs

    async def do_show_fix(self, rule_id: Any) -> dict[str, Any]:
        rule = self.rules.get(rule_id) if isinstance(rule_id, str) else None
        if rule is None:
            message = f"rewind-lsp: unknown rule {rule_id!r}"
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            return {"error": message}
        self.show_document(rule.fix_uri, take_focus=True)
        return {"uri": rule.fix_uri}


server = RewindLanguageServer()


def _shown(text: str, limit: int = 200) -> str:
    """A client-supplied string fit for a message: printable and short."""
    if text.isprintable() and len(text) <= limit:
        return text
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def _mtime(path: str) -> float | None:
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


def _open_regular(path: str) -> BinaryIO:
    """Open a regular file for reading; anything else raises. Opened non-blocking and checked with fstat,
    so a FIFO or device put there after any earlier check is refused, never read (nor waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError()
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_tail(path: str, limit: int) -> str:
    """The last `limit` bytes of a regular file, decoded; never more, even if the file grows meanwhile."""
    with _open_regular(path) as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
        return f.read(limit).decode("utf-8", errors="replace")


def _append_regular(path: str, data: str) -> None:
    """Append to a regular file, creating it. Opened non-blocking: a FIFO in its place fails at once (ENXIO,
    no reader) or is refused by fstat, instead of blocking the event loop in open()."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    # Owner-only: terminal output may hold keys and tokens.
    with os.fdopen(os.open(path, flags, 0o600), "a", encoding="utf-8") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotRegularFileError()
        f.write(data)


def _watched_files(roots: list[str], wanted: Callable[[str], bool]) -> list[str]:
    """Every file below the roots with a watched name, sorted; folder symlinks are not followed. Unlike
    check.discover it keeps what is not a regular file (FIFOs, link loops, dangling links), so that the
    scan reports each one instead of skipping it silently."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            found += [p for p in (os.path.join(folder, name) for name in sorted(files)) if wanted(p)]
    return found


def _read_line(path: str, line: int) -> str:
    try:
        with _open_regular(path) as f:
            for n, raw in enumerate(f, 1):
                if n == line:
                    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    except OSError:
        pass
    return ""


def _guard(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every handler error is logged to the client and answered; none stops the server."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception:
                    server.window_log_message(
                        types.LogMessageParams(
                            types.MessageType.Error, f"rewind-lsp: {name} failed:\n{traceback.format_exc()}"
                        )
                    )
                    return None

            return async_inner

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                server.window_log_message(
                    types.LogMessageParams(
                        types.MessageType.Error, f"rewind-lsp: {name} failed:\n{traceback.format_exc()}"
                    )
                )
                return None

        return inner

    return wrap


# --- lifecycle ------------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
@_guard("initialize")
def initialize(ls: RewindLanguageServer, params: types.InitializeParams) -> None:
    ls.initialization_options = params.initialization_options  # applied in `initialized`: answer first


@server.feature(types.INITIALIZED)
@_guard("initialized")
async def initialized(ls: RewindLanguageServer, params: types.InitializedParams) -> None:
    from .config import SECTION

    ls.apply_settings(ls.initialization_options)
    ws = ls.client_capabilities.workspace
    if ws is not None and ws.configuration:
        try:
            configs = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
            if configs and configs[0] is not None:
                ls.apply_settings(configs[0])
        except Exception as exc:
            log.info("workspace/configuration failed: %s", exc)
    ls.start_watching()
    ls.spawn(ls.startup_scan())


@server.feature(types.SHUTDOWN)
def shutdown(ls: RewindLanguageServer, params: None) -> None:
    if ls.watcher is not None:
        ls.watcher.stop()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
@_guard("didChangeConfiguration")
async def did_change_configuration(ls: RewindLanguageServer, params: types.DidChangeConfigurationParams) -> None:
    from .config import SECTION

    raw = params.settings
    if raw is None or (isinstance(raw, dict) and SECTION not in raw and not raw):
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:
            configs = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
            raw = configs[0] if configs else None
    ls.apply_settings(raw)
    ls.start_watching()
    for path in list(ls.disk_findings):
        await ls.refresh_path(path, announce=ls.changed_since_watching(path))
    for uri in list(ls.workspace.text_documents):
        ls.publish(uri, ls.findings_for_uri(uri))


# --- documents ------------------------------------------------------------------------------


async def _check_document(ls: RewindLanguageServer, uri: str, delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
    if ls.is_open(uri):
        ls.publish(uri, ls.findings_for_uri(uri))


def _schedule(ls: RewindLanguageServer, uri: str) -> None:
    old = ls.pending_checks.pop(uri, None)
    if old is not None:
        old.cancel()
    size = len(ls.workspace.get_text_document(uri).source)
    task = ls.spawn(_check_document(ls, uri, DEBOUNCE_SECONDS if size > LARGE_DOCUMENT else 0))
    ls.pending_checks[uri] = task


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
@_guard("didOpen")
def did_open(ls: RewindLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    _schedule(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
@_guard("didChange")
def did_change(ls: RewindLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    _schedule(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
@_guard("didSave")
def did_save(ls: RewindLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    _schedule(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
@_guard("didClose")
async def did_close(ls: RewindLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    path = to_fs_path(uri)
    watched = (
        path
        and ls.watcher
        and any(os.path.realpath(path).startswith(os.path.realpath(r) + os.sep) for r in ls.watcher.roots)
    )
    if path and watched and os.path.exists(path):
        await ls.refresh_path(path, announce=False)  # back to what is on disk
    else:
        ls.publish(uri, [])


@server.feature(
    types.TEXT_DOCUMENT_DIAGNOSTIC,
    types.DiagnosticOptions(identifier="rewind-lsp", inter_file_dependencies=False, workspace_diagnostics=True),
)
@_guard("textDocument/diagnostic")
def document_diagnostic(
    ls: RewindLanguageServer, params: types.DocumentDiagnosticParams
) -> types.FullDocumentDiagnosticReport:
    uri = params.text_document.uri
    return types.FullDocumentDiagnosticReport(items=ls.diagnostics(uri, ls.findings_for_uri(uri)))


WORKSPACE_PULL_WAIT = 60.0  # seconds a workspace pull with nothing new is held open


def _result_id(findings: list[Finding]) -> str:
    return format(hash(tuple((f.rule, f.severity, f.start, f.end, f.message) for f in findings)) & (2**64 - 1), "x")


@server.feature(types.WORKSPACE_DIAGNOSTIC)
@_guard("workspace/diagnostic")
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
            if not ls.is_open(uri):
                findings = ls.findings_for_uri(uri)
                current[uri] = (_result_id(findings), findings)
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


# --- hover and code actions -----------------------------------------------------------------


def _at(findings: list[Finding], line0: int) -> list[Finding]:
    return [f for f in findings if f.start.line - 1 <= line0 <= f.end.line - 1]


@server.feature(types.TEXT_DOCUMENT_HOVER)
@_guard("hover")
def hover(ls: RewindLanguageServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    here = _at(ls.findings_for_uri(uri), params.position.line)
    if not here:
        return None
    diags = ls.diagnostics(uri, here)
    td = ls.client_capabilities.text_document
    asked = td.hover.content_format if td is not None and td.hover is not None else None
    markdown = wants_markdown([str(k.value) for k in asked] if asked else None)
    kind = types.MarkupKind.Markdown if markdown else types.MarkupKind.PlainText
    return types.Hover(
        contents=types.MarkupContent(kind=kind, value=hover_text(here, ls.rules, markdown)),
        range=diags[0].range,
    )


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
)
@_guard("codeAction")
async def code_action(ls: RewindLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    ours = [d for d in params.context.diagnostics if d.source == "rewind-lsp"]
    if not ours:
        line0 = params.range.start.line
        findings = _at(ls.findings_for_uri(uri), line0)
        ours = ls.diagnostics(uri, findings)
    if not ours:
        return []
    if is_transcript_path(uri):
        target: str | None = uri
    else:
        try:
            found = await ls.transcript_for_log(uri)
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
    repairable = [d for d in ours if d.severity == types.DiagnosticSeverity.Error or (
        str(d.code) == "tool-use-concurrency-400" and d.severity == types.DiagnosticSeverity.Warning)]
    if target is not None and repairable:
        costs = await ls.preview_costs(target)
        actions.extend(_repair_actions(target, repairable, costs))
    return actions


def _repair_actions(target: str, diags: list[types.Diagnostic], costs: dict[str, Any]) -> list[types.CodeAction]:
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


@server.command(CMD_REWIND)
@_guard(CMD_REWIND)
async def cmd_rewind(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    return await ls.do_rewind(args[0] if args else None, "truncate")


@server.command(CMD_REWIND_TO)
@_guard(CMD_REWIND_TO)
async def cmd_rewind_to(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    """`[uri, point]`: cut back to just before that user prompt (its line number or uuid), as `rewind --to`."""
    if len(args) < 2:
        message = "rewind-lsp: rewindTo needs [uri, line number or uuid of a user prompt]"
        ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
        return {"error": message}
    return await ls.do_rewind(args[0], "truncate", args[1])


@server.command(CMD_REPAIR)
@_guard(CMD_REPAIR)
async def cmd_repair(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    return await ls.do_rewind(args[0] if args else None, "patch")


@server.command(CMD_SHOW_FIX)
@_guard(CMD_SHOW_FIX)
async def cmd_show_fix(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    return await ls.do_show_fix(args[0] if args else None)


@server.command(CMD_COPY_RESUME)
@_guard(CMD_COPY_RESUME)
def cmd_copy_resume(ls: RewindLanguageServer, *args: Any) -> dict[str, Any]:
    try:
        path = ls.allowed_path(args[0] if args else None)
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


# --- terminal output streamed by a client ---------------------------------------------------


@server.feature(TERMINAL_OUTPUT)
@_guard(TERMINAL_OUTPUT)
async def terminal_output(ls: RewindLanguageServer, params: Any) -> None:
    name = getattr(params, "terminal", None) if not isinstance(params, dict) else params.get("terminal")
    data = getattr(params, "data", None) if not isinstance(params, dict) else params.get("data")
    if not isinstance(data, str) or not data:
        return
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name or "terminal"))[:64].strip("-.") or "terminal"
    folder = user_log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"terminal-{safe}.log"
    _append_regular(str(path), data)
    await ls.refresh_path(str(path))


# The navigation features register themselves on `server` (a module of their own).
from . import navigate  # noqa: E402, F401
