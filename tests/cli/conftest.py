"""A config file per test and the ``pubq`` CLI run on it as a user would (``tests.helpers.Cli``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.drivers.backends import MYSQL_URL, POSTGRES_URL
from tests.helpers import Cli, fresh_mysql_database, fresh_pg_database


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    return Cli.create(tmp_path, request.param)  # its Redis keys go after the test (tests/conftest.py)


@pytest.fixture(scope="session")
def server_urls() -> Iterator[dict[str, str]]:
    """A database of this session's own on each SQL server (queue tables for CLI tests), dropped at
    the end; never another database."""
    urls, drops = {}, []
    for kind, admin, fresh in (("postgres", POSTGRES_URL, fresh_pg_database),
                               ("mysql", MYSQL_URL, fresh_mysql_database)):
        try:
            url, drop = fresh(admin, "pubq_cli")
        except Exception as exc:  # noqa: BLE001 - reported as a failure, never a skip
            pytest.fail(f"{kind} is not reachable at {admin}: {exc}", pytrace=False)
        urls[kind] = url
        drops.append(drop)
    yield urls
    for drop in drops:
        drop()
