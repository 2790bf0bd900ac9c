"""Unique keys and marks of the in-process driver (:mod:`pubq.drivers.memory`), behind its lock."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .records import DEFAULT_PRIORITY, JobStatus, PushItem, UniqueSpec
from .unique import (
    DELAYED,
    GONE,
    RESERVED,
    SWEEP,
    UNSETTLED,
    WAITING,
    UniqueRecord,
    check_spec,
    expiry,
    holds,
    next_check,
)

_STATE = {JobStatus.WAITING: WAITING, JobStatus.DELAYED: DELAYED, JobStatus.RESERVED: RESERVED}


class MemoryUniqueMixin:
    """``push_unique``, ``mark_get`` and ``mark_advance`` for :class:`~pubq.drivers.memory.MemoryDriver`."""

    _cond: threading.Condition
    _clock: Callable[[], float]
    _jobs: dict[int, Any]
    _unsettled: dict[int, Any]

    def _push_locked(self, items: Sequence[PushItem], now: float) -> list[int]: ...  # pragma: no cover

    def _init_unique(self) -> None:
        #: key -> (record, when the sweep looks at it next)
        self._unique: dict[str, tuple[UniqueRecord, float]] = {}
        self._unique_due: list[tuple[float, str]] = []  # (check_at, key) heap; stale entries skipped
        self._marks: dict[str, float] = {}

    def _unique_state(self, job_id: int) -> tuple[str, int]:
        job = self._jobs.get(job_id)
        if job is not None:
            return _STATE[job.state], job.attempt
        return (UNSETTLED, 1) if job_id in self._unsettled else (GONE, 0)

    def _unique_holds(self, record: UniqueRecord, now: float) -> bool:
        return holds(record, *self._unique_state(record.job_id), now)

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        check_spec(unique)
        with self._cond:
            now = self._clock()
            self._sweep_unique(now)
            found = self._unique.get(unique.key)
            if found is not None and self._unique_holds(found[0], now):
                return found[0].job_id, False
            job_id = self._push_locked([PushItem(payload, ttr, delay, priority)], now)[0]
            self._set_unique(unique.key, UniqueRecord(job_id, unique.until, expiry(unique, now)), now)
            return job_id, True

    def _set_unique(self, key: str, record: UniqueRecord, now: float) -> None:
        check_at = next_check(record, now)
        self._unique[key] = (record, check_at)
        heapq.heappush(self._unique_due, (check_at, key))

    def _sweep_unique(self, now: float) -> None:
        """Look at up to SWEEP records due for a look: drop released ones, look again later at the rest."""
        for _ in range(SWEEP):
            if not self._unique_due or self._unique_due[0][0] > now:
                return
            check_at, key = heapq.heappop(self._unique_due)
            found = self._unique.get(key)
            if found is None or found[1] != check_at:
                continue  # a stale entry: the key was pushed again since
            if self._unique_holds(found[0], now):
                self._set_unique(key, found[0], now)
            else:
                del self._unique[key]

    def mark_get(self, name: str) -> float | None:
        with self._cond:
            return self._marks.get(name)

    def mark_advance(self, name: str, value: float) -> float:
        with self._cond:
            stored = max(self._marks.get(name, value), float(value))
            self._marks[name] = stored
            return stored
