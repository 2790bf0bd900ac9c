"""The memory driver's pause flag, worker registry, progress and cancel requests (a mixin of
:class:`~pubq.drivers.memory.MemoryDriver`, split from it by concern)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import Reservation, WorkerInfo
from .ops_codec import PROGRESS_MESSAGE_MAX, clamp_fraction


class MemoryPresence:
    """What operators steer and workers report on the in-process driver, under its lock."""

    _cond: threading.Condition
    _paused: bool
    _held: dict[int, Any]
    _workers: dict[str, tuple[WorkerInfo, float]]
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # pragma: no cover
        def _holding(self, r: Reservation) -> Any: ...

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def paused(self) -> bool:
        return self._paused

    def cancel_requested(self, r: Reservation) -> str | None:
        with self._cond:
            job = self._held.get(r.job_id)
            return job.cancel_reason if job is not None else None

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        with self._cond:
            job = self._holding(r)
            if job is None:
                return False
            job.progress, job.progress_message = clamp_fraction(fraction), (message or "")[:PROGRESS_MESSAGE_MAX]
            return True

    def heartbeat(self, info: WorkerInfo) -> None:
        with self._cond:
            self._workers[info.worker_id] = (info, self._clock())

    def unregister_worker(self, worker_id: str) -> None:
        with self._cond:
            self._workers.pop(worker_id, None)

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        with self._cond:
            now = self._clock()
            if sweep:
                for wid, (info, seen) in list(self._workers.items()):
                    if now > seen + info.ttl:
                        del self._workers[wid]
            live = [e for e in self._workers.values() if now <= e[1] + e[0].ttl]
            rows = sorted(live, key=lambda e: (e[0].started_at, e[0].worker_id))
            out = []
            for info, seen in rows:
                read = WorkerInfo.from_json(info.to_json(), seen, now)
                if read is not None:
                    out.append(read)
            return out
