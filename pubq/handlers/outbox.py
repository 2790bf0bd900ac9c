"""Re-send outbox rows whose push failed (e.g. Redis was down), from any worker of the pipeline.

Wire it as ``on: {workerStart: …OutboxHandler.flush, workerLoop: …OutboxHandler.worker_loop}``; the
loop handler flushes at most once per :attr:`OutboxHandler.every` seconds per process.
"""

from __future__ import annotations

import logging
import time

from ..events import WorkerEvent
from ..publishing.service import service_for

log = logging.getLogger("pubq.publishing")


class OutboxHandler:
    #: Seconds between two flushes from one worker process.
    every: float = 30.0

    def __init__(self) -> None:
        self._last = float("-inf")

    def flush(self, event: WorkerEvent) -> None:
        self._last = time.monotonic()
        try:
            pushed, left = service_for(event.queue.app).flush_outbox()
        except Exception as exc:  # noqa: BLE001 - a worker never stops because the outbox could not flush
            log.warning("outbox flush failed (will try again): %s", exc)
            return
        if pushed or left:
            log.info("outbox flush: %s pushed, %s still pending", pushed, left)

    def worker_loop(self, event: WorkerEvent) -> None:
        if time.monotonic() - self._last >= self.every:
            self.flush(event)
