"""PublishingService: the publish state of one app, and the operations the CLI and scripts call.

It builds each part once and wires them together; the work is done by the parts:

- :class:`~.store.PublishStore`: database, models, transactions, migrations;
- :class:`~.outbox.Outbox`: follow-up jobs and callbacks, pushed after commit;
- :class:`~.transitions.Transitions`: guarded per-row status changes and the timeline;
- :class:`~.publog.PublishLog`: the business log shown to users;
- :class:`~.records.PublishRecords` and :class:`~.views.TaskViews`: reading publish state;
- :class:`~.channels.ChannelRegistry`: channel adapters (their accounts' rate limits are kept by
  the queue core, :meth:`.pipeline.Pipeline.account_limit`);
- :class:`~.submission.TaskSubmission` and :class:`~.operator_retry.OperatorRetry`: creating and
  retrying tasks.

One service per process (:func:`service_for` caches it per app). It survives ``fork``: a forked
child drops the inherited connection and adapters without closing them and opens its own on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee as pw

from ..db_fork import on_fork_in_child
from ..errors import ConfigError
from .channels import ChannelRegistry
from .models import Models
from .operator_retry import OperatorRetry, RetryResult
from .outbox import Dispatcher, Outbox
from .publog import PublishLog
from .records import PublishRecords
from .request import PublishRequest
from .settings import PublishingSettings, load_settings
from .store import PublishStore
from .submission import TaskSubmission
from .transitions import OPERATOR, JobRef, Transitions
from .views import TaskViews


class PublishingService:
    def __init__(self, database: str | pw.Database, settings: PublishingSettings, *,
                 base_dir: Path | None = None, dispatcher: Dispatcher | None = None,
                 auto_migrate: bool = True, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        #: How the parts wait (callback retries); tests pass a no-op.
        self.sleep = sleep
        self.store = PublishStore(database, settings.table_prefix, base_dir=base_dir)
        self.outbox = Outbox(self.store, settings.queues, dispatcher)
        self.transitions = Transitions(self.store, self.outbox)
        self.publish_log = PublishLog(self.store.models)
        self.records = PublishRecords(self.store.models)
        self.views = TaskViews(self.store.models, self.records)
        self.channels = ChannelRegistry(settings)
        self.submission = TaskSubmission(self.store, settings, self.transitions, self.outbox)
        self.retries = OperatorRetry(self.store, settings, self.records, self.transitions, self.outbox)
        on_fork_in_child(self._after_fork)
        if auto_migrate:
            self.migrate()

    @property
    def db(self) -> pw.Database:
        return self.store.db

    @property
    def models(self) -> Models:
        return self.store.models

    # -- lifecycle -------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Create or upgrade this prefix's tables (idempotent)."""
        return self.store.migrate()

    def _after_fork(self) -> None:
        self.store.forget_inherited_connection()
        self.channels.forget_inherited()

    def close(self) -> None:
        self.channels.close()
        self.store.close()

    # -- operations --------------------------------------------------------------------------------

    def submit(self, data: Any) -> int:
        """Validate a request document and create its task; returns the task id."""
        return self.submission.submit(data)

    def create_task(self, req: PublishRequest) -> int:
        """Create the task of a validated request and push its copy job."""
        return self.submission.create_task(req)

    def retry(self, task_id: int, account: str | None = None, *, job: JobRef = OPERATOR) -> RetryResult:
        """Move failed rows 3→1 (next round) and re-push the earliest uncompleted step."""
        return self.retries.retry(task_id, account, job=job)

    def flush_outbox(self, dispatcher: Dispatcher | None = None) -> tuple[int, int]:
        """Push outbox rows whose push failed or never happened; returns (pushed, still pending)."""
        return self.outbox.flush(dispatcher)

    def accounts_view(self, task_id: int) -> list[dict[str, Any]]:
        """Every channel app task of a task as plain data."""
        return self.views.accounts_view(task_id)

    def show(self, task_id: int) -> dict[str, Any]:
        """The task, its accounts, assets, publish log and outbox rows, as plain data."""
        return self.views.show(task_id)

    def trace(self, task_id: int) -> list[dict[str, Any]]:
        """The task's timeline: every transition (accepted or rejected) and step, in order."""
        return self.views.trace(task_id)

    def list_tasks(self, *, status: int | None = None, channel_type: str | None = None, limit: int = 50,
                   before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Tasks newest first, filtered, one keyset page (see :meth:`TaskViews.list_tasks`)."""
        return self.views.list_tasks(status=status, channel_type=channel_type, limit=limit, before=before)

    def channel_types(self) -> list[str]:
        return self.views.channel_types()


def service_for(app: Any) -> PublishingService:
    """The app's publishing service, built once per app from ``database`` and ``publishing:``.

    Follow-up jobs are pushed by registered name to the app's queues (``Queue.push_name``).
    """
    return app.extension("publishing", _build_for_app)


def _build_for_app(app: Any, *, auto_migrate: bool = True) -> PublishingService:
    config = app.config
    try:
        settings = load_settings(config.publishing, config.base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None
    return PublishingService(config.database, settings, base_dir=config.base_dir, auto_migrate=auto_migrate,
                             dispatcher=lambda queue, name, args: app.queue(queue).push_name(name, args))


def viewer_for(app: Any) -> PublishingService:
    """The app's publishing service for a viewer (the dashboard): built without migrating, so
    opening it writes nothing; its operator retry pushes through the app's queues as usual."""
    return app.extension("publishing-viewer", lambda a: _build_for_app(a, auto_migrate=False))


def migrate_publishing(app: Any) -> list[int]:
    """``pubq db migrate``: create or upgrade the publish-state tables."""
    return service_for(app).migrate()


__all__ = ["PublishingService", "RetryResult", "migrate_publishing", "service_for", "viewer_for"]
