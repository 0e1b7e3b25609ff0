"""Check many files for the CLI: saved states first, every core busy, answers in the given order.

A transcript is checked from its saved state (`index`) when the cache is on: unchanged, it costs
a `stat` and the state file; appended to, only what was appended is read. Terminal logs are read
whole (they are seldom large and have no state worth keeping). Several files are spread over a
pool of processes (`pool`), the largest first; one file alone keeps the stretch split of a large
transcript (`--jobs`), used when it has no saved state to start from (the split check keeps no
state: the next check of it in a pool, by the hook or by the server saves one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import msgspec

from . import cachedir
from .check import check_path, is_regular_file, is_transcript_path
from .findings import Finding
from .index import check_saved, load_state, state_file
from .parallel import MIN_PART, usable_cpus
from .pool import Pool
from .progress import Progress

if TYPE_CHECKING:
    from .rules import RuleSet


class FileCheck(msgspec.Struct):
    """One file's answer: its findings, or the problem that kept it from being read."""

    findings: list[Finding] = []
    problem: str | None = None
    wrote: bool = False  # a state was saved (the folder may need pruning)


class _Job(msgspec.Struct, frozen=True):
    path: str
    size: int


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def check_one(path: str, rules: RuleSet | None, cache_dir: Path | None, split_jobs: int = 1) -> FileCheck:
    """One file's findings; `split_jobs` other than 1 lets a large transcript with nothing saved be
    checked by that many processes (0: one per core)."""
    if os.path.exists(path) and not os.path.isdir(path) and not is_regular_file(path):
        return FileCheck(problem=f"{path}: not a regular file (a pipe or device is never read)")
    try:
        if cache_dir is None or not is_transcript_path(path):
            return FileCheck(check_path(path, rules, split_jobs))
        if split_jobs != 1 and _size(path) >= 2 * MIN_PART and load_state(
            state_file(cache_dir, path, rules), path, rules
        ).findings is None:
            return FileCheck(check_path(path, rules, split_jobs))
        findings, _, wrote = check_saved(path, cache_dir, rules)
        return FileCheck(findings, wrote=wrote)
    except FileNotFoundError:
        return FileCheck(problem=f"{path}: no such file or folder")
    except PermissionError:
        return FileCheck(problem=f"{path}: permission denied")
    except IsADirectoryError:
        return FileCheck(problem=f"{path}: is a folder")
    except OSError as exc:
        return FileCheck(problem=f"{path}: cannot read: {exc.strerror or exc}")


def check_files(paths: list[str], rules: RuleSet | None, jobs: int, cache_dir: Path | None,
                progress_to: TextIO | None = None) -> list[FileCheck]:
    """Each file's answer, in the order of `paths`; `jobs` processes (0: one per usable core);
    a progress line on `progress_to` (a terminal) meanwhile.

    The answers are the same whatever `jobs` is and whether the cache is used."""
    todo = [_Job(p, _size(p)) for p in paths]
    progress = None
    if progress_to is not None and todo:
        progress = Progress(progress_to, True, len(todo), sum(j.size for j in todo))
    processes = jobs or usable_cpus()
    alone = processes < 2 or len(todo) < 2
    # In a pool every core already has a file: a worker splitting one would only fight the others.
    split_jobs = jobs if alone else 1

    def work(job: _Job) -> FileCheck:
        return check_one(job.path, rules, cache_dir, split_jobs)

    def done(i: int, answer: FileCheck) -> None:
        if progress is not None:
            progress.advance(todo[i].size)

    try:
        answers = Pool(work, FileCheck, 1 if alone else processes).map(todo, lambda j: j.size, done)
    finally:
        if progress is not None:
            progress.clear()
    if cache_dir is not None and any(a.wrote for a in answers):
        cachedir.prune(cache_dir)
    return answers
