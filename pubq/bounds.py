"""The one documented range of every number pubq accepts, checked the same way everywhere.

A number crosses into pubq at config load, at push (Python API and CLI) and when it is read back
from storage. Each place asks the same :class:`Bound`, so a TTR that the config refuses is refused at
push too, and a value that could not have been stored (another producer, a hand-edited row) is
caught when it is read instead of breaking a Lua ``%d`` or a timestamp conversion later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86_400


@dataclass(frozen=True)
class Bound:
    """An inclusive range ``low … high`` of one kind of number, with the unit shown in messages."""

    name: str
    low: float
    high: float
    unit: str = ""
    integer: bool = True

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        kind = "an integer" if self.integer else "a number"
        return f"{kind} from {_fmt(self.low)} to {_fmt(self.high)}{unit}"

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not in range (None when it is). A bool is never a number here."""
        if isinstance(value, bool):
            return f"must be {self.describe()} (got {value!r})"
        if self.integer:
            if not isinstance(value, int):
                return f"must be {self.describe()} (got {_show(value)})"
        elif not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            return f"must be {self.describe()} (got {_show(value)})"
        if not self.low <= value <= self.high:  # type: ignore[operator]
            return f"must be {self.describe()} (got {_show(value)})"
        return None

    def check(self, value: object, field: str | None = None) -> float:
        """``value`` when in range, else ``ValueError('<field> must be …')``."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{field or self.name} {problem}")
        return value  # type: ignore[return-value]

    def parse(self, text: str, field: str | None = None) -> float:
        """A CLI string → number in range (``inf``, ``nan``, ``1e300`` and ``10**23`` are refused)."""
        raw = text.strip()
        try:
            value: float = int(raw) if self.integer else float(raw)
        except ValueError:
            raise ValueError(f"{field or self.name} must be {self.describe()} (got {_show(text)})") from None
        return self.check(value, field)


def _fmt(x: float) -> str:
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:g}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: Seconds a reserved job may run (config ``ttr``, job ``ttr``, ``push --ttr``).
TTR = Bound("ttr", 1, 7 * DAY, "s")
#: Seconds before a pushed job is due (``push --delay``, retry backoff).
DELAY = Bound("delay", 0, 366 * DAY, "s", integer=False)
#: Lower runs first.
PRIORITY = Bound("priority", 0, 1_000_000)
DEFAULT_PRIORITY = 1024
#: Total attempts of a job, the first run included.
ATTEMPTS = Bound("attempts", 1, 1_000)
#: A job's attempt number as stored (1 on its first run; handlers may grant attempts past ``attempts``).
ATTEMPT = Bound("attempt", 1, 2**31 - 1)
#: Job ids: positive and exact in a Lua number (a double) and in JSON.
JOB_ID = Bound("job id", 1, 2**53 - 1)
#: Publish task ids (``pubq task show|trace|retry|sync ID``), as exact as job ids.
TASK_ID = Bound("task id", 1, 2**53 - 1)
#: Offsets into a listing.
OFFSET = Bound("offset", 0, 2**31 - 1)
#: Rows per page of a listing.
LIMIT = Bound("limit", 1, 10_000)
#: Failed-registry and follow-up record caps.
FAILED_LIMIT = Bound("failed_limit", 1, 10_000_000)
DEFAULT_FAILED_LIMIT = 10_000
#: Extra seconds past a TTR before another worker may reclaim the job; how long a recoverer holds
#: a reclaimed job; how long a final failure may stay unsettled while its handlers run.
GRACE = Bound("grace", 0, DAY, "s", integer=False)
HOLD = Bound("hold", 1, DAY, "s", integer=False)
SETTLE_WITHIN = Bound("settle_within", 1, DAY, "s", integer=False)
#: Retry backoff settings.
BACKOFF = Bound("retry delay", 0, 366 * DAY, "s", integer=False)
#: Largest payload a queue may accept.
PAYLOAD_BYTES = Bound("max_payload_bytes", 64, 512 * 1024 * 1024, "bytes")
#: Seconds between two beats of a worker's registry entry (lost after 3 without one).
HEARTBEAT = Bound("heartbeat", 0.1, 600, "s", integer=False)
#: Seconds a one-shot command keeps retrying an unreachable backend.
GIVE_UP_AFTER = Bound("give_up_after", 0, DAY, "s", integer=False)
#: ``listen TIMEOUT``: the longest single blocking wait for a job.
WAIT = Bound("timeout", 1, DAY, "s")
#: Jobs in flight per worker process (``--concurrency``, a queue's ``concurrency``).
CONCURRENCY = Bound("concurrency", 1, 4096)
#: Worker limits: ``--max-jobs``, ``--max-seconds``, ``--memory-limit`` (MiB).
#: Seconds a unique key lives at most (spec §7.9), and where it is released otherwise.
UNIQUE_FOR = Bound("unique_for", 0.001, 366 * DAY, "s", integer=False)
UNIQUE_UNTIL = ("done", "start", "ttl")
#: Longest unique key (characters): it is stored in an indexed column.
UNIQUE_KEY_MAX = 255

MAX_JOBS = Bound("max_jobs", 1, 1_000_000_000)
MAX_SECONDS = Bound("max_seconds", 0.001, 366 * DAY, "s", integer=False)
MEMORY_LIMIT = Bound("memory_limit", 1, 1024 * 1024, "MiB")
#: Seconds between two refreshes of ``info --watch``.
REFRESH = Bound("interval", 0.1, DAY, "s", integer=False)
