"""The worker loop: reclaim → reserve → run → outcome, with Yii's signals and limits.

``run`` drains what is due and exits 0; ``listen`` waits for work forever. A first TERM/INT/QUIT/HUP
lets the running job finish (an idle worker exits at once); a second one puts the job back and
stops. Outages are ridden out by a :class:`~pubq.drivers.resilient.ResilientDriver` view with the
worker's own budget; every outcome is written by a :class:`~pubq.runner.JobRunner`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .concurrent import ConcurrentLoop
from .drivers.base import Driver, Reservation
from .drivers.resilient import OutageBudget, ResilientDriver
from .errors import BackendUnavailableError, DriverError
from .heartbeat import DEFAULT_HEARTBEAT, Presence, new_worker_id
from .isolate import STOP_SIGNALS, HardStop, Interrupted, Isolator, standby_pays_off
from .prefetch import Prefetch
from .runner import JobRunner

if TYPE_CHECKING:  # pragma: no cover
    from .queue import Queue

log = logging.getLogger("pubq.worker")

#: Seconds between two reclaim sweeps of one worker.
RECLAIM_EVERY = 1.0


_Interrupted = Interrupted


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
        give_up_after: float | None = None,
        on_backend_lost: Callable[[DriverError], None] | None = None,
        on_backend_back: Callable[[float], None] | None = None,
        on_put_back: Callable[[ev.ExecEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.queue = queue
        self.isolate = isolate
        #: Jobs in flight at most (spec §7.11); default: the queue's ``concurrency`` setting (1).
        self.concurrency = max(1, int(concurrency if concurrency is not None
                                      else getattr(queue.config, "concurrency", 1)))
        self._concurrent: ConcurrentLoop | None = None
        self.max_jobs = max_jobs
        self.max_seconds = max_seconds
        self.memory_limit_mib = memory_limit_mib
        self.install_signals = install_signals
        #: Seconds one outage may last before ``run`` gives up (``listen`` never does); default: the
        #: config's ``give_up_after``.
        self.give_up_after = give_up_after
        self.on_backend_lost = on_backend_lost
        self.on_backend_back = on_backend_back
        #: Told when a second stop signal put the running job back (the console says so).
        self.on_put_back = on_put_back
        self.clock = clock
        self.jobs = 0
        self.stopping = False
        self.signals = 0
        #: Why the loop ended: drained, max-jobs, max-seconds, memory-limit, signal, handler, outage.
        self.stop_reason: str | None = None
        #: The same in words for the console and the log ("--max-seconds 5 reached").
        self.stop_message: str = ""
        self._signal: int | None = None
        self._state = "busy"  # idle (waiting for work) | busy | job (running a job)
        self._started = clock()
        self._last_reclaim = float("-inf")
        self._previous_handlers: dict[int, Any] = {}
        self._isolator: Isolator | None = None
        #: Jobs held ahead and acks written in batches (one job at a time, no isolate, a driver that can).
        self._prefetch: Prefetch | None = None
        self._listening = False
        self._runner: JobRunner | None = None
        self.exit_code = 0
        #: Registry identity (spec §7.2), beat every ``heartbeat`` s (default: the queue's ``heartbeat``
        #: setting) by :mod:`pubq.heartbeat`; 0 keeps the worker out of the registry.
        self.worker_id = new_worker_id()
        self.heartbeat = heartbeat if heartbeat is not None else getattr(queue.config, "heartbeat", DEFAULT_HEARTBEAT)
        self.presence: Presence | None = None
        #: Whether the queue was paused the last time nothing could be reserved.
        self.paused = False

    # -- public entry points -----------------------------------------------------------

    def run(self) -> int:
        """Drain due jobs, then return (cron mode)."""
        return self._work(listen=False, timeout=0)

    def listen(self, timeout: int = 3) -> int:
        """Work forever; ``timeout`` is the longest single blocking wait."""
        return self._work(listen=True, timeout=timeout)

    # -- the loop ----------------------------------------------------------------------

    def _driver(self, listen: bool) -> Driver:
        """This worker's view of the queue's driver, with the worker's outage budget."""
        queue = self.queue
        if listen:
            give_up, deadline = None, None
        else:
            config_budget = queue.app.config.give_up_after if queue.app is not None else 10.0
            give_up = self.give_up_after if self.give_up_after is not None else config_budget
            deadline = self._started + self.max_seconds if self.max_seconds is not None else None
        # listen never gives up on an outage, but stops riding one out at --max-seconds (and ends
        # normally there); run's --max-seconds is its deadline (then it exits 1, spec §5.10).
        self._listening = listen
        budget = OutageBudget(give_up_after=give_up, deadline=deadline, abort=self._should_abort,
                              on_lost=self.on_backend_lost, on_back=self.on_backend_back)
        inner = queue.driver
        if isinstance(inner, ResilientDriver):
            return inner.with_budget(budget, holder=self.worker_id)
        return ResilientDriver(inner, budget=budget, label=f"queue {queue.name}", holder=self.worker_id)

    def _out_of_time(self) -> bool:
        return self.max_seconds is not None and self.clock() - self._started >= self.max_seconds

    def _should_abort(self) -> bool:
        """Stop retrying an unreachable backend: the worker is stopping, or a listen reached --max-seconds."""
        return self.stopping or (self._listening and self._out_of_time())

    def _work(self, *, listen: bool, timeout: int) -> int:
        queue = self.queue
        self._runner = JobRunner(queue, self._driver(listen), clock=self.clock)
        worker_event = ev.WorkerEvent(queue=queue, pid=os.getpid())
        if self.install_signals:
            self._install()
        if self.concurrency > 1:
            self._concurrent = ConcurrentLoop(self, self._runner, self.concurrency, isolate=self.isolate)
        elif self.isolate:
            ahead = self._more_jobs_expected if standby_pays_off() else None
            self._isolator = Isolator(self._runner, keep_ahead=ahead, on_progress=self._relay_progress)
        elif getattr(self._runner.driver, "prefetch", False):
            self._prefetch = Prefetch(self._runner.driver, grace=float(getattr(queue.config, "grace", 0) or 0),
                                      on_refused=self._runner.ack_refused, clock=self.clock)
        self._start_presence()
        try:
            queue.bus.trigger(ev.WORKER_START, worker_event)
            if worker_event.exit_code is not None:
                self._stop("handler", f"a workerStart handler set exit code {worker_event.exit_code}")
                return worker_event.exit_code
            try:
                if self._concurrent is not None:
                    self._concurrent.run(listen, timeout, worker_event)
                else:
                    self._loop(listen, timeout, worker_event)
            except BackendUnavailableError as exc:
                self._stop("outage", "the backend is unavailable")
                log.error("%s; worker stops", exc)
                raise
            finally:
                if self.stop_reason is not None:
                    log.info("worker %s stops: %s", worker_event.pid, self.stop_message)
                worker_event.extra["stop_reason"] = self.stop_reason
                worker_event.extra["stop_message"] = self.stop_message
                queue.bus.trigger(ev.WORKER_STOP, worker_event)
            return worker_event.exit_code if worker_event.exit_code is not None else self.exit_code
        finally:
            if self.presence is not None:
                self.presence.stop()
            if self._isolator is not None:
                self._isolator.close()
                self._isolator = None
            self._prefetch = None
            if self.install_signals:
                self._restore()

    def _loop(self, listen: bool, timeout: int, worker_event: ev.WorkerEvent) -> None:
        queue = self.queue
        runner = self._runner
        assert runner is not None
        r: Reservation | None = None
        held_since = self.clock()
        has_loop_handlers = queue.bus.has(ev.WORKER_LOOP)
        while True:
            if has_loop_handlers:
                queue.bus.trigger(ev.WORKER_LOOP, worker_event)
                if worker_event.exit_code is not None:
                    self._stop("handler", f"a workerLoop handler set exit code {worker_event.exit_code}")
                    break
            if self._limit_reached():
                break
            self._maybe_reclaim()
            if r is None:
                held_since = self.clock()
                r = self._reserve(self._wait_for(timeout) if listen else 0)
                if self._prefetch is not None:
                    held_since = self._prefetch.held_since
                if r is None and not self.stopping and self._queue_paused(listen) and not listen:
                    self.stop_reason = "paused"
                    break
                if r is None:
                    if self.stopping:
                        self._stop_by_signal()
                        break
                    if not listen:
                        self._stop("drained", "no job is due")
                        break
                    continue
            try:
                r, held_since = self._process(r, held_since)
            except HardStop:
                self._stop_by_signal()
                r = None
                break
        if r is not None:
            # A stop (signal, --max-seconds) landed during the fused ack-and-reserve: the next job
            # is held but will not run. Put it back now, uncounted, instead of leaving it reserved
            # until its TTR passes.
            runner.release(r)
        if self._prefetch is not None:
            self._prefetch.close(runner.release)  # acks written, held jobs back uncounted

    # -- presence and pause (pubq.heartbeat) ---------------------------------------------------

    @property
    def idle(self) -> bool:
        return self._state == "idle"

    def _start_presence(self) -> None:
        """Register in the worker registry and beat; the runner tells it when jobs start and end."""
        if not self.heartbeat or self._runner is None:
            return
        driver = self._runner.driver
        self.presence = Presence(getattr(driver, "inner", driver), queue=self.queue.name, worker=self,
                                 worker_id=self.worker_id, interval=self.heartbeat,
                                 on_cancel=(lambda _reason: self._isolator.kill_running()) if self._isolator else None,
                                 on_cancel_job=self._concurrent.cancel if self._concurrent else None)
        self._runner.hooks = self.presence
        self.presence.start()

    def _relay_progress(self, fraction: float, message: str) -> None:
        if self.presence is not None:
            self.presence.report_progress(fraction, message)

    def _queue_paused(self, listen: bool) -> bool:
        """Nothing was reserved: is it because the queue is paused? (One cheap read; a listening
        worker logs the change, ``run`` stops and its command says so.)"""
        assert self._runner is not None
        try:
            paused = self._runner.driver.paused()
        except DriverError:
            paused = False
        if paused != self.paused and listen:
            log.warning("queue %s is %s", self.queue.name, "paused: reserving nothing until resumed" if paused
                        else "resumed")
        self.paused = paused
        return paused

    def _wait_for(self, timeout: int) -> float:
        if self.max_seconds is None:
            return timeout
        left = self.max_seconds - (self.clock() - self._started)
        return max(0.0, min(timeout, left))

    def _stop(self, reason: str, message: str) -> None:
        """Record why the loop ends (the first reason wins)."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message

    def _stop_by_signal(self) -> None:
        name = signal.Signals(self._signal).name if self._signal is not None else "stop signal"
        if self.signals >= 2:
            name = f"second {name}"
        self._stop("signal", f"{name} received")

    def _limit_reached(self) -> bool:
        if self.stopping:
            if self.stop_reason is None:
                self._stop_by_signal()
            return True
        if self.max_jobs is not None and self.jobs >= self.max_jobs:
            self._stop("max-jobs", f"--max-jobs {self.max_jobs} reached")
            return True
        if self.max_seconds is not None and self.clock() - self._started >= self.max_seconds:
            self._stop("max-seconds", f"--max-seconds {self.max_seconds:g} reached")
            return True
        # Checked after a job (not before the first): the limit is for jobs that leak.
        if self.memory_limit_mib is not None and self.jobs:
            rss = rss_mib()
            if rss > self.memory_limit_mib:
                log.warning("memory limit of %s MiB reached (%.1f MiB); worker stops", self.memory_limit_mib, rss)
                self._stop("memory-limit", f"--memory-limit {self.memory_limit_mib:g} MiB reached ({rss:.1f} MiB)")
                self.stopping = True
                return True
        return False

    def _more_jobs_expected(self) -> bool:
        """Whether to fork a standby child ahead: not when the worker is about to stop."""
        return not self.stopping and (self.max_jobs is None or self.jobs < self.max_jobs)

    def _reserve(self, timeout: float) -> Reservation | None:
        assert self._runner is not None
        self._state = "idle"
        try:
            if self.stopping:
                return None
            pf = self._prefetch
            if pf is None:
                r = self._runner.driver.reserve(timeout)
            else:
                room = None if self.max_jobs is None else max(1, self.max_jobs - self.jobs)
                self._state = "busy"  # the pending acks are written in this call: never cut it short
                r = pf.next(room)
                self._state = "idle"
                if r is not None and self.stopping:  # a stop landed in that call: this job will not run
                    pf.put_back(r)
                    return None
                if r is None and timeout > 0 and not self.stopping:
                    r = pf.wait(timeout, room)
            if r is not None:
                self.paused = False
            return r
        except _Interrupted:
            return None
        except BackendUnavailableError:
            if self._should_abort():  # the loop ends with the signal or --max-seconds as its reason
                return None
            raise
        finally:
            self._state = "busy"

    def _maybe_reclaim(self) -> None:
        now = self.clock()
        if now - self._last_reclaim < RECLAIM_EVERY:
            return
        self._last_reclaim = now
        runner = self._runner
        assert runner is not None
        # Interruptible, like the wait for a job: a stop signal leaves at once, also while the
        # backend is down and the driver is reconnecting. Whatever a cut-off sweep had taken is
        # held for the policy's ``hold`` and then reclaimed again, as from a dead worker.
        try:
            try:
                self._state = "idle"
                if self.stopping:
                    return
                items = runner.driver.reclaim_expired(100)
            finally:
                self._state = "busy"
        except _Interrupted:
            return
        except BackendUnavailableError:
            if self._should_abort():
                return
            raise  # the outage budget is spent: reclaim and reserve share it
        except DriverError as exc:
            log.warning("reclaim failed: %s", exc)
            return
        for item in items:
            runner.recover(item)

    def _process(self, r: Reservation, held_since: float) -> tuple[Reservation | None, float]:
        """Run one reservation to its outcome; returns the next one (and since when it is held)
        when the ack was fused with the next reserve."""
        runner = self._runner
        assert runner is not None
        event = runner.begin(r)
        if event.limited:  # back delayed for its limit key: not an attempt, not a job of --max-jobs
            return None, held_since
        self.jobs += 1
        if event.error is not None:  # invalid payload: final failure at once, never retried
            runner.failed(r, event, event.error, "")
            return None, held_since
        if event.handled:  # a beforeExec handler skipped it
            before = self.clock()
            if self._prefetch is not None:
                runner.done(r)
                self._prefetch.ack_later(r)
                return None, before
            return runner.ack(r, reserve_next=not self._limit_reached())[1], before
        self._state = "job"
        try:
            if self._isolator is not None:
                outcome = self._isolator.run(event, r.ttr)
            else:
                outcome = runner.execute(event)
        except HardStop:
            self._state = "busy"
            runner.release(r)
            log.warning("[%s] %s (attempt: %s): second stop signal: job put back, worker stops",
                        r.job_id, event.job_name, r.attempt)
            if self.on_put_back is not None:
                self.on_put_back(event)
            raise
        finally:
            self._state = "busy"
        if not outcome.ok:
            runner.failed(r, event, outcome.error, outcome.traceback, outcome=outcome)  # type: ignore[arg-type]
            return None, held_since
        # The next job (when the ack is fused with its reserve) is held from no later than now.
        before = self.clock()
        if self._prefetch is not None:
            if runner.confirm_success(r, event, outcome, held_since=held_since):
                runner.done(r)
                self._prefetch.ack_later(r)
            return None, before
        _, nxt = runner.succeeded(r, event, outcome, held_since=held_since, reserve_next=not self._limit_reached())
        return nxt, before

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
        if self._signal is None:
            self._signal = signum
        if self._state == "idle":
            raise _Interrupted()
        if self.signals >= 2 and self._state == "job":
            raise HardStop()
