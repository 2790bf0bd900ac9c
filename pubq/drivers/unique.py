"""Unique keys and marks: the rules every driver applies the same way (spec §7.9).

A unique key's record names the job last pushed under it, its release point and its expiry. The
key is *held* while that record says so, read at push time against the job's current state, so a
driver writes nothing on the paths where a job ends (see :meth:`pubq.drivers.base.Driver.push_unique`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import UNIQUE_UNTIL, UniqueSpec

#: Seconds between two looks of the sweep at a key whose holder is still running.
RECHECK = 300.0
#: Records a unique push looks at (and drops when released) besides its own key.
SWEEP = 3
#: Longest unique key (characters) and mark name stored.
KEY_MAX = 255

#: A job's state as the release rules see it.
WAITING, DELAYED, RESERVED, UNSETTLED, GONE = "waiting", "delayed", "reserved", "unsettled", "gone"


@dataclass(frozen=True)
class UniqueRecord:
    job_id: int
    until: str
    #: Backend time at which the key is released at the latest; None: no limit.
    expires_at: float | None


def expiry(spec: UniqueSpec, now: float) -> float | None:
    return None if spec.ttl is None else now + float(spec.ttl)


def holds(record: UniqueRecord, state: str, attempt: int, now: float) -> bool:
    """Whether ``record`` still holds its key, its job being in ``state`` after ``attempt`` runs.

    ``state`` is GONE for a job that is done, removed or settled in the failed registry (final).
    """
    if record.expires_at is not None and now >= record.expires_at:
        return False
    if record.until == "ttl":
        return True
    if record.until == "start":
        return state in (WAITING, DELAYED) and attempt == 0
    return state != GONE


def next_check(record: UniqueRecord, now: float) -> float:
    """When the sweep should look at a held record again."""
    if record.expires_at is not None:
        return min(record.expires_at, now + RECHECK) if record.until != "ttl" else record.expires_at
    return now + RECHECK


def check_spec(spec: UniqueSpec) -> None:
    """Drivers trust the core, but a spec that makes no sense would hold a key forever."""
    if spec.until not in UNIQUE_UNTIL:
        raise ValueError(f"unique_until must be one of {', '.join(UNIQUE_UNTIL)}, got {spec.until!r}")
    if spec.until == "ttl" and spec.ttl is None:
        raise ValueError("a unique key held until its ttl needs unique_for")
