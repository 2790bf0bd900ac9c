"""Guarded per-row status transitions of channel app tasks, each recorded in the timeline.

Every change is ``UPDATE … WHERE id=? AND status IN (allowed from-states)`` with the row count
checked — never an update by task id. A transition whose guard does not match is *rejected*: it is
recorded in ``status_event`` (with the status found), logged, and returned to the caller, which
decides whether that is an error. A transition to 3/4/5/6 writes its source callback into the
outbox in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import peewee as pw

from . import keys
from .codes import GENERIC_CODE, ChannelAppTaskNotFoundError
from .models import now_us
from .outbox import Outbox
from .store import PublishStore
from .vocabulary import AccountStatus, EventKind

log = logging.getLogger("pubq.publishing")

#: to-status → statuses it may come from: 1→2, 1→3, 2→3, 2→4, 4→5, 4→6, and 3→1, which only an
#: operator retry may do (``operator=True``).
SOURCES: dict[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.RELEASING: frozenset({AccountStatus.PENDING}),
    AccountStatus.FAILED: frozenset({AccountStatus.PENDING, AccountStatus.RELEASING}),
    AccountStatus.UNDER_REVIEW: frozenset({AccountStatus.RELEASING}),
    AccountStatus.PUBLISHED: frozenset({AccountStatus.UNDER_REVIEW}),
    AccountStatus.REJECTED: frozenset({AccountStatus.UNDER_REVIEW}),
    AccountStatus.PENDING: frozenset({AccountStatus.FAILED}),
}
#: Reaching one of these sends the source a callback.
CALLBACK_STATES = frozenset({AccountStatus.FAILED, AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED,
                             AccountStatus.REJECTED})


@dataclass(frozen=True)
class JobRef:
    """Which job (queue, id, attempt) caused a change; all None for operator/API actions."""

    queue: str | None = None
    job_id: int | None = None
    attempt: int | None = None

    @classmethod
    def from_key(cls, key: tuple[str, int, int]) -> JobRef:
        return cls(*key)

    def event_key(self) -> str:
        """This job attempt as the first part of the dedup keys of what it writes."""
        return keys.event_key(self.queue, self.job_id, self.attempt)

    def as_data(self) -> dict[str, Any]:
        """This job attempt as the ``data`` of a publish-log row."""
        return {"queue": self.queue, "job_id": self.job_id, "attempt": self.attempt}


OPERATOR = JobRef(queue="operator")


@dataclass(frozen=True)
class TransitionResult:
    channel_app_task_id: int
    task_id: int
    accepted: bool
    #: The status the row had when the transition was tried.
    found: AccountStatus
    to: AccountStatus
    status_event_id: int
    #: Outbox id of the callback written with this transition, if any.
    callback_id: int | None = None


class Transitions:
    def __init__(self, store: PublishStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def move(self, cat_id: int, to: AccountStatus, *, reason: str, job: JobRef = OPERATOR, code: int | None = None,
             operator: bool = False, fields: dict[str, Any] | None = None,
             callback: bool = True) -> TransitionResult:
        """One guarded transition in its own transaction (or a savepoint of the caller's)."""
        return self.store.tx(lambda: self.move_in_tx(
            cat_id, to, reason=reason, job=job, code=code, operator=operator, fields=fields,
            callback=callback))

    def move_in_tx(self, cat_id: int, to: AccountStatus, *, reason: str, job: JobRef = OPERATOR,
                   code: int | None = None, operator: bool = False, fields: dict[str, Any] | None = None,
                   callback: bool = True) -> TransitionResult:
        """The transition inside an open transaction: guarded update, status event, callback."""
        ChannelAppTask = self.store.models.ChannelAppTask
        query = ChannelAppTask.select(ChannelAppTask.id, ChannelAppTask.task, ChannelAppTask.status,
                                      ChannelAppTask.round, ChannelAppTask.account).where(ChannelAppTask.id == cat_id)
        row = self.store.locking(query).get_or_none()
        if row is None:
            raise ChannelAppTaskNotFoundError.make(cat_id=cat_id)
        sources = SOURCES[to] if (to != AccountStatus.PENDING or operator) else frozenset()
        found = row.status
        accepted = False
        if found in sources:
            values = {"status": to, "updated_at": now_us(), **(fields or {})}
            updated = ChannelAppTask.update(**values).where(
                ChannelAppTask.id == cat_id, ChannelAppTask.status.in_(sorted(sources))).execute()
            accepted = updated == 1
            if not accepted:  # changed under us: report what is there now
                found = ChannelAppTask.select(ChannelAppTask.status).where(ChannelAppTask.id == cat_id).scalar()
        event = self.store.models.StatusEvent.create(
            task=row.task_id, channel_app_task=cat_id, kind=EventKind.TRANSITION if accepted else EventKind.REJECTED,
            from_status=found, to_status=to, reason=reason[:255], code=code, queue=job.queue,
            job_id=job.job_id, attempt=job.attempt, at=now_us(),
        )
        callback_id = None
        if accepted and callback and to in CALLBACK_STATES:
            callback_id = self.outbox.add_callback(
                task_id=row.task_id, cat_id=cat_id, dedup_key=keys.status_callback_key(cat_id, row.round, to),
                reason=f"account {row.account} is {AccountStatus(to).label}")
        if not accepted:
            log.warning(
                "rejected transition of channel app task %s (account %s): %s→%s refused, status is %s "
                "(%s; %s job %s attempt %s)", cat_id, row.account, _name(found), _name(to), _name(found),
                reason, job.queue, job.job_id, job.attempt)
        return TransitionResult(cat_id, row.task_id, accepted, found, to, event.id, callback_id)

    def step(self, task_id: int, cat_id: int | None, reason: str, *, job: JobRef = OPERATOR,
             code: int | None = None, status: AccountStatus | None = None) -> None:
        """Record a step that changes no status (copied, uploaded, pushed…) in the timeline."""
        self.store.models.StatusEvent.create(
            task=task_id, channel_app_task=cat_id, kind=EventKind.STEP, from_status=status, to_status=status,
            reason=reason[:255], code=code, queue=job.queue, job_id=job.job_id, attempt=job.attempt,
            at=now_us())


    def attempt_failed(self, task_id: int, cat_id: int | None, reason: str, *, job: JobRef, code: int,
                       status: AccountStatus | None = None) -> bool:
        """Record a failed attempt that another attempt follows, once per (row, job attempt): a
        recovering worker that runs the afterError handlers again adds nothing. Returns whether it
        was recorded now."""
        StatusEvent = self.store.models.StatusEvent

        def unit() -> bool:
            seen = StatusEvent.select(StatusEvent.id).where(
                StatusEvent.task == task_id, StatusEvent.kind == EventKind.ATTEMPT_FAILED,
                (StatusEvent.channel_app_task.is_null() if cat_id is None else StatusEvent.channel_app_task == cat_id),
                StatusEvent.queue == job.queue, StatusEvent.job_id == job.job_id, StatusEvent.attempt == job.attempt,
            ).exists()
            if seen:
                return False
            StatusEvent.create(task=task_id, channel_app_task=cat_id, kind=EventKind.ATTEMPT_FAILED,
                               from_status=status, to_status=status, reason=reason[:255], code=code,
                               queue=job.queue, job_id=job.job_id, attempt=job.attempt, at=now_us())
            return True

        return self.store.tx(unit)

    def last_attempt_error(self, cat_id: int) -> tuple[int, str] | None:
        """(code, message) of the row's latest failed attempt of this round that carries a code of
        its own (a platform's, not the generic 35000), or None."""
        StatusEvent = self.store.models.StatusEvent
        round_start = StatusEvent.select(pw.fn.MAX(StatusEvent.id)).where(
            StatusEvent.channel_app_task == cat_id, StatusEvent.kind == EventKind.TRANSITION,
            StatusEvent.to_status == AccountStatus.PENDING).scalar() or 0
        event = (StatusEvent.select(StatusEvent.code, StatusEvent.reason)
                 .where(StatusEvent.channel_app_task == cat_id, StatusEvent.kind == EventKind.ATTEMPT_FAILED,
                        StatusEvent.id > round_start, StatusEvent.code.is_null(False),
                        StatusEvent.code != GENERIC_CODE)
                 .order_by(StatusEvent.id.desc()).first())
        return None if event is None else (event.code, event.reason)


def _name(status: int | None) -> str:
    return f"{int(status)} ({AccountStatus.label_of(status)})" if status is not None else "missing"
