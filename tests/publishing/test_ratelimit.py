"""Per-account token buckets stored in the database."""

from __future__ import annotations

import pytest

from pubq.publishing.codes import AdapterUnavailableError
from pubq.publishing.ratelimit import RateLimiter
from pubq.publishing.settings import RateLimit


def test_bucket_allows_burst_then_asks_to_wait(service) -> None:
    limiter = RateLimiter(service.store)
    limit = RateLimit(rate=0.001, burst=2)
    key = f"douyin:{id(limiter)}"
    assert limiter.try_acquire(key, limit) == 0
    assert limiter.try_acquire(key, limit) == 0
    wait = limiter.try_acquire(key, limit)
    assert 900 < wait <= 1000  # one token per 1000 s
    assert limiter.try_acquire(f"{key}:other", limit) == 0  # buckets are per channel type + account


def test_acquire_waits_for_refill_or_gives_up(service) -> None:
    slept: list[float] = []
    limiter = RateLimiter(service.store, sleep=slept.append)
    key = f"douyin:{id(limiter)}"
    limiter.acquire(key, RateLimit(rate=0.001, burst=1, max_wait=0), channel_type="douyin", account="a1")
    with pytest.raises(AdapterUnavailableError, match="rate limit"):
        limiter.acquire(key, RateLimit(rate=0.001, burst=1, max_wait=5), channel_type="douyin", account="a1")
    assert slept == []
