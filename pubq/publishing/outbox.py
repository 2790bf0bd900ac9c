"""The outbox: follow-up jobs and source callbacks written in the same transaction as the state
change that causes them, then handed to a dispatcher after commit.

A lost push (Redis down, crash between commit and push) leaves the row ``pending`` (or ``pushing``
with an old claim time); :meth:`Outbox.flush` sends it later. A row is claimed before it is pushed,
so two flushers never push it twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import peewee as pw

from .database import run_in_transaction
from .models import Models, now_us
from .settings import QueueNames
from .vocabulary import OutboxKind, OutboxState

log = logging.getLogger("pubq.publishing")

#: (queue name, registered job name, JSON args) → job id; with an app it is ``queue.push_name``.
Dispatcher = Callable[[str, str, dict[str, Any]], "int | None"]

#: Registered names of the pipeline jobs (pubq.jobs); the outbox stores them, never classes.
COPY_JOB, UPLOAD_JOB, ARTICLE_JOB, CALLBACK_JOB = (
    "pubq.jobs.CopyAssetJob", "pubq.jobs.UploadAssetJob", "pubq.jobs.PubArticleJob", "pubq.jobs.SourceCallbackJob")

#: A ``pushing`` claim older than this (seconds) is treated as lost and pushed again by flush.
STALE_CLAIM_SECONDS = 300


class Outbox:
    def __init__(self, models: Models, queues: QueueNames) -> None:
        self.m = models
        self.queues = queues

    # -- writes (call inside the transaction of the state change) ------------------------------

    def add_job(self, *, task_id: int, cat_id: int | None, queue: str, job: str, args: dict[str, Any],
                dedup_key: str, reason: str) -> int:
        """Record a follow-up job once per ``dedup_key``; returns the outbox row id."""
        return self._insert(task_id=task_id, channel_app_task=cat_id, kind=OutboxKind.JOB, queue=queue, job=job,
                            args=args, dedup_key=dedup_key, reason=reason)

    def add_callback(self, *, task_id: int, cat_id: int | None, dedup_key: str, reason: str) -> int:
        """Record a source callback once per ``dedup_key``; its ``event_id`` is stable across retries."""
        event_id = uuid.uuid4().hex
        return self._insert(task_id=task_id, channel_app_task=cat_id, kind=OutboxKind.CALLBACK,
                            queue=self.queues.callback, job=CALLBACK_JOB, args={"event_id": event_id},
                            dedup_key=dedup_key, reason=reason, event_id=event_id)

    def _insert(self, **values: Any) -> int:
        Ob = self.m.Outbox
        Ob.insert(created_at=now_us(), state=OutboxState.PENDING, task=values.pop("task_id"),
                 **values).on_conflict_ignore().execute()
        return Ob.select(Ob.id).where(Ob.dedup_key == values["dedup_key"]).scalar()

    # -- dispatch (after commit) -----------------------------------------------------------------

    def dispatch(self, row_ids: Iterable[int], dispatcher: Dispatcher | None) -> list[int]:
        """Push the given pending rows; returns the job ids pushed. Failures stay pending (logged)."""
        pushed: list[int] = []
        if dispatcher is None:
            return pushed
        for row_id in row_ids:
            job_id = self._push_one(row_id, dispatcher)
            if job_id is not None:
                pushed.append(job_id)
        return pushed

    def flush(self, dispatcher: Dispatcher, *, limit: int = 1000) -> tuple[int, int]:
        """Push every pending row (and stale claims); returns (pushed, still pending)."""
        Ob = self.m.Outbox
        stale = now_us() - STALE_CLAIM_SECONDS * 1_000_000
        ids = [r.id for r in Ob.select(Ob.id).where(
            (Ob.state == OutboxState.PENDING) | ((Ob.state == OutboxState.PUSHING) & (Ob.pushed_at < stale))
        ).order_by(Ob.id).limit(limit)]
        for row_id in ids:
            Ob.update(state=OutboxState.PENDING).where(
                Ob.id == row_id, Ob.state == OutboxState.PUSHING, Ob.pushed_at < stale).execute()
        pushed = len(self.dispatch(ids, dispatcher))
        left = Ob.select().where(Ob.state.in_((OutboxState.PENDING, OutboxState.PUSHING))).count()
        return pushed, left

    def _push_one(self, row_id: int, dispatcher: Dispatcher) -> int | None:
        Ob = self.m.Outbox
        claimed = Ob.update(state=OutboxState.PUSHING, pushed_at=now_us()).where(
            Ob.id == row_id, Ob.state == OutboxState.PENDING).execute()
        if claimed != 1:
            return None  # pushed already, or another dispatcher holds it
        row = Ob.get_by_id(row_id)
        try:
            job_id = dispatcher(row.queue, row.job, dict(row.args))
        except Exception as exc:  # noqa: BLE001 - the row stays pending for flush; never lost
            log.warning("outbox %s: push of %s to %s failed, left for `pubq outbox flush`: %s",
                        row_id, row.job, row.queue, exc)
            Ob.update(state=OutboxState.PENDING, push_attempts=Ob.push_attempts + 1,
                     last_error=str(exc)[:1000]).where(Ob.id == row_id).execute()
            return None
        Ob.update(state=OutboxState.PUSHED, job_id=job_id, push_attempts=Ob.push_attempts + 1).where(
            Ob.id == row_id, Ob.state == OutboxState.PUSHING).execute()
        return job_id

    # -- callbacks -------------------------------------------------------------------------------

    def callback_row(self, event_id: str) -> pw.Model | None:
        Ob = self.m.Outbox
        return Ob.get_or_none((Ob.event_id == event_id) & (Ob.kind == OutboxKind.CALLBACK))

    def mark_callback(self, event_id: str, state: OutboxState, error: str | None = None) -> None:
        """Record where a callback ended: sent, skipped or failed (with the reason)."""
        Ob = self.m.Outbox
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == OutboxState.SENT:
            values["sent_at"] = now_us()
        run_in_transaction(self.m.database, lambda: Ob.update(**values).where(Ob.event_id == event_id).execute())
