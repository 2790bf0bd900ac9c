"""A config file per test and the ``pubq`` CLI run on it as a user would (``tests.helpers.Cli``)."""

from __future__ import annotations

import pytest

from tests.helpers import Cli


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    c = Cli.create(tmp_path, request.param)
    yield c
    c("work", "clear", "--yes")
