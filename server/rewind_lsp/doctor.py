"""`rewind-lsp doctor`: what a bug report needs, with secrets and personal data redacted."""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from pathlib import Path

from . import __version__
from .check import (
    check_transcript_file,
    claude_config_dir,
    claude_projects_dir,
    codex_sessions_dir,
    discover,
    is_subagent_transcript,
)
from .codex import is_rollout_file
from .findings import Severity
from .paths import user_log_dir
from .redact import redact
from .transcript import read_transcript

RECENT_SESSIONS = 50


def _home_relative(path: Path | str) -> str:
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if home and text.startswith(home) else text


def report(paths: list[str] | None = None) -> str:
    root = claude_projects_dir()
    codex = codex_sessions_dir()
    lines = [
        "# rewind-lsp doctor",
        f"rewind-lsp {__version__}; Python {platform.python_version()} ({sys.implementation.name})",
        f"platform: {platform.system()} {platform.release()} {platform.machine()}",
        f"Claude config dir: {_home_relative(claude_config_dir())}"
        + (" (from CLAUDE_CONFIG_DIR)" if os.environ.get("CLAUDE_CONFIG_DIR") else ""),
        f"projects dir: {_home_relative(root)} ({'present' if root.is_dir() else 'missing'})",
        f"log dir: {_home_relative(user_log_dir())}",
        f"Codex sessions dir: {_home_relative(codex)} ({'present' if codex.is_dir() else 'missing'})"
        + (" (from CODEX_HOME)" if os.environ.get("CODEX_HOME") else ""),
    ]
    sources = paths if paths else [str(d) for d in (root, codex) if d.is_dir()]
    found = [p for p in discover(sources, (".jsonl",))]
    found.sort(key=lambda p: os.stat(p).st_mtime if os.path.exists(p) else 0, reverse=True)
    # Codex rollouts by their content, as `check` knows them; counted apart, checked the same way.
    codex_files = {p for p in found if is_rollout_file(p)}
    rollouts = [p for p in found if p in codex_files]
    files = [p for p in found if p not in codex_files]
    versions: Counter[str] = Counter()
    models: Counter[str] = Counter()
    last_errors: list[str] = []
    unreadable = 0
    for path in files[:RECENT_SESSIONS]:
        try:
            t = read_transcript(path)
            for e in t.entries:
                if e.version:
                    versions[e.version] += 1
                if e.model:
                    models[e.model] += 1
            # The same verdict as `check`: errors, and a recorded 400 that pairs now (a warning).
            errors = [f for f in check_transcript_file(path).findings if f.severity == Severity.ERROR or (
                f.rule == "tool-use-concurrency-400" and f.severity == Severity.WARNING)]
        except OSError:
            unreadable += 1
            continue
        for f in errors[:3]:
            last_errors.append(
                f"{_home_relative(path)}:{f.start.line}: {f.severity.label} {f.rule}: {f.message}")
    for path in rollouts[:RECENT_SESSIONS]:
        try:
            errors = [f for f in check_transcript_file(path).findings if f.severity == Severity.ERROR]
        except OSError:
            unreadable += 1
            continue
        last_errors.extend(f"{_home_relative(path)}:{f.start.line}: {f.severity.label} {f.rule}: {f.message}"
                           for f in errors[:3])
    agents = sum(1 for p in files if is_subagent_transcript(p))
    lines.append(f"sessions: {len(files) - agents} found ({agents} subagent transcripts), "
                 f"{min(len(files), RECENT_SESSIONS)} most recent files examined"
                 + (f", {unreadable} unreadable" if unreadable else ""))
    if rollouts:
        lines.append(f"Codex sessions: {len(rollouts)} found, {min(len(rollouts), RECENT_SESSIONS)} most recent "
                     "examined")
    seen = ", ".join(f"{v} ({n} entries)" for v, n in versions.most_common(8))
    lines.append("Claude Code versions seen: " + (seen or "none"))
    lines.append("models seen: " + (", ".join(f"{m} ({n})" for m, n in models.most_common(8)) or "none"))
    lines.append("last errors:" + ("" if last_errors else " none"))
    lines.extend(f"  {e}" for e in last_errors[:20])
    return redact("\n".join(lines))
