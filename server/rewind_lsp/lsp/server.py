"""rewind-lsp's language server: the state behind the handlers (lsp/handlers.py), over the pure core.

Documents: transcripts (`*.jsonl`) and terminal logs (everything else, including terminal
buffers). Open documents are checked from the editor's text, off the event loop (lsp/documents.py).
Files under the watched roots are checked when they change on disk, whether or not they are open,
and a NEW tool-use 400 or broken pairing raises a message with actions (from the one server of the
machine that holds the scan lock: lsp/scan.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import logging
import os
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__
from ..check import is_transcript_path
from ..findings import Finding, Severity
from ..forks import follow
from ..incremental import TranscriptState, check_transcript_incremental
from ..redact import redact
from .diagnostics import to_diagnostic
from .documents import Documents, Lines, OpenDocument, fill_utf8, lacks_utf8, positions
from .fileio import NotRegularFileError, mtime, read_line, read_lines, shown
from .protocol import RewindProtocol
from .watch import Watcher

if TYPE_CHECKING:
    from ..logscan import LogState
    from ..rewind import RewindResult
    from ..rules import RuleSet
    from .config import Settings
    from .scan import ScanLock

# The rules loader, the log scanner and rewind are imported when
# first used, not on the way to answering `initialize`: an editor waits for that answer on every start.

log = logging.getLogger(__name__)

# Once the client is gone, how long the process waits for the worker thread before exiting without it.
# A rewind is waited for longer: it is crash-safe either way, but a finished one is what the user asked for.
EXIT_WAIT_CHECK = 10.0
EXIT_WAIT_REWIND = 120.0
# File times come from the kernel's coarse clock, up to a tick behind time.time(): a write just after the
# watcher started may carry a time a few milliseconds before it.
MTIME_SLACK = 0.05
# A transcript written this recently is a live session: the server follows it incrementally in memory.
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


def index_dir() -> Path:
    """The persistent per-file state cache the hook and the CLI share (index.check_cached)."""
    from ..index import states_dir

    return states_dir()


def _redacted(params: types.ShowMessageRequestParams) -> types.ShowMessageRequestParams:
    return types.ShowMessageRequestParams(params.type, redact(params.message), params.actions)


class RewindLanguageServer(LanguageServer):
    # Every message the server shows or logs passes one redaction: a secret planted in a transcript
    # reaches them through tool_use ids, file names and prompts (public methods, overridden as a whole).
    def window_show_message(self, params: types.ShowMessageParams) -> None:
        super().window_show_message(types.ShowMessageParams(params.type, redact(params.message)))

    def window_log_message(self, params: types.LogMessageParams) -> None:
        super().window_log_message(types.LogMessageParams(params.type, redact(params.message)))

    def window_show_message_request(
        self, params: types.ShowMessageRequestParams,
        callback: Callable[[types.MessageActionItem | None], None] | None = None,
    ) -> concurrent.futures.Future[types.MessageActionItem | None]:
        return super().window_show_message_request(_redacted(params), callback)

    async def window_show_message_request_async(
        self, params: types.ShowMessageRequestParams,
    ) -> types.MessageActionItem | None:
        return await super().window_show_message_request_async(_redacted(params))

    def __init__(self) -> None:
        super().__init__("rewind-lsp", __version__, protocol_cls=RewindProtocol)
        self._settings: Settings | None = None  # the defaults, made on first use
        self.initialization_options: Any = None  # applied once `initialize` is answered
        self._rules: RuleSet | None = None  # loaded on first use
        self.documents = Documents(self.publish_document, self.document_check_failed)
        self.documents.rules = lambda: self.rules
        self.disk_findings: dict[str, list[Finding]] = {}  # path -> findings of the file on disk
        self.log_states: dict[str, LogState] = {}
        # Per file on disk: findings as checked -> the same with UTF-8 columns counted (worker only).
        self.utf8_done: dict[str, dict[Finding, Finding]] = {}
        # Incremental states of live transcripts, least recently checked first. Only touched on the worker.
        self.transcript_states: OrderedDict[str, TranscriptState] = OrderedDict()
        self.known_errors: dict[str, set[tuple[str, int, str | None]]] = {}
        self.rewound: dict[str, RewindResult] = {}  # source path -> last repaired copy
        self.watcher: Watcher | None = None
        self.watching_since = 0.0  # when the watcher last started (time.time())
        self.scan_lock: ScanLock | None = None
        self.scan_holder = True  # this server scans and announces (see lsp/scan.py)
        self.startup_done = asyncio.Event()
        # Set (and replaced) whenever findings of a file on disk change: wakes workspace pulls.
        self.disk_changed = asyncio.Event()
        self.background: set[asyncio.Future[Any]] = set()  # strong references: a bare task may be collected
        self.previews: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        # One worker for files on disk and rewinds: file checks never race each other, the event loop stays free.
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewind-lsp-check")
        # What Rewind/Repair would cost (read-only): on a thread of its own, so that a code action never
        # waits behind the startup scan, nor an open document's check behind a preview of a large file.
        self.preview_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                  thread_name_prefix="rewind-lsp-preview")
        # Jobs submitted to the workers and not done yet -> whether the job writes (a rewind).
        self.worker_jobs: dict[concurrent.futures.Future[Any], bool] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine in the background, holding a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def on_worker(self, fn: Callable[..., T], *args: Any, writes: bool = False,
                        pool: concurrent.futures.ThreadPoolExecutor | None = None) -> T:
        """Run `fn(*args)` on the worker thread (or `pool`), remembered until done so that exit knows what it
        waits for."""
        job = (pool or self.io).submit(fn, *args)
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
        self.documents.checker.shutdown()
        self.io.shutdown(wait=False, cancel_futures=True)
        self.preview_pool.shutdown(wait=False, cancel_futures=True)
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
        roots = [str(Path.home()), *self.workspace_paths()]
        for folder in settings.rule_dirs:
            why = rule_dir_problem(folder, roots)
            if why is None:
                usable.append(folder)
            else:
                self.window_show_message(
                    types.ShowMessageParams(
                        types.MessageType.Error, f"rewind-lsp: rule folder {shown(folder)}: {why}; it is not used"
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

    def workspace_paths(self) -> list[str]:
        """The workspace folders' paths (none before `initialize`)."""
        try:
            folders = self.workspace.folders
        except RuntimeError:
            return []
        return [p for f in (folders or {}).values() if (p := to_fs_path(f.uri))]

    def adjust(self, findings: list[Finding]) -> list[Finding]:
        """Disabled rules removed, severity overrides applied."""
        out = []
        for f in findings:
            if f.rule in self.settings.disabled_rules:
                continue
            level = self.settings.severity_for(f.rule)
            out.append(f.with_severity(level) if level else f)
        return out

    # --- checking files on disk -------------------------------------------------------------

    def check_disk(self, path: str) -> list[Finding]:
        """Runs on the worker thread. Opens regular files only: a FIFO would block the worker in open(),
        a device would never end. A link loop or a dangling link raises its OSError here."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError()
        if is_transcript_path(path):
            findings = self.check_transcript_disk(path, st.st_mtime)
        else:
            from ..logscan import LogState, scan_file

            state = self.log_states.setdefault(path, LogState())
            scan_file(path, state, self.rules)
            findings = state.all()
        return self.with_utf8(path, findings)

    def with_utf8(self, path: str, findings: list[Finding]) -> list[Finding]:
        """Runs on the worker: every position with its UTF-8 column, so that no publish reads the file again.
        Findings already completed for this file are remembered; the lines of new ones are read in one pass."""
        done = self.utf8_done.setdefault(path, {})
        missing = [f for f in findings if f not in done and lacks_utf8(f)]
        if missing:
            lines = read_lines(path, {p.line for f in missing for p in positions(f)})
            for f, filled in zip(missing, fill_utf8(missing, lambda n: lines.get(n, "")), strict=True):
                done[f] = filled
        out = [done.get(f, f) for f in findings]
        current = set(findings)
        for stale in [f for f in done if f not in current]:
            del done[stale]
        return out

    def check_transcript_disk(self, path: str, mtime: float) -> list[Finding]:
        """A transcript the server follows (a live session) is checked from its state in memory, so each
        append costs what was appended. Any other goes through the persistent state cache the hook and the
        CLI share: unchanged since the last check (by anyone) costs a stat and the state file. A live one
        (written in the last LIVE_SECONDS) keeps its state in memory afterwards, at most LIVE_STATES of
        them: 1,000 idle sessions must not hold their entries in memory."""
        # The cache holds the shipped rules' verdicts (rules None); a user rule folder is checked without it.
        rules = self.rules if self.settings.rule_dirs else None
        state = self.transcript_states.pop(path, None)
        if state is not None:
            findings = follow(path, check_transcript_incremental(path, state, rules), rules)
        else:
            from ..index import check_cached

            findings, state = check_cached(path, index_dir(), rules)
            if time.time() - mtime > LIVE_SECONDS:
                return findings
        self.transcript_states[path] = state  # most recently used last
        while len(self.transcript_states) > LIVE_STATES:
            self.transcript_states.popitem(last=False)
        return findings

    async def findings_for(self, uri: str) -> list[Finding]:
        """The findings the client is shown for `uri`: the open document's (from memory, never checked
        here), else the file on disk's, adjusted to the settings."""
        doc = self.documents.get(uri)
        if doc is not None:
            return self.adjust(await self.documents.findings(doc))
        return self.adjust(self.disk_findings.get(to_fs_path(uri) or "", []))

    # --- diagnostics ------------------------------------------------------------------------

    @property
    def pulls_documents(self) -> bool:
        td = self.client_capabilities.text_document
        return td is not None and td.diagnostic is not None

    @property
    def pulls_workspace(self) -> bool:
        ws = self.client_capabilities.workspace
        return self.pulls_documents and ws is not None and ws.diagnostics is not None

    @property
    def position_encoding(self) -> str:
        return str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)

    def line_text(self, uri: str) -> Callable[[int], str]:
        """1-based line -> text, for a position whose UTF-8 column the checker left out (open documents have
        them filled in on their worker; this is for files on disk)."""
        doc = self.documents.get(uri)
        if doc is not None:
            return Lines(doc.text)
        cache: dict[int, str] = {}

        def get(line: int) -> str:
            if line not in cache:
                cache[line] = read_line(to_fs_path(uri) or "", line)
            return cache[line]

        return get

    def diagnostics(self, uri: str, findings: list[Finding]) -> list[types.Diagnostic]:
        encoding = self.position_encoding
        line_text = self.line_text(uri) if encoding == types.PositionEncodingKind.Utf8 else _no_line
        return [to_diagnostic(uri, f, self.rules, encoding, line_text) for f in findings]

    def publish(self, uri: str, findings: list[Finding], version: int | None = None) -> None:
        """Push (for an open document's `version`), unless the client pulls this document; then ask it to
        pull again."""
        open_doc = uri in self.documents
        if not open_doc and self.pulls_workspace:
            return  # a workspace pull is waiting for this change (see handlers.workspace_diagnostic)
        if open_doc and self.pulls_documents:
            self.refresh_pull()
            return
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=self.diagnostics(uri, findings), version=version)
        )

    def publish_document(self, doc: OpenDocument) -> None:
        """A check of an open document's current version is done."""
        self.publish(doc.uri, self.adjust(doc.findings), doc.version)

    def document_check_failed(self, doc: OpenDocument, reason: str) -> None:
        self.window_log_message(
            types.LogMessageParams(types.MessageType.Error, f"rewind-lsp: checking {shown(doc.uri)} failed: {reason}")
        )

    def refresh_pull(self) -> None:
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
        self.on_worker_soon(self.utf8_done.pop, path, None)
        self.known_errors.pop(path, None)
        if uri not in self.documents:
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
        if uri not in self.documents:
            self.publish(uri, adjusted)
        new_errors = self._new_errors(path, adjusted)
        if announce and self.scan_holder and new_errors and self.settings.notifications:
            self.spawn(self.announce(path, new_errors[0]))

    def _new_errors(self, path: str, findings: list[Finding]) -> list[Finding]:
        errors = [f for f in findings if f.severity == Severity.ERROR and f.rule in PAIRING_RULES]
        keys = {(f.rule, f.start.line, f.tool_use_id) for f in errors}
        before = self.known_errors.get(path, set())
        self.known_errors[path] = keys
        return [f for f in errors if (f.rule, f.start.line, f.tool_use_id) not in before]

    async def announce(self, path: str, finding: Finding) -> None:
        """Tell the user the moment a session breaks, with the actions that fix it."""
        from .actions import do_rewind, do_show_fix, transcript_for_log

        if is_transcript_path(path):
            transcript: str | None = path
        else:
            try:
                transcript = await transcript_for_log(self, from_fs_path(path) or path)
            except (ValueError, OSError):  # the log went away or changed kind meanwhile
                transcript = None
        name = Path(transcript or path).name
        what = "hit the tool-use 400" if finding.rule == "tool-use-concurrency-400" else f"broke ({finding.rule})"
        from ..advice import already_repaired

        note = already_repaired(transcript) if transcript else None
        if note:  # repaired already and unchanged since: say where, propose no second copy
            self.window_show_message(types.ShowMessageParams(
                types.MessageType.Info, f"rewind-lsp: Claude Code session {name} {what}; {note}"))
            return
        actions = ["Rewind", "Repair"] if transcript else []
        actions += ["Show fix", "Ignore"]
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Error,
            message=f"Claude Code session {name} {what} at line {finding.start.line}: {finding.message}",
            actions=[types.MessageActionItem(title=a) for a in actions],
        )
        try:
            choice = await self.window_show_message_request_async(params)
        except Exception as exc:  # the client may not support the request
            log.info("showMessageRequest failed: %s", exc)
            return
        title = choice.title if choice else "Ignore"
        if title in ("Rewind", "Repair") and transcript:
            await do_rewind(self, from_fs_path(transcript) or transcript, "truncate" if title == "Rewind" else "patch")
        elif title == "Show fix":
            await do_show_fix(self, finding.rule)

    def is_log_path(self, path: str) -> bool:
        """A file the server checks as a log: one it has checked, or one named like a log."""
        name = os.path.basename(path)
        return path in self.disk_findings or (
            not is_transcript_path(path) and any(fnmatch.fnmatch(name, g) for g in self.settings.log_globs)
        )

    def is_watched(self, path: str) -> bool:
        """Under a watched folder: its findings on disk are kept (and shown once it is closed)."""
        real = os.path.realpath(path)
        roots = self.watcher.roots if self.watcher is not None else []
        return any(real.startswith(os.path.realpath(r) + os.sep) for r in roots)

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

    def changed_since_watching(self, path: str, since: float | None = None) -> bool:
        """Whether a file was written after the watcher started (or after `since`): its errors are news, to
        announce even when a sweep over every file (the startup scan, a settings change) reads it before its
        watch event comes.
        Errors already on disk when watching began are listed, never announced."""
        when = mtime(path)
        return when is not None and when >= (self.watching_since if since is None else since) - MTIME_SLACK

    def start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        if self.watcher is not None:
            self.watcher.stop()
        self.watching_since = time.time()

        def changed(path: str, deleted: bool) -> None:
            if (from_fs_path(path) or path) in self.documents:
                return  # the editor's buffer is the truth for open documents
            self.spawn(self.refresh_path(path, deleted))

        self.watcher = Watcher(loop, changed, self.settings.log_globs)
        for problem in self.watcher.start(self.settings.watch_roots):
            self.window_log_message(types.LogMessageParams(types.MessageType.Info, f"rewind-lsp: {problem}"))
        # Said once the watcher runs: from here on, a change to a file under these folders is seen.
        roots = ", ".join(self.watcher.roots) or "nothing"
        self.window_log_message(types.LogMessageParams(types.MessageType.Info, f"rewind-lsp: watching {roots}"))


def _no_line(line: int) -> str:
    return ""


def make_server() -> RewindLanguageServer:
    from . import handlers, navigate

    ls = RewindLanguageServer()
    handlers.register(ls)
    navigate.register(ls)
    return ls


server = make_server()
