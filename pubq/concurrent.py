"""Many jobs in flight in one worker (``--concurrency N``): threads, one event loop, or N children.

The worker's main thread owns every driver write and every event, exactly as in the one-job loop
(:mod:`pubq.worker`): it reserves up to its free slots in one driver step (``reserve_many``, fused
with the acks of what just finished: ``ack_and_reserve_many``), fires ``beforeExec``, hands each
job to an executor, and when an outcome comes back fires ``afterExec``/``afterError`` and writes it.
So no two handlers ever run at once, for one job or for two.

Executors, chosen per job:

- ``--no-isolate``, plain ``execute``: a pool of up to N daemon threads;
- ``--no-isolate``, ``async def execute``: one event loop on its own thread (a queue may hold both
  kinds; N bounds the sum);
- ``--isolate``: one forked child per job, up to N at once, each killed at its own TTR
  (:mod:`pubq.children`, with a standby forked ahead); no thread is started in the worker besides
  the heartbeat (which never runs a backend call across a fork).

A listening worker with jobs in flight and free slots waits for new work in a blocking reserve on
its reserver thread (``--no-isolate``: see :class:`_Reserver`) and for its jobs' ends on one queue,
whichever comes first; an isolating one selects on its children's pipes and looks at the queue
every ``POLL`` seconds.

Every guarantee holds per job: each reservation has its own lease and TTR clock, a cancel kills only its
own child (or sets only its own ``ctx.cancelled``), a first stop signal finishes everything in
flight while reserving nothing more, a second puts every job in flight back uncounted.
``--max-jobs`` counts finished jobs (no more are reserved than it allows); ``--memory-limit`` and
``--max-seconds`` stop the reserving and let the jobs in flight end.

Held ahead (``--no-isolate``, a driver that prefetches: Redis): short jobs would leave a slot empty
for a round trip each time one ends, so the worker also holds the jobs its slots finish in
:data:`AHEAD_WINDOW` (at most half the slots), reserved with the driver's ``ahead`` flag: a finished
slot starts one at once, and the ack and refill follow in one call. A held job whose lease aged past
:data:`~pubq.prefetch.STALE` is renewed before it starts; one whose worker died goes back uncounted;
a stop releases them uncounted. Slow jobs hold none (nothing waits behind a long job).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue as queue_mod
import threading
import time
import traceback as tb
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import events as ev
from .children import Children, Key
from .errors import BackendUnavailableError, JobCrashedError
from .isolate import Interrupted, standby_pays_off
from .outcome import Outcome
from .prefetch import STALE

if TYPE_CHECKING:  # pragma: no cover
    from .drivers.base import Reservation
    from .events import ExecEvent
    from .heartbeat import Presence
    from .runner import JobRunner
    from .worker import Worker

log = logging.getLogger("pubq.worker")

#: Longest wait for an outcome while a slot is free, where no reserver thread waits for new work
#: (isolate: no thread may hold a backend call across a fork): then the queue is looked at again.
#: An idle worker blocks in the driver instead.
POLL = 0.02
#: Longest wait for an outcome (or a reserver's reply) otherwise (a stop signal is acted on this fast).
SLICE = 0.1
#: Longest blocking reserve of the reserver thread: a stopping worker waits at most this long for it.
REARM = 0.5
#: Jobs held ahead of a free slot (``--no-isolate`` on a driver that prefetches): as many as the
#: slots finish within this many seconds at the recent job time, at most half the slots. A finished
#: slot then starts its next job at once; the ack and the refill follow in one call.
AHEAD_WINDOW = 0.05

#: What the main thread waits on: ``(key, outcome)`` of a finished job, or ``(None, reply)`` of the
#: reserver thread (``(held_since, reservations)``, or the exception its reserve raised).
Event = tuple[Key | None, Any]


def _crashed(exc: BaseException, started: float) -> Outcome:
    """A job that raised past ``execute``'s own net (``SystemExit``, ``KeyboardInterrupt``): a failed
    attempt, so its slot comes back (a pool thread that died with it would leak the slot for good)."""
    return Outcome(ok=False, error=JobCrashedError(f"job raised {type(exc).__name__}: {exc}"),
                   traceback=tb.format_exc(), duration=time.perf_counter() - started)


@dataclass
class _Slot:
    r: Reservation
    event: ExecEvent
    held_since: float


class _SlotReporter:
    """``ctx.progress``/``ctx.cancelled`` of one of several running jobs, through the presence."""

    def __init__(self, presence: Presence, job_id: int) -> None:
        self.presence = presence
        self.job_id = job_id

    def report_progress(self, fraction: float, message: str = "") -> None:
        self.presence.report_progress_for(self.job_id, fraction, message)

    def cancel_reason(self, job_id: int) -> str | None:
        return self.presence.cancel_reason(job_id)


def is_async_job(job: Any) -> bool:
    """Whether the job's ``execute`` is ``async def``."""
    return inspect.iscoroutinefunction(getattr(type(job), "execute", None))


class _Threads:
    """Up to ``size`` daemon threads running plain ``execute`` (daemon: a hard stop does not wait)."""

    def __init__(self, runner: JobRunner, size: int, done: queue_mod.SimpleQueue[Event]) -> None:
        self.runner = runner
        self.size = size
        self.done = done
        self.todo: queue_mod.SimpleQueue[tuple[Key, ExecEvent, Any] | None] = queue_mod.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy = 0

    def submit(self, key: Key, event: ExecEvent, reporter: Any) -> None:
        self.busy += 1
        if self.busy > len(self.threads) and len(self.threads) < self.size:
            t = threading.Thread(target=self._run, name=f"pubq-job-{len(self.threads) + 1}", daemon=True)
            self.threads.append(t)
            t.start()
        self.todo.put((key, event, reporter))

    def finished(self) -> None:
        self.busy -= 1

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            key, event, reporter = item
            started = time.perf_counter()
            try:
                outcome = self.runner.execute(event, reporter)
            except BaseException as exc:  # noqa: BLE001 - see _crashed
                outcome = _crashed(exc, started)
            self.done.put((key, outcome))

    def close(self) -> None:
        for _ in self.threads:
            self.todo.put(None)


class _Loop:
    """One asyncio event loop on its own thread for ``async def execute`` jobs."""

    def __init__(self, runner: JobRunner, done: queue_mod.SimpleQueue[Event]) -> None:
        self.runner = runner
        self.done = done
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pubq-async-jobs", daemon=True)
        self.thread.start()

    def submit(self, key: Key, event: ExecEvent, reporter: Any) -> None:
        async def run() -> None:
            started = time.perf_counter()
            try:
                outcome = await self.runner.execute_async(event, reporter)
            except BaseException as exc:  # noqa: BLE001 - see _crashed
                outcome = _crashed(exc, started)
            self.done.put((key, outcome))

        asyncio.run_coroutine_threadsafe(run(), self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=1.0)


class _Reserver:
    """A thread that waits for new work while jobs run (``listen``, no isolate): a bounded blocking
    ``reserve_many`` for the slots that were free when the queue last came back short.

    Without it a partly busy worker could only poll (it must also see its jobs finish); with it the
    main thread waits on one queue for whichever comes first, a finished job or a new reservation,
    and each is handled at once. The slots asked for are promised to the request until it answers,
    so what is in flight never passes N, and every job it reserves starts as soon as it arrives.
    """

    def __init__(self, runner: JobRunner, clock: Any, done: queue_mod.SimpleQueue[Event]) -> None:
        self.driver = runner.driver
        self.clock = clock
        self.done = done
        self.requests: queue_mod.SimpleQueue[tuple[int, float] | None] = queue_mod.SimpleQueue()
        self.thread: threading.Thread | None = None

    def ask(self, n: int, timeout: float) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="pubq-reserver", daemon=True)
            self.thread.start()
        self.requests.put((n, timeout))

    def _run(self) -> None:
        while (request := self.requests.get()) is not None:
            n, timeout = request
            held_since = self.clock()
            reply: Any
            try:
                reply = (held_since, self.driver.reserve_many(n, timeout))
            except BaseException as exc:  # noqa: BLE001 - the main thread decides (an outage, a stop)
                reply = exc
            self.done.put((None, reply))

    def close(self) -> None:
        if self.thread is not None:
            self.requests.put(None)


class ConcurrentLoop:
    """The worker loop with up to ``size`` jobs in flight (see the module docstring)."""

    def __init__(self, worker: Worker, runner: JobRunner, size: int, *, isolate: bool) -> None:
        self.worker = worker
        self.runner = runner
        self.size = max(1, int(size))
        self.isolate = isolate
        self.inflight: dict[Key, _Slot] = {}
        #: Jobs started (reserved and begun); ``worker.jobs`` counts the finished ones.
        self.started = 0
        self.done: queue_mod.SimpleQueue[Event] = queue_mod.SimpleQueue()
        self._threads: _Threads | None = None
        self._loop: _Loop | None = None
        self._children: Children | None = None
        self._reserver: _Reserver | None = None
        #: Slots promised to the reserver's pending request (0: none pending).
        self._asking = 0
        self._acks: list[Reservation] = []
        self._worker_event: ev.WorkerEvent | None = None
        #: Jobs reserved ahead of a free slot, with since when each is held (the driver's ``ahead``).
        self._held: deque[tuple[Reservation, float]] = deque()
        self._can_hold = not isolate and bool(getattr(runner.driver, "prefetch", False))
        #: Running average of a job's time (what AHEAD_WINDOW is turned into a count with).
        self._avg: float | None = None

    # -- the loop ------------------------------------------------------------------------------

    def run(self, listen: bool, timeout: int, worker_event: ev.WorkerEvent) -> None:
        w = self.worker
        has_loop_handlers = w.queue.bus.has(ev.WORKER_LOOP)
        self._worker_event = worker_event
        if self.isolate:
            self._children = Children(self.runner, w.presence, ahead=self._ahead if standby_pays_off() else None)
        elif listen:
            self._reserver = _Reserver(self.runner, w.clock, self.done)
        try:
            while True:
                if has_loop_handlers and worker_event.exit_code is None:
                    w.queue.bus.trigger(ev.WORKER_LOOP, worker_event)
                    if worker_event.exit_code is not None:
                        w._stop("handler", f"a workerLoop handler set exit code {worker_event.exit_code}")
                if w.signals >= 2:
                    self._hard_stop()
                    return
                w._maybe_reclaim()
                self._start_held(worker_event)
                free = max(self._free(worker_event) - self._asking, 0)
                extra = self._ahead_wanted(free)
                held_since = w.clock()
                new = self._settle_and_reserve(free, listen, timeout, extra)
                short = len(new) < free
                self._begin_all(new[:free], held_since)
                self._hold(new[free:], held_since)
                if self._acks:  # a skipped or invalid job: written with the next step, not after a wait
                    continue
                if not self.inflight and not self._asking and not self._held:
                    if new:
                        continue
                    if self._should_end(free, listen, worker_event):
                        return
                    continue
                left = max(self._free(worker_event) - self._asking, 0)
                if short and left and self._reserver is not None and not self._asking and self.inflight:
                    wait = min(w._wait_for(timeout), REARM)
                    if wait > 0:
                        self._asking = left
                        self._reserver.ask(left, wait)
                poll = left > 0 and self._reserver is None
                for key, item in self._wait(POLL if poll else SLICE):
                    if key is None:
                        self._answered(item)
                    else:
                        self._finish(key, item)
        finally:
            if self._acks and w.signals < 2:
                self._flush_acks()
            self._close()

    def _ahead_wanted(self, free: int) -> int:
        """How many more jobs to hold ahead: what the slots finish in AHEAD_WINDOW, at most half the
        slots, never past ``--max-jobs``; none until a job time is known, none while stopping."""
        w = self.worker
        if not self._can_hold or self._avg is None or w.stopping or w.stop_reason is not None:
            return 0
        target = min(self.size // 2, int(self.size * AHEAD_WINDOW / max(self._avg, 1e-6)))
        if w.max_jobs is not None:
            target = min(target, w.max_jobs - self.started - free)
        return max(target - len(self._held), 0)

    def _hold(self, found: list[Reservation], held_since: float) -> None:
        w = self.worker
        if found and (w.stopping or (self._worker_event is not None and self._worker_event.exit_code is not None)):
            for r in found:
                self.runner.release(r)
            return
        self._held.extend((r, held_since) for r in found)

    def _start_held(self, worker_event: ev.WorkerEvent) -> None:
        """Fill free slots from the held jobs; one whose lease aged is renewed first (its whole TTR)."""
        w = self.worker
        while self._held and self._free(worker_event) - self._asking > 0:
            r, since = self._held.popleft()
            if w.clock() - since > STALE:
                grace = float(getattr(w.queue.config, "grace", 0) or 0)
                if not self.runner.driver.extend(r, r.ttr + grace):
                    log.info("[%s] held job's lease was taken before it started (reclaimed); skipped", r.job_id)
                    continue
                since = w.clock()
            self._start(r, since)

    def _release_held(self) -> None:
        held, self._held = list(self._held), deque()
        for r, _ in held:
            self.runner.release(r)

    def _begin_all(self, new: list[Reservation], held_since: float) -> None:
        """Start what was reserved, or put it back when a stop landed during the reserve."""
        w, worker_event = self.worker, self._worker_event
        if new and (w.stopping or (worker_event is not None and worker_event.exit_code is not None)):
            for r in new:  # these never started
                self.runner.release(r)
            return
        for r in new:
            self._start(r, held_since)

    def _answered(self, reply: Any) -> None:
        """The reserver's request came back: its jobs start now (their slots were kept for them)."""
        self._asking = 0
        if isinstance(reply, BaseException):
            if isinstance(reply, BackendUnavailableError) and self.worker._should_abort():
                return
            if isinstance(reply, Interrupted):
                return
            raise reply
        held_since, found = reply
        if found:
            self.worker.paused = False
        self._begin_all(found, held_since)

    def _ahead(self) -> bool:
        """Whether another job is likely to start (a standby child is worth forking)."""
        w = self.worker
        return not w.stopping and (w.max_jobs is None or self.started < w.max_jobs)

    def _free(self, worker_event: ev.WorkerEvent) -> int:
        """Slots to fill now: none while stopping or past a limit; never past ``--max-jobs``."""
        w = self.worker
        if w.stopping or worker_event.exit_code is not None or w.stop_reason is not None:
            return 0
        if w.max_jobs is not None and self.started >= w.max_jobs:
            return 0
        if w._limit_reached():
            return 0
        free = self.size - len(self.inflight)
        if w.max_jobs is not None:
            free = min(free, w.max_jobs - self.started)
        return max(free, 0)

    def _should_end(self, free: int, listen: bool, worker_event: ev.WorkerEvent) -> bool:
        """Nothing in flight and nothing was reserved: why, and whether the loop ends."""
        w = self.worker
        if w.stopping:
            if w.stop_reason is None:
                w._stop_by_signal()
            return True
        if worker_event.exit_code is not None or w.stop_reason is not None:
            return True
        if free == 0:
            if w.max_jobs is not None and self.started >= w.max_jobs:
                w._stop("max-jobs", f"--max-jobs {w.max_jobs} reached")
            return True
        if not listen:
            if w._queue_paused(listen):
                w.stop_reason = "paused"
            else:
                w._stop("drained", "no job is due")
            return True
        w._queue_paused(listen)
        return False

    def _settle_and_reserve(self, free: int, listen: bool, timeout: int, extra: int = 0) -> list[Reservation]:
        """Write the acks of what finished and fill ``free`` slots (plus ``extra`` held ahead): one
        driver step when possible. An idle worker (nothing in flight) blocks in the driver for up to
        the listen timeout."""
        w = self.worker
        if self._acks:
            return self._flush_acks(free, extra)
        if free + extra <= 0:
            return []
        block = listen and not self.inflight and not self._asking and not self._held
        ahead = {"ahead": extra} if extra else {}
        try:
            if block:
                w._state = "idle"  # a stop signal leaves the wait at once
                if w.stopping:
                    return []
            found = self.runner.driver.reserve_many(free + extra, w._wait_for(timeout) if block else 0, **ahead)
        except BackendUnavailableError:
            if w._should_abort():
                return []
            raise
        except Interrupted:
            return []
        finally:
            w._state = "busy"
        if found:
            w.paused = False
        return found

    def _flush_acks(self, free: int = 0, extra: int = 0) -> list[Reservation]:
        acks, self._acks = self._acks, []
        ahead = {"ahead": extra} if extra else {}
        flags, found = self.runner.driver.ack_and_reserve_many(acks, max(free, 0) + extra, **ahead)
        for r, ok in zip(acks, flags, strict=True):
            self.runner.acked(r, ok)
        return found

    # -- one job -------------------------------------------------------------------------------

    def _start(self, r: Reservation, held_since: float) -> None:
        w, runner = self.worker, self.runner
        event = runner.begin(r)
        if event.limited:  # back delayed for its limit key: not an attempt, nothing runs
            return
        self.started += 1
        if event.error is not None:  # invalid payload: final failure at once, never retried
            w.jobs += 1
            runner.failed(r, event, event.error, "")
            return
        if event.handled:  # a beforeExec handler skipped it
            w.jobs += 1
            self._acks.append(r)
            return
        key = (r.job_id, r.token)
        self.inflight[key] = _Slot(r, event, held_since)
        if self.isolate:
            assert self._children is not None
            self._children.start(key, event, r.ttr)
            return
        reporter = _SlotReporter(w.presence, r.job_id) if w.presence is not None else None
        if is_async_job(event.job):
            if self._loop is None:
                self._loop = _Loop(runner, self.done)
            self._loop.submit(key, event, reporter)
        else:
            if self._threads is None:
                self._threads = _Threads(runner, self.size, self.done)
            self._threads.submit(key, event, reporter)

    def _wait(self, timeout: float) -> list[Event]:
        if self._children is not None:
            return self._children.wait(timeout)  # type: ignore[return-value]
        try:
            out = [self.done.get(timeout=timeout)]
        except queue_mod.Empty:
            return []
        while True:
            try:
                out.append(self.done.get_nowait())
            except queue_mod.Empty:
                return out

    def _finish(self, key: Key, outcome: Outcome) -> None:
        slot = self.inflight.pop(key, None)
        if slot is None:  # put back by a hard stop meanwhile
            return
        if self._threads is not None and not is_async_job(slot.event.job) and not self.isolate:
            self._threads.finished()
        self.worker.jobs += 1
        if outcome.duration is not None:
            self._avg = outcome.duration if self._avg is None else self._avg + 0.2 * (outcome.duration - self._avg)
        r, event, runner = slot.r, slot.event, self.runner
        if not outcome.ok:
            runner.failed(r, event, outcome.error, outcome.traceback, outcome=outcome)  # type: ignore[arg-type]
            return
        if runner.confirm_success(r, event, outcome, held_since=slot.held_since):
            self._acks.append(r)

    def cancel(self, job_id: int, reason: str) -> None:
        """A cancel seen by the heartbeat thread: kill that job's child (isolate); an in-process job
        sees ``ctx.cancelled``."""
        if self._children is not None:
            self._children.kill(job_id)

    # -- stopping ------------------------------------------------------------------------------

    def _hard_stop(self) -> None:
        """Second signal: every job in flight goes back to waiting, uncounted; the loop ends."""
        w = self.worker
        if self._acks:
            self._flush_acks()
        self._release_held()
        if self._children is not None:
            self._children.kill_all()
        slots, self.inflight = list(self.inflight.values()), {}
        for slot in slots:
            self.runner.release(slot.r)
            log.warning("[%s] %s (attempt: %s): second stop signal: job put back, worker stops",
                        slot.r.job_id, slot.event.job_name, slot.r.attempt)
            if w.on_put_back is not None:
                w.on_put_back(slot.event)
        w._stop_by_signal()

    def _close(self) -> None:
        self._release_held()
        if self._reserver is not None:
            self._take_back()
            self._reserver.close()
        if self._threads is not None:
            self._threads.close()
        if self._loop is not None:
            self._loop.close()
        if self._children is not None:
            self._children.kill_all()

    def _take_back(self) -> None:
        """The loop ends with a reserver request pending (a hard stop, an error): wait for its
        answer (bounded by ``REARM`` and the outage budget's abort) and put back what it took."""
        deadline = time.monotonic() + REARM + 5.0
        while self._asking and (left := deadline - time.monotonic()) > 0:
            try:
                key, item = self.done.get(timeout=min(left, SLICE))
            except queue_mod.Empty:
                continue
            if key is None:
                self._asking = 0
                if not isinstance(item, BaseException):
                    for r in item[1]:
                        self.runner.release(r)
