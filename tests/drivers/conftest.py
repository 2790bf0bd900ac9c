"""Fixtures of the driver conformance suite: every test runs once per kind in ``DRIVER_KINDS``.

``make_driver(**opts)`` opens a driver on the kind's real backend; options every factory honours are
``channel`` (a second handle on the same queue, or a chosen name), ``failed_limit`` and
``follow_up_limit``; ``clock`` (a fake backend clock) only where the driver allows it. Whatever was
opened is cleaned up after the test, in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.drivers.backends import kind_params, open_driver


@pytest.fixture(params=kind_params())
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_driver(kind: str, tmp_path) -> Iterator[Callable[..., Any]]:
    cleanups: list[Callable[[], None]] = []

    def make(**opts: Any) -> Any:
        driver, cleanup = open_driver(kind, tmp_path, **opts)
        cleanups.append(cleanup)
        return driver

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture
def driver(make_driver: Callable[..., Any]) -> Any:
    return make_driver()
