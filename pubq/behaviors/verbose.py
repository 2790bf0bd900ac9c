"""Console lines in the yii2-queue 2.3.8 format (``--verbose``), the same with and without ``--isolate``.

    2018-10-27 17:37:11 [1] pubq.jobs.CopyAssetJob (attempt: 1, pid: 32132) - Started
    2018-10-27 17:37:11 [1] pubq.jobs.CopyAssetJob (attempt: 1, pid: 32132) - Done (0.249 s, 12.5 MiB)
    2018-10-27 17:37:12 [2] pubq.jobs.CopyAssetJob (attempt: 1, pid: 32132) - Error (0.012 s)
    > ServerError: first line of the message
    Stack trace:
    #0 /app/pubq/runner.py(104): execute()
    #1 {main}

Done carries the peak memory of the process that ran the job (the isolated child's, or the
worker's); Error carries the duration only, and none when this worker did not run the attempt (a
lost worker's job). The stack trace is Yii's ``#i file(line): function()`` shape of the Python
traceback (:mod:`pubq.behaviors.trace`); the full traceback goes to the system log.

pubq's additions, each a line of the same shape: ``> follow-up failed: …`` after a Done or Error
line whose afterExec/afterError handler raised; ``Backend lost: …`` / ``Backend is back after N s``
around an outage; ``Put back (second stop signal)`` for a job a second stop signal interrupted; and
``Worker stops: <reason>`` before ``Worker is stopped``.

Colours (yellow date, grey title, green Started/Done, red Error) only when ``color`` is on.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .. import events as ev
from ..errors import error_name
from .base import Behavior
from .trace import php_trace

_RESET = "\x1b[0m"
_YELLOW = "\x1b[33m"
_GREY = "\x1b[90m"
_GREEN = "\x1b[32m"
_RED_BG = "\x1b[41m"
_RED = "\x1b[31m"


def format_mib(value: float) -> str:
    """12 → '12', 12.5 → '12.5', 12.345 → '12.35' (Yii prints memory without padding)."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return text or "0"


def format_uptime(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}:{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"


class VerboseBehavior(Behavior):
    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        color: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream or sys.stdout
        self.color = color
        self.clock = clock
        self.pid: int | None = None
        self.started_at: float | None = None

    def events(self) -> dict[str, Any]:
        return {
            ev.WORKER_START: self.worker_start,
            ev.BEFORE_EXEC: self.before_exec,
            ev.AFTER_EXEC: self.after_exec,
            ev.AFTER_ERROR: self.after_error,
            ev.WORKER_STOP: self.worker_stop,
        }

    # -- formatting ---------------------------------------------------------------------

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def _now(self) -> str:
        return dt.datetime.fromtimestamp(self.clock()).strftime("%Y-%m-%d %H:%M:%S")

    def _title(self, e: ev.ExecEvent) -> str:
        pid = f", pid: {self.pid}" if self.pid else ""
        return f"[{e.id}] {e.job_name} (attempt: {e.attempt}{pid})"

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _line(self, title: str, status: str) -> None:
        sep = self._c(_YELLOW, " - ")
        self._write(f"{self._c(_YELLOW, self._now())} {self._c(_GREY, title)}{sep}{status}")

    def _worker_line(self, status: str) -> None:
        self._line(f"[pid: {self.pid or os.getpid()}]", status)

    # -- events -------------------------------------------------------------------------

    def worker_start(self, e: ev.WorkerEvent) -> None:
        self.pid = e.pid
        self.started_at = self.clock()
        self._write(f"{self._c(_YELLOW, self._now())} {self._c(_GREY, f'[pid: {e.pid}]')}"
                    f"{self._c(_GREEN, ' - Worker is started')}")

    def worker_stop(self, e: ev.WorkerEvent) -> None:
        reason = e.extra.get("stop_message")
        if reason:
            self._line(f"[pid: {e.pid}]", f"Worker stops: {reason}")
        uptime = format_uptime(self.clock() - (self.started_at or self.clock()))
        self._write(f"{self._c(_YELLOW, self._now())} {self._c(_GREY, f'[pid: {e.pid}]')}"
                    f"{self._c(_GREEN, ' - Worker is stopped ')}{self._c(_YELLOW, f'({uptime})')}")

    def before_exec(self, e: ev.ExecEvent) -> None:
        self._line(self._title(e), self._c(_GREEN, "Started"))

    def after_exec(self, e: ev.ExecEvent) -> None:
        memory = e.memory_mib if e.memory_mib is not None else peak_rss_mib()
        details = f" ({e.duration or 0.0:.3f} s, {format_mib(memory)} MiB)"
        self._line(self._title(e), f"{self._c(_GREEN, 'Done')}{self._c(_YELLOW, details)}")
        self._follow_ups(e)

    def after_error(self, e: ev.ExecEvent) -> None:
        details = self._c(_YELLOW, f" ({e.duration:.3f} s)") if e.duration is not None else ""
        self._line(self._title(e), f"{self._c(_RED_BG, 'Error')}{details}")
        if e.error is not None:
            first = (str(e.error).lstrip().splitlines() or [""])[0]
            self._write(f"{self._c(_RED, f'> {error_name(e.error)}: ')}{self._c(_GREY, first)}")
            self._write(self._c(_GREY, "Stack trace:"))
            self._write(self._c(_GREY, "\n".join(php_trace(e.traceback))))
        self._follow_ups(e)

    def _follow_ups(self, e: ev.ExecEvent) -> None:
        """pubq's addition: a handler of this event that raised (kept as a follow-up failure)."""
        for f in e.follow_up_failures:
            first = (str(f.error).lstrip().splitlines() or [""])[0]
            self._write(self._c(_RED, f"> follow-up failed: {type(f.error).__name__}: {first} ({f.handler})"))

    # -- what the worker reports (pubq's additions) ------------------------------------------

    def backend_lost(self, error: BaseException) -> None:
        self._worker_line(self._c(_RED_BG, f"Backend lost: {error}; retrying with backoff"))

    def backend_back(self, seconds: float) -> None:
        self._worker_line(self._c(_GREEN, f"Backend is back after {seconds:.1f} s"))

    def put_back(self, e: ev.ExecEvent) -> None:
        self._line(self._title(e), self._c(_YELLOW, "Put back (second stop signal)"))


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (what Yii's ``memory_get_peak_usage`` reports)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
