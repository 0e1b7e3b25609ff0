"""Check transcripts and logs: the one entry point the CLI, the server and the hook share.

A transcript check is one pipeline, each step a module that imports only the steps before it:

    read      transcript.py    lines -> Entry (msgspec, ~1 MB chunks: `LineReader`, the one reader)
    rebuild   conversation.py  entries -> conversations (the chains Claude Code would send)
    validate  validate.py      conversation -> faults (tool_use / tool_result pairing)
    findings  verdict.py       faults -> findings at exact places (`locate`), with severities

On top of it, `incremental.TranscriptState` runs the same pipeline per segment (cut at main
compact_boundary lines) and keeps it between calls, reading only appended bytes; it proves a
shortcut with `links` (the one "no link across stretches" rule) and `filemark` (the one "was the
file rewritten?" test). `parallel` checks stretches of one file in forked children and joins them
by the same rule. This module picks among them: `check_transcript_file`/`_bytes` (everything, the
conversations included, for `rewind` and the server), `check_path` (findings, in memory bounded by
a segment, on several cores if asked). Module imports form a DAG:

    transcript <- conversation <- validate <- verdict <- incremental <- parallel <- check
    links (transcript), filemark, gcpause: used by incremental; locate, rules, logscan: by verdict, lazily
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .codex import check_rollout_bytes, check_rollout_file, is_rollout_file, is_rollout_head
from .findings import Finding
from .forks import follow
from .gcpause import no_gc
from .incremental import TranscriptState, check_transcript_incremental
from .transcript import read_transcript, read_transcript_bytes
from .verdict import (
    CONCURRENCY_400,
    INTERRUPTED_NOTE,
    RECORDED_400_PAIRED,
    LineFetcher,
    TranscriptCheck,
    analyze,
    bytes_fetcher,
    conversation_findings,
    file_fetcher,
)

if TYPE_CHECKING:  # rules (re2, TOML) and logscan load only when needed: the hook's budget
    from .rules import RuleSet

__all__ = [
    "CONCURRENCY_400", "INTERRUPTED_NOTE", "LOG_SUFFIXES", "RECORDED_400_PAIRED", "TRANSCRIPT_SUFFIXES", "LineFetcher",
    "TranscriptCheck", "analyze", "check_log_file", "check_log_text", "check_path", "check_transcript_bytes",
    "check_transcript_file", "claude_config_dir", "claude_projects_dir", "codex_sessions_dir", "conversation_findings",
    "discover",
    "is_regular_file", "is_subagent_transcript", "is_transcript_path",
]

TRANSCRIPT_SUFFIXES = (".jsonl",)
LOG_SUFFIXES = (".log",)

_file_fetcher = file_fetcher  # the name benchmarks/worker.py and before_after.py use


def check_transcript_file(path: str, rules: RuleSet | None = None, history: bool = True) -> TranscriptCheck:
    """Everything about a session file: a Claude Code transcript, or a Codex rollout by its content.
    `history=False`: but its rewound and compacted history (see `analyze`), which a repair leaves as
    it is: of a 1 GB compacted session, a third of the check."""
    with no_gc():
        if is_rollout_file(path):
            return check_rollout_file(path, rules)
        return analyze(read_transcript(path), file_fetcher(path), rules, history)


def check_transcript_bytes(data: bytes, rules: RuleSet | None = None) -> TranscriptCheck:
    with no_gc():
        if is_rollout_head(data[:1 << 20]):
            return check_rollout_bytes(data, rules)
        return analyze(read_transcript_bytes(data), bytes_fetcher(data), rules)


def check_log_file(path: str, rules: RuleSet | None = None) -> list[Finding]:
    from .logscan import LogState, scan_file
    from .rules import default_rules

    state = LogState()
    scan_file(path, state, rules or default_rules())
    return state.all()


def check_log_text(text: str, rules: RuleSet | None = None) -> list[Finding]:
    from .logscan import scan_text
    from .rules import default_rules

    return scan_text(text, (rules or default_rules()).for_logs())


def is_subagent_transcript(path: str) -> bool:
    """`<session>/subagents/agent-<id>.jsonl`, or `agent-<id>.jsonl` beside the sessions (1.0.x): part of a
    session, never a session of its own (the words every surface uses: docs/CONTRACT.md)."""
    return "/subagents/" in path.replace(os.sep, "/") or os.path.basename(path).startswith("agent-")


def is_transcript_path(path: str) -> bool:
    return path.endswith(TRANSCRIPT_SUFFIXES)


def check_path(path: str, rules: RuleSet | None = None, jobs: int = 1) -> list[Finding]:
    """Findings for one file: a transcript by its `.jsonl` name, anything else as a log.

    `jobs` other than 1 lets a large transcript be checked by that many processes (0: one per
    core; see `parallel`): for the CLI only, as it forks.
    """
    if is_transcript_path(path):
        if jobs != 1:
            from .parallel import check_transcript_parallel

            return follow(path, check_transcript_parallel(path, rules, jobs), rules)
        # Segment by segment: the same findings as check_transcript_file, in memory bounded by the
        # largest segment instead of the file (a 1 GB transcript would need ~800 MB otherwise).
        return follow(path, check_transcript_incremental(path, TranscriptState(), rules), rules)
    return check_log_file(path, rules)


def discover(
    paths: Iterable[str], suffixes: tuple[str, ...] | None = TRANSCRIPT_SUFFIXES + LOG_SUFFIXES
) -> Iterator[str]:
    """Files named directly, and files with a checked suffix (any, for None) below named folders, sorted."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    if (suffixes is None or name.endswith(suffixes)) and is_regular_file(os.path.join(root, name)):
                        yield os.path.join(root, name)
        else:
            yield p


def is_regular_file(path: str) -> bool:
    """True for a regular file (or a symlink to one). A FIFO or device would block or never end a read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def claude_config_dir() -> Path:
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(env).expanduser() if env else Path.home() / ".claude"


def claude_projects_dir() -> Path:
    return claude_config_dir() / "projects"


def codex_sessions_dir() -> Path:
    """Where Codex CLI keeps its sessions: `$CODEX_HOME/sessions` (`~/.codex` by default)."""
    env = os.environ.get("CODEX_HOME")
    return (Path(env).expanduser() if env else Path.home() / ".codex") / "sessions"
