"""Fixtures of the dashboard tests: a pubq app on real Redis and SQLite, and its dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import dashboard_config, make_client, open_app


@pytest.fixture
def dash_app(tmp_path: Path) -> Iterator[Any]:
    app = open_app(dashboard_config(tmp_path))
    yield app
    app.close()


@pytest.fixture
def client(dash_app: Any) -> Iterator[Any]:
    with make_client(dash_app) as c:
        yield c
