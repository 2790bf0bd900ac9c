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
- ``--isolate``: one forked child per job, up to N at once, each killed at its own TTR; no thread
  is started in the worker besides the heartbeat (which never runs a backend call across a fork).

Every guarantee holds per job: each reservation has its own lease and TTR clock (a slot is filled
only when it is free, so no job waits in the worker while its clock runs), a cancel kills only its
own child (or sets only its own ``ctx.cancelled``), a first stop signal finishes everything in
flight while reserving nothing more, a second puts every job in flight back uncounted.
``--max-jobs`` counts finished jobs (no more are reserved than it allows); ``--memory-limit`` and
``--max-seconds`` stop the reserving and let the jobs in flight end.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import queue as queue_mod
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import BackendUnavailableError, JobCrashedError, TtrExceededError
from .isolate import _BAD, _LEN, Interrupted, _close, _execute_and_report, _fork, _kill
from .outcome import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from .drivers.base import Reservation
    from .events import ExecEvent
    from .heartbeat import Presence
    from .runner import JobRunner
    from .worker import Worker

log = logging.getLogger("pubq.worker")

#: Longest wait for an outcome while a slot is free (then the queue is looked at again): the pickup
#: latency of a worker that is partly busy. An idle worker blocks in the driver instead.
POLL = 0.02
#: Longest wait for an outcome while every slot is taken (a stop signal is acted on this fast).
SLICE = 0.1

#: A slot's key: (job id, lease token): the same id may come back under a new lease.
Key = tuple[int, int]


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

    def __init__(self, runner: JobRunner, size: int, done: queue_mod.SimpleQueue[tuple[Key, Outcome]]) -> None:
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
            self.done.put((key, self.runner.execute(event, reporter)))

    def close(self) -> None:
        for _ in self.threads:
            self.todo.put(None)


class _Loop:
    """One asyncio event loop on its own thread for ``async def execute`` jobs."""

    def __init__(self, runner: JobRunner, done: queue_mod.SimpleQueue[tuple[Key, Outcome]]) -> None:
        self.runner = runner
        self.done = done
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pubq-async-jobs", daemon=True)
        self.thread.start()

    def submit(self, key: Key, event: ExecEvent, reporter: Any) -> None:
        async def run() -> None:
            self.done.put((key, await self.runner.execute_async(event, reporter)))

        asyncio.run_coroutine_threadsafe(run(), self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=1.0)


@dataclass
class _Child:
    key: Key
    pid: int
    fd: int
    deadline: float  # monotonic
    ttr: int
    started: float
    buf: bytearray = field(default_factory=bytearray)


class _Children:
    """Up to N isolated children, one per job, each with its own TTR; the parent selects on their pipes."""

    def __init__(self, runner: JobRunner, presence: Presence | None) -> None:
        self.runner = runner
        self.presence = presence
        self.by_fd: dict[int, _Child] = {}
        self.exiting: list[int] = []

    def __len__(self) -> int:
        return len(self.by_fd)

    def start(self, key: Key, event: ExecEvent, ttr: int) -> None:
        read_fd, write_fd = os.pipe()
        pid = _fork([read_fd, *self.by_fd])
        if pid == 0:  # pragma: no cover - child
            _execute_and_report(self.runner, event, write_fd)
        os.close(write_fd)
        now = time.monotonic()
        self.by_fd[read_fd] = _Child(key, pid, read_fd, now + ttr, ttr, time.perf_counter())

    def kill(self, job_id: int) -> None:
        """SIGKILL the child of ``job_id`` (a cancel; safe from the heartbeat thread)."""
        for child in list(self.by_fd.values()):
            if child.key[0] == job_id:
                _kill(child.pid)

    def wait(self, timeout: float) -> list[tuple[Key, Outcome]]:
        self._reap(block=False)
        if not self.by_fd:
            return []
        now = time.monotonic()
        out = [self._overdue(c) for c in list(self.by_fd.values()) if c.deadline <= now]
        if out:
            return out
        wait = max(0.0, min(timeout, min(c.deadline for c in self.by_fd.values()) - now))
        ready, _, _ = select.select(list(self.by_fd), [], [], wait)
        for fd in ready:
            child = self.by_fd[fd]
            data = os.read(fd, 1 << 20)
            outcome = self._frames(child, data) if data else None
            if outcome is not None or not data:
                out.append((child.key, self._end(child, outcome)))
        return out

    def _frames(self, child: _Child, data: bytes) -> Outcome | None:
        child.buf += data
        buf = child.buf
        while len(buf) >= _LEN.size:
            need = _LEN.size + _LEN.unpack_from(buf)[0]
            if len(buf) < need:
                return None
            try:
                message = pickle.loads(bytes(buf[_LEN.size:need]))
            except Exception:  # noqa: BLE001 - an unreadable report is a crash
                message = _BAD
            del buf[:need]
            if isinstance(message, tuple) and message and message[0] == "progress":
                if self.presence is not None:
                    self.presence.report_progress_for(child.key[0], message[1], message[2])
                continue
            if message is _BAD or not isinstance(message, Outcome):
                _kill(child.pid)
                return Outcome(ok=False, error=JobCrashedError("isolated job process sent an unreadable report"),
                               duration=time.perf_counter() - child.started)
            return message
        return None

    def _end(self, child: _Child, outcome: Outcome | None) -> Outcome:
        del self.by_fd[child.fd]
        _close(child.fd)
        if outcome is not None:
            self.exiting.append(child.pid)
            return outcome
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return Outcome(ok=False, error=JobCrashedError(f"isolated job process {reason} without reporting"),
                       duration=time.perf_counter() - child.started)

    def _overdue(self, child: _Child) -> tuple[Key, Outcome]:
        _kill(child.pid)
        del self.by_fd[child.fd]
        _close(child.fd)
        os.waitpid(child.pid, 0)
        return child.key, Outcome(ok=False, duration=time.perf_counter() - child.started,
                                  error=TtrExceededError(f"job exceeded its TTR of {child.ttr} s and was killed"))

    def kill_all(self) -> None:
        for child in list(self.by_fd.values()):
            _kill(child.pid)
            _close(child.fd)
            self.exiting.append(child.pid)
        self.by_fd.clear()
        self._reap(block=True)

    def _reap(self, *, block: bool) -> None:
        still = []
        for pid in self.exiting:
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                still.append(pid)
        self.exiting = still


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
        self.done: queue_mod.SimpleQueue[tuple[Key, Outcome]] = queue_mod.SimpleQueue()
        self._threads: _Threads | None = None
        self._loop: _Loop | None = None
        self._children: _Children | None = None
        self._acks: list[Reservation] = []

    # -- the loop ------------------------------------------------------------------------------

    def run(self, listen: bool, timeout: int, worker_event: ev.WorkerEvent) -> None:
        w = self.worker
        has_loop_handlers = w.queue.bus.has(ev.WORKER_LOOP)
        if self.isolate:
            self._children = _Children(self.runner, w.presence)
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
                free = self._free(worker_event)
                new = self._settle_and_reserve(free, listen, timeout)
                if new and (w.stopping or worker_event.exit_code is not None):
                    for r in new:  # a stop landed during the reserve: these never started
                        self.runner.release(r)
                    new = []
                for r in new:
                    self._start(r)
                if not self.inflight:
                    if new or self._acks:
                        continue
                    if self._should_end(free, listen, worker_event):
                        return
                    continue
                wait = POLL if free > 0 else SLICE
                for key, outcome in self._wait(wait):
                    self._finish(key, outcome)
        finally:
            if self._acks and w.signals < 2:
                self._flush_acks()
            self._close()

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

    def _settle_and_reserve(self, free: int, listen: bool, timeout: int) -> list[Reservation]:
        """Write the acks of what finished and fill ``free`` slots: one driver step when possible.
        An idle worker (nothing in flight) blocks in the driver for up to the listen timeout."""
        w = self.worker
        if self._acks:
            return self._flush_acks(free)
        if free <= 0:
            return []
        block = listen and not self.inflight
        try:
            if block:
                w._state = "idle"  # a stop signal leaves the wait at once
                if w.stopping:
                    return []
            found = self.runner.driver.reserve_many(free, w._wait_for(timeout) if block else 0)
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

    def _flush_acks(self, free: int = 0) -> list[Reservation]:
        acks, self._acks = self._acks, []
        flags, found = self.runner.driver.ack_and_reserve_many(acks, max(free, 0))
        for r, ok in zip(acks, flags, strict=True):
            self.runner.acked(r, ok)
        return found

    # -- one job -------------------------------------------------------------------------------

    def _start(self, r: Reservation) -> None:
        w, runner = self.worker, self.runner
        held_since = w.clock()
        event = runner.begin(r)
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

    def _wait(self, timeout: float) -> list[tuple[Key, Outcome]]:
        if self._children is not None:
            return self._children.wait(timeout)
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
        if self._threads is not None:
            self._threads.close()
        if self._loop is not None:
            self._loop.close()
        if self._children is not None:
            self._children.kill_all()
