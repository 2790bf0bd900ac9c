"""Fixtures for the publishing tests, on real SQLite, PostgreSQL and MariaDB/MySQL.

Every test session uses its own table prefix and drops only those tables at the end. A server that
cannot be reached makes the tests fail with the URL and the reason — never a silent skip.

``app`` is a :class:`pubq.app.App` over the real pipeline queues (``sync`` driver) and handlers;
``service`` and ``pipeline`` are its publishing service and pipeline, ``recorded`` what its queues
did. Markers shape it: ``fail_accounts(*ids)``, ``review(result)`` and ``held(*queues)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import pytest

from pubq.app import App
from pubq.publishing.database import open_database, redact_url
from pubq.publishing.migrations import drop_all
from pubq.publishing.models import build_models
from pubq.publishing.pipeline import Pipeline, pipeline_for
from pubq.publishing.service import PublishingService, service_for
from pubq.publishing.vocabulary import OutboxState

from .recorder import Recording, recording
from .support import DB_KINDS, SERVER_URLS, SESSION_PREFIX, douyin, pipeline_app


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
def app(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Iterator[App]:
    """The pipeline's App; ``@pytest.mark.fail_accounts("a1", …)`` makes those accounts' uploads fail,
    ``@pytest.mark.review("published")`` sets the platform's review, ``@pytest.mark.held("copy-asset",
    …)`` keeps those queues' jobs until the test runs them (:func:`.support.run_queue`)."""
    fail = request.node.get_closest_marker("fail_accounts")
    review = request.node.get_closest_marker("review")
    held = request.node.get_closest_marker("held")
    app = pipeline_app(tmp_path, database_url, held=tuple(held.args) if held else (),
                       channel_types=douyin(tmp_path, fail=list(fail.args) if fail else None,
                                            review=review.args[0] if review else "review"))
    if database_url in SERVER_URLS.values():
        _forget_earlier_outbox(app)
    yield app
    app.close()


def _forget_earlier_outbox(app: App) -> None:
    """Server databases hold this process's earlier tests' rows (one table prefix per process): their
    unsent outbox rows are marked pushed, or this test's workers would flush them onto its queues."""
    Row = service_for(app).models.Outbox
    Row.update(state=OutboxState.PUSHED).where(Row.state.in_((OutboxState.PENDING, OutboxState.PUSHING))).execute()


@pytest.fixture
def service(app: App) -> PublishingService:
    return service_for(app)


@pytest.fixture
def pipeline(app: App, service: PublishingService) -> Pipeline:
    return pipeline_for(app)


@pytest.fixture
def recorded(app: App) -> Recording:
    return recording(app)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fail_accounts(*ids): filesystem adapter fails uploads of these accounts")
    config.addinivalue_line("markers", "review(result): what the filesystem platform's review answers")
    config.addinivalue_line("markers", "held(*queues): these pipeline queues keep their jobs until run_queue()")
