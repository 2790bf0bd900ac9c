"""The worker loop: reclaim → reserve → execute → ack / retry / fail, with Yii's signals and limits.

``run`` drains what is due and exits 0; ``listen`` waits for work forever. A first TERM/INT/QUIT/HUP
lets the running job finish (an idle worker exits at once); a second one puts the job back and
stops. Outages are ridden out by :class:`~pubq.drivers.resilient.ResilientDriver`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .drivers.base import Reservation
from .drivers.resilient import ResilientDriver
from .errors import BackendUnavailableError, DriverError
from .isolate import STOP_SIGNALS, HardStop, Isolator, standby_pays_off

if TYPE_CHECKING:  # pragma: no cover
    from .queue import Queue

log = logging.getLogger("pubq.worker")

#: Seconds between two reclaim sweeps of one worker.
RECLAIM_EVERY = 1.0
#: How long a reclaimed job is held by the worker recovering it.
RECLAIM_HOLD = 60.0


class _Interrupted(BaseException):
    """Raised by a stop signal while the worker waits idle: leave the wait at once."""


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return 0.0


class Worker:
    def __init__(
        self,
        queue: Queue,
        *,
        isolate: bool = True,
        max_jobs: int | None = None,
        max_seconds: float | None = None,
        memory_limit_mib: float | None = None,
        install_signals: bool = True,
        give_up_after: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.isolate = isolate
        self.max_jobs = max_jobs
        self.max_seconds = max_seconds
        self.memory_limit_mib = memory_limit_mib
        self.install_signals = install_signals
        self.give_up_after = give_up_after
        self.clock = clock
        self.jobs = 0
        self.stopping = False
        self.signals = 0
        self._state = "busy"  # idle (waiting for work) | busy | job (running a job)
        self._started = clock()
        self._last_reclaim = float("-inf")
        self._previous_handlers: dict[int, Any] = {}
        self._isolator: Isolator | None = None
        self.exit_code = 0

    # -- public entry points -----------------------------------------------------------

    def run(self) -> int:
        """Drain due jobs, then return (cron mode)."""
        return self._work(listen=False, timeout=0)

    def listen(self, timeout: int = 3) -> int:
        """Work forever; ``timeout`` is the longest single blocking wait."""
        return self._work(listen=True, timeout=timeout)

    def drain(self) -> None:
        """Process everything due without signals or worker events (the sync driver's push)."""
        self.isolate = False
        r = self.queue.driver.reserve(0, grace=self.queue.config.grace)
        while r is not None:
            r = self._process(r)

    # -- the loop ----------------------------------------------------------------------

    def _work(self, *, listen: bool, timeout: int) -> int:
        queue = self.queue
        inner = queue.driver
        budget = None if listen else (self.max_seconds or self.give_up_after)
        if isinstance(inner, ResilientDriver):
            saved = (inner.give_up_after, inner.abort)
            inner.give_up_after, inner.abort = budget, (lambda: self.stopping)
        else:
            queue.driver = ResilientDriver(inner, give_up_after=budget, abort=lambda: self.stopping)
        wevent = ev.WorkerEvent(queue=queue, pid=os.getpid())
        if self.install_signals:
            self._install()
        if self.isolate:
            ahead = self._more_jobs_expected if standby_pays_off() else None
            self._isolator = Isolator(queue, keep_ahead=ahead)
        try:
            queue.bus.trigger(ev.WORKER_START, wevent)
            if wevent.exit_code is not None:
                return wevent.exit_code
            try:
                self._loop(listen, timeout, wevent)
            except BackendUnavailableError as exc:
                log.error("%s; worker stops", exc)
                raise
            finally:
                queue.bus.trigger(ev.WORKER_STOP, wevent)
            return wevent.exit_code if wevent.exit_code is not None else self.exit_code
        finally:
            if self._isolator is not None:
                self._isolator.close()
                self._isolator = None
            queue.driver = inner
            if isinstance(inner, ResilientDriver):
                inner.give_up_after, inner.abort = saved
            if self.install_signals:
                self._restore()

    def _loop(self, listen: bool, timeout: int, wevent: ev.WorkerEvent) -> None:
        queue = self.queue
        r: Reservation | None = None
        has_loop_handlers = queue.bus.has(ev.WORKER_LOOP)
        while True:
            if has_loop_handlers:
                queue.bus.trigger(ev.WORKER_LOOP, wevent)
                if wevent.exit_code is not None:
                    break
            if self._limit_reached():
                break
            self._maybe_reclaim()
            if r is None:
                r = self._reserve(self._wait_for(timeout) if listen else 0)
                if r is None:
                    if self.stopping or not listen:
                        break
                    continue
            try:
                r = self._process(r)
            except HardStop:
                log.warning("second stop signal: job put back, worker stops")
                r = None
                break
        if r is not None:
            # A stop (signal, --max-seconds) landed during the fused ack-and-reserve: the next job
            # is held but will not run. Put it back now, uncounted, instead of leaving it reserved
            # until its TTR passes (issue #6 soak).
            queue.driver.release(r)

    def _wait_for(self, timeout: int) -> float:
        if self.max_seconds is None:
            return timeout
        left = self.max_seconds - (self.clock() - self._started)
        return max(0.0, min(timeout, left))

    def _limit_reached(self) -> bool:
        if self.stopping:
            return True
        if self.max_jobs is not None and self.jobs >= self.max_jobs:
            return True
        if self.max_seconds is not None and self.clock() - self._started >= self.max_seconds:
            return True
        # Checked after a job (not before the first): the limit is for jobs that leak.
        if self.memory_limit_mib is not None and self.jobs:
            rss = rss_mib()
            if rss > self.memory_limit_mib:
                if not self.stopping:
                    log.warning("memory limit of %s MiB reached (%.1f MiB); worker stops", self.memory_limit_mib, rss)
                self.stopping = True
                return True
        return False

    def _more_jobs_expected(self) -> bool:
        """Whether to fork a standby child ahead: not when the worker is about to stop."""
        return not self.stopping and (self.max_jobs is None or self.jobs < self.max_jobs)

    def _reserve(self, timeout: float) -> Reservation | None:
        self._state = "idle"
        try:
            if self.stopping:
                return None
            return self.queue.driver.reserve(timeout, grace=self.queue.config.grace)
        except _Interrupted:
            return None
        finally:
            self._state = "busy"

    def _maybe_reclaim(self) -> None:
        now = self.clock()
        if now - self._last_reclaim < RECLAIM_EVERY:
            return
        self._last_reclaim = now
        try:
            items = self.queue.driver.reclaim_expired(100, hold=RECLAIM_HOLD)
        except DriverError as exc:
            log.warning("reclaim failed: %s", exc)
            return
        for item in items:
            self.queue.recover(item)

    def _process(self, r: Reservation) -> Reservation | None:
        """Run one reservation to its outcome; returns the next one when the ack was fused."""
        queue = self.queue
        driver = queue.driver
        event = queue.begin(r)
        self.jobs += 1
        if event.error is not None:  # invalid payload: final failure at once, never retried
            queue.failed(event, event.error, "")
            return None
        if event.handled:  # a beforeExec handler skipped it
            return self._ack(r)
        self._state = "job"
        try:
            if self._isolator is not None:
                outcome = self._isolator.run(event, r.ttr)
            else:
                outcome = queue.execute(event)
        except HardStop:
            self._state = "busy"
            driver.release(r)
            raise
        finally:
            self._state = "busy"
        if not outcome.ok:
            queue.failed(event, outcome.error, outcome.traceback, outcome=outcome)  # type: ignore[arg-type]
            return None
        queue.succeeded(event, outcome)
        return self._ack(r)

    def _ack(self, r: Reservation) -> Reservation | None:
        driver = self.queue.driver
        if self._limit_reached():
            ok, nxt = driver.ack(r), None
        else:
            ok, nxt = driver.ack_and_reserve(r, grace=self.queue.config.grace)
        if not ok:
            log.warning("[%s] late ack refused: the job was reclaimed after its TTR and is not counted twice",
                        r.job_id)
        return nxt

    # -- signals -----------------------------------------------------------------------

    def _install(self) -> None:
        for sig in STOP_SIGNALS:
            try:
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                return

    def _restore(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping = True
        if self._state == "idle":
            raise _Interrupted()
        if self.signals >= 2 and self._state == "job":
            raise HardStop()
