"""Prefetch: a worker that runs one job at a time holds the next few and writes acks in batches.

Why: on Redis every job otherwise waits for one round trip of its own (its ack fused with the next
reserve). Draining short jobs, a worker takes up to ``k`` jobs in one call and acks what it ran in the
call that takes the next ones: one waited round trip per ``k`` jobs instead of one per job.

What keeps it honest:

- ``k`` follows the recent job time: the jobs held ahead fit in about half of :data:`ACK_WINDOW`,
  so slow jobs get ``k = 1``, which is exactly the fused ack-and-reserve of one job.
- Jobs held ahead are reserved with the driver's ``ahead`` flag: if the worker dies, a reclaim puts
  them back uncounted (they may never have started) instead of failing them as lost.
- A held job whose lease has run for :data:`STALE` seconds before it starts is extended first, so
  every job starts with its whole TTR.
- The first job of each take is not held ahead (it starts at once): a worker that dies in it leaves it
  lost, counted, as without prefetch (a job that kills its worker uses up its attempts). Its ack is
  written before the next job starts, so a success of it is never reclaimed as lost.
- The acks of the held jobs wait at most about :data:`ACK_WINDOW` (a flusher thread writes them when
  a job after them runs longer); a worker that dies before they are written leaves those jobs to be
  put back uncounted and run again (at least once, never a false failure).
- On stop the acks are written and the held jobs released uncounted (``close``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .drivers.base import Reservation

log = logging.getLogger("pubq.worker")

#: Most jobs taken in one call (the one that starts now plus those held ahead).
MAX_BATCH = 32
#: Longest time (s) an ack waits to be written in a batch.
ACK_WINDOW = 0.05
#: A held job whose lease is older than this (s) when it starts is extended first.
STALE = 1.0
#: Weight of the newest job time in the running average.
_ALPHA = 0.2


class Prefetch:
    """The held jobs and the unwritten acks of one worker (main thread), plus its flusher thread."""

    def __init__(self, driver: Any, *, grace: float, on_refused: Callable[[Reservation], None],
                 clock: Callable[[], float] = time.monotonic, window: float = ACK_WINDOW,
                 max_batch: int = MAX_BATCH) -> None:
        self.driver = driver
        self.grace = grace
        self.on_refused = on_refused
        self.clock = clock
        self.window = window
        self.max_batch = max(1, max_batch)
        #: When the lease of the job last handed out began (the worker's ``held_since``).
        self.held_since = 0.0
        self._held: deque[Reservation] = deque()
        #: The first job of the last take (not held ahead: its ack is never deferred past a start).
        self._head: Reservation | None = None
        self._batch_at = 0.0
        self._acks: list[Reservation] = []
        self._acks_since: float | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._flusher: threading.Thread | None = None
        self._avg: float | None = None
        self._last_take: float | None = None

    # -- taking jobs ------------------------------------------------------------------------

    def batch_size(self, room: int | None = None) -> int:
        """Jobs to take in the next call: what fits in half the ack window at the recent job time."""
        if self._avg is None:
            k = 1
        else:
            k = 1 + min(self.max_batch - 1, int(self.window / 2 / max(self._avg, 1e-6)))
        return max(1, k if room is None else min(k, room))

    def next(self, room: int | None = None) -> Reservation | None:
        """A held job, else the pending acks written and up to ``batch_size`` jobs taken without
        waiting, in one call. None when nothing is due."""
        now = self.clock()
        if self._last_take is not None:
            sample = now - self._last_take
            self._avg = sample if self._avg is None else self._avg + _ALPHA * (sample - self._avg)
        self._last_take = now
        while self._held:
            r = self._held.popleft()
            if now - self._batch_at <= STALE:
                self.held_since = self._batch_at
                return r
            # its lease has run while it waited: renew it so the job starts with its whole TTR
            if self.driver.extend(r, r.ttr + self.grace):
                self.held_since = self.clock()
                return r
            log.info("[%s] held job's lease was taken before it started (reclaimed); skipped", r.job_id)
        n = self.batch_size(room)
        acks = self._take_acks()
        before = self.clock()
        if acks:
            flags, found = self.driver.ack_and_reserve_many(acks, n, ahead=n - 1)
            self._report(acks, flags)
        else:
            found = self.driver.reserve_many(n, 0, ahead=n - 1)
        return self._hold(found, before)

    def wait(self, timeout: float, room: int | None = None) -> Reservation | None:
        """Block up to ``timeout`` for due jobs (after :meth:`next` found none and wrote the acks)."""
        self._last_take = None  # the wait is not a job's time
        n = self.batch_size(room)
        before = self.clock()
        return self._hold(self.driver.reserve_many(n, timeout, ahead=n - 1), before)

    def _hold(self, found: Sequence[Reservation], before: float) -> Reservation | None:
        if not found:
            return None
        self._batch_at = self.held_since = before
        self._held.extend(found[1:])
        self._head = found[0]
        return found[0]

    # -- acks ---------------------------------------------------------------------------------

    def ack_later(self, r: Reservation) -> None:
        """The job succeeded: its ack goes with the next call (or the flusher's, past the window);
        the first job of a take with jobs held behind it is acked now (see the module docstring)."""
        if r is self._head:
            self._head = None
            if self._held:
                if not self.driver.ack(r):
                    self.on_refused(r)
                return
        with self._cond:
            self._acks.append(r)
            if self._acks_since is None:
                self._acks_since = self.clock()
                if not self._held:
                    return  # no job runs before the next call, which writes it: the flusher sleeps on
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_main, name="pubq-ack-flusher",
                                                     daemon=True)
                    self._flusher.start()
                self._cond.notify()

    def _take_acks(self) -> list[Reservation]:
        with self._cond:
            acks, self._acks, self._acks_since = self._acks, [], None
            return acks

    def _report(self, acks: Sequence[Reservation], flags: Sequence[bool]) -> None:
        for r, ok in zip(acks, flags, strict=False):
            if not ok:
                self.on_refused(r)

    def _write(self, acks: list[Reservation]) -> None:
        flags, _ = self.driver.ack_and_reserve_many(acks, 0)
        self._report(acks, flags)

    def _flush_main(self) -> None:
        """Write acks that waited a whole window (a job after them runs long)."""
        while True:
            with self._cond:
                while not self._closed and (self._acks_since is None
                                            or self.clock() - self._acks_since < self.window):
                    if self._acks_since is None:
                        self._cond.wait()
                    else:
                        self._cond.wait(self._acks_since + self.window - self.clock())
                if self._closed:
                    return
                acks, self._acks, self._acks_since = self._acks, [], None
            try:
                self._write(acks)
            except Exception:  # noqa: BLE001 - the main thread writes them with its next call
                log.warning("writing %d acks in the background failed; the worker retries them", len(acks),
                            exc_info=True)
                with self._cond:
                    self._acks[:0] = acks
                    if self._acks_since is None:
                        self._acks_since = self.clock()

    # -- stop ---------------------------------------------------------------------------------

    def put_back(self, r: Reservation) -> None:
        """``r`` (from :meth:`next`) will not run now: first of the held jobs again (released on close)."""
        self._held.appendleft(r)

    def held(self) -> list[Reservation]:
        """The jobs held ahead, taken out of the buffer (the caller releases them)."""
        out = list(self._held)
        self._held.clear()
        return out

    def close(self, release: Callable[[Reservation], Any]) -> None:
        """Stop the flusher, write the pending acks, release the held jobs uncounted."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._flusher is not None:
            self._flusher.join(timeout=30)
            self._flusher = None
        acks = self._take_acks()
        if acks:
            self._write(acks)
        for r in self.held():
            release(r)
