"""Per-key limits of the in-process driver (a mixin of :class:`pubq.drivers.memory.MemoryDriver`).

The same rule as every driver (:mod:`pubq.drivers.limiter`), under the driver's one lock.
"""

from __future__ import annotations

from typing import Any

from .limiter import KeyState, admit, release
from .records import JobStatus, Reservation


class MemoryLimits:
    """Keys' states in a dict; a held job's slot is live while its lease is the job's current one."""

    _cond: Any
    _jobs: dict[int, Any]
    _held: dict[int, Any]
    _limit_state: dict[str, KeyState]
    _limited: int

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        pending: list[str] = []
        wait = self._limit_acquire(r, key, concurrency, rate, per, jitter, burst, pending)
        if pending:  # a cancel requested before the refusal is not dropped: the delayed job is cancelled
            self.cancel(r.job_id, pending[0])  # type: ignore[attr-defined]
        return wait

    def _limit_acquire(self, r: Reservation, key: str, concurrency: int, rate: int, per: float, jitter: float,
                       burst: int, pending: list[str]) -> float | None:
        with self._cond:
            job = self._holding(r)  # type: ignore[attr-defined]
            if job is None:
                return None
            now = self._clock()  # type: ignore[attr-defined]
            state = self._limit_state.setdefault(key, KeyState())

            def live(job_id: int, token: int) -> bool:
                held = self._held.get(job_id)
                return held is not None and held.lease == token

            wait = admit(state, job_id=r.job_id, token=r.token, now=now, concurrency=concurrency, rate=rate,
                         per=per, live=live, burst=burst)
            if wait == 0:
                return 0.0
            wait += max(jitter, 0.0)
            reason = job.cancel_reason
            self._detach(job)  # type: ignore[attr-defined]
            job.attempt -= 1  # not an attempt: the job never started
            job.holder, job.progress, job.progress_message, job.cancel_reason = "", None, "", None
            self._enqueue(job, wait, now)  # type: ignore[attr-defined]
            self._limited += 1
            if reason is not None:
                pending.append(reason)
            return wait

    def limit_release(self, r: Reservation, key: str) -> None:
        with self._cond:
            state = self._limit_state.get(key)
            if state is None:
                return

            def is_delayed(job_id: int) -> bool:
                job = self._jobs.get(job_id)
                return job is not None and job.state is JobStatus.DELAYED

            first = release(state, job_id=r.job_id, is_delayed=is_delayed)
            if first is not None:
                job = self._jobs[first]
                self._detach(job)  # type: ignore[attr-defined]
                self._enqueue(job, 0, self._clock())  # type: ignore[attr-defined]
            if state.empty:
                del self._limit_state[key]
