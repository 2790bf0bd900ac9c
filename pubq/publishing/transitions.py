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

from .codes import ChannelAppTaskNotFoundError
from .database import run_in_transaction
from .models import FAILED, PENDING, PUBLISHED, REJECTED, RELEASING, REVIEW, STATUS_NAMES, Models, now_us
from .outbox import Outbox

log = logging.getLogger("pubq.publishing")

#: to-status → statuses it may come from (publishing.md §2). 3→1 needs ``operator=True``.
SOURCES: dict[int, frozenset[int]] = {
    RELEASING: frozenset({PENDING}),
    FAILED: frozenset({PENDING, RELEASING}),
    REVIEW: frozenset({RELEASING}),
    PUBLISHED: frozenset({REVIEW}),
    REJECTED: frozenset({REVIEW}),
    PENDING: frozenset({FAILED}),
}
#: Reaching one of these sends the source a callback.
CALLBACK_STATES = frozenset({FAILED, REVIEW, PUBLISHED, REJECTED})


@dataclass(frozen=True)
class JobRef:
    """Which job (queue, id, attempt) caused a change; all None for operator/API actions."""

    queue: str | None = None
    job_id: int | None = None
    attempt: int | None = None

    @classmethod
    def from_key(cls, key: tuple[str, int, int]) -> JobRef:
        return cls(*key)

    def dedup(self) -> str:
        return f"{self.queue}:{self.job_id}:{self.attempt}"


OPERATOR = JobRef(queue="operator")


@dataclass(frozen=True)
class TransitionResult:
    channel_app_task_id: int
    task_id: int
    accepted: bool
    #: The status the row had when the transition was tried.
    found: int
    to: int
    status_event_id: int
    #: Outbox id of the callback written with this transition, if any.
    callback_id: int | None = None


class Transitions:
    def __init__(self, models: Models, outbox: Outbox) -> None:
        self.m = models
        self.outbox = outbox

    def move(self, cat_id: int, to: int, *, reason: str, job: JobRef = OPERATOR, code: int | None = None,
             operator: bool = False, fields: dict[str, Any] | None = None,
             callback: bool = True) -> TransitionResult:
        """One guarded transition in its own transaction (or a savepoint of the caller's)."""
        return run_in_transaction(self.m.database, lambda: self.move_in_tx(
            cat_id, to, reason=reason, job=job, code=code, operator=operator, fields=fields,
            callback=callback))

    def move_in_tx(self, cat_id: int, to: int, *, reason: str, job: JobRef = OPERATOR,
                   code: int | None = None, operator: bool = False, fields: dict[str, Any] | None = None,
                   callback: bool = True) -> TransitionResult:
        """The transition inside an open transaction: guarded update, status event, callback."""
        Cat = self.m.ChannelAppTask
        query = Cat.select(Cat.id, Cat.task, Cat.status, Cat.round, Cat.account).where(Cat.id == cat_id)
        if self.m.database.for_update:
            query = query.for_update()
        row = query.get_or_none()
        if row is None:
            raise ChannelAppTaskNotFoundError.make(cat_id=cat_id)
        sources = SOURCES[to] if (to != PENDING or operator) else frozenset()
        found = row.status
        accepted = False
        if found in sources:
            values = {"status": to, "updated_at": now_us(), **(fields or {})}
            updated = Cat.update(**values).where(Cat.id == cat_id, Cat.status.in_(sorted(sources))).execute()
            accepted = updated == 1
            if not accepted:  # changed under us: report what is there now
                found = Cat.select(Cat.status).where(Cat.id == cat_id).scalar()
        event = self.m.StatusEvent.create(
            task=row.task_id, channel_app_task=cat_id, kind="transition" if accepted else "rejected",
            from_status=found, to_status=to, reason=reason[:255], code=code, queue=job.queue,
            job_id=job.job_id, attempt=job.attempt, at=now_us(),
        )
        callback_id = None
        if accepted and callback and to in CALLBACK_STATES:
            callback_id = self.outbox.add_callback(
                task_id=row.task_id, cat_id=cat_id, dedup_key=f"callback:{cat_id}:{row.round}:{to}",
                reason=f"account {row.account} is {STATUS_NAMES[to]}")
        if not accepted:
            log.warning(
                "rejected transition of channel app task %s (account %s): %s→%s refused, status is %s "
                "(%s; %s job %s attempt %s)", cat_id, row.account, _name(found), _name(to), _name(found),
                reason, job.queue, job.job_id, job.attempt)
        return TransitionResult(cat_id, row.task_id, accepted, found, to, event.id, callback_id)

    def step(self, task_id: int, cat_id: int | None, reason: str, *, job: JobRef = OPERATOR,
             code: int | None = None, status: int | None = None) -> None:
        """Record a step that changes no status (copied, uploaded, pushed…) in the timeline."""
        self.m.StatusEvent.create(
            task=task_id, channel_app_task=cat_id, kind="step", from_status=status, to_status=status,
            reason=reason[:255], code=code, queue=job.queue, job_id=job.job_id, attempt=job.attempt,
            at=now_us())


def _name(status: int | None) -> str:
    return f"{status} ({STATUS_NAMES.get(status, '?')})" if status is not None else "missing"
