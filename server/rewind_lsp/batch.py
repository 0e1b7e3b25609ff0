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
from .children import usable_cpus
from .findings import Finding
from .index import check_saved, load_state, state_file
from .parallel import MIN_PART
from .pool import Pool
from .progress import Progress

if TYPE_CHECKING:
    from .rules import RuleSet


class FileCheck(msgspec.Struct):
    """One file's answer: its findings, or the problem that kept it from being read."""

    findings: list[Finding] = []
    problem: str | None = None
    wrote: bool = False  # a state was saved (the folder may need pruning)


# Below this many bytes to read, the files are checked here: forking and feeding a pool costs
# more than it saves (an unchanged run reads only state files).
POOL_FROM_BYTES = 16 << 20


class _Job(msgspec.Struct, frozen=True):
    path: str
    size: int
    mtime_ns: int
    real: str | None = None  # its canonical path (the key of its saved state)


def _job(path: str, folders: dict[str, str] | None = None) -> _Job:
    try:
        st = os.stat(path)
    except OSError:
        return _Job(path, 0, 0)
    return _Job(path, st.st_size, st.st_mtime_ns, canonical(path, folders) if folders is not None else None)


def canonical(path: str, folders: dict[str, str]) -> str:
    """`os.path.realpath(path)`, each folder resolved once per batch (`folders`): a thousand sessions
    in a few project folders cost a thousand realpath walks of every component otherwise (a third of
    an unchanged main job's time). The file itself is still resolved when it is a link."""
    if ".." in path.split(os.sep):
        return os.path.realpath(path)  # `..` after a link is the link target's parent: realpath knows
    head, tail = os.path.split(os.path.abspath(path))
    real_dir = folders.get(head)
    if real_dir is None:
        real_dir = folders[head] = os.path.realpath(head)
    full = os.path.join(real_dir, tail)
    return os.path.realpath(full) if os.path.islink(full) else full


def _to_read(todo: list[_Job], cache_dir: Path, rules: RuleSet | None) -> int:
    """About how many bytes the check will read: a transcript whose state was saved after it last
    changed is taken to need none (only a guess for choosing a pool: the check itself decides)."""
    total = 0
    for job in todo:
        if is_transcript_path(job.path):
            try:
                if os.stat(state_file(cache_dir, job.path, rules, job.real)).st_mtime_ns >= job.mtime_ns:
                    continue
            except OSError:
                pass
        total += job.size
    return total


def check_one(path: str, rules: RuleSet | None, cache_dir: Path | None, split_jobs: int = 1,
              real: str | None = None) -> FileCheck:
    """One file's findings; `split_jobs` other than 1 lets a large transcript with nothing saved be
    checked by that many processes (0: one per core); `real`: its canonical path, when known."""
    if os.path.exists(path) and not os.path.isdir(path) and not is_regular_file(path):
        return FileCheck(problem=f"{path}: not a regular file (a pipe or device is never read)")
    try:
        if cache_dir is None or not is_transcript_path(path):
            return FileCheck(check_path(path, rules, split_jobs))
        if split_jobs != 1 and _job(path).size >= 2 * MIN_PART and load_state(
            state_file(cache_dir, path, rules, real), path, rules
        ).findings is None:
            return FileCheck(check_path(path, rules, split_jobs))
        findings, _, wrote = check_saved(path, cache_dir, rules, real)
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
                progress_to: TextIO | None = None, pool_from_bytes: int = POOL_FROM_BYTES) -> list[FileCheck]:
    """Each file's answer, in the order of `paths`; `jobs` processes (0: one per usable core) when
    there are at least `pool_from_bytes` to read; a progress line on `progress_to` (a terminal).

    The answers are the same whatever `jobs` is and whether the cache is used."""
    folders: dict[str, str] = {}
    todo = [_job(p, folders if cache_dir is not None else None) for p in paths]
    progress = None
    if progress_to is not None and todo:
        progress = Progress(progress_to, True, len(todo), sum(j.size for j in todo))
    processes = jobs or usable_cpus()
    alone = processes < 2 or len(todo) < 2
    # In a pool every core already has a file: a worker splitting one would only fight the others.
    split_jobs = jobs if alone else 1
    if not alone and cache_dir is not None and _to_read(todo, cache_dir, rules) < pool_from_bytes:
        alone = True

    def work(job: _Job) -> FileCheck:
        return check_one(job.path, rules, cache_dir, split_jobs, job.real)

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
