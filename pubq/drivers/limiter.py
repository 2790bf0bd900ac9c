"""One limit key's state and the admission rule, shared by the memory and SQL drivers (the Redis
driver runs the same rule in ``lua/limit_acquire.lua``).

A key's state is small and stored whole (a SQL row, a Redis hash field, a dict entry):

* ``s``: the concurrency slots, ``[job id, lease token]``. A slot is *live* only while that job is
  still reserved under that token, so a slot whose job was acked, failed, released, removed or
  reclaimed (its SIGKILLed worker's lease replaced) frees itself; nothing has to remember to free it.
* ``t``: start times inside the current rate window, oldest first (at most ``rate`` of them).
* ``b``: start times booked for jobs refused by the rate window, in order: each refused job is
  given the next slot after those already booked, so jobs refused together come back one per
  freed slot instead of all at the first one (where all but one would be refused again).
* With ``burst`` (a token bucket, GCRA form): ``t`` holds one time, the key's *theoretical arrival
  time* (TAT): a start is allowed while ``TAT - (burst - 1) * interval <= now``, and moves TAT one
  ``interval`` (``per / rate``) past ``max(TAT, now)``; ``b`` holds one time, the next slot to
  promise a refused job. A TAT in the past means a full bucket and is dropped.
* ``w``: ids of jobs put back because every slot was taken, oldest first; a freed slot wakes the
  first one (``limit_release``) instead of leaving it to its back-off timer.
* ``i``: from when on the rate part is spent (the last start or booking has left its window; the
  bucket is full again): with no live slot and no waiting job left, the key is *idle* and its
  stored state can go (the SQL drivers sweep such rows, :func:`idle`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

#: A job refused for concurrency rechecks after this many seconds per job ahead of it in the
#: waiters list (a freed slot wakes the first waiter at once; the timer only covers a lost wake-up)
BUSY_RECHECK = 2.0
#: ... and never later than this.
BUSY_RECHECK_MAX = 60.0
#: Waiters remembered per key (more only wait for their timer).
MAX_WAITERS = 1000


@dataclass
class KeyState:
    slots: list[list[int]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    waiters: list[int] = field(default_factory=list)
    booked: list[float] = field(default_factory=list)
    idle_at: float = 0.0

    @classmethod
    def loads(cls, text: str | bytes | None) -> KeyState:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls([[int(a), int(b)] for a, b in data.get("s", [])], [float(t) for t in data.get("t", [])],
                       [int(i) for i in data.get("w", [])], [float(t) for t in data.get("b", [])],
                       float(data.get("i", 0.0)))
        except (TypeError, ValueError, AttributeError):
            return cls()  # unreadable state: start afresh rather than block the key forever

    def dumps(self) -> str:
        return json.dumps({"s": self.slots, "t": self.starts, "w": self.waiters, "b": self.booked,
                           "i": self.idle_at}, separators=(",", ":"))

    @property
    def empty(self) -> bool:
        return not (self.slots or self.starts or self.waiters or self.booked)


def admit(state: KeyState, *, job_id: int, token: int, now: float, concurrency: int, rate: int, per: float,
          live: Callable[[int, int], bool], burst: int = 0) -> float:
    """Take a slot for (job_id, token) or say how long to wait; updates ``state`` in place.

    Returns 0.0 when admitted (a slot and a rate start are recorded), else the seconds until the
    limiter's next free slot: exact for the rate window or bucket (``burst``), a back-off for a
    taken concurrency slot (then the job joins the waiters).
    """
    state.slots = [s for s in state.slots if s[0] != job_id and live(s[0], s[1])]
    bucket = bool(rate) and burst > 0
    if bucket:
        state.starts = [max(t for t in state.starts if t > now)] if any(t > now for t in state.starts) else []
        state.booked = [max(t for t in state.booked if t > now)] if any(t > now for t in state.booked) else []
    elif rate:
        state.starts = [t for t in state.starts if t > now - per][-rate:]
        state.booked = [t for t in state.booked if t > now - per][-MAX_WAITERS:]
    else:
        state.starts, state.booked = [], []
    wait = 0.0
    interval = per / rate if rate else 0.0
    tat = state.starts[0] if bucket and state.starts else now
    if bucket and tat - (burst - 1) * interval > now + 1e-9:
        # the bucket is empty: the next slot after the ones already promised
        slot = max(tat - (burst - 1) * interval, state.booked[0] if state.booked else now, now)
        state.booked = [slot + interval]
        wait = slot - now
    elif not bucket and rate and len(state.starts) >= rate:
        # the next slot after the ones already booked: the window counts starts and bookings
        ahead = sorted(state.starts + [t for t in state.booked if t > now])
        slot = max(ahead[len(ahead) - rate] + per, now)
        state.booked.append(slot)
        wait = slot - now
    busy = bool(concurrency) and len(state.slots) >= concurrency
    if busy:
        if job_id not in state.waiters:
            state.waiters.append(job_id)
            state.waiters.sort()
            del state.waiters[MAX_WAITERS:]
        ahead = state.waiters.index(job_id) if job_id in state.waiters else len(state.waiters)
        wait = max(wait, min(BUSY_RECHECK * (ahead + 1), BUSY_RECHECK_MAX))
    state.idle_at = _spent_at(state, now, per, bucket)
    if wait > 0:
        return max(wait, 0.001)
    if concurrency:
        state.slots.append([job_id, token])
    if bucket:
        state.starts = [max(tat, now) + interval]
    elif rate:
        state.starts.append(now)
    if job_id in state.waiters:
        state.waiters.remove(job_id)
    state.idle_at = _spent_at(state, now, per, bucket)
    return 0.0


def _spent_at(state: KeyState, now: float, per: float, bucket: bool) -> float:
    """When the key's rate part has nothing left to remember (see ``i`` above)."""
    if bucket:  # the TAT and the next promised slot are absolute times
        return max([now, *state.starts, *state.booked])
    return max([now, *state.starts, *state.booked]) + (per if state.starts or state.booked else 0.0)


#: A state saved before ``i`` existed: its rate part is spent at the latest this long after its
#: newest start (the longest window a rate may have).
_LONGEST_WINDOW = 7 * 86400.0


def idle(state: KeyState, now: float, *, live: Callable[[int, int], bool], is_delayed: Callable[[int], bool]) -> bool:
    """Whether a key's stored state can be dropped: its rate part is spent, none of its slots is
    live and none of its waiters still waits. Dropping it then changes no later admission."""
    spent = state.idle_at if state.idle_at else max([0.0, *state.starts, *state.booked]) + _LONGEST_WINDOW
    if spent > now:
        return False
    return not any(live(s[0], s[1]) for s in state.slots) and not any(is_delayed(w) for w in state.waiters)


def release(state: KeyState, *, job_id: int, is_delayed: Callable[[int], bool]) -> int | None:
    """Drop ``job_id``'s slot; returns the first waiter still delayed (to wake now), dropping the
    ones that are not (they ran, were removed or cancelled meanwhile)."""
    state.slots = [s for s in state.slots if s[0] != job_id]
    while state.waiters:
        first = state.waiters.pop(0)
        if is_delayed(first):
            return first
    return None
