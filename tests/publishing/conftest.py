"""Fixtures for publish-state tests on real SQLite, PostgreSQL and MariaDB/MySQL.

Every test session uses its own table prefix and drops only those tables at the end. A server that
cannot be reached makes the tests fail with the URL and the reason — never a silent skip.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from pubq.publishing.database import open_database, redact_url
from pubq.publishing.migrations import drop_all
from pubq.publishing.models import build_models
from pubq.publishing.service import PublishingService
from pubq.publishing.settings import PublishingSettings, load_settings

POSTGRES_URL = os.environ.get("PUBQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PUBQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SERVER_URLS = {"postgres": POSTGRES_URL, "mysql": MYSQL_URL}
DB_KINDS = ("sqlite", "postgres", "mysql")
#: One prefix per test session: tables of concurrent sessions never collide.
SESSION_PREFIX = f"pt{uuid.uuid4().hex[:8]}_"
ACCOUNTS = [f"a{i}" for i in range(1, 9)]


class FakeQueues:
    """A dispatcher that records pushes (queue, job, args) and hands out increasing ids."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.fail = False

    def __call__(self, queue: str, job: str, args: dict[str, Any]) -> int:
        if self.fail:
            raise ConnectionError("queue backend down")
        with self._lock:
            self.pushed.append((queue, job, dict(args)))
            return next(self._ids)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return [args for _, job, args in self.pushed if job.rsplit(".", 1)[-1] == name]


def douyin(tmp_path: Path, *, fail: list[str] | None = None, review: str = "review") -> dict[str, Any]:
    """The ``channel_types`` section: filesystem adapter ``douyin`` with accounts a1..a8."""
    return {"douyin": {
        "adapter": "filesystem",
        "options": {"dir": str(tmp_path / "platform"), "fail_accounts": fail or [], "review": review},
        "accounts": [{"id": a, "name": f"Account {a}"} for a in ACCOUNTS],
    }}


def publishing_config(tmp_path: Path, *, prefix: str = SESSION_PREFIX, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "table_prefix": prefix,
        "source_root": str(tmp_path / "sources"),
        "publish_dir": str(tmp_path / "publish"),
        "sources": {"allow_hosts": ["127.0.0.1"], "max_bytes": 1024 * 1024, "timeout": 5},
        "callback": {"secret": "${PUBQ_TEST_CALLBACK_SECRET:-test-secret}", "allow_hosts": ["127.0.0.1"],
                     "max_seconds": 3, "timeout": 2},
        "channel_types": douyin(tmp_path),
    }
    config.update(extra)
    return config


def make_settings(tmp_path: Path, **extra: Any) -> PublishingSettings:
    (tmp_path / "sources").mkdir(exist_ok=True)
    return load_settings(publishing_config(tmp_path, **extra), tmp_path)


def _server_db(kind: str) -> pw.Database:
    url = SERVER_URLS[kind]
    db = open_database(url)
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported as a failure below
        pytest.fail(f"{kind} at {redact_url(url)} is unreachable (set PUBQ_TEST_{kind.upper()}_URL): {exc}",
                    pytrace=False)
    return db


@pytest.fixture(scope="session")
def server_databases() -> Iterator[dict[str, pw.Database]]:
    opened: dict[str, pw.Database] = {}
    yield opened
    for db in opened.values():
        drop_all(build_models(db, SESSION_PREFIX))
        db.close()


@pytest.fixture(params=DB_KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, server_databases: dict[str, pw.Database]) -> str:
    if db_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if db_kind not in server_databases:
        server_databases[db_kind] = _server_db(db_kind)
    return SERVER_URLS[db_kind]


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> PublishingSettings:
    """Default settings; a test marked ``@pytest.mark.fail_accounts("a1", …)`` makes those fail."""
    marker = request.node.get_closest_marker("fail_accounts")
    review = request.node.get_closest_marker("review")
    return make_settings(tmp_path, channel_types=douyin(
        tmp_path, fail=list(marker.args) if marker else None, review=review.args[0] if review else "review"))


@pytest.fixture
def queues() -> FakeQueues:
    return FakeQueues()


@pytest.fixture
def service(database_url: str, settings: PublishingSettings, queues: FakeQueues,
            tmp_path: Path) -> Iterator[PublishingService]:
    svc = PublishingService(database_url, settings, base_dir=tmp_path, dispatcher=queues, sleep=lambda s: None)
    yield svc
    svc.close()


def write_source(tmp_path: Path, name: str = "clip.mp4", data: bytes = b"video-bytes" * 100) -> str:
    path = tmp_path / "sources" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def request_doc(tmp_path: Path, *, accounts: list[str] | None = None, uid: str | None = None,
                callback_url: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid publish request with one video asset under the source root."""
    doc = {
        "uuid": uid or uuid.uuid4().hex,
        "source": "vms",
        "channel_type": "douyin",
        "title": "A video",
        "body": "Body text",
        "accounts": accounts or ["a1", "a2"],
        "assets": [{"type": "video", "url": write_source(tmp_path), "enabled": True}],
    }
    if callback_url:
        doc["callback_url"] = callback_url
    doc.update(extra)
    return doc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fail_accounts(*ids): filesystem adapter fails uploads of these accounts")
    config.addinivalue_line("markers", "review(result): what the filesystem platform's review answers")
