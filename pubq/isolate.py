"""Isolate mode: run every job in a child forked from the (already imported) worker.

The child only runs ``execute`` and reports the outcome through a pipe; the parent fires every
event and does every driver write, so afterError can never fire in both. A child still
running at its TTR is killed and the attempt fails with TtrExceededError; one that dies without a
complete report is a crashed attempt (JobCrashedError naming the signal or exit code).

One child is forked *ahead* (the standby) while the current job runs, and waits for the next job
on a pipe. A fork of a 40 MiB interpreter and the child's exit cost milliseconds of CPU; forked
ahead, that cost runs on the other core beside the parent's bookkeeping instead of in series with
it. Every job still gets a process of its own that ran nothing before. The standby is a fork of the
worker as it was before the job's ``beforeExec`` handlers ran: state a handler sets in the worker
does not reach the job (pass it in the job instead). A job that won't pickle is forked directly,
and so is every job of a worker that can run on one CPU only, where nothing can overlap.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import JobCrashedError, RetryableError, TtrExceededError

if TYPE_CHECKING:  # pragma: no cover
    from .events import ExecEvent
    from .outcome import Outcome
    from .runner import JobRunner

EXIT_DONE = 0
EXIT_RETRY = 3
EXIT_ERROR = 1
#: Signals a worker stops on; children ignore them so Ctrl-C on the terminal's process group
#: does not kill the job under the parent, which decides (finish, or kill on a second signal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
FRAME = struct.Struct("!Q")
#: ``Isolator._frames``: the report pipe carried something that is not a report.
UNPICKLABLE = object()


class Interrupted(BaseException):
    """Raised by a stop signal while the worker waits idle: leave the wait at once."""


class HardStop(BaseException):
    """Raised in the worker by a second stop signal: abandon the job and put it back."""


@dataclass
class _Child:
    pid: int
    #: Parent's end of the report pipe.
    report_fd: int
    #: Parent's end of the job pipe (standby children only; -1 once the job is sent).
    job_fd: int = -1


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_to_eof(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def kill_child(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux), looked up once in the worker rather than in every child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def fork_child(close_in_child: list[int]) -> int:
    """fork() with stop signals blocked across it, so none is handled by the worker's handler in the child.

    The child dies with the worker (SIGKILL on parent death, Linux): a job whose worker was killed
    has no one to report to, and will be reclaimed and run again, so it must not run on beside that.
    """
    prctl = _prctl()
    parent = os.getpid()
    _flush_stdio()  # else the child holds a copy of the worker's buffered output and writes it again
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the worker died before the line above took effect
                os._exit(EXIT_ERROR)
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            for fd in close_in_child:
                close_fd(fd)
        return pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: An isolated child sends progress at most this often (the parent writes it at its own pace).
PROGRESS_EVERY = 0.2


class _PipeReporter:
    """The child's ``ctx.progress``: length-prefixed ``("progress", fraction, message)`` frames on the
    report pipe, at most one per ``PROGRESS_EVERY``; a report that comes too soon is sent when its slot
    comes (a timer in the child), so the newest value always arrives. A cancel is the parent's
    business (it kills the child), so none is ever seen here."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.last = float("-inf")
        self.pending: tuple[float, str] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def report_progress(self, fraction: float, message: str = "") -> None:
        with self._lock:
            self.pending = (float(fraction), str(message))
            wait = self.last + PROGRESS_EVERY - time.monotonic()
            if wait <= 0:
                self._send()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._timer = None
            self._send()

    def _send(self) -> None:
        if self.pending is not None:
            body = pickle.dumps(("progress", *self.pending))
            self.pending = None
            self.last = time.monotonic()
            write_all(self.fd, FRAME.pack(len(body)) + body)

    def cancel_reason(self, job_id: int) -> str | None:
        return None


def execute_and_report(runner: JobRunner, event: ExecEvent, report_fd: int) -> None:
    """Child side: run the job (its progress frames go on the pipe as it runs), send a length-prefixed
    pickled outcome, exit. Never returns."""
    code = EXIT_ERROR
    try:
        reporter = _PipeReporter(report_fd)
        runner.reporter = reporter
        runner.hooks = None  # the parent's presence: not the child's to call
        outcome = runner.execute(event)
        if outcome.ok:
            code = EXIT_DONE
        elif isinstance(outcome.error, RetryableError):
            code = EXIT_RETRY
        reporter.flush()
        body = _dumps(outcome)
        write_all(report_fd, FRAME.pack(len(body)) + body)
    except BaseException:  # noqa: BLE001 - the child must always exit, never return into the worker
        try:
            os.write(2, tb.format_exc().encode(errors="replace"))
        except OSError:
            pass
        code = EXIT_ERROR
    finally:
        _flush_stdio()  # what the job printed; os._exit skips Python's own flush
        os._exit(code)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def standby_main(runner: JobRunner, job_fd: int, report_fd: int) -> None:
    """Standby child: wait for one job on the pipe (EOF without one: the worker is gone), run it."""
    from .events import ExecEvent

    try:
        data = _read_to_eof(job_fd)
        if not data:
            os._exit(0)
        job, job_id, attempt, ttr = pickle.loads(data)
        event = ExecEvent(queue=runner.queue, id=job_id, job=job, ttr=ttr, attempt=attempt)
    except BaseException:  # noqa: BLE001
        os._exit(EXIT_ERROR)
    execute_and_report(runner, event, report_fd)


def reap(pids: list[int], *, block: bool) -> list[int]:
    """Wait for exiting children (at once unless ``block``); returns the ones still running."""
    still = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            continue
        if not done:
            still.append(pid)
    return still


def fork_standby(runner: JobRunner, inherited: list[int]) -> tuple[int, int, int]:
    """Fork a child that waits for one job (:func:`standby_main`): ``(pid, report_fd, job_fd)``, the
    parent's ends of its report and job pipes. ``inherited`` are the parent's descriptors the child
    closes (besides these pipes' parent ends), so no other child's pipe stays open in it."""
    job_r, job_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = fork_child([job_w, report_r, *inherited])
    if pid == 0:  # pragma: no cover - child
        standby_main(runner, job_r, report_w)
    os.close(job_r)
    os.close(report_w)
    return pid, report_r, job_w


def _dumps(outcome: Outcome) -> bytes:
    """Pickle the outcome for the parent; fall back to text when the error or result won't pickle.

    The pipe joins two forks of one program, so pickle here is safe; payloads never use it.
    """
    try:
        return pickle.dumps(outcome)
    except Exception:  # noqa: BLE001
        from .errors import RecordedError
        from .outcome import Outcome

        err = outcome.error
        plain = Outcome(
            ok=outcome.ok,
            result=None,
            error=RecordedError(type(err).__name__, str(err), getattr(err, "code", "")) if err else None,
            traceback=outcome.traceback,
            duration=outcome.duration,
            memory_mib=outcome.memory_mib,
        )
        return pickle.dumps(plain)


def standby_pays_off() -> bool:
    """Whether forking ahead can overlap with the worker: only with more than one CPU to run on.

    On one CPU (a worker pinned with taskset, a 1-CPU container) the overlap is impossible and the
    live standby makes the worker's own writes copy shared pages: slower than a plain fork per job
    (see bench/README.md).
    """
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


class Isolator:
    """Runs jobs in child processes for one worker; ``close()`` when the worker stops.

    ``keep_ahead`` says whether another job is likely (the worker is not stopping): only then is
    a standby child forked. Without it (None), every job is forked directly.
    """

    def __init__(self, runner: JobRunner, *, keep_ahead: Callable[[], bool] | None = None,
                 on_progress: Callable[[float, str], None] | None = None) -> None:
        self.runner = runner
        self.keep_ahead = keep_ahead
        #: Receives the running child's progress reports (the worker's presence).
        self.on_progress = on_progress
        self._standby: _Child | None = None
        self._running: _Child | None = None
        self._exiting: list[int] = []  # children that reported and are exiting; reaped lazily

    def run(self, event: ExecEvent, ttr: int) -> Outcome:
        """Run ``event``'s job in a fresh child, wait up to ``ttr`` seconds, and return its outcome."""
        self._reap(block=False)
        started = time.perf_counter()
        child = None
        try:
            child = self._dispatch(event, ttr)
            if self.keep_ahead is not None and self.keep_ahead():
                self._standby = self._fork_standby(busy=child)
            self._running = child
            return self._collect(child, ttr, started)
        except HardStop:
            if child is not None:
                kill_child(child.pid)
                close_fd(child.report_fd)
                os.waitpid(child.pid, 0)
            raise
        finally:
            self._running = None

    def kill_running(self) -> None:
        """SIGKILL the child running the current job (a cancel; safe from another thread). Its
        attempt then ends as a crash, which the runner records as the cancel it was."""
        child = self._running
        if child is not None:
            kill_child(child.pid)

    def close(self) -> None:
        """Stop the standby child and reap every child (they have all reported, or been killed)."""
        if self._standby is not None:
            standby, self._standby = self._standby, None
            close_fd(standby.job_fd)  # EOF: the standby exits on its own
            close_fd(standby.report_fd)
            self._exiting.append(standby.pid)
        self._reap(block=True)

    # -- children ------------------------------------------------------------------------

    def _dispatch(self, event: ExecEvent, ttr: int) -> _Child:
        """Hand the job to the standby child, or fork one for it when there is none or it won't pickle."""
        standby, self._standby = self._standby, None
        if self.keep_ahead is not None:
            try:
                message = pickle.dumps((event.job, event.id, event.attempt, ttr))
            except Exception:  # noqa: BLE001 - a job that won't pickle is forked with the event in memory
                message = None
            if message is not None:
                if standby is None:
                    standby = self._fork_standby(busy=None)
                try:
                    write_all(standby.job_fd, message)
                    close_fd(standby.job_fd)
                    standby.job_fd = -1
                    return standby
                except OSError:  # the standby died while waiting: fork directly instead
                    self._discard(standby)
                    standby = None
        if standby is not None:
            self._discard(standby)
        return self._fork_direct(event)

    def _fork_direct(self, event: ExecEvent) -> _Child:
        read_fd, write_fd = os.pipe()
        pid = fork_child([read_fd])
        if pid == 0:  # pragma: no cover - child
            execute_and_report(self.runner, event, write_fd)
        os.close(write_fd)
        return _Child(pid, read_fd)

    def _fork_standby(self, busy: _Child | None) -> _Child:
        pid, report_fd, job_fd = fork_standby(self.runner, [busy.report_fd] if busy is not None else [])
        return _Child(pid, report_fd, job_fd)

    def _discard(self, child: _Child) -> None:
        kill_child(child.pid)
        close_fd(child.job_fd)
        close_fd(child.report_fd)
        self._exiting.append(child.pid)

    def _collect(self, child: _Child, ttr: int, started: float) -> Outcome:
        from .outcome import Outcome

        buf = bytearray()
        deadline = time.monotonic() + ttr
        outcome: Outcome | None = None
        try:
            while outcome is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    kill_child(child.pid)
                    os.waitpid(child.pid, 0)
                    return Outcome(ok=False, duration=time.perf_counter() - started,
                                   error=TtrExceededError(f"job exceeded its TTR of {ttr} s and was killed"))
                ready, _, _ = select.select([child.report_fd], [], [], left)
                if not ready:
                    continue
                data = os.read(child.report_fd, 1 << 20)
                if not data:
                    break
                buf += data
                frame = self._frames(buf)
                if frame is UNPICKLABLE:
                    break
                outcome = frame  # type: ignore[assignment]
        finally:
            close_fd(child.report_fd)
        if outcome is not None:
            self._exiting.append(child.pid)
            return outcome
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return Outcome(ok=False, error=JobCrashedError(f"isolated job process {reason} without reporting"),
                       duration=time.perf_counter() - started)

    def _frames(self, buf: bytearray) -> object:
        """Consume the complete frames in ``buf``: progress goes to ``on_progress``; returns the
        outcome once it is there, ``UNPICKLABLE`` for an unreadable frame (a crash), else None."""
        while len(buf) >= FRAME.size:
            need = FRAME.size + FRAME.unpack_from(buf)[0]
            if len(buf) < need:
                return None
            try:
                message = pickle.loads(bytes(buf[FRAME.size:need]))
            except Exception:  # noqa: BLE001 - an unreadable report is a crash
                return UNPICKLABLE
            del buf[:need]
            if isinstance(message, tuple) and message and message[0] == "progress":
                if self.on_progress is not None:
                    self.on_progress(message[1], message[2])
                continue
            return message
        return None

    def _reap(self, *, block: bool) -> None:
        self._exiting = reap(self._exiting, block=block)
