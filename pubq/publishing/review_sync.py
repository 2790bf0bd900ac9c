"""``pubq task sync``: ask the platforms about items under review and record 4→5 / 4→6."""

from __future__ import annotations

from typing import Any

from . import keys
from .channels import ChannelRegistry
from .codes import ItemRejectedError
from .outbox import Outbox
from .publog import PublishLog
from .records import PublishRecords
from .store import PublishStore
from .transitions import JobRef, TransitionResult, Transitions
from .vocabulary import AccountStatus, PubLogStatus, ReviewVerdict

#: The review verdicts that end a review, and the status each one leads to.
VERDICT_STATUS = {ReviewVerdict.PUBLISHED: AccountStatus.PUBLISHED, ReviewVerdict.REJECTED: AccountStatus.REJECTED}


class ReviewSync:
    def __init__(self, *, store: PublishStore, records: PublishRecords, channels: ChannelRegistry,
                 transitions: Transitions, publish_log: PublishLog, outbox: Outbox) -> None:
        self.store = store
        self.records = records
        self.channels = channels
        self.transitions = transitions
        self.publish_log = publish_log
        self.outbox = outbox

    def sync(self, task_id: int | None = None, job: JobRef | None = None) -> list[dict[str, Any]]:
        """Poll the adapters for rows under review (of one task, or all) and record the verdicts
        that end a review; returns the changes made."""
        if task_id is not None:
            self.records.task(task_id)
        job = job or JobRef(queue="sync")
        changes, callbacks = [], []
        for cat in self.records.under_review(task_id):
            channel = self.channels.get(cat.channel_type)
            verdict = channel.review(channel.account(cat.account), cat.item_id)
            to = VERDICT_STATUS.get(verdict)
            if to is None:
                continue
            result = self.store.tx(lambda cat=cat, to=to, verdict=verdict: self._record(cat, to, verdict, job))
            if result.accepted:
                callbacks.append(result.callback_id)
                changes.append({"channel_app_task_id": cat.id, "account": cat.account, "status": int(to)})
        self.outbox.dispatch(callbacks)
        return changes

    def _record(self, cat: Any, to: AccountStatus, verdict: str, job: JobRef) -> TransitionResult:
        result = self.transitions.move_in_tx(cat.id, to, reason=f"review: {verdict}", job=job)
        if result.accepted:
            if to == AccountStatus.PUBLISHED:
                status, code = PubLogStatus.SUCCESS, 0
                message = f"account {cat.account}: the platform published the item"
            else:
                status, code = PubLogStatus.ERROR, ItemRejectedError.biz_code
                message = ItemRejectedError.make(account=cat.account).user_message
            self.publish_log.write(cat.task_id, cat.id, status=status, code=code, message=message,
                                   data={"item_id": cat.item_id},
                                   dedup_key=keys.success_log_key(cat.id, cat.round, to))
        return result
