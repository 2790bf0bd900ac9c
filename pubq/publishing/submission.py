"""Creating a task from a publish request: one transaction, then the copy job is pushed."""

from __future__ import annotations

from typing import Any

import peewee as pw

from . import keys
from .codes import DuplicateTaskError
from .models import now_us
from .outbox import COPY_JOB, Outbox
from .request import PublishRequest, validate_request
from .settings import PublishingSettings
from .store import PublishStore
from .transitions import Transitions


class TaskSubmission:
    def __init__(self, store: PublishStore, settings: PublishingSettings, transitions: Transitions,
                 outbox: Outbox) -> None:
        self.store = store
        self.settings = settings
        self.transitions = transitions
        self.outbox = outbox

    def submit(self, data: Any) -> int:
        """Validate a request document and create its task; returns the task id."""
        return self.create_task(validate_request(data, self.settings))

    def create_task(self, req: PublishRequest) -> int:
        """Insert the task, one channel app task per account (pending), its assets and the copy job,
        atomically; then push the copy job. A second request with the same source and uuid is refused
        (:class:`DuplicateTaskError`) and creates nothing."""
        models = self.store.models

        def unit() -> tuple[int, int]:
            self._refuse_duplicate(req)
            now = now_us()
            task = models.Task.create(uuid=req.uuid, source=req.source, channel_type=req.channel_type,
                                      callback_url=req.callback_url, title=req.title, body=req.body,
                                      created_at=now, updated_at=now)
            for account in req.accounts:
                models.ChannelAppTask.create(task=task, channel_type=req.channel_type, account=account,
                                             created_at=now, updated_at=now)
            for position, asset in enumerate(req.assets):
                models.Asset.create(task=task, position=position, type=asset.type, source_url=asset.url,
                                    enabled=asset.enabled, created_at=now)
            self.transitions.step(task.id, None, f"task created: {len(req.accounts)} account(s), "
                                                 f"{len(req.assets)} asset(s)")
            copy_job = self.outbox.add_job(
                task_id=task.id, cat_id=None, queue=self.settings.queues.copy, job=COPY_JOB,
                args={"task_id": task.id}, dedup_key=keys.copy_job_key(task.id, 0), reason="task created")
            return task.id, copy_job

        try:
            task_id, copy_job = self.store.tx(unit)
        except pw.IntegrityError:  # a concurrent submit of the same uuid won the race
            self._refuse_duplicate(req)
            raise
        self.outbox.dispatch([copy_job])
        return task_id

    def _refuse_duplicate(self, req: PublishRequest) -> None:
        Task = self.store.models.Task
        existing = Task.get_or_none((Task.source == req.source) & (Task.uuid == req.uuid))
        if existing is not None:
            raise DuplicateTaskError.make(uuid=req.uuid, source=req.source, task_id=existing.id) from None
