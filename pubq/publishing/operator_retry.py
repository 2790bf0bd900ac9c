"""``pubq task retry``: failed accounts go back to pending and their earliest unfinished step is pushed."""

from __future__ import annotations

from dataclasses import dataclass

from . import keys
from .codes import ChannelAppTaskNotFoundError
from .outbox import COPY_JOB, UPLOAD_JOB, Outbox
from .records import PublishRecords
from .settings import PublishingSettings
from .store import PublishStore
from .transitions import OPERATOR, JobRef, Transitions
from .vocabulary import AccountStatus, RetryStep


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


class OperatorRetry:
    def __init__(self, store: PublishStore, settings: PublishingSettings, records: PublishRecords,
                 transitions: Transitions, outbox: Outbox) -> None:
        self.store = store
        self.settings = settings
        self.records = records
        self.transitions = transitions
        self.outbox = outbox

    def retry(self, task_id: int, account: str | None = None, *, job: JobRef = OPERATOR) -> RetryResult:
        """Move failed rows 3→1 (next round) and re-push the earliest uncompleted step: the copy when
        the task's assets are not all copied, else one upload per retried account."""
        task = self.records.task(task_id)
        rows = [c for c in self.records.channel_app_tasks(task_id) if account is None or c.account == account]
        if account is not None and not rows:
            raise ChannelAppTaskNotFoundError(f"task ID {task_id} has no account {account!r}")

        def unit() -> tuple[list[str], list[tuple[str, str]], RetryStep | None, list[int]]:
            retried, skipped = [], []
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
            if not self.records.assets_copied(task_id):
                copy_round = self.records.next_copy_round(task_id)
                step = RetryStep.COPY
                follow_ups = [self.outbox.add_job(
                    task_id=task_id, cat_id=None, queue=self.settings.queues.copy, job=COPY_JOB,
                    args={"task_id": task_id}, dedup_key=keys.copy_job_key(task_id, copy_round),
                    reason="operator retry")]
            else:
                step = RetryStep.UPLOAD
                follow_ups = [self.outbox.add_job(
                    task_id=task_id, cat_id=cat.id, queue=self.settings.queues.upload, job=UPLOAD_JOB,
                    args={"channel_app_task_id": cat.id}, dedup_key=keys.upload_job_key(cat.id, cat.round + 1),
                    reason="operator retry") for cat in retried]
            return [c.account for c in retried], skipped, step, follow_ups

        retried, skipped, step, follow_ups = self.store.tx(unit)
        job_ids = self.outbox.dispatch(follow_ups)
        return RetryResult(task.id, tuple(retried), tuple(skipped), step, tuple(job_ids))
