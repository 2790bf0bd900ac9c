"""Backoff between attempts, as pure functions (no clock, no state)."""

from __future__ import annotations

import random

from .config import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt after ``attempt`` (1-based) failed.

    Exponential doubles ``delay`` per attempt up to ``max_delay``; with jitter the wait is drawn
    uniformly from [delay/2, delay] so a burst of failures does not retry in lock-step.
    """
    if attempt < 1:
        attempt = 1
    if policy.backoff == "fixed":
        base = policy.delay
    else:
        base = policy.delay * (2 ** min(attempt - 1, 32))
    base = min(base, policy.max_delay) if policy.max_delay > 0 else base
    if policy.jitter and base > 0:
        base = (rng or random).uniform(base / 2, base)
    return max(0.0, base)
