"""The startup scan's one-line summary of what it found broken, in words every client can act on
(Neovim and Emacs have no Problems list: the user opens a file to see where it breaks)."""

from __future__ import annotations

import os

from ..check import is_transcript_path
from ..codex import is_rollout_file


def kind_of(path: str) -> str:
    """`subagent transcript` (<session>/subagents/agent-*.jsonl), `Codex session` (a rollout, known by its
    content as the checker knows it), `session` (any other transcript) or `log`."""
    if not is_transcript_path(path):
        return "log"
    if is_rollout_file(path):
        return "Codex session"
    if os.path.basename(os.path.dirname(path)) == "subagents":
        return "subagent transcript"
    return "session"


def _count(n: int, word: str) -> str:
    return f"{n} broken {word}{'' if n == 1 else 's'}"


def broken_summary(paths: list[str]) -> str:
    """`rewind-lsp: 2 broken Claude Code sessions, 1 broken subagent transcript and 1 broken log: open one to
    see where it breaks` for these broken files; "" when there are none."""
    kinds = [kind_of(p) for p in paths]
    order = ("session", "subagent transcript", "Codex session", "log")
    parts = [_count(kinds.count(k), k) for k in order if k in kinds]
    if not parts:
        return ""
    if "Codex session" not in parts[0]:  # a Codex part names its agent itself
        parts[0] = parts[0].replace(" broken ", " broken Claude Code ", 1)
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"rewind-lsp: {listed}: open one to see where it breaks"
