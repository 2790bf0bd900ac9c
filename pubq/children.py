"""The isolated children of a concurrent worker (``--isolate --concurrency N``).

Up to N children run at once, one job each, each killed at its own TTR; the worker selects on their
report pipes. Like the one-job :class:`~pubq.isolate.Isolator`, one child is forked *ahead* (the
standby, waiting for its job on a pipe) whenever a job starts, so the fork and the child's start-up
run beside the jobs in flight instead of in series with the worker's bookkeeping: each job still
gets a process of its own that ran nothing before. Jobs that won't pickle, and every job of a
worker that can use one CPU only (``standby_pays_off``), are forked directly.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import JobCrashedError, TtrExceededError
from .isolate import (
    FRAME,
    UNPICKLABLE,
    close_fd,
    execute_and_report,
    fork_child,
    fork_standby,
    kill_child,
    reap,
    write_all,
)
from .outcome import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from .events import ExecEvent
    from .heartbeat import Presence
    from .runner import JobRunner

#: A slot's key: (job id, lease token): the same id may come back under a new lease.
Key = tuple[int, int]


@dataclass
class _Standby:
    pid: int
    #: Parent's end of the report pipe, and of the job pipe (the job is written there, then closed).
    report_fd: int
    job_fd: int


@dataclass
class _Child:
    key: Key
    pid: int
    fd: int
    deadline: float  # monotonic
    ttr: int
    started: float
    buf: bytearray = field(default_factory=bytearray)


class Children:
    """Up to N isolated children, one per job, each with its own TTR; the parent selects on their pipes.

    ``ahead`` says whether another job is likely (the worker is not stopping): only then is a
    standby forked; None forks every job directly.
    """

    def __init__(self, runner: JobRunner, presence: Presence | None, *,
                 ahead: Callable[[], bool] | None = None) -> None:
        self.runner = runner
        self.presence = presence
        self.ahead = ahead
        self.by_fd: dict[int, _Child] = {}
        self.exiting: list[int] = []
        self.standby: _Standby | None = None

    def __len__(self) -> int:
        return len(self.by_fd)

    def start(self, key: Key, event: ExecEvent, ttr: int) -> None:
        pid, fd = self._dispatch(event, ttr)
        now = time.monotonic()
        self.by_fd[fd] = _Child(key, pid, fd, now + ttr, ttr, time.perf_counter())
        if self.standby is None and self.ahead is not None and self.ahead():
            self.standby = self._fork_standby()

    def _dispatch(self, event: ExecEvent, ttr: int) -> tuple[int, int]:
        """Hand the job to the standby (forking one when there is none), or fork a child for it when
        it won't pickle; (pid, report fd) of the child that runs it."""
        standby, self.standby = self.standby, None
        if self.ahead is not None:
            try:
                message = pickle.dumps((event.job, event.id, event.attempt, ttr))
            except Exception:  # noqa: BLE001 - a job that won't pickle is forked with the event in memory
                message = None
            if message is not None:
                if standby is None:
                    standby = self._fork_standby()
                try:
                    write_all(standby.job_fd, message)
                    close_fd(standby.job_fd)
                    return standby.pid, standby.report_fd
                except OSError:  # the standby died while it waited: fork directly instead
                    self._discard(standby)
                    standby = None
        if standby is not None:
            self._discard(standby)
        read_fd, write_fd = os.pipe()
        pid = fork_child([read_fd, *self.by_fd])
        if pid == 0:  # pragma: no cover - child
            execute_and_report(self.runner, event, write_fd)
        os.close(write_fd)
        return pid, read_fd

    def _fork_standby(self) -> _Standby:
        return _Standby(*fork_standby(self.runner, list(self.by_fd)))

    def _discard(self, standby: _Standby) -> None:
        """A standby not used: EOF on its job pipe makes it exit on its own (killed, if it is stuck)."""
        close_fd(standby.job_fd)
        close_fd(standby.report_fd)
        kill_child(standby.pid)
        self.exiting.append(standby.pid)

    def kill(self, job_id: int) -> None:
        """SIGKILL the child of ``job_id`` (a cancel; safe from the heartbeat thread)."""
        for child in list(self.by_fd.values()):
            if child.key[0] == job_id:
                kill_child(child.pid)

    def wait(self, timeout: float) -> list[tuple[Key, Outcome]]:
        self._reap(block=False)
        if not self.by_fd:
            return []
        now = time.monotonic()
        out = [self._overdue(c) for c in list(self.by_fd.values()) if c.deadline <= now]
        if out:
            return out
        wait = max(0.0, min(timeout, min(c.deadline for c in self.by_fd.values()) - now))
        ready, _, _ = select.select(list(self.by_fd), [], [], wait)
        for fd in ready:
            child = self.by_fd[fd]
            data = os.read(fd, 1 << 20)
            outcome = self._frames(child, data) if data else None
            if outcome is not None or not data:
                out.append((child.key, self._end(child, outcome)))
        return out

    def _frames(self, child: _Child, data: bytes) -> Outcome | None:
        child.buf += data
        buf = child.buf
        while len(buf) >= FRAME.size:
            need = FRAME.size + FRAME.unpack_from(buf)[0]
            if len(buf) < need:
                return None
            try:
                message = pickle.loads(bytes(buf[FRAME.size:need]))
            except Exception:  # noqa: BLE001 - an unreadable report is a crash
                message = UNPICKLABLE
            del buf[:need]
            if isinstance(message, tuple) and message and message[0] == "progress":
                if self.presence is not None:
                    self.presence.report_progress_for(child.key[0], message[1], message[2])
                continue
            if message is UNPICKLABLE or not isinstance(message, Outcome):
                kill_child(child.pid)
                return Outcome(ok=False, error=JobCrashedError("isolated job process sent an unreadable report"),
                               duration=time.perf_counter() - child.started)
            return message
        return None

    def _end(self, child: _Child, outcome: Outcome | None) -> Outcome:
        del self.by_fd[child.fd]
        close_fd(child.fd)
        if outcome is not None:
            self.exiting.append(child.pid)
            return outcome
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return Outcome(ok=False, error=JobCrashedError(f"isolated job process {reason} without reporting"),
                       duration=time.perf_counter() - child.started)

    def _overdue(self, child: _Child) -> tuple[Key, Outcome]:
        kill_child(child.pid)
        del self.by_fd[child.fd]
        close_fd(child.fd)
        os.waitpid(child.pid, 0)
        return child.key, Outcome(ok=False, duration=time.perf_counter() - child.started,
                                  error=TtrExceededError(f"job exceeded its TTR of {child.ttr} s and was killed"))

    def kill_all(self) -> None:
        if self.standby is not None:
            standby, self.standby = self.standby, None
            self._discard(standby)
        for child in list(self.by_fd.values()):
            kill_child(child.pid)
            close_fd(child.fd)
            self.exiting.append(child.pid)
        self.by_fd.clear()
        self._reap(block=True)

    def _reap(self, *, block: bool) -> None:
        self.exiting = reap(self.exiting, block=block)
