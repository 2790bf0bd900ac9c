"""How the test suite opens each driver kind on a real backend.

Every factory returns ``(driver, cleanup)``; the channel is unique per call so tests never share
keys or rows, and cleanup removes only what the test created (never FLUSHDB, never another table).
A backend that cannot be reached makes the test *fail* with a clear reason (no silent skip in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

REDIS_URL = os.environ.get("PUBQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("PUBQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PUBQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

#: Driver kinds the conformance suite runs on. Each name maps to a factory below.
DRIVER_KINDS = ("memory", "redis", "sqlite", "postgres", "mysql")


def unique_channel(prefix: str = "t") -> str:
    return f"pubq-test:{prefix}:{uuid.uuid4().hex[:12]}"


Factory = Callable[..., tuple[Any, Callable[[], None]]]
FACTORIES: dict[str, Factory] = {}


def factory(kind: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        FACTORIES[kind] = fn
        return fn

    return deco


def open_driver(kind: str, tmp_path, **opts: Any):
    try:
        fn = FACTORIES[kind]
    except KeyError:
        raise AssertionError(f"no test factory for driver kind {kind!r} yet") from None
    return fn(tmp_path, **opts)


@factory("redis")
def open_redis(tmp_path, *, channel: str | None = None, **limits: int):
    """RedisDriver on ``REDIS_URL``; cleanup clears the queue and deletes its fixed key list only."""
    import redis

    from pubq.drivers.redis import RedisDriver

    driver = RedisDriver(REDIS_URL, channel or unique_channel("redis"), **limits)
    try:
        driver.ping()
    except Exception as exc:
        driver.close()
        raise AssertionError(f"Redis is not reachable at {REDIS_URL} (set PUBQ_TEST_REDIS_URL): {exc}") from exc

    def cleanup() -> None:
        try:
            driver.clear()
            driver.client.delete(*driver.keys)  # the counters too; never another queue's keys
        except redis.RedisError:
            pass
        driver.close()

    return driver, cleanup
