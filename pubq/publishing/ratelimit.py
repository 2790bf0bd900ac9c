"""Per-account token buckets stored in the publish-state database.

A bucket is keyed by ``<channel type>:<account>`` (:func:`.keys.rate_bucket_key`); several workers
on several hosts share it. Each take is one short transaction (row lock on PostgreSQL/MySQL,
``BEGIN IMMEDIATE`` on SQLite).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .codes import AdapterUnavailableError
from .models import now_us
from .settings import RateLimit
from .store import PublishStore


class RateLimiter:
    def __init__(self, store: PublishStore, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.sleep = sleep

    def try_acquire(self, key: str, limit: RateLimit) -> float:
        """Take one token: 0.0 when taken, else the seconds until one is due."""
        return self.store.tx(lambda: self._take(key, limit))

    def _take(self, key: str, limit: RateLimit) -> float:
        RateBucket = self.store.models.RateBucket
        now = now_us()
        RateBucket.insert(key=key, tokens=float(limit.burst), updated_us=now).on_conflict_ignore().execute()
        bucket = self.store.locking(RateBucket.select().where(RateBucket.key == key)).get()
        elapsed = max(0.0, (now - bucket.updated_us) / 1_000_000)
        tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / limit.rate
        RateBucket.update(tokens=tokens, updated_us=max(now, bucket.updated_us)).where(RateBucket.key == key).execute()
        return wait

    def acquire(self, key: str, limit: RateLimit, *, channel_type: str, account: str) -> None:
        """Wait up to ``limit.max_wait`` seconds for a token, then give up with a retryable error."""
        deadline = time.monotonic() + limit.max_wait
        while True:
            wait = self.try_acquire(key, limit)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise AdapterUnavailableError.make(
                    channel_type=channel_type, account=account, reason="rate limit reached, retrying later")
            self.sleep(wait)
