"""The advice every surface prints (CLI, hook, server): built here once, so they never disagree.

Commands are quoted with the one helper (`invocation.shell_command`) and run this installation
(`invocation.command`); the resume command checks that the session's working folder is still the
one Claude Code will look the session up from.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from .invocation import command, shell_command

if TYPE_CHECKING:
    from .repairs import Repaired

# Claude Code files a session under `projects/<cwd with every character but [A-Za-z0-9] as '-'>/`.
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def project_folder_name(cwd: str) -> str:
    return _NOT_ALNUM.sub("-", cwd)


def rewind_command(transcript: str, *flags: str) -> str:
    """`rewind-lsp rewind [flags] <transcript>`, runnable as printed."""
    return command("rewind", *flags, transcript)


def resume_command(session_id: str, cwd: str | None, transcript: str) -> tuple[str, str | None]:
    """(the command that resumes the session, a note when the working folder cannot be trusted).

    `claude --resume <id>` finds the session only when run from the folder whose project folder
    holds the transcript; `cd` there first when that folder is the session's recorded cwd. A Codex
    rollout (`rollout-….jsonl`) is found by its id from anywhere: `codex resume <id>`, from the
    session's folder so that its tools run where they did."""
    if os.path.basename(transcript).startswith("rollout-"):
        resume = shell_command(["codex", "resume", session_id])
        if not cwd:
            return resume, None
        if not os.path.isdir(cwd):
            return resume, (f"the session's folder {cwd} no longer exists (the project moved?): "
                            "run it from where it is now")
        return f"{shell_command(['cd', cwd])} && {resume}", None
    resume = shell_command(["claude", "--resume", session_id])
    folder = os.path.basename(os.path.dirname(os.path.abspath(transcript)))
    if not cwd:
        return resume, None
    if project_folder_name(cwd) != folder:
        return resume, (f"the session was recorded in {cwd}, which is not the folder Claude Code files it under "
                        f"({folder}): run the command from the folder whose path gives that name")
    if not os.path.isdir(cwd):
        return resume, f"the session's folder {cwd} no longer exists (the project moved?): run it from where it is now"
    return f"{shell_command(['cd', cwd])} && {resume}", None


def already_repaired(transcript: str) -> str | None:
    """`already repaired as <id>: <resume command>` when a repaired copy of this unchanged original exists."""
    from .repairs import repaired_copy

    done = repaired_copy(transcript)
    return None if done is None else repaired_note(done, transcript)


def repaired_note(done: Repaired, transcript: str) -> str:
    resume, _ = resume_command(done.session_id, done.cwd, transcript)
    return f"already repaired as {done.session_id}: {resume}"
