"""The ``log`` behaviour: one structured record per lifecycle step on logger ``pubq.queue``.

The full traceback of a failure goes here (the system log); the console shows one line only.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import events as ev
from .base import Behavior

log = logging.getLogger("pubq.queue")


class LogBehavior(Behavior):
    def events(self) -> dict[str, Any]:
        return {
            ev.AFTER_PUSH: self.after_push,
            ev.BEFORE_EXEC: self.before_exec,
            ev.AFTER_EXEC: self.after_exec,
            ev.AFTER_ERROR: self.after_error,
            ev.WORKER_START: self.worker_start,
            ev.WORKER_STOP: self.worker_stop,
        }

    @staticmethod
    def _fields(e: ev.ExecEvent) -> dict[str, Any]:
        return {"queue": e.queue.name, "job_id": e.id, "job": e.job_name, "attempt": e.attempt}

    def after_push(self, e: ev.PushEvent) -> None:
        log.info("[%s] %s is pushed.", e.id, e.job.job_name(),
                 extra={"pubq": {"queue": e.queue.name, "job_id": e.id, "event": "push"}})

    def before_exec(self, e: ev.ExecEvent) -> None:
        log.info("[%s] %s (attempt: %s) is started.", e.id, e.job_name, e.attempt,
                 extra={"pubq": {**self._fields(e), "event": "start"}})

    def after_exec(self, e: ev.ExecEvent) -> None:
        log.info("[%s] %s (attempt: %s) is finished.", e.id, e.job_name, e.attempt,
                 extra={"pubq": {**self._fields(e), "event": "done", "duration": e.duration}})

    def after_error(self, e: ev.ExecEvent) -> None:
        err = e.error
        name = getattr(err, "error_class", None) or type(err).__name__
        tail = f"\n{e.traceback.rstrip()}" if e.traceback else ""
        log.error("[%s] %s (attempt: %s) is finished with error: %s: %s (retry: %s).%s",
                  e.id, e.job_name, e.attempt, name, err, "yes" if e.retry else "no", tail,
                  extra={"pubq": {**self._fields(e), "event": "error", "error": name, "retry": e.retry}})

    def worker_start(self, e: ev.WorkerEvent) -> None:
        log.info("Worker %s is started.", e.pid, extra={"pubq": {"queue": e.queue.name, "event": "worker_start"}})

    def worker_stop(self, e: ev.WorkerEvent) -> None:
        log.info("Worker %s is stopped.", e.pid, extra={"pubq": {"queue": e.queue.name, "event": "worker_stop"}})
