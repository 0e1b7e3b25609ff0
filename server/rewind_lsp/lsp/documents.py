"""Open documents: the editor's text, and its findings computed off the event loop, per version.

The editor's buffer is the truth for an open document. Each one keeps its text (as appended pieces,
joined only when a whole text is needed) and, for a transcript, a private mirror file and the
incremental `TranscriptState` that reads it: an edit that appends costs what was appended. Checks run
on the documents' worker thread; their findings are kept for the version they were computed for, and
hover, code actions and pulls read them (or wait for the one check of the current version). A check
whose version was changed or closed meanwhile is obsolete: its findings are dropped, never published.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types
from pygls.uris import to_fs_path

from ..check import check_transcript_bytes, is_transcript_path
from ..findings import Finding, Position, utf8_column
from ..forks import follow
from ..incremental import CheckStopped, TranscriptState, check_transcript_incremental
from .positions import char_index, units

if TYPE_CHECKING:
    from ..rules import RuleSet

log = logging.getLogger(__name__)

LARGE_DOCUMENT = 1 << 20  # characters; a large document edited (not appended to) is checked after a pause
DEBOUNCE_SECONDS = 0.3


class OpenDocument:
    """One open document. Fields under `lock` are shared with the worker; the rest is the event loop's,
    except `state`, `mirror` and `worker_*`, which only the worker touches."""

    def __init__(self, uri: str, version: int, text: str) -> None:
        self.uri = uri
        self.path = to_fs_path(uri) or uri
        self.is_transcript = is_transcript_path(self.path)
        self.lock = threading.Lock()
        self.version = version
        self._parts = [text]
        self.length = len(text)
        self.newlines = text.count("\n")
        self.last_line = text[text.rfind("\n") + 1 :]
        self.unsynced: list[str] = [text]  # appended since the worker last took them
        self.rewritten = True  # the worker must start over (new text, not an append)
        self.queued = False  # a check is submitted and has not taken its snapshot yet
        self.closed = False
        # The event loop's view of the result.
        self.result_version: int | None = None
        self.findings: list[Finding] = []
        self.checked = asyncio.Event()  # set while `findings` are those of `version`
        self.timer: asyncio.TimerHandle | None = None
        # The worker's.
        self.state: TranscriptState | None = None
        self.mirror: str | None = None
        self.worker_version: int | None = None
        self.worker_rules: RuleSet | None = None
        self.worker_findings: list[Finding] = []
        # Findings as checked -> the same with UTF-8 columns counted: an append to a 100 MB document must
        # not join and scan its whole text again for findings that did not change (that was 260 ms).
        self.worker_utf8: dict[Finding, Finding] = {}

    # --- the text (event loop) ----------------------------------------------------------------

    @property
    def text(self) -> str:
        with self.lock:
            if len(self._parts) > 1:
                self._parts = ["".join(self._parts)]
            return self._parts[0]

    def tail(self, limit: int) -> str:
        with self.lock:
            out: list[str] = []
            size = 0
            for part in reversed(self._parts):
                out.append(part[-(limit - size) :])
                size += len(out[-1])
                if size >= limit:
                    break
            return "".join(reversed(out))

    def _append(self, piece: str) -> None:
        if not piece:
            return
        self._parts.append(piece)
        self.unsynced.append(piece)
        self.length += len(piece)
        newlines = piece.count("\n")
        if newlines:
            self.newlines += newlines
            self.last_line = piece[piece.rfind("\n") + 1 :]
        else:
            self.last_line += piece

    def _replace(self, text: str) -> None:
        self._parts = [text]
        self.unsynced = [text]
        self.rewritten = True
        self.length = len(text)
        self.newlines = text.count("\n")
        self.last_line = text[text.rfind("\n") + 1 :]

    def _offset(self, text: str, pos: types.Position, encoding: str) -> int:
        start = 0
        for _ in range(pos.line):
            nl = text.find("\n", start)
            if nl < 0:
                return len(text)
            start = nl + 1
        end = text.find("\n", start)
        line = text[start : end if end >= 0 else len(text)]
        return start + char_index(line, pos.character, encoding)

    def _at_end(self, pos: types.Position, encoding: str) -> bool:
        return pos.line > self.newlines or (
            pos.line == self.newlines and pos.character >= units(self.last_line, encoding)
        )

    def apply(self, changes: list[types.TextDocumentContentChangeEvent], version: int, encoding: str) -> bool:
        """Apply the client's changes; True when every one of them only appended."""
        appended = True
        with self.lock:
            for change in changes:
                if isinstance(change, types.TextDocumentContentChangePartial):
                    start, end = change.range.start, change.range.end
                    if start == end and self._at_end(start, encoding):
                        self._append(change.text)
                        continue
                    text = "".join(self._parts)
                    a, b = self._offset(text, start, encoding), self._offset(text, end, encoding)
                    self._replace(text[:a] + change.text + text[max(a, b) :])
                else:
                    old = "".join(self._parts) if len(self._parts) > 1 else self._parts[0]
                    if len(change.text) >= len(old) and change.text.startswith(old):
                        self._parts = [old]
                        self._append(change.text[len(old) :])
                        continue
                    self._replace(change.text)
                appended = False
            self.version = version
        self.checked.clear()
        return appended

    # --- the check (worker) -------------------------------------------------------------------

    def obsolete(self) -> bool:
        """Whether a check that took its snapshot earlier is no longer wanted: the document closed,
        or a whole new text came (an append keeps it: the next check goes on from its state)."""
        return self.closed or self.rewritten

    def take(self) -> tuple[int, list[str], bool, list[str]] | None:
        """What the worker checks: the version, the pieces to add to the mirror, whether the mirror
        starts over, and the whole text's pieces. None once closed."""
        with self.lock:
            self.queued = False
            if self.closed:
                return None
            pieces, rewritten = self.unsynced, self.rewritten
            self.unsynced, self.rewritten = [], False
            return self.version, pieces, rewritten, list(self._parts)


class Lines:
    """1-based line -> text of a document's text, found on first use (a line index is built once)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = array("q", [0])  # 8 bytes a line: an index of a million lines is 8 MB, not 36

    def index_all(self) -> Lines:
        """Find every line now (on a worker), so that no request scans the text again."""
        self(2**62)
        return self

    def __call__(self, line: int) -> str:
        while len(self.starts) < line and self.starts[-1] >= 0:
            nl = self.text.find("\n", self.starts[-1])
            self.starts.append(nl + 1 if nl >= 0 else -1)
        if line < 1 or line > len(self.starts) or self.starts[line - 1] < 0:
            return ""
        start = self.starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].rstrip("\r")


def _with_utf8(p: Position, line_text: Callable[[int], str]) -> Position:
    return p if p.utf8 >= 0 else replace(p, utf8=utf8_column(line_text(p.line), p.column))


def positions(f: Finding) -> tuple[Position, ...]:
    return (f.start, f.end, *(p for p, _ in f.related))


def lacks_utf8(f: Finding) -> bool:
    return any(p.utf8 < 0 for p in positions(f))


def fill_utf8(findings: list[Finding], line_text: Callable[[int], str]) -> list[Finding]:
    """Every position with its UTF-8 column, counted from the line's text where the checker left it out."""
    out = []
    for f in findings:
        if not lacks_utf8(f):
            out.append(f)
            continue
        related = tuple((_with_utf8(p, line_text), note) for p, note in f.related)
        out.append(replace(f, start=_with_utf8(f.start, line_text), end=_with_utf8(f.end, line_text),
                           related=related))
    return out


MIRROR_PREFIX = "rewind-lsp-open-"


def _with_utf8_columns(doc: OpenDocument, findings: list[Finding], parts: list[str]) -> list[Finding]:
    """On the worker: every position with its UTF-8 column; the text is read only for new findings."""
    done = doc.worker_utf8
    missing = [f for f in findings if f not in done and lacks_utf8(f)]
    if missing:
        for f, filled in zip(missing, fill_utf8(missing, Lines("".join(parts))), strict=True):
            done[f] = filled
    current = set(findings)
    for stale in [f for f in done if f not in current]:
        del done[stale]
    return [done.get(f, f) for f in findings]


def sweep_mirrors(folder: str) -> None:
    """Remove the mirror folders of servers that ended without removing them (killed), this user's only."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            pid_text = entry.name.removeprefix(MIRROR_PREFIX).partition("-")[0]
            if not entry.name.startswith(MIRROR_PREFIX) or not pid_text.isdigit():
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid != os.getuid() or not entry.is_dir(follow_symlinks=False):
                    continue
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                shutil.rmtree(entry.path, ignore_errors=True)  # its server is gone
            except OSError:
                continue  # alive (another user's would be PermissionError), or unreadable


class DocumentChecker:
    """Runs the checks of open documents on one worker thread of their own (a startup scan or a rewind
    on the files' worker never delays them), keeping the mirror files in a private temporary folder."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewind-lsp-docs")
        self.folder: str | None = None
        self._count = 0

    def _new_mirror(self) -> str:
        if self.folder is None:
            sweep_mirrors(tempfile.gettempdir())
            # Mode 0700: it holds conversation text. The pid in the name lets a later server remove it
            # should this one be killed before it could.
            self.folder = tempfile.mkdtemp(prefix=f"{MIRROR_PREFIX}{os.getpid()}-")
        self._count += 1
        return os.path.join(self.folder, f"doc-{self._count}.jsonl")

    def check(self, doc: OpenDocument, rules: RuleSet) -> tuple[int, list[Finding]] | None:
        """Runs on the worker: the findings of the document's current version (None: closed)."""
        taken = doc.take()
        if taken is None:
            return None
        version, pieces, rewritten, parts = taken
        if not pieces and not rewritten and doc.worker_version is not None and doc.worker_rules is rules:
            return version, doc.worker_findings  # nothing new since the last check
        if doc.is_transcript:
            try:
                findings = self._check_transcript(doc, pieces, rewritten, parts, rules)
            except CheckStopped:  # closed or given a whole new text meanwhile
                self._drop_mirror(doc)  # its state is half built: the next check starts over
                log.debug("rewind-lsp: stopped checking %s: closed or replaced meanwhile", doc.uri)
                return None
        else:
            from ..logscan import scan_text

            findings = scan_text("".join(parts), rules.for_logs())
        findings = _with_utf8_columns(doc, findings, parts)
        doc.worker_version, doc.worker_rules, doc.worker_findings = version, rules, findings
        return version, findings

    def _check_transcript(
        self, doc: OpenDocument, pieces: list[str], rewritten: bool, parts: list[str], rules: RuleSet
    ) -> list[Finding]:
        try:
            if rewritten or doc.mirror is None or doc.state is None:
                self._drop_mirror(doc)
                doc.mirror = self._new_mirror()
                doc.state = TranscriptState()
                mode = "wb"
            else:
                mode = "ab"
            fd = os.open(doc.mirror, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC), 0o600)
            with os.fdopen(fd, mode) as f:
                for piece in pieces:
                    f.write(piece.encode("utf-8", errors="replace"))  # a lone surrogate: one '?'
            # A fork is judged with its parent, found beside the document's own path. Closed or given a
            # whole new text meanwhile, the document no longer needs this check: it stops between chunks
            # (a crafted or huge file must not hold the worker from the other documents).
            found = check_transcript_incremental(doc.mirror, doc.state, rules, stop=doc.obsolete)
            return follow(doc.mirror, found, rules, where=doc.path)
        except OSError:
            # No room for the mirror (a full disk): check the text in memory, and start over next time.
            self._drop_mirror(doc)
            return check_transcript_bytes("".join(parts).encode("utf-8", errors="replace"), rules).findings

    def _drop_mirror(self, doc: OpenDocument) -> None:
        if doc.mirror is not None:
            with contextlib.suppress(OSError):
                os.unlink(doc.mirror)
        doc.mirror, doc.state = None, None

    def close(self, doc: OpenDocument) -> None:
        """Forget a closed document's mirror, after any check of it still queued."""
        with contextlib.suppress(RuntimeError):  # the worker is shut down already
            self.pool.submit(self._drop_mirror, doc)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class Documents:
    """The open documents by URI (unquoted, as pygls keys them), with their checks."""

    def __init__(self, publish: Callable[[OpenDocument], None], failed: Callable[[OpenDocument, str], None]) -> None:
        self.open: dict[str, OpenDocument] = {}
        self.checker = DocumentChecker()
        self.publish = publish  # called on the event loop with each current result
        self.failed = failed
        self.rules: Callable[[], RuleSet] | None = None

    @staticmethod
    def key(uri: str) -> str:
        return unquote(uri)

    def get(self, uri: str) -> OpenDocument | None:
        return self.open.get(self.key(uri))

    def __contains__(self, uri: str) -> bool:
        return self.key(uri) in self.open

    def __iter__(self) -> Iterator[OpenDocument]:
        return iter(list(self.open.values()))

    def did_open(self, uri: str, version: int, text: str) -> OpenDocument:
        old = self.open.pop(self.key(uri), None)
        if old is not None:
            self._close(old)
        doc = OpenDocument(uri, version, text)
        self.open[self.key(uri)] = doc
        self.schedule(doc, delay=0)
        return doc

    def did_change(self, uri: str, version: int, changes: list[types.TextDocumentContentChangeEvent],
                   encoding: str) -> None:
        doc = self.get(uri)
        if doc is None:
            return
        appended = doc.apply(changes, version, encoding)
        large = doc.length > LARGE_DOCUMENT
        self.schedule(doc, delay=0 if appended or not large else DEBOUNCE_SECONDS)

    def did_close(self, uri: str) -> OpenDocument | None:
        doc = self.open.pop(self.key(uri), None)
        if doc is not None:
            self._close(doc)
        return doc

    def _close(self, doc: OpenDocument) -> None:
        with doc.lock:
            doc.closed = True
        if doc.timer is not None:
            doc.timer.cancel()
        doc.checked.set()  # wakes whoever waits for its findings
        self.checker.close(doc)

    def recheck_all(self) -> None:
        """New rules: every open document is checked again."""
        for doc in self:
            doc.result_version = None
            doc.checked.clear()
            self.schedule(doc, delay=0)

    def schedule(self, doc: OpenDocument, delay: float) -> None:
        if doc.timer is not None:
            doc.timer.cancel()
            doc.timer = None
        if delay:
            doc.timer = asyncio.get_running_loop().call_later(delay, self.schedule, doc, 0)
            return
        with doc.lock:
            if doc.queued:
                return  # the queued check takes every change made until it starts
            doc.queued = True
        assert self.rules is not None
        job = asyncio.wrap_future(self.checker.pool.submit(self.checker.check, doc, self.rules()))
        job.add_done_callback(lambda j: self._done(doc, j))

    def _done(self, doc: OpenDocument, job: asyncio.Future[tuple[int, list[Finding]] | None]) -> None:
        if job.cancelled():
            return
        exc = job.exception()
        if exc is not None:
            # Never leave a request waiting on a check that failed: the version has no findings.
            self.failed(doc, f"{type(exc).__name__}: {exc}")
            result: tuple[int, list[Finding]] | None = (doc.version, [])
        else:
            result = job.result()
        if result is None or doc.closed or result[0] != doc.version:
            return  # obsolete: the document changed or closed while this check ran
        doc.result_version, doc.findings = result
        doc.checked.set()
        self.publish(doc)

    async def findings(self, doc: OpenDocument) -> list[Finding]:
        """The findings of the document's current version: the kept ones, or those of the one check of
        this version (started now if it was waiting for a pause in typing)."""
        while not doc.closed and doc.result_version != doc.version:
            if doc.timer is not None:
                self.schedule(doc, delay=0)
            await doc.checked.wait()
        return doc.findings if not doc.closed else []

    def shutdown(self) -> None:
        for doc in self:
            self._close(doc)
        self.checker.shutdown()
