"""Console lines in the yii2-queue 2.3.8 format (``--verbose``).

    2018-10-27 17:37:11 [1] pubq.jobs.CopyAssetJob (attempt: 1, pid: 32132) - Started
    2018-10-27 17:37:11 [1] pubq.jobs.CopyAssetJob (attempt: 1, pid: 32132) - Done (0.249 s, 12.5 MiB)

Colours (yellow date, grey title, green Started/Done, red Error) only when ``color`` is on; the
full traceback of an error is left to the system log.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .. import events as ev
from .base import Behavior

_RESET = "\x1b[0m"
_YELLOW = "\x1b[33m"
_GREY = "\x1b[90m"
_GREEN = "\x1b[32m"
_RED_BG = "\x1b[41m"


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

    # -- events -------------------------------------------------------------------------

    def worker_start(self, e: ev.WorkerEvent) -> None:
        self.pid = e.pid
        self.started_at = self.clock()
        self._line(f"[pid: {e.pid}]", "Worker is started")

    def worker_stop(self, e: ev.WorkerEvent) -> None:
        uptime = format_uptime(self.clock() - (self.started_at or self.clock()))
        self._line(f"[pid: {e.pid}]", f"Worker is stopped ({uptime})")

    def before_exec(self, e: ev.ExecEvent) -> None:
        self._line(self._title(e), self._c(_GREEN, "Started"))

    def after_exec(self, e: ev.ExecEvent) -> None:
        self._line(self._title(e), f"{self._c(_GREEN, 'Done')}{self._details(e)}")

    def after_error(self, e: ev.ExecEvent) -> None:
        self._line(self._title(e), f"{self._c(_RED_BG, 'Error')}{self._details(e)}")
        err = e.error
        name = getattr(err, "error_class", None) or type(err).__name__
        first = (str(err).splitlines() or [""])[0]
        self._write(f"> {name}: {first}" if first else f"> {name}")

    def _details(self, e: ev.ExecEvent) -> str:
        parts = []
        if e.duration is not None:
            parts.append(self._c(_YELLOW, f"{e.duration:.3f} s"))
        if e.memory_mib is not None:
            parts.append(self._c(_YELLOW, f"{format_mib(e.memory_mib)} MiB"))
        return f" ({', '.join(parts)})" if parts else ""
