"""PublishingService: the publish-state database, task creation, publish log, retry, queries.

One service per process (the jobs layer caches it per app). It survives ``fork``: a forked child
drops the inherited connection state without closing it and opens its own on first use.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee as pw

from ..errors import ConfigError
from . import keys
from .adapters.base import ChannelTypeService, resolve_adapter
from .codes import ChannelAppTaskNotFoundError, DuplicateTaskError, TaskNotFoundError
from .database import forget_connection, open_database, run_in_transaction
from .migrations import migrate
from .models import Models, build_models, from_us, now_us, to_us
from .outbox import COPY_JOB, UPLOAD_JOB, Dispatcher, Outbox
from .ratelimit import RateLimiter
from .request import PublishRequest, validate_request
from .settings import PublishingSettings, load_settings
from .transitions import OPERATOR, JobRef, Transitions
from .vocabulary import AccountStatus, PubLogStatus, RetryStep

log = logging.getLogger("pubq.publishing")


@dataclass(frozen=True)
class RetryResult:
    task_id: int
    #: Accounts moved 3→1.
    retried: tuple[str, ...]
    #: Accounts left alone, with their status name.
    skipped: tuple[tuple[str, str], ...]
    #: The step pushed again (None when nothing was retried).
    step: RetryStep | None
    job_ids: tuple[int, ...]


class PublishingService:
    def __init__(self, database: str | pw.Database, settings: PublishingSettings, *,
                 base_dir: Path | None = None, dispatcher: Dispatcher | None = None,
                 auto_migrate: bool = True, sleep: Callable[[float], None] = time.sleep) -> None:
        self.db = open_database(database, base_dir) if isinstance(database, str) else database
        self.settings = settings
        self.m: Models = build_models(self.db, settings.table_prefix)
        self.outbox = Outbox(self.m, settings.queues)
        self.transitions = Transitions(self.m, self.outbox)
        self.limiter = RateLimiter(self.m, sleep=sleep)
        self.dispatcher = dispatcher
        self.sleep = sleep
        self._channels: dict[str, ChannelTypeService] = {}
        self._pid = os.getpid()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s._after_fork())
        if auto_migrate:
            self.migrate()

    # -- lifecycle -------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Create or upgrade this prefix's tables (idempotent)."""
        return migrate(self.m)

    def _after_fork(self) -> None:
        forget_connection(self.db)
        self._channels = {}  # adapters may hold sockets of the parent
        self._pid = os.getpid()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.adapter.close()
        self._channels = {}
        if not self.db.is_closed():
            self.db.close()

    def tx(self, fn: Callable[[], Any]) -> Any:
        return run_in_transaction(self.db, fn)

    def channel(self, code: str) -> ChannelTypeService:
        """The adapter service of a configured channel type (built once per process)."""
        service = self._channels.get(code)
        if service is None:
            ctype = self.settings.channel_type(code)
            adapter = resolve_adapter(ctype.adapter, f"publishing.channel_types.{code}.adapter")(ctype)
            service = self._channels[code] = ChannelTypeService(ctype, adapter, self.limiter)
        return service

    def dispatch(self, row_ids: list[int | None]) -> list[int]:
        return self.outbox.dispatch([r for r in row_ids if r is not None], self.dispatcher)

    def flush_outbox(self, dispatcher: Dispatcher | None = None) -> tuple[int, int]:
        """Push outbox rows whose push failed or never happened; returns (pushed, still pending)."""
        dispatcher = dispatcher or self.dispatcher
        if dispatcher is None:
            raise RuntimeError("no dispatcher: the outbox can only be flushed with queues attached")
        return self.outbox.flush(dispatcher)

    # -- create ------------------------------------------------------------------------------------

    def submit(self, data: Any) -> int:
        """Validate a request document and create its task; returns the task id."""
        return self.create_task(validate_request(data, self.settings))

    def create_task(self, req: PublishRequest) -> int:
        """Insert task, one channel app task per account (1), assets and the copy job, atomically."""
        m = self.m

        def unit() -> tuple[int, int]:
            existing = m.Task.get_or_none((m.Task.source == req.source) & (m.Task.uuid == req.uuid))
            if existing is not None:
                raise DuplicateTaskError.make(uuid=req.uuid, source=req.source, task_id=existing.id)
            now = now_us()
            task = m.Task.create(uuid=req.uuid, source=req.source, channel_type=req.channel_type,
                                 callback_url=req.callback_url, title=req.title, body=req.body,
                                 created_at=now, updated_at=now)
            for account in req.accounts:
                m.ChannelAppTask.create(task=task, channel_type=req.channel_type, account=account,
                                        created_at=now, updated_at=now)
            for position, asset in enumerate(req.assets):
                m.Asset.create(task=task, position=position, type=asset.type, source_url=asset.url,
                               enabled=asset.enabled, created_at=now)
            self.transitions.step(task.id, None, f"task created: {len(req.accounts)} account(s), "
                                                 f"{len(req.assets)} asset(s)")
            row = self.outbox.add_job(task_id=task.id, cat_id=None, queue=self.settings.queues.copy,
                                      job=COPY_JOB, args={"task_id": task.id}, dedup_key=keys.copy_job_key(task.id, 0),
                                      reason="task created")
            return task.id, row

        try:
            task_id, row = self.tx(unit)
        except pw.IntegrityError:  # a concurrent submit of the same uuid won the race
            existing = m.Task.get((m.Task.source == req.source) & (m.Task.uuid == req.uuid))
            raise DuplicateTaskError.make(uuid=req.uuid, source=req.source, task_id=existing.id) from None
        self.dispatch([row])
        return task_id

    # -- publish log -------------------------------------------------------------------------------

    def pub_log_exists(self, dedup_key: str) -> bool:
        return self.m.PubLog.select().where(self.m.PubLog.dedup_key == dedup_key).exists()

    def write_pub_log(self, task_id: int, cat_id: int | None, *, status: PubLogStatus, code: int, message: str,
                      data: dict[str, Any] | None = None, dedup_key: str | None = None) -> bool:
        """Add a publish-log row (inside the caller's transaction); False when ``dedup_key`` exists."""
        if dedup_key is not None and self.pub_log_exists(dedup_key):
            return False
        self.m.PubLog.create(task=task_id, channel_app_task=cat_id, status=status, code=code,
                             message=message, data=data, dedup_key=dedup_key, created_at=now_us())
        return True

    # -- operator retry ------------------------------------------------------------------------------

    def retry(self, task_id: int, account: str | None = None, *, job: JobRef = OPERATOR) -> RetryResult:
        """Move failed rows 3→1 (next round) and re-push the earliest uncompleted step."""
        m = self.m
        task = self.task(task_id)
        query = m.ChannelAppTask.select().where(m.ChannelAppTask.task == task_id).order_by(m.ChannelAppTask.id)
        rows = [c for c in query if account is None or c.account == account]
        if account is not None and not rows:
            raise ChannelAppTaskNotFoundError(f"task ID {task_id} has no account {account!r}")

        def unit() -> tuple[list[str], list[tuple[str, str]], RetryStep | None, list[int]]:
            retried, skipped, outbox_rows = [], [], []
            for cat in rows:
                if cat.status != AccountStatus.FAILED:
                    skipped.append((cat.account, AccountStatus.label_of(cat.status)))
                    continue
                result = self.transitions.move_in_tx(
                    cat.id, AccountStatus.PENDING, reason="operator retry", job=job, operator=True,
                    fields={"round": cat.round + 1, "error_code": None, "error_message": None})
                if result.accepted:
                    retried.append(cat)
                else:
                    skipped.append((cat.account, AccountStatus.label_of(result.found)))
            if not retried:
                return [], skipped, None, []
            if not self.assets_copied(task_id):
                fresh = m.Task.get_by_id(task_id)
                m.Task.update(copy_round=fresh.copy_round + 1, copied_at=None).where(m.Task.id == task_id).execute()
                step = RetryStep.COPY
                outbox_rows.append(self.outbox.add_job(
                    task_id=task_id, cat_id=None, queue=self.settings.queues.copy, job=COPY_JOB,
                    args={"task_id": task_id}, dedup_key=keys.copy_job_key(task_id, fresh.copy_round + 1),
                    reason="operator retry"))
            else:
                step = RetryStep.UPLOAD
                for cat in retried:
                    outbox_rows.append(self.outbox.add_job(
                        task_id=task_id, cat_id=cat.id, queue=self.settings.queues.upload, job=UPLOAD_JOB,
                        args={"channel_app_task_id": cat.id}, dedup_key=keys.upload_job_key(cat.id, cat.round + 1),
                        reason="operator retry"))
            return [c.account for c in retried], skipped, step, outbox_rows

        retried, skipped, step, outbox_rows = self.tx(unit)
        job_ids = self.dispatch(outbox_rows)
        return RetryResult(task.id, tuple(retried), tuple(skipped), step, tuple(job_ids))

    def assets_copied(self, task_id: int) -> bool:
        A = self.m.Asset
        enabled = A.select().where(A.task == task_id, A.enabled == True)  # noqa: E712 - SQL expression
        return enabled.exists() and not enabled.where(A.relative_path.is_null()).exists()

    # -- queries ---------------------------------------------------------------------------------

    def task(self, task_id: int) -> pw.Model:
        task = self.m.Task.get_or_none(self.m.Task.id == task_id)
        if task is None:
            raise TaskNotFoundError.make(task_id=task_id)
        return task

    def channel_app_task(self, cat_id: int) -> pw.Model:
        cat = self.m.ChannelAppTask.get_or_none(self.m.ChannelAppTask.id == cat_id)
        if cat is None:
            raise ChannelAppTaskNotFoundError.make(cat_id=cat_id)
        return cat

    def accounts_view(self, task_id: int) -> list[dict[str, Any]]:
        """Every channel app task of a task as plain data (callback body, show, JSON output)."""
        C = self.m.ChannelAppTask
        return [{
            "channel_app_task_id": c.id, "account": c.account, "status": _plain(c.status),
            "status_name": AccountStatus.label_of(c.status), "enabled": c.enabled, "round": c.round,
            "item_id": c.item_id, "item_created_at": iso(c.item_created_at),
            "code": c.error_code, "message": c.error_message,
        } for c in C.select().where(C.task == task_id).order_by(C.id)]

    def show(self, task_id: int) -> dict[str, Any]:
        task = self.task(task_id)
        A, P, Ob = self.m.Asset, self.m.PubLog, self.m.Outbox
        return {
            "task": {"id": task.id, "uuid": task.uuid, "source": task.source, "channel_type": task.channel_type,
                     "title": task.title, "callback_url": task.callback_url, "created_at": iso(task.created_at),
                     "copied_at": iso(task.copied_at)},
            "accounts": self.accounts_view(task_id),
            "assets": [{"id": a.id, "position": a.position, "type": a.type, "enabled": a.enabled,
                        "relative_path": a.relative_path, "size": a.size, "sha256": a.sha256}
                       for a in A.select().where(A.task == task_id).order_by(A.position)],
            "pub_log": [{"id": p.id, "channel_app_task_id": p.channel_app_task_id, "status": _plain(p.status),
                         "code": p.code, "message": p.message, "data": p.data, "at": iso(p.created_at)}
                        for p in P.select().where(P.task == task_id).order_by(P.id)],
            "outbox": [{"id": o.id, "kind": _plain(o.kind), "queue": o.queue, "job": o.job,
                        "state": _plain(o.state), "job_id": o.job_id, "reason": o.reason, "event_id": o.event_id}
                       for o in Ob.select().where(Ob.task == task_id).order_by(Ob.id)],
        }

    def trace(self, task_id: int) -> list[dict[str, Any]]:
        """The task's timeline: every transition (accepted or rejected) and step, in order."""
        self.task(task_id)
        E, C = self.m.StatusEvent, self.m.ChannelAppTask
        accounts = {c.id: c.account for c in C.select(C.id, C.account).where(C.task == task_id)}
        return [{
            "id": e.id, "at": iso(e.at), "at_us": to_us(e.at), "kind": _plain(e.kind),
            "channel_app_task_id": e.channel_app_task_id, "account": accounts.get(e.channel_app_task_id),
            "from": _plain(e.from_status), "to": _plain(e.to_status), "reason": e.reason, "code": e.code,
            "queue": e.queue, "job_id": e.job_id, "attempt": e.attempt,
        } for e in E.select().where(E.task == task_id).order_by(E.at, E.id)]


def service_for(app: Any) -> PublishingService:
    """The app's publishing service, built once per app from ``database`` and ``publishing:``.

    Follow-up jobs are pushed by registered name to the app's queues (``Queue.push_name``).
    """
    return app.extension("publishing", _build_for_app)


def _build_for_app(app: Any) -> PublishingService:
    config = app.config
    try:
        settings = load_settings(config.publishing, config.base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None
    return PublishingService(config.database, settings, base_dir=config.base_dir,
                             dispatcher=lambda queue, name, args: app.queue(queue).push_name(name, args))


def migrate_publishing(app: Any) -> list[int]:
    """``pubq db migrate``: create or upgrade the publish-state tables."""
    return service_for(app).migrate()


def _plain(value: Any) -> Any:
    """An enum member as its stored value (``int`` or ``str``), so views serialise the same everywhere."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


def iso(value: Any) -> str | None:
    """µs-precise ISO-8601 UTC text for display and JSON."""
    return None if value is None else value.isoformat(timespec="microseconds").replace("+00:00", "Z")


__all__ = ["PublishingService", "RetryResult", "from_us", "iso", "migrate_publishing", "service_for"]
