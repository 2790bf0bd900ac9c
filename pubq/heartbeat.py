"""A worker's presence: its registry entry, heartbeats, and watching the job it runs.

:class:`Presence` registers the worker (spec §7.2: id ``host:pid:random``), beats its entry every
``interval`` seconds (one backend command per beat, never one per job; a second one when jobs
finished since the last beat: their count goes into the queue's per-minute throughput), and while a job runs
polls its cancel request (a cancel is acted on within 1 s: the isolated child is killed, an
in-process job sees ``ctx.cancelled``) and writes the progress the job reported (at most a few
writes a second, however often the job reports). A clean stop drops the entry at once; a killed
worker's entry goes *lost* after three missed beats and expires by itself.

The beats run on a daemon thread, so a long job without isolate still beats. The thread never
runs a backend call across a ``fork``: an at-fork hook waits for the call in progress, so an
isolated child never inherits a connection or lock in mid-use (spec §5.2). All it shares with
the worker's main thread are a few attributes, written by one side and read by the other.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .drivers.base import Driver
from .drivers.records import Reservation, WorkerInfo
from .errors import PubqError

if TYPE_CHECKING:  # pragma: no cover
    from .events import ExecEvent

log = logging.getLogger("pubq.worker")

#: Seconds between two beats (spec §7.2); a worker is lost after 3 without one.
DEFAULT_HEARTBEAT = 2.0
#: How often the thread looks at the running job (cancel request, progress to write).
TICK = 0.25
#: A running job's cancel request is polled this often (spec §7.4: acted on within 1 s) ...
CANCEL_POLL = 0.5
#: ... and its progress written at most this often.
PROGRESS_EVERY = 0.5


def new_worker_id() -> str:
    """``host:pid:random``: a restarted process (same pid) is a new worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return 0.0


#: Longest a stopping worker waits for its last beat and its unregister (seconds).
STOP_WAIT = 1.0


# -- fork safety --------------------------------------------------------------------------------

_fork_lock = threading.Lock()
_fork_hook_installed = False


def _install_fork_hook() -> None:
    """Once per process: a fork waits for a beat in progress (and none starts during it)."""
    global _fork_hook_installed
    if _fork_hook_installed or not hasattr(os, "register_at_fork"):
        return
    _fork_hook_installed = True
    os.register_at_fork(before=lambda: _fork_lock.acquire(), after_in_parent=lambda: _fork_lock.release(),
                        after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


# -- what the worker tells it -----------------------------------------------------------------------


class WorkerView(Protocol):
    """The few worker attributes a beat reads."""

    stopping: bool
    paused: bool

    @property
    def idle(self) -> bool: ...


@dataclass
class _Running:
    reservation: Reservation
    job_name: str
    started: float  # monotonic
    progress: float | None = None
    message: str = ""
    written: tuple[float | None, str] = (None, "")
    cancel: str | None = None
    last_poll: float = 0.0
    last_write: float = 0.0


class Presence:
    """One worker's registry entry and the watch over its running job (see the module docstring).

    It is the runner's ``hooks`` (``job_started``/``job_finished``/``cancel_reason``) and the sink of
    in-process ``ctx.progress`` calls (``report_progress``).
    """

    def __init__(self, driver: Driver, *, queue: str, worker: WorkerView, worker_id: str | None = None,
                 interval: float = DEFAULT_HEARTBEAT, on_cancel: Callable[[str], None] | None = None,
                 on_cancel_job: Callable[[int, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.driver = driver
        self.queue = queue
        self.worker = worker
        self.worker_id = worker_id or new_worker_id()
        self.interval = max(float(interval), 0.05)
        #: Called on the thread when the running job's cancel request is seen (isolate: kill the child).
        self.on_cancel = on_cancel
        #: The same with the job's id, for a worker running several jobs at once (kill that child).
        self.on_cancel_job = on_cancel_job
        self.clock = clock
        self.started_at = time.time()
        self.done = 0
        self.failed = 0
        #: ``done``/``failed`` as far as they were added to the backend's per-minute throughput.
        self._recorded = (0, 0)
        #: The jobs running now, by id (several with ``--concurrency``); written by the main thread.
        self._jobs: dict[int, _Running] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = float("-inf")

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Register (first beat) and start beating."""
        _install_fork_hook()
        self._beat(register=True)
        self._thread = threading.Thread(target=self._run, name=f"pubq-heartbeat-{self.queue}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and drop the entry (a clean stop: the worker disappears at once).

        Bounded: a backend that hangs (no answer, no refusal) must not keep a stopping worker
        alive, so neither the last beat nor the unregister is waited for more than ``STOP_WAIT``
        seconds; an entry left behind expires by itself.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT)
            self._thread = None

        def unregister() -> None:
            self._record_throughput()
            try:
                self.driver.unregister_worker(self.worker_id)
            except PubqError as exc:
                log.warning("could not unregister worker %s: %s", self.worker_id, exc)

        leaving = threading.Thread(target=unregister, name="pubq-unregister", daemon=True)
        leaving.start()
        leaving.join(timeout=STOP_WAIT)
        if leaving.is_alive():
            log.warning("worker %s left without unregistering (the backend does not answer); its entry "
                        "expires by itself", self.worker_id)

    # -- runner hooks (the worker's main thread) -------------------------------------------------

    @property
    def _job(self) -> _Running | None:
        """The oldest running job (the one a registry entry shows), None when idle."""
        jobs = list(self._jobs.values())
        return jobs[0] if jobs else None

    def job_started(self, r: Reservation, event: ExecEvent) -> None:
        jobs = dict(self._jobs)  # copy-on-write: the thread iterates a snapshot
        jobs[r.job_id] = _Running(r, event.job_name, self.clock())
        self._jobs = jobs

    def job_finished(self, r: Reservation, ok: bool | None) -> None:
        job = self._jobs.get(r.job_id)
        if job is None or job.reservation.token != r.token:
            return
        jobs = dict(self._jobs)
        del jobs[r.job_id]
        self._jobs = jobs
        if ok is True:
            self.done += 1
        elif ok is False:
            self.failed += 1

    def cancel_reason(self, job_id: int) -> str | None:
        """The reason of a cancel seen for ``job_id`` while it ran here (None: none)."""
        job = self._jobs.get(job_id)
        return job.cancel if job is not None else None

    def report_progress(self, fraction: float, message: str = "") -> None:
        """The running job's progress (in process, or relayed from an isolated child); written by the
        thread at most every ``PROGRESS_EVERY`` seconds. Ignored while several jobs run (they report
        through :meth:`report_progress_for`)."""
        job = self._job if len(self._jobs) == 1 else None
        if job is not None:
            job.progress, job.message = fraction, message

    def report_progress_for(self, job_id: int, fraction: float, message: str = "") -> None:
        """One of several running jobs reports its progress."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.progress, job.message = fraction, message

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                with _fork_lock:
                    self._tick()
            except Exception:  # noqa: BLE001 - the presence must never take the worker down
                log.exception("heartbeat of worker %s failed", self.worker_id)

    def _tick(self) -> None:
        now = self.clock()
        for job in list(self._jobs.values()):
            self._watch(job, now)
        if now - self._last_beat >= self.interval:
            self._beat()

    def _watch(self, job: _Running, now: float) -> None:
        """Poll one running job's cancel request and write its progress (each at its own pace)."""
        if job.cancel is None and now - job.started >= CANCEL_POLL and now - job.last_poll >= CANCEL_POLL:
            job.last_poll = now
            reason = self._quiet(self.driver.cancel_requested, job.reservation)
            if reason is not None:
                job.cancel = reason
                log.warning("[%s] %s: cancel requested (%s); stopping it", job.reservation.job_id,
                            job.job_name, reason or "no reason given")
                if self.on_cancel is not None:
                    self.on_cancel(reason)
                if self.on_cancel_job is not None:
                    self.on_cancel_job(job.reservation.job_id, reason)
        wanted = (job.progress, job.message)
        if job.progress is not None and wanted != job.written and now - job.last_write >= PROGRESS_EVERY:
            job.last_write = now
            job.written = wanted
            self._quiet(self.driver.progress, job.reservation, job.progress, job.message)

    def _beat(self, register: bool = False) -> None:
        self._last_beat = self.clock()
        info = self.info()
        # Best effort, also the first one: a backend that is down now is the worker loop's to report.
        self._quiet(self.driver.register_worker if register else self.driver.heartbeat, info)
        self._record_throughput()

    def _record_throughput(self) -> None:
        """Add what finished since the last add to the backend's per-minute throughput (the
        dashboard's chart): one write per beat at most, none while nothing finished. A failed add
        is kept for the next beat."""
        done, failed = self.done, self.failed
        recorded_done, recorded_failed = self._recorded
        if (done, failed) == (recorded_done, recorded_failed):
            return
        try:
            self.driver.record_throughput(done - recorded_done, failed - recorded_failed)
        except PubqError as exc:
            log.debug("throughput of worker %s not recorded (kept for the next beat): %s", self.worker_id, exc)
            return
        self._recorded = (done, failed)

    def _quiet(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A backend call that may fail (an outage): the worker's own loop reports outages."""
        try:
            return fn(*args)
        except PubqError as exc:
            log.debug("heartbeat call %s failed: %s", getattr(fn, "__name__", fn), exc)
            return None

    def info(self) -> WorkerInfo:
        """The entry as it is now."""
        w = self.worker
        state = "stopping" if w.stopping else "paused" if w.paused else "idle" if w.idle else "busy"
        job = self._job
        running = self._jobs  # one snapshot (the main thread swaps the dict, never mutates it)
        info = WorkerInfo(
            worker_id=self.worker_id, queue=self.queue, host=socket.gethostname(), pid=os.getpid(),
            started_at=self.started_at, state=state, heartbeat=self.interval, done=self.done, failed=self.failed,
            rss_mib=round(rss_mib(), 1), concurrency=int(getattr(w, "concurrency", 1) or 1),
            in_flight=len(running), job_ids=list(running),
        )
        if job is None:
            return info
        r = job.reservation
        return replace(info, state="stopping" if w.stopping else "busy", job_id=r.job_id, job_name=job.job_name,
                       attempt=r.attempt, job_started_at=r.deadline - r.ttr, job_deadline=r.deadline,
                       progress=job.progress, progress_message=job.message)
