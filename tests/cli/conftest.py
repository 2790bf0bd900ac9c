"""A config file per test and the ``pubq`` CLI run on it as a user would (``tests.helpers.Cli``)."""

from __future__ import annotations

import pytest

from tests.helpers import Cli


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    return Cli.create(tmp_path, request.param)  # its Redis keys go after the test (tests/conftest.py)
