"""Publish state under the real queue core with a real queue backend: App, db-driver queues,
isolated (forked) job runs, a worker that re-sends lost pushes."""

from __future__ import annotations

import os

import pytest

from pubq.app import App
from pubq.config import parse_config
from pubq.publishing.migrations import LATEST, migrate
from pubq.publishing.preset import publishing_preset
from pubq.publishing.service import PublishingService, service_for
from pubq.publishing.vocabulary import OutboxState
from pubq.worker import Worker

from .support import QUEUE_ORDER, pipeline_config, request_doc


def make_app(tmp_path, database_url: str, *, copy_on: dict | None = None, **publishing) -> App:
    raw = pipeline_config(tmp_path, database_url, driver="db", **publishing)
    raw["queues"]["copy-asset"]["on"].update(copy_on or {})
    return App(parse_config(raw, None, tmp_path, preset=publishing_preset()))


def drain(app: App, *, isolate: bool) -> None:
    for _ in range(5):
        for name in QUEUE_ORDER:
            Worker(app.queue(name), isolate=isolate, install_signals=False).run()


def test_pipeline_runs_in_forked_children_on_every_database(tmp_path, database_url) -> None:
    app = make_app(tmp_path, database_url)
    try:
        service = service_for(app)
        service.db.execute_sql("SELECT 1")  # the parent holds an open connection before every fork
        task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"]))
        drain(app, isolate=True)
        assert [a["status"] for a in service.accounts_view(task_id)] == [4, 4, 4]
        assert service.db.execute_sql("SELECT 1").fetchone()[0] == 1  # parent's session survived
        counts = app.queue("source-callback").driver.counts()
        assert (counts.done, counts.failed) == (3, 0)
    finally:
        app.close()


def test_a_forked_child_drops_the_connection_without_closing_it(service) -> None:
    service.db.execute_sql("SELECT 1")
    pid = os.fork()
    if pid == 0:  # child: use the service on a fresh connection, then leave without cleanup
        code = 0
        try:
            service.db.execute_sql("SELECT 1")
        except Exception:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert service.db.execute_sql("SELECT 1").fetchone()[0] == 1


def test_migrations_are_versioned_and_idempotent(service) -> None:
    assert migrate(service.models) == []
    SchemaVersion = service.models.SchemaVersion
    assert SchemaVersion.select().where(SchemaVersion.version == LATEST).exists()
    again = PublishingService(service.db, service.settings)
    assert again.migrate() == []


def test_a_lost_push_is_resent_by_the_next_worker(tmp_path) -> None:
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'state.db'}",
                   copy_on={"workerStart": "pubq.handlers.outbox:OutboxHandler.flush"})
    try:
        service = service_for(app)
        real = service.outbox.dispatcher

        def down(*args):
            raise ConnectionError("redis is down")

        service.outbox.dispatcher = down
        task_id = service.submit(request_doc(tmp_path))
        assert [o["state"] for o in service.show(task_id)["outbox"]] == [OutboxState.PENDING]
        service.outbox.dispatcher = real
        Worker(app.queue("copy-asset"), isolate=False, install_signals=False).run()
        outbox = service.show(task_id)["outbox"]
        assert outbox[0]["state"] == OutboxState.PUSHED and service.show(task_id)["task"]["copied_at"]
    finally:
        app.close()


def test_config_errors_in_publishing_name_the_file_and_key(tmp_path) -> None:
    from pubq.errors import ConfigError

    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", bogus=1)
    with pytest.raises(ConfigError, match=r"<default config>: publishing.bogus: unknown key"):
        service_for(app)
