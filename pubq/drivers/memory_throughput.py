"""Per-minute throughput of the in-process driver (a mixin of :class:`pubq.drivers.memory.MemoryDriver`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .records import THROUGHPUT_KEEP, ThroughputBucket


class MemoryThroughput:
    """Buckets in a dict ``minute -> [done, failed]`` under the driver's lock, trimmed by the writes."""

    _cond: Any
    _clock: Callable[[], float]
    _tput: dict[int, list[int]]

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        with self._cond:
            current = int(self._clock() // 60)
            bucket = self._tput.setdefault(current if minute is None else int(minute), [0, 0])
            bucket[0] += int(done)
            bucket[1] += int(failed)
            for old in [m for m in self._tput if m < current - THROUGHPUT_KEEP]:
                del self._tput[old]

    def throughput(self, since: int) -> list[ThroughputBucket]:
        with self._cond:
            return [ThroughputBucket(m, d, f) for m, (d, f) in sorted(self._tput.items()) if m >= since]
