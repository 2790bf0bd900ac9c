"""The producer's side of the Redis inbox: ids reserved ahead, and the entry a plain push LPUSHes.

Why: a plain push (no delay, no durability) must cost one plain command to reach a list-based
queue's push rate (issue 17): ``LPUSH {ch}:inbox <entry>``, no script. Its id cannot come from the
server in that command, so each driver reserves ids ahead in blocks (push.lua's ``extra``): the
first refill reserves none beyond the job's own (a one-shot CLI push wastes no id), every later one
:data:`MAX_EXTRA`, so a producer pays one script call per 256 pushes from its second push on (blocks
that grew 1, 3, 7 ... made each 2^k-th of a new producer's first pushes a script call: a few per
cent of a latency run's pickups, its p99). Ids stay unique
(every block comes from the queue's ``id`` counter) and increasing per producer (a script push or
a clear drops the rest of the block), but no longer dense nor in push order across producers;
the order jobs run in is the seq the ingest gives (lua/_lib.lua).

A forked child must never reuse its parent's ids: the block is dropped when ``os.getpid()``
changes. A push whose reply was lost is retried with the same entry (same id), and the ingest
stores an id once: see :meth:`Inbox.entry`.
"""

from __future__ import annotations

import os
import threading
import time

#: Most ids reserved beyond the job's own at one refill (a block holds at most this many).
MAX_EXTRA = 255


def pack(job_id: int, ttr: int, priority: int, payload: bytes, pushed: float) -> bytes:
    """``id|ttr|priority|pushed|payload``: what ingest() parses (``pushed``: the producer's clock)."""
    return b"%d|%d|%d|%.6f|" % (job_id, ttr, priority, pushed) + payload


class Inbox:
    """One driver's id block and the entry of its last push whose reply was lost, per thread."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        # a new lock too: one held by another thread of the parent at fork time is never released
        self._lock = threading.Lock()
        self._next = 1
        self._last = 0
        self._extra = 0
        #: thread id -> (payload, ttr, priority, id, entry) of a push that raised after it was sent
        self._unsent: dict[int, tuple[bytes, int, int, int, bytes]] = {}

    def entry(self, payload: bytes, ttr: int, priority: int) -> tuple[int, bytes] | None:
        """The id and entry to LPUSH, or None when the block is empty (the caller refills it by a script).

        The next push of a thread whose last push raised, with the same payload, TTR and priority, is
        a retry (ResilientDriver's, or the caller's): it resends the same entry, so if the first
        one landed the job is still stored once (unless a worker already finished it: then its meta
        is gone and the repeat runs again, as every retried push did before the inbox)."""
        if self._pid != os.getpid():
            self._reset()
        if self._unsent:
            lost = self._unsent.pop(threading.get_ident(), None)
            if lost is not None and lost[1] == ttr and lost[2] == priority and lost[0] == payload:
                return lost[3], lost[4]
        with self._lock:
            job_id = self._next
            if job_id > self._last:
                return None
            self._next = job_id + 1
        return job_id, pack(job_id, ttr, priority, payload, time.time())

    def lost(self, payload: bytes, ttr: int, priority: int, job_id: int, entry: bytes) -> None:
        """The LPUSH of ``entry`` raised: it may or may not have landed."""
        self._unsent[threading.get_ident()] = (payload, ttr, priority, job_id, entry)

    def extra(self) -> int:
        """Ids to reserve beyond the job's own at this refill: 0 the first time, then MAX_EXTRA."""
        with self._lock:
            extra = self._extra
            self._extra = MAX_EXTRA
        return extra

    def drop(self) -> None:
        """Forget the block (the next refill reserves none beyond its job): the driver's script pushes and clear
        take ids from the counter itself, past the block, so this producer's ids stay increasing."""
        with self._lock:
            self._next, self._last, self._extra = 1, 0, 0

    def refill(self, first: int, extra: int) -> None:
        """push.lua reserved ids ``first`` .. ``first + extra`` and used ``first``."""
        if self._pid != os.getpid():
            return  # reserved by the parent's call: not ours to use
        with self._lock:
            if self._next > self._last:
                self._next, self._last = first + 1, first + extra

