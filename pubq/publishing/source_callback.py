"""The source-callback step: send a callback recorded in the outbox, once, and record how it ended."""

from __future__ import annotations

from typing import Any

from . import keys
from .callback import CallbackSender
from .codes import StepRejectedError, describe
from .outbox import Outbox
from .publog import PublishLog
from .records import PublishRecords
from .store import PublishStore
from .transitions import JobRef, Transitions
from .views import TaskViews
from .vocabulary import OutboxState, PubLogStatus


class SourceCallbackStep:
    def __init__(self, *, store: PublishStore, outbox: Outbox, records: PublishRecords, views: TaskViews,
                 transitions: Transitions, publish_log: PublishLog, sender: CallbackSender) -> None:
        self.store = store
        self.outbox = outbox
        self.records = records
        self.views = views
        self.transitions = transitions
        self.publish_log = publish_log
        self.sender = sender

    def send(self, event_id: str, job: JobRef) -> dict[str, Any]:
        """POST the task's accounts to its callback URL, signed; a callback already sent (or with
        nowhere to go) is skipped."""
        row = self.outbox.callback_row(event_id)
        if row is None:
            raise StepRejectedError(f"callback event {event_id} does not exist")
        if row.state in (OutboxState.SENT, OutboxState.SKIPPED):
            return {"event_id": event_id, "skipped": f"already {row.state}"}
        task = self.records.task(row.task_id)
        if not task.callback_url:
            self.outbox.mark_callback(event_id, OutboxState.SKIPPED, "the task has no callback_url")
            return {"event_id": event_id, "skipped": "task has no callback_url"}
        payload = {
            "event_id": event_id, "event": row.reason,
            "task": {"id": task.id, "uuid": task.uuid, "source": task.source, "channel_type": task.channel_type},
            "accounts": [{k: v for k, v in a.items() if k != "enabled"} for a in self.views.accounts_view(task.id)],
        }
        status = self.sender.send(task.callback_url, payload, task_id=task.id)
        self.outbox.mark_callback(event_id, OutboxState.SENT)
        self.store.tx(lambda: self.transitions.step(task.id, row.channel_app_task_id,
                                                    f"callback sent (HTTP {status})", job=job))
        return {"event_id": event_id, "http_status": status}

    def failed(self, event_id: str, error: BaseException | None, job: JobRef) -> None:
        """Final failure of a callback: the row is marked failed and the task's publish log says so."""
        row = self.outbox.callback_row(event_id)
        if row is None:
            return
        code, message = describe(error, task_id=row.task_id)

        def unit() -> None:
            self.outbox.mark_callback(event_id, OutboxState.FAILED, message)
            self.publish_log.write(row.task_id, None, status=PubLogStatus.ERROR, code=code, message=message,
                                   data=job.as_data(), dedup_key=keys.callback_failure_log_key(job))

        self.store.tx(unit)
