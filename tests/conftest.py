"""Suite-wide clean-up: the Redis keys of every CLI config a test wrote are deleted after the test."""

from __future__ import annotations

from collections.abc import Iterator

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
