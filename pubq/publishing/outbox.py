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

from .models import now_us
from .settings import QueueNames
from .store import PublishStore
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
    def __init__(self, store: PublishStore, queues: QueueNames, dispatcher: Dispatcher | None = None) -> None:
        self.store = store
        self.queues = queues
        #: Pushes rows to the queues; None (no queues attached) leaves every row pending.
        self.dispatcher = dispatcher

    # -- writes (call inside the transaction of the state change) ------------------------------

    def add_job(self, *, task_id: int, cat_id: int | None, queue: str, job: str, args: dict[str, Any],
                dedup_key: str, reason: str) -> int:
        """Record a follow-up job once per ``dedup_key``; returns the outbox row id."""
        return self._insert(task_id=task_id, channel_app_task=cat_id, kind=OutboxKind.JOB, queue=queue,
                            job=job, args=args, dedup_key=dedup_key, reason=reason)

    def add_callback(self, *, task_id: int, cat_id: int | None, dedup_key: str, reason: str) -> int:
        """Record a source callback once per ``dedup_key``; its ``event_id`` is stable across retries."""
        event_id = uuid.uuid4().hex
        return self._insert(task_id=task_id, channel_app_task=cat_id, kind=OutboxKind.CALLBACK,
                            queue=self.queues.callback, job=CALLBACK_JOB, args={"event_id": event_id},
                            dedup_key=dedup_key, reason=reason, event_id=event_id)

    def _insert(self, **values: Any) -> int:
        Row = self.store.models.Outbox
        Row.insert(created_at=now_us(), state=OutboxState.PENDING, task=values.pop("task_id"),
                   **values).on_conflict_ignore().execute()
        return Row.select(Row.id).where(Row.dedup_key == values["dedup_key"]).scalar()

    # -- reads -------------------------------------------------------------------------------------

    def exists(self, dedup_key: str) -> bool:
        """Whether a row was recorded under ``dedup_key``."""
        Row = self.store.models.Outbox
        return Row.select().where(Row.dedup_key == dedup_key).exists()

    def pending_for(self, cat_id: int) -> list[int]:
        """Ids of the channel app task's rows not pushed yet, oldest first."""
        Row = self.store.models.Outbox
        query = Row.select(Row.id).where(Row.channel_app_task == cat_id, Row.state == OutboxState.PENDING)
        return [row.id for row in query.order_by(Row.id)]

    # -- dispatch (after commit) -----------------------------------------------------------------

    def dispatch(self, row_ids: Iterable[int | None]) -> list[int]:
        """Push the given pending rows (None entries are skipped); returns the job ids pushed.
        Failures stay pending (logged)."""
        if self.dispatcher is None:
            return []
        return self._push_all([r for r in row_ids if r is not None], self.dispatcher)

    def flush(self, dispatcher: Dispatcher | None = None, *, limit: int = 1000) -> tuple[int, int]:
        """Push every pending row (and stale claims); returns (pushed, still pending)."""
        dispatcher = dispatcher or self.dispatcher
        if dispatcher is None:
            raise RuntimeError("no dispatcher: the outbox can only be flushed with queues attached")
        Row = self.store.models.Outbox
        stale = now_us() - STALE_CLAIM_SECONDS * 1_000_000
        ids = [r.id for r in Row.select(Row.id).where(
            (Row.state == OutboxState.PENDING) | ((Row.state == OutboxState.PUSHING) & (Row.pushed_at < stale))
        ).order_by(Row.id).limit(limit)]
        for row_id in ids:
            Row.update(state=OutboxState.PENDING).where(
                Row.id == row_id, Row.state == OutboxState.PUSHING, Row.pushed_at < stale).execute()
        pushed = len(self._push_all(ids, dispatcher))
        left = Row.select().where(Row.state.in_((OutboxState.PENDING, OutboxState.PUSHING))).count()
        return pushed, left

    def _push_all(self, row_ids: list[int], dispatcher: Dispatcher) -> list[int]:
        pushed = [self._push_one(row_id, dispatcher) for row_id in row_ids]
        return [job_id for job_id in pushed if job_id is not None]

    def _push_one(self, row_id: int, dispatcher: Dispatcher) -> int | None:
        Row = self.store.models.Outbox
        claimed = Row.update(state=OutboxState.PUSHING, pushed_at=now_us()).where(
            Row.id == row_id, Row.state == OutboxState.PENDING).execute()
        if claimed != 1:
            return None  # pushed already, or another dispatcher holds it
        row = Row.get_by_id(row_id)
        try:
            job_id = dispatcher(row.queue, row.job, dict(row.args))
        except Exception as exc:  # noqa: BLE001 - the row stays pending for flush; never lost
            log.warning("outbox %s: push of %s to %s failed, left for `pubq outbox flush`: %s",
                        row_id, row.job, row.queue, exc)
            Row.update(state=OutboxState.PENDING, push_attempts=Row.push_attempts + 1,
                       last_error=str(exc)[:1000]).where(Row.id == row_id).execute()
            return None
        Row.update(state=OutboxState.PUSHED, job_id=job_id, push_attempts=Row.push_attempts + 1).where(
            Row.id == row_id, Row.state == OutboxState.PUSHING).execute()
        return job_id

    # -- callbacks -------------------------------------------------------------------------------

    def callback_row(self, event_id: str) -> pw.Model | None:
        Row = self.store.models.Outbox
        return Row.get_or_none((Row.event_id == event_id) & (Row.kind == OutboxKind.CALLBACK))

    def mark_callback(self, event_id: str, state: OutboxState, error: str | None = None) -> None:
        """Record where a callback ended: sent, skipped or failed (with the reason)."""
        Row = self.store.models.Outbox
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == OutboxState.SENT:
            values["sent_at"] = now_us()
        self.store.tx(lambda: Row.update(**values).where(Row.event_id == event_id).execute())
