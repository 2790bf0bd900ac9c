"""A Redis worker's wait: what its last take that found nothing saw, for the blocking call after it.

Why: a prefetching worker acks and takes in one script (``ack_and_reserve_many``); when that finds
nothing it waits (``reserve_many`` with a timeout), which used to look once more before its BLMOVE:
one round trip per idle transition that sees what the first saw. Anything that becomes due in
between ends the BLMOVE anyway (a push's inbox entry, a wake marker), and the first take's next-due
time bounds the wait for delayed jobs, so the wait goes straight to the BLMOVE.
"""

from __future__ import annotations

import threading
import time

#: How long a take that found nothing stands for the next blocking call of the same thread (s).
FOUND_NONE_FRESH = 0.005


class FoundNone:
    """Per thread: when a take last found nothing due, and the next-due time it read (None: no
    delayed job). Valid for the next reserve call only, and only within :data:`FOUND_NONE_FRESH`."""

    def __init__(self) -> None:
        self._local = threading.local()

    def note(self, next_due: float | None) -> None:
        self._local.at = time.monotonic()
        self._local.next_due = next_due

    def take(self) -> float | None:
        """The next-due time left (inf: no delayed job), or None when there is no fresh note."""
        at = getattr(self._local, "at", None)
        if at is None:
            return None
        self._local.at = None
        elapsed = time.monotonic() - at
        if elapsed > FOUND_NONE_FRESH:
            return None
        next_due = self._local.next_due
        return float("inf") if next_due is None else next_due - elapsed
