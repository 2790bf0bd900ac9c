"""The ``log`` behaviour: yii2-queue's LogBehavior lines on logger ``pubq.queue`` (the system log).

    [1] myapp.Resize is pushed.
    Worker 4711 is started.
    [1] myapp.Resize (attempt: 1, PID: 4711) is started.
    [1] myapp.Resize (attempt: 1, PID: 4711) is finished.
    [2] myapp.Resize (attempt: 1, PID: 4711) is finished with error: RuntimeError: disk full in /app/myapp/jobs.py:20.
    Traceback (most recent call last):
      …
    Worker 4711 is stopped.

``, PID: P`` (capital, as in Yii) is the worker's pid, left out where no worker runs the job (a
``sync`` queue). Where Yii appends PHP's stack trace to the error line, pubq appends the Python
traceback on the lines after it: this is where tracebacks go. Every record also carries a
``pubq`` dict (queue, job id, attempt, event, retry…) for the JSON log format.

Setting a top-level ``log:`` attaches this behaviour to every queue (see :mod:`pubq.config`).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import events as ev
from ..errors import error_name
from .base import Behavior
from .trace import origin

log = logging.getLogger("pubq.queue")


class LogBehavior(Behavior):
    def __init__(self) -> None:
        #: The worker's pid once a worker started on this queue (Yii's ``getWorkerPid()``).
        self.pid: int | None = None

    def events(self) -> dict[str, Any]:
        return {
            ev.AFTER_PUSH: self.after_push,
            ev.BEFORE_EXEC: self.before_exec,
            ev.AFTER_EXEC: self.after_exec,
            ev.AFTER_ERROR: self.after_error,
            ev.WORKER_START: self.worker_start,
            ev.WORKER_STOP: self.worker_stop,
        }

    def _title(self, e: ev.ExecEvent) -> str:
        pid = f", PID: {self.pid}" if self.pid else ""
        return f"[{e.id}] {e.job_name} (attempt: {e.attempt}{pid})"

    @staticmethod
    def _fields(e: ev.ExecEvent) -> dict[str, Any]:
        return {"queue": e.queue.name, "job_id": e.id, "job": e.job_name, "attempt": e.attempt}

    def after_push(self, e: ev.PushEvent) -> None:
        log.info("[%s] %s is pushed.", e.id, e.job.job_name(),
                 extra={"pubq": {"queue": e.queue.name, "job_id": e.id, "event": "push"}})

    def before_exec(self, e: ev.ExecEvent) -> None:
        log.info("%s is started.", self._title(e), extra={"pubq": {**self._fields(e), "event": "start"}})

    def after_exec(self, e: ev.ExecEvent) -> None:
        log.info("%s is finished.", self._title(e),
                 extra={"pubq": {**self._fields(e), "event": "done", "duration": e.duration}})

    def after_error(self, e: ev.ExecEvent) -> None:
        err = e.error
        name = error_name(err) if err is not None else "UnknownError"
        where = origin(e.traceback)
        text = f"{name}: {err}" + (f" in {where}" if where else "")
        tail = f"\n{e.traceback.rstrip()}" if e.traceback else ""
        log.error("%s is finished with error: %s.%s", self._title(e), text, tail,
                  extra={"pubq": {**self._fields(e), "event": "error", "error": name, "retry": e.retry}})

    def worker_start(self, e: ev.WorkerEvent) -> None:
        self.pid = e.pid
        log.info("Worker %s is started.", e.pid, extra={"pubq": {"queue": e.queue.name, "event": "worker_start"}})

    def worker_stop(self, e: ev.WorkerEvent) -> None:
        log.info("Worker %s is stopped.", e.pid, extra={"pubq": {"queue": e.queue.name, "event": "worker_stop",
                                                                "stop_reason": e.extra.get("stop_reason")}})
