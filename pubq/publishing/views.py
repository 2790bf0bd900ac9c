"""Publish state as plain data: for ``pubq task show|trace``, ``--json`` output and callback bodies.

Values are plain ``int``/``str`` (the stored values), so the data serialises the same everywhere.
"""

from __future__ import annotations

from typing import Any

import peewee as pw

from .models import Models, to_us
from .records import PublishRecords
from .vocabulary import AccountStatus


def iso(value: Any) -> str | None:
    """µs-precise ISO-8601 UTC text for display and JSON."""
    return None if value is None else value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """An enum member as its stored value (``int`` or ``str``); anything else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


class TaskViews:
    def __init__(self, models: Models, records: PublishRecords) -> None:
        self.models = models
        self.records = records

    def accounts_view(self, task_id: int) -> list[dict[str, Any]]:
        """Every channel app task of a task (callback body, show, JSON output)."""
        return [{
            "channel_app_task_id": c.id, "account": c.account, "status": _plain(c.status),
            "status_name": AccountStatus.label_of(c.status), "enabled": c.enabled, "round": c.round,
            "item_id": c.item_id, "item_created_at": iso(c.item_created_at),
            "code": c.error_code, "message": c.error_message,
        } for c in self.records.channel_app_tasks(task_id)]

    def list_tasks(self, *, status: int | None = None, channel_type: str | None = None, limit: int = 50,
                   before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """Tasks newest first (by id), optionally only those with an account in ``status`` or of
        ``channel_type``; a keyset page: ``before`` is the last id of the previous page. Returns the
        rows, each with its accounts' statuses counted, and the ``before`` of the next page."""
        Task, Cat = self.models.Task, self.models.ChannelAppTask
        query = Task.select().order_by(Task.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(Task.id < before)
        if channel_type:
            query = query.where(Task.channel_type == channel_type)
        if status is not None:
            query = query.where(Task.id.in_(Cat.select(Cat.task).where(Cat.status == status)))
        tasks = list(query)
        more = len(tasks) > limit
        tasks = tasks[:limit]
        counts: dict[int, dict[int, int]] = {t.id: {} for t in tasks}
        if tasks:
            rows = (Cat.select(Cat.task, Cat.status, pw.fn.COUNT(Cat.id).alias("n"))
                    .where(Cat.task.in_(list(counts))).group_by(Cat.task, Cat.status).tuples())
            for task_id, st, n in rows:
                counts[task_id][int(st)] = int(n)
        out = [{"id": t.id, "uuid": t.uuid, "source": t.source, "channel_type": t.channel_type, "title": t.title,
                "created_at": iso(t.created_at), "callback_url": t.callback_url,
                "statuses": {AccountStatus.label_of(k): v for k, v in sorted(counts[t.id].items())}}
               for t in tasks]
        return out, (tasks[-1].id if more and tasks else None)

    def channel_types(self) -> list[str]:
        """The channel types tasks were made for (for a filter's choices)."""
        Task = self.models.Task
        return [r[0] for r in Task.select(Task.channel_type).distinct().order_by(Task.channel_type).tuples()]

    def show(self, task_id: int) -> dict[str, Any]:
        """The task, its accounts, assets, publish log and outbox rows."""
        task = self.records.task(task_id)
        Asset, PubLog, Outbox = self.models.Asset, self.models.PubLog, self.models.Outbox
        return {
            "task": {"id": task.id, "uuid": task.uuid, "source": task.source, "channel_type": task.channel_type,
                     "title": task.title, "callback_url": task.callback_url, "created_at": iso(task.created_at),
                     "copied_at": iso(task.copied_at)},
            "accounts": self.accounts_view(task_id),
            "assets": [{"id": a.id, "position": a.position, "type": a.type, "enabled": a.enabled,
                        "relative_path": a.relative_path, "size": a.size, "sha256": a.sha256}
                       for a in Asset.select().where(Asset.task == task_id).order_by(Asset.position)],
            "pub_log": [{"id": p.id, "channel_app_task_id": p.channel_app_task_id, "status": _plain(p.status),
                         "code": p.code, "message": p.message, "data": p.data, "at": iso(p.created_at)}
                        for p in PubLog.select().where(PubLog.task == task_id).order_by(PubLog.id)],
            "outbox": [{"id": o.id, "kind": _plain(o.kind), "queue": o.queue, "job": o.job,
                        "state": _plain(o.state), "job_id": o.job_id, "reason": o.reason, "event_id": o.event_id}
                       for o in Outbox.select().where(Outbox.task == task_id).order_by(Outbox.id)],
        }

    def trace(self, task_id: int) -> list[dict[str, Any]]:
        """The task's timeline: every transition (accepted or rejected) and step, in order."""
        self.records.task(task_id)
        StatusEvent = self.models.StatusEvent
        accounts = {c.id: c.account for c in self.records.channel_app_tasks(task_id)}
        return [{
            "id": e.id, "at": iso(e.at), "at_us": to_us(e.at), "kind": _plain(e.kind),
            "channel_app_task_id": e.channel_app_task_id, "account": accounts.get(e.channel_app_task_id),
            "from": _plain(e.from_status), "to": _plain(e.to_status), "reason": e.reason, "code": e.code,
            "queue": e.queue, "job_id": e.job_id, "attempt": e.attempt,
        } for e in StatusEvent.select().where(StatusEvent.task == task_id).order_by(StatusEvent.at, StatusEvent.id)]
