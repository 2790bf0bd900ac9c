"""Isolate mode: run one job in a child forked from the (already imported) worker.

The child only runs ``execute`` and reports the outcome through a pipe; the parent fires every
event and does every driver write (spec §5.2), so afterError can never fire in both. Exit codes:
0 done, 3 retry (a RetryableError), anything else (exception, signal, crash) is a failed attempt.
A child still running at its TTR is killed and the attempt fails with TtrExceededError.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
import traceback as tb
from typing import TYPE_CHECKING

from .errors import JobCrashedError, RetryableError, TtrExceededError

if TYPE_CHECKING:  # pragma: no cover
    from .events import ExecEvent
    from .queue import Outcome, Queue

EXIT_DONE = 0
EXIT_RETRY = 3
EXIT_ERROR = 1
#: Signals a worker stops on; the child ignores them so Ctrl-C on the terminal's process group
#: does not kill the job under the parent, which decides (finish, or kill on a second signal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


class HardStop(BaseException):
    """Raised in the worker by a second stop signal: abandon the job and put it back."""


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(queue: Queue, event: ExecEvent, write_fd: int) -> None:
    code = EXIT_ERROR
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        outcome = queue.execute(event)
        outcome.memory_mib = _peak_rss_mib()
        if outcome.ok:
            code = EXIT_DONE
        elif isinstance(outcome.error, RetryableError):
            code = EXIT_RETRY
        report = _dumps(outcome)
        view = memoryview(report)
        while view:
            n = os.write(write_fd, view)
            view = view[n:]
    except BaseException:  # noqa: BLE001 - the child must always exit, never return into the worker
        try:
            os.write(2, tb.format_exc().encode(errors="replace"))
        except OSError:
            pass
        code = EXIT_ERROR
    finally:
        os._exit(code)


def _dumps(outcome: Outcome) -> bytes:
    """Pickle the outcome for the parent; fall back to text when the error or result won't pickle.

    The pipe joins two forks of one program, so pickle here is safe; payloads never use it.
    """
    try:
        return pickle.dumps(outcome)
    except Exception:  # noqa: BLE001
        from .queue import Outcome, RecordedError

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


def run_isolated(queue: Queue, event: ExecEvent, ttr: int) -> Outcome:
    """Fork, run the job in the child, wait up to ``ttr`` seconds, and return its outcome."""
    from .queue import Outcome

    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, measured by the parent's tests
        os.close(read_fd)
        _child(queue, event, write_fd)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + ttr
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)
        if timed_out:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
    except HardStop:
        _kill(pid)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    elapsed = time.perf_counter() - started
    if timed_out:
        return Outcome(ok=False, error=TtrExceededError(f"job exceeded its TTR of {ttr} s and was killed"),
                       duration=elapsed)
    code = os.waitstatus_to_exitcode(status)
    if chunks:
        try:
            outcome: Outcome = pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - a truncated report is a crash
            outcome = None  # type: ignore[assignment]
        if outcome is not None and code in (EXIT_DONE, EXIT_RETRY, EXIT_ERROR):
            return outcome
    if code < 0:
        reason = f"killed by signal {signal.Signals(-code).name}"
    else:
        reason = f"exited with code {code}"
    return Outcome(ok=False, error=JobCrashedError(f"isolated job process {reason} without reporting"),
                   duration=elapsed)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
