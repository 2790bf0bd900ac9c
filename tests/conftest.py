"""Suite-wide clean-up: the Redis keys of every CLI config a test wrote are deleted after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers import CREATED_CONFIGS, drop_redis_queues


@pytest.fixture(autouse=True)
def _drop_cli_redis_keys() -> Iterator[None]:
    yield
    while CREATED_CONFIGS:
        path, env = CREATED_CONFIGS.pop()
        drop_redis_queues(path, env)


@pytest.fixture(scope="session", autouse=True)
def _stop_redis_topologies() -> Iterator[None]:
    """The Sentinel set and Cluster a test process started (tests/topology.py) stop with its session."""
    yield
    from tests.topology import stop_session_topologies

    stop_session_topologies()


@pytest.fixture
def make_redis(tmp_path) -> Iterator[Callable[..., Any]]:
    """RedisDriver factory on the shared test Redis (``tests.drivers.backends.open_redis``); each
    driver's queue is cleared and its keys deleted after the test."""
    from tests.drivers.backends import open_redis

    cleanups: list[Callable[[], None]] = []

    def make(**opts: Any) -> Any:
        driver, cleanup = open_redis(tmp_path, **opts)
        cleanups.append(cleanup)
        return driver

    yield make
    for cleanup in reversed(cleanups):
        cleanup()
