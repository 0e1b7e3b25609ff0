"""Many independent jobs on every core: forked workers, the heaviest job first, answers in order.

Each worker is a fork of this process (so it shares what is already imported and loaded) with a
pipe it reads job numbers from and a pipe it answers on (msgpack). The parent hands the next job
to whichever worker answered (each has AHEAD jobs queued), so the cores stay busy to the end when
one job is much larger than the rest. A worker that dies without answering costs nothing but
time: its jobs are done in this process. On any exception here (Ctrl-C above all) every worker
is killed and reaped before it propagates, so no process outlives the call. Where a fork is not
safe or does not pay (no `os.fork`, threads running, one job, one process), the jobs run here one
after another.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

J = TypeVar("J")
R = TypeVar("R")
_LEN = struct.Struct("<I")
# Jobs handed to a worker before it answers: the next one waits in its pipe, so a worker never
# idles while this process (which shares the cores with it) gets round to reading its answer.
AHEAD = 2


@dataclass
class _Worker:
    pid: int
    jobs: int  # write end: job numbers
    answers: int  # read end: framed answers
    queued: deque[int] = field(default_factory=deque)  # the jobs it was given, in order, not answered


class Pool(Generic[J, R]):
    """Run `work` over `jobs` in up to `processes` processes; `weight` orders them (heaviest first)."""

    def __init__(self, work: Callable[[J], R], answer_type: type[R], processes: int) -> None:
        self.work, self.answer_type, self.processes = work, answer_type, processes

    def map(self, jobs: Sequence[J], weight: Callable[[J], int],
            done: Callable[[int, R], None] | None = None) -> list[R]:
        """The answers in the order of `jobs`; `done(i, answer)` is called as each one arrives."""
        order = sorted(range(len(jobs)), key=lambda i: -weight(jobs[i]))
        answers: dict[int, R] = {}
        processes = min(self.processes, len(jobs))
        if processes < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
            for i in order:
                answers[i] = self.work(jobs[i])
                if done is not None:
                    done(i, answers[i])
        else:
            self._forked(jobs, order, processes, answers, done)
        return [answers[i] for i in range(len(jobs))]

    def _forked(self, jobs: Sequence[J], order: list[int], processes: int, answers: dict[int, R],
                done: Callable[[int, R], None] | None) -> None:
        decode = msgspec.msgpack.Decoder(self.answer_type).decode
        pending = list(reversed(order))  # pop() gives the heaviest left
        orphans: list[int] = []  # jobs whose worker died: done here
        workers: list[_Worker] = []
        sel = selectors.DefaultSelector()

        def advance(worker: _Worker) -> None:
            """One more job for a worker that answered; without any left, it is done."""
            self._give(worker, pending)
            if not worker.queued:
                sel.unregister(worker.answers)
                workers.remove(worker)
                _finish(worker)

        try:
            for _ in range(processes):
                worker = self._fork(jobs, workers)
                workers.append(worker)
                sel.register(worker.answers, selectors.EVENT_READ, worker)
            for _ in range(AHEAD):  # round by round: every worker has a job before any has two
                for worker in workers:
                    self._give(worker, pending)
            while sel.get_map():
                for key, _ in sel.select():
                    worker = key.data
                    frame = _read_frame(worker.answers)
                    answer: R | None = None
                    if frame == b"":  # an answer it could not send: done here, the worker goes on
                        orphans.append(worker.queued.popleft())
                        advance(worker)
                        continue
                    if frame is not None:
                        try:
                            answer = decode(frame)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            answer = None
                    if answer is None:  # it died (or garbled its answer): its jobs are done here
                        orphans.extend(worker.queued)
                        sel.unregister(worker.answers)
                        workers.remove(worker)  # first: its descriptors are closed only once
                        _stop(worker)
                        if not workers:
                            orphans.extend(reversed(pending))
                            pending.clear()
                        continue
                    job = worker.queued.popleft()
                    answers[job] = answer
                    if done is not None:
                        done(job, answer)
                    advance(worker)
        finally:
            sel.close()
            for worker in workers:  # only after an exception here (Ctrl-C): stop and reap the rest
                _stop(worker)
        for i in orphans:
            answers[i] = self.work(jobs[i])
            if done is not None:
                done(i, answers[i])

    def _give(self, worker: _Worker, pending: list[int]) -> None:
        if not pending:
            return
        job = pending.pop()
        worker.queued.append(job)
        with suppress(OSError):  # it is gone: the next read says so and its jobs are done here
            os.write(worker.jobs, _LEN.pack(job))

    def _fork(self, jobs: Sequence[J], others: list[_Worker]) -> _Worker:
        job_r, job_w = os.pipe()
        ans_r, ans_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # a child never flushes: nothing buffered may be written twice
        pid = os.fork()
        if pid:
            os.close(job_r)
            os.close(ans_w)
            return _Worker(pid, job_w, ans_r)
        status = 1  # the child: never returns
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it at once; the parent reaps
            # A worker lives for one batch and its checks make no cycles (entries are plain records):
            # reference counting frees everything, so the collector's passes would be pure cost.
            gc.disable()
            os.close(job_w)
            os.close(ans_r)
            for other in others:  # held here, another worker would never see the end of its jobs
                os.close(other.jobs)
                os.close(other.answers)
            while True:
                got = _read_exact(job_r, _LEN.size)
                if got is None:
                    break  # the parent closed the pipe: no more jobs (or it is gone)
                (i,) = _LEN.unpack(got)
                try:
                    data = msgspec.msgpack.encode(self.work(jobs[i]))
                except (UnicodeEncodeError, msgspec.EncodeError):
                    data = b""  # not sendable (a lone surrogate in a string): the parent does this one
                _write_all(ans_w, _LEN.pack(len(data)) + data)
            status = 0
        except BaseException:  # any failure: the parent does the job itself
            pass
        finally:
            os._exit(status)  # no atexit handlers, no flush of the parent's buffered output


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes | None:
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return None
    return _read_exact(fd, _LEN.unpack(head)[0])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _finish(worker: _Worker) -> None:
    """No more jobs: close its pipes; it sees the end of its job pipe, exits and is reaped."""
    os.close(worker.jobs)
    os.close(worker.answers)
    with suppress(ChildProcessError):
        os.waitpid(worker.pid, 0)


def _stop(worker: _Worker) -> None:
    for fd in (worker.jobs, worker.answers):
        with suppress(OSError):
            os.close(fd)
    with suppress(OSError):
        os.kill(worker.pid, signal.SIGKILL)
    with suppress(OSError):
        os.waitpid(worker.pid, 0)
