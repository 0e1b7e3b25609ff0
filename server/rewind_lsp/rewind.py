"""Write a repaired copy of a session that `claude --resume` accepts, losing nothing.

The pipeline: check the source (`check`), plan the repair (`repair_plan`), write and place the
copy crash-safely (`placement`), verifying the copy before it is linked into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import placement
from .check import check_transcript_file
from .findings import Severity
from .placement import STALE_TEMP_SECONDS, TEMP_SUFFIX, choose_target, session_id_of
from .repair_plan import (
    MISSING_RESULT_TEXT,
    Plan,
    RewindError,
    SourceLines,
    leave_out_recorded_errors,
    plan_patch,
    plan_truncate,
)

MODES = ("truncate", "patch")

__all__ = [
    "MISSING_RESULT_TEXT", "MODES", "STALE_TEMP_SECONDS", "TEMP_SUFFIX", "RewindError", "RewindResult", "rewind",
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

    @property
    def resume_command(self) -> str:
        return f"claude --resume {self.session_id}"

    @property
    def resumable(self) -> bool:
        """Claude Code finds a session by its file name, which must be `<sessionId>.jsonl`."""
        return session_id_of(self.path) == self.session_id


def rewind(
    path: str | Path, mode: str = "truncate", out: str | Path | None = None, in_place: bool = False
) -> RewindResult:
    source = Path(path)
    if mode not in MODES:
        raise RewindError(f"unknown mode {mode!r}: use truncate or patch")
    if out is not None and in_place:
        raise RewindError("--out and --in-place cannot be used together")
    if not source.is_file():
        raise RewindError(f"{source}: no such transcript file")
    target, session_id = choose_target(source, out, in_place)
    # Held open to the end: with `--in-place`, the old file can still be read once replaced.
    src_fd = os.open(source, os.O_RDONLY)
    try:
        return _rewind(source, src_fd, mode, target, session_id)
    finally:
        os.close(src_fd)


def _verify(copy: Path) -> None:
    result = check_transcript_file(str(copy))
    remaining = [f for f in result.findings if f.severity == Severity.ERROR]
    if remaining:
        f = remaining[0]
        raise RewindError(
            f"the repaired copy still has {len(remaining)} error(s) (first: {f.rule} at line {f.start.line}: "
            f"{f.message}); nothing was written. Please report this with `rewind-lsp doctor`."
        )


def _rewind(source: Path, src_fd: int, mode: str, target: Path, session_id: str | None) -> RewindResult:
    before = placement.fingerprint(source)  # through the module: fault-injection tests wrap it
    if os.fstat(src_fd).st_ino != before[0]:  # replaced between the open and the fingerprint
        raise placement.changed_error(source)
    check = check_transcript_file(str(source))
    if not any(f.severity <= Severity.WARNING and f.rule != "malformed-line" for f in check.findings):
        raise RewindError(f"{source}: the session already pairs; nothing to repair")
    lines = SourceLines(source)
    # Read now: once `--in-place` has replaced the source, its old offsets point at other bytes.
    cwd = next((lines.get(e).get("cwd") for e in reversed(check.transcript.entries) if e.type in ("user", "assistant")),
               None)
    plan = Plan()
    leave_out_recorded_errors(check, lines, plan)  # first: the patch's relinking then skips them
    if mode == "truncate":
        plan_truncate(check, plan)
    else:
        for conv in check.conversations:
            if conv.kind != "history":
                plan_patch(conv, lines, plan)
        plan.dropped_messages = 0
    placed = placement.place(source, src_fd, before, plan, target, session_id, _verify)
    kept = len(check.main.messages) - plan.dropped_messages if check.main else 0
    return RewindResult(target, session_id or source.stem, mode, placed.backup, plan.fixed + plan.left_out, kept,
                        plan.dropped_messages, cwd if isinstance(cwd, str) else None, placed.warnings)
