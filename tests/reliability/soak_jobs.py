"""The soak's job and handlers, imported by the worker processes (``jobs: [tests.reliability.soak_jobs]``).

Every record is one short line appended with ``O_APPEND`` to ``$PUBQ_SOAK_DIR/records.log``: the
kernel keeps a completed ``write`` whatever happens to the process afterwards, and no queue backend
is involved, so neither SIGKILL nor a Redis/PostgreSQL restart can lose or invent a record.

Lines (space separated, ``t`` is ``time.time()``)::

    exec        job attempt ok|fail pid ppid t_start t   the job body ran (isolated child or worker)
    after_exec  job attempt worker_pid t           the worker saw success and is about to ack
    after_error job attempt retry(0|1) worker_pid error_class t
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from pubq import Job

RECORDS = "records.log"


def record(line: str) -> None:
    """Append one line atomically (one write of well under PIPE_BUF bytes on a local file)."""
    path = os.path.join(os.environ["PUBQ_SOAK_DIR"], RECORDS)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class SoakFailure(RuntimeError):
    """The error the soak's failing jobs raise on every attempt."""


@dataclass
class SoakJob(Job):
    """Records each execution; ``fail`` jobs raise on every attempt (so they end in the registry)."""

    name = "soak.Work"
    key: int
    fail: bool = False
    sleep_ms: float = 0.0
    #: Free text; the soak's oversized payloads are otherwise valid jobs with a huge note.
    note: str = ""

    def execute(self, ctx: Any) -> int:
        started = time.time()
        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1000)
        status = "fail" if self.fail else "ok"
        record(f"exec {ctx.job_id} {ctx.attempt} {status} {os.getpid()} {os.getppid()} {started:.6f} "
               f"{time.time():.6f}")
        if self.fail:
            raise SoakFailure(f"soak job {self.key} fails on purpose")
        return self.key


class SoakRecorder:
    """afterExec / afterError handlers named in the soak's YAML; they run in the worker process."""

    def after_exec(self, event: Any) -> None:
        record(f"after_exec {event.id} {event.attempt} {os.getpid()} {time.time():.6f}")

    def after_error(self, event: Any) -> None:
        error = getattr(event.error, "error_class", None) or type(event.error).__name__
        record(f"after_error {event.id} {event.attempt} {int(bool(event.retry))} {os.getpid()} {error} "
               f"{time.time():.6f}")
