"""Write a repaired copy of a session that `claude --resume` accepts, losing nothing.

The pipeline: check the source (`check`), plan the repair (`repair_plan`), write and place the
copy crash-safely (`placement`), verifying the copy before it is linked into place.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import forks, placement
from .census import Census, LineParser, planned_census
from .check import TranscriptCheck, check_transcript_file
from .children import ChildCall
from .codex import is_bare_layout, is_rollout_file, line_parser
from .codex_repair import choose_rollout_target, cwd_of, plan_rollout, session_id_of_rollout
from .copycheck import GrowingCheck
from .findings import Finding, Severity
from .gcpause import no_gc
from .incremental import check_counted
from .placement import STALE_TEMP_SECONDS, TEMP_SUFFIX, choose_target, session_id_of
from .repair_plan import (
    MISSING_RESULT_TEXT,
    LineSessionIds,
    Plan,
    RewindError,
    SourceLines,
    last_prompt,
    leave_out_recorded_errors,
    plan_patch,
    plan_truncate,
)
from .transcript import Entry, parse_line

MODES = ("truncate", "patch")

__all__ = [
    "MISSING_RESULT_TEXT",
    "MODES",
    "STALE_TEMP_SECONDS",
    "TEMP_SUFFIX",
    "Preview",
    "RewindError",
    "RewindResult",
    "preview",
    "rewind",
    "session_id_of",
]


@dataclass(slots=True)
class RewindResult:
    path: Path
    session_id: str
    mode: str
    backup: Path | None
    fixed: list[str]  # one line per repaired fault
    kept_messages: int
    dropped_messages: int
    cwd: str | None
    warnings: list[str] = field(default_factory=list)  # done, but the user must know (data kept elsewhere)
    agent: str = "claude"  # or "codex": whose session it is, so whose resume command

    @property
    def resume_command(self) -> str:
        return f"codex resume {self.session_id}" if self.agent == "codex" else f"claude --resume {self.session_id}"

    @property
    def resumable(self) -> bool:
        """Claude Code finds a session by its file name, which must be `<sessionId>.jsonl`; Codex by
        the id a `rollout-<time>-<id>.jsonl` name ends with."""
        if self.agent == "codex":
            return session_id_of_rollout(self.path) == self.session_id
        return session_id_of(self.path) == self.session_id


@dataclass(slots=True)
class Preview:
    """What one mode would do, computed as the rewind itself plans it (nothing written)."""

    mode: str
    refused: str | None  # why this mode cannot repair the session
    kept_messages: int = 0
    total_messages: int = 0
    last_prompt_line: int | None = None
    last_prompt_text: str | None = None
    added_results: int = 0
    fixed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    @property
    def dropped_messages(self) -> int:
        return self.total_messages - self.kept_messages


def rewind(
    path: str | Path, mode: str = "truncate", out: str | Path | None = None, in_place: bool = False,
    to: str | None = None,
) -> RewindResult:
    """Repair `path`; `to` (a line number or uuid of a user prompt of the live conversation) cuts
    just before that prompt, as Claude Code's own `/rewind` does (truncate only)."""
    source = Path(path)
    _check_arguments(source, mode, to)
    if out is not None and in_place:
        raise RewindError("--out and --in-place cannot be used together")
    codex = is_rollout_file(str(source))
    target, session_id = (choose_rollout_target if codex else choose_target)(source, out, in_place)
    # Held open to the end: with `--in-place`, the old file can still be read once replaced.
    src_fd = os.open(source, os.O_RDONLY)
    try:
        # One rewind of a session at a time, across processes: a second waits, then works on what
        # the first left or is refused (its fingerprint no longer matches).
        placement.lock_session(src_fd, source, placement.LOCK_WAIT_SECONDS)
        if in_place:  # before the analysis, which a large session makes the user wait for
            placement.refuse_writers(source, os.fstat(src_fd))
        # No collection from the first analysis to the end: at the end of each of its two checks,
        # the collector's first pass would walk the million objects of the analysis just made (its
        # own lines hold no cycles), 0.2-0.3 s each for a million lines.
        with no_gc():
            return _rewind(source, src_fd, mode, target, session_id, to)
    finally:
        os.close(src_fd)


def preview(path: str | Path, to: str | None = None) -> list[Preview]:
    """What each mode would do to `path` (with `to`: only truncate, to that point)."""
    source = Path(path)
    modes = ("truncate",) if to is not None else MODES
    for mode in modes:
        _check_arguments(source, mode, to)
    check = check_transcript_file(str(source), history=False)  # a repair leaves history as it is
    lines = SourceLines(source)
    codex = is_rollout_file(str(source))
    out: list[Preview] = []
    for mode in modes:
        try:
            plan = (plan_rollout(check, lines, mode, None, to) if codex
                    else _plan(source, source, check, lines, mode, to))
        except RewindError as exc:
            out.append(Preview(mode, str(exc)))
            continue
        last = plan.last_prompt
        out.append(Preview(
            mode, None, plan.kept_messages, plan.total_messages, last.line if last else None,
            _prompt_text(lines, last) if last else None, plan.added_results, plan.fixed, plan.left_out,
        ))
    return out


def _prompt_text(lines: SourceLines, e: Entry) -> str:
    d = lines.get(e)
    holder = d.get("message") or d.get("payload") or d  # Claude Code; a Codex rollout, wrapped or bare
    content = holder.get("content") if isinstance(holder, dict) else None
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content
                           if isinstance(b, dict) and b.get("type") in ("text", "input_text"))
    text = " ".join(str(content or "").split())
    return text if len(text) <= 80 else text[:79] + "…"


def _check_arguments(source: Path, mode: str, to: str | None) -> None:
    if mode not in MODES:
        raise RewindError(f"unknown mode {mode!r}: use truncate or patch")
    if to is not None and mode != "truncate":
        raise RewindError("--to cuts the conversation back to a prompt: it goes with --mode truncate only")
    if not source.is_file():
        raise RewindError(f"{source}: no such transcript file")


def _plan(source: Path, read: Path, check: TranscriptCheck, lines: SourceLines, mode: str, to: str | None) -> Plan:
    """What `mode` does to the session at `source`, whose bytes are read at `read`."""
    findings = forks.follow(str(read), check.findings, where=str(source))  # a fork is judged with its parent
    if to is None and not any(f.severity <= Severity.WARNING and f.rule != "malformed-line" for f in findings):
        raise RewindError(f"{source}: the session already pairs; nothing to repair")
    answered = forks.answered_in_parent(str(read), str(source)) if check.main and check.main.forked else None
    plan = Plan()
    plan.faults.update(check.faults)  # validated by the check: not again for each step of the plan
    leave_out_recorded_errors(check, lines, plan)  # first: the patch's relinking then skips them
    if mode == "truncate":
        plan_truncate(check, plan, to)
        # Cutting the main conversation back cannot mend a subagent's own conversation (a sidechain
        # in this file): those are patched, so the copy is whole; the summary says so line by line.
        for conv in check.conversations:
            if conv.kind == "sidechain" and not any(e.line in plan.drop for e in conv.order):
                plan_patch(conv, lines, plan)
    else:
        for conv in check.conversations:
            if conv.kind != "history":
                plan_patch(conv, lines, plan, answered)
        main = check.main
        plan.kept_messages = plan.total_messages = len(main.messages) if main else 0
        plan.last_prompt = last_prompt(main) if main else None
    return plan


def _fd_path(fd: int, source: Path) -> Path:
    """A path that opens the very file `fd` holds (Linux's /proc/self/fd, or /dev/fd), else the source."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        candidate = Path(folder) / str(fd)
        if candidate.exists():
            return candidate
    return source


class _CopyCheck:
    """The copy's errors (not its conversations, nor history, whose findings are information) and
    its census, checked by a child reading behind the writer (`copycheck`) where one can be forked,
    else once written: segment by segment, in memory bounded by a segment (a Codex rollout: whole,
    by its own reader). The same errors as check_transcript_file's either way. The census must be
    the one the plan meant (`expected`): no line lost, fused, added or moved."""

    __slots__ = ("expected", "growing")

    def __init__(self, expected: Census) -> None:
        self.expected = expected
        self.growing: GrowingCheck | None = None

    def begin(self, copy: Path) -> None:
        self.growing = GrowingCheck(str(copy), history=False)

    def written(self, size: int) -> None:
        if self.growing is not None:
            self.growing.written(size)

    def finish(self, copy: Path) -> None:
        checked = self.growing.result() if self.growing is not None else None
        if checked is not None:
            found, census = checked.findings, checked.census
        else:
            found, census = check_counted(str(copy))
        _refuse_errors(found)
        _refuse_losses(census, self.expected)

    def close(self) -> None:
        if self.growing is not None:
            self.growing.close()


def _refuse_errors(found: list[Finding]) -> None:
    remaining = [f for f in found if f.severity == Severity.ERROR]
    if remaining:
        f = remaining[0]
        raise RewindError(
            f"the repaired copy still has {len(remaining)} error(s) (first: {f.rule} at line {f.start.line}: "
            f"{f.message}); nothing was written. Please report this with `rewind-lsp doctor`."
        )


def _refuse_losses(census: Census | None, expected: Census) -> None:
    differences = ["it could not be counted"] if census is None else census.differences(expected)
    if differences:
        raise RewindError(
            f"the repaired copy does not hold what the repair keeps ({'; '.join(differences)}); "
            "nothing was written. Please report this with `rewind-lsp doctor`."
        )


@dataclass(slots=True)
class _Planned:
    """What a rewind keeps of the source's analysis: the plan, where the session ran, and the
    census of the copy the plan writes."""

    plan: Plan
    cwd: str | None
    codex: bool
    census: Census


def _analyse(
    source: Path, src_fd: int, through_fd: Path, mode: str, session_id: str | None, to: str | None,
    keep: list[object],
) -> _Planned:
    """The plan. The analysis is left in `keep`, so that a child returning the plan exits without
    freeing it first (the caller frees it with `keep`, in this process)."""
    check = check_transcript_file(str(through_fd), history=False)  # a repair leaves history as it is
    lines = SourceLines(through_fd, src_fd)
    keep += (check, lines)
    # Read now: once `--in-place` has replaced the source, its old offsets point at other bytes.
    codex = check.main is not None and check.main.api == "responses"
    if codex:
        cwd = cwd_of(check, lines)
        plan = plan_rollout(check, lines, mode, session_id, to)
    else:
        cwd = next((lines.get(e).get("cwd") for e in reversed(check.transcript.entries)
                    if e.type in ("user", "assistant")), None)
        plan = _plan(source, through_fd, check, lines, mode, to)
    if session_id is not None and not codex:  # a new session: each line's own id, as the check read it
        plan.session_ids = LineSessionIds(check.transcript.entries)
    plan.faults.clear()
    plan.source_size = check.transcript.size
    parse = line_parser(is_bare_layout(os.pread(src_fd, 1 << 20, 0)), check.transcript.entries[0].line) \
        if codex and check.transcript.entries else parse_line
    census = _census_of_copy(check, plan, src_fd, parse)
    return _Planned(plan, cwd if isinstance(cwd, str) else None, codex, census)


def _census_of_copy(check: TranscriptCheck, plan: Plan, src_fd: int, parse: LineParser) -> Census:
    """What the copy `plan` writes of the source must hold, its new lines read by `parse` (a Codex
    rollout's own reader). A malformed last line without a newline is left in the original
    (`placement.write_copy`)."""
    t = check.transcript
    left_out = None
    if t.bad_lines and t.size and os.pread(src_fd, 1, t.size - 1) != b"\n":
        last_bad = t.bad_lines[-1].line
        if not t.entries or t.entries[-1].line < last_bad:
            left_out = last_bad
    return planned_census(t.entries, t.bad_lines, plan.drop, plan.replace, plan.insert_after, left_out, parse)


def _analysed(
    source: Path, src_fd: int, through_fd: Path, mode: str, session_id: str | None, to: str | None
) -> tuple[tuple[int, int, int, str], _Planned]:
    """The source's fingerprint, taken while it is analysed, and what `_analyse` plans.

    The analysis runs in a forked child where one can be (`children.ChildCall`): its million
    objects then go back at the child's exit instead of being freed one by one here, and this
    process stays small for the copy's own check. Otherwise, or if the child fails, here, with the
    digest taken on the other core (a thread). Through the module: fault-injection tests wrap
    `placement.fingerprint`. Everything is read through the descriptor analysed: a file renamed
    over the source meanwhile (an editor's save, another --in-place) is never read at the old
    offsets. The digest is compared again before anything is placed, so a change during either is
    refused."""
    analyse = partial(_analyse, source, src_fd, through_fd, mode, session_id, to, [])
    child = ChildCall(analyse, passes=(RewindError,))
    before = None
    try:
        if child.running:
            before = placement.fingerprint(source)
        outcome = child.outcome()
    finally:
        child.close()
    if outcome is None:
        # The thread is joined before anything forks (the copy's check).
        with ThreadPoolExecutor(1, thread_name_prefix="rewind-lsp fingerprint") as beside:
            fingerprinting = beside.submit(placement.fingerprint, source) if before is None else None
            try:
                outcome = (True, analyse())
            except RewindError as exc:
                outcome = (False, exc)
            if fingerprinting is not None:
                before = fingerprinting.result()
    assert before is not None
    if os.fstat(src_fd).st_ino != before[0]:  # replaced between the open and the fingerprint
        raise placement.changed_error(source)
    del analyse  # and with it an analysis made here: freed before the copy is checked
    ok, value = outcome
    if not ok:
        raise value  # type: ignore[misc]
    return before, value  # type: ignore[return-value]


def _rewind(source: Path, src_fd: int, mode: str, target: Path, session_id: str | None, to: str | None) -> RewindResult:
    before, planned = _analysed(source, src_fd, _fd_path(src_fd, source), mode, session_id, to)
    plan, cwd, codex = planned.plan, planned.cwd, planned.codex
    placed = placement.place(source, src_fd, before, plan, target, session_id, _CopyCheck(planned.census))
    if session_id is not None:  # a new session beside (or away from) the untouched original
        from .repairs import remember

        remember(source, os.fstat(src_fd), target, session_id, mode, cwd)
    dropped = plan.total_messages - plan.kept_messages
    return RewindResult(target, session_id or source.stem, mode, placed.backup,
                        plan.fixed + plan.left_out + placed.left_out,
                        plan.kept_messages, dropped, cwd, placed.warnings, "codex" if codex else "claude")
