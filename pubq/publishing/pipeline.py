"""The pipeline steps that jobs (:mod:`pubq.jobs`) and event handlers (:mod:`pubq.handlers`) call.

Each step is idempotent per (task, account, step): its outcome and its follow-up job are recorded in
publish state (outbox) before the job is acked, so a re-run after a crash skips what is done and
pushes nothing twice. Failures are per row: a final failure moves *that* channel app task to failed, with
one publish-log row per event key and one source callback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import keys
from .adapters.base import Article, UploadFile
from .callback import CallbackSender
from .codes import (
    AssetMissingError,
    AssetsNotCopiedError,
    BizCoded,
    ItemRejectedError,
    NoChannelAppTasksError,
    ServerError,
    StepRejectedError,
    describe,
)
from .copying import copy_asset
from .models import from_us, now_us
from .outbox import ARTICLE_JOB, UPLOAD_JOB
from .service import PublishingService, iso, service_for
from .transitions import JobRef
from .vocabulary import AccountStatus, CopyFailureStage, OutboxState, PubLogStatus, ReviewVerdict

log = logging.getLogger("pubq.publishing")
#: The review verdicts that end a review, and the status each one leads to.
VERDICT_STATUS = {ReviewVerdict.PUBLISHED: AccountStatus.PUBLISHED, ReviewVerdict.REJECTED: AccountStatus.REJECTED}
#: Statuses of a row whose item exists: its upload and create steps are done.
ITEM_CREATED = frozenset({AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED, AccountStatus.REJECTED})


def pipeline_for(app: Any) -> Pipeline:
    """The app's pipeline (one per process, built on first use)."""
    return app.extension("publishing.pipeline", lambda a: Pipeline(service_for(a)))


class Pipeline:
    def __init__(self, service: PublishingService, *, sender: CallbackSender | None = None) -> None:
        self.s = service
        self.m = service.m
        self.sender = sender or CallbackSender(service.settings.callback, sleep=service.sleep)

    # -- copy-asset --------------------------------------------------------------------------------

    def copy_assets(self, task_id: int, job: JobRef) -> dict[str, Any]:
        """Copy every enabled asset not copied yet; 35020 when the task has no enabled asset."""
        A = self.m.Asset
        self.s.task(task_id)
        assets = list(A.select().where(A.task == task_id, A.enabled == True).order_by(A.position))  # noqa: E712
        if not assets:
            raise ServerError.make(task_id=task_id)
        copied = 0
        for asset in assets:
            root = self.s.settings.publish_dirs[asset.type]
            if asset.relative_path and (root / asset.relative_path.lstrip("/")).is_file():
                continue  # done by an earlier run of this step
            result = copy_asset(asset.source_url, asset.type, self.s.settings.sources, root,
                                task_id=task_id, index=asset.position)
            A.update(relative_path=result.relative_path, size=result.size, sha256=result.sha256,
                     copied_at=now_us()).where(A.id == asset.id).execute()
            copied += 1

        def record() -> None:
            self.m.Task.update(copied_at=now_us(), updated_at=now_us()).where(self.m.Task.id == task_id).execute()
            self.s.transitions.step(task_id, None, f"assets copied ({copied} new, {len(assets)} enabled)", job=job)

        self.s.tx(record)
        return {"task_id": task_id, "assets": len(assets), "copied": copied}

    def fan_out(self, task_id: int, job: JobRef) -> list[int]:
        """afterExec of copy-asset: one UploadAssetJob per enabled pending account (35021 if none)."""
        C = self.m.ChannelAppTask
        task = self.s.task(task_id)
        if not self.s.assets_copied(task_id):
            raise AssetsNotCopiedError.make(task_id=task_id)
        rows = list(C.select().where(C.task == task_id, C.enabled == True).order_by(C.id))  # noqa: E712
        if not rows:
            raise NoChannelAppTasksError.make(task_id=task_id)
        channel = self.s.channel(task.channel_type)

        def unit() -> list[int]:
            outbox_rows = []
            for cat in rows:
                if cat.status != AccountStatus.PENDING:
                    continue
                try:
                    channel.account(cat.account)
                except BizCoded as exc:  # one misconfigured account fails alone
                    outbox_rows.append(self._fail_row(cat.id, exc, job, keys.fan_out_failure_log_key(job, cat.id))
                                       or None)
                    continue
                outbox_rows.append(self.s.outbox.add_job(
                    task_id=task_id, cat_id=cat.id, queue=self.s.settings.queues.upload, job=UPLOAD_JOB,
                    args={"channel_app_task_id": cat.id}, dedup_key=keys.upload_job_key(cat.id, cat.round),
                    reason="assets copied"))
                self.s.transitions.step(task_id, cat.id, "upload job queued", job=job, status=cat.status)
            return outbox_rows

        return self.s.dispatch(self.s.tx(unit))

    def fail_task(self, task_id: int, error: BaseException | None, job: JobRef, *,
                  stage: CopyFailureStage) -> list[int]:
        """copy-asset finally failed (or its follow-up raised): every enabled pending/releasing row → 3
        (one guarded transition each), one pub_log row per row and one callback for the task.
        Replaying the same event key changes nothing."""
        C, Ob, P = self.m.ChannelAppTask, self.m.Outbox, self.m.PubLog
        task = self.m.Task.get_or_none(self.m.Task.id == task_id)
        if task is None:
            log.warning("copy-asset %s of task %s: the task does not exist, nothing to fail", stage, task_id)
            return []
        code, message = describe(error, task_id=task_id)

        def unit() -> list[int]:
            prefix = keys.copy_failure_log_prefix(job, stage)
            if P.select().where(P.task == task_id, P.dedup_key.startswith(f"{prefix}:")).exists():
                return []  # this event was handled already
            rows = list(C.select().where(C.task == task_id, C.enabled == True).order_by(C.id))  # noqa: E712
            logged = 0
            for cat in rows:
                if cat.status not in (AccountStatus.PENDING, AccountStatus.RELEASING):
                    continue
                if stage == CopyFailureStage.FOLLOW_UP and Ob.select().where(
                        Ob.dedup_key == keys.upload_job_key(cat.id, cat.round)).exists():
                    continue  # its upload was queued before the follow-up broke; it carries on
                logged += self._fail_row(cat.id, error, job, keys.copy_failure_log_key(job, stage, cat.id),
                                         callback=False, code=code, message=message)
            if logged == 0:  # no row could carry the message: keep it on the task
                self.s.write_pub_log(task_id, None, status=PubLogStatus.ERROR, code=code, message=message,
                                     data=job.as_data(), dedup_key=keys.copy_failure_task_log_key(job, stage))
            return [self.s.outbox.add_callback(
                task_id=task_id, cat_id=None, reason=f"copy-asset {stage} failed",
                dedup_key=keys.copy_failure_callback_key(task_id, task.copy_round, stage))]

        return self.s.dispatch(self.s.tx(unit))

    # -- upload-asset --------------------------------------------------------------------------------

    def upload(self, cat_id: int, job: JobRef) -> dict[str, Any]:
        """1→2, upload this account's assets once, record the PubArticleJob follow-up."""
        cat = self._start(cat_id, job, "upload started")
        if cat is None:
            return {"channel_app_task_id": cat_id, "skipped": "already past upload"}
        task = cat.task
        if cat.uploaded_at is None:
            channel = self.s.channel(task.channel_type)
            account = channel.account(cat.account)
            media = channel.upload(account, self._files(task.id),
                                   keys.adapter_idempotency_key(task.source, task.uuid, cat.account, cat.round))
        else:
            media = cat.media

        def unit() -> int:
            C = self.m.ChannelAppTask
            if cat.uploaded_at is None:
                C.update(media=media, uploaded_at=now_us(), updated_at=now_us()).where(
                    C.id == cat_id, C.uploaded_at.is_null()).execute()
                self.s.transitions.step(task.id, cat_id, f"media uploaded ({len(media)} file(s))", job=job,
                                        status=AccountStatus.RELEASING)
            return self.s.outbox.add_job(task_id=task.id, cat_id=cat_id, queue=self.s.settings.queues.article,
                                         job=ARTICLE_JOB, args={"channel_app_task_id": cat_id},
                                         dedup_key=keys.article_job_key(cat_id, cat.round), reason="media uploaded")

        self.s.tx(unit)
        return {"channel_app_task_id": cat_id, "media": len(media)}

    def push_follow_ups(self, cat_id: int) -> list[int]:
        """afterExec of upload-asset / pub-article: push this row's recorded, unpushed follow-ups
        (next job, callbacks). Steps never push themselves: they may run in an isolated child."""
        Ob = self.m.Outbox
        ids = [r.id for r in Ob.select(Ob.id).where(
            Ob.channel_app_task == cat_id, Ob.state == OutboxState.PENDING).order_by(Ob.id)]
        return self.s.dispatch(ids)

    # -- pub-article ------------------------------------------------------------------------------------

    def publish_article(self, cat_id: int, job: JobRef) -> dict[str, Any]:
        """Create the item once; store item id and item_created_at; 2→4 for this row only."""
        C = self.m.ChannelAppTask
        cat = self.s.channel_app_task(cat_id)
        if cat.status in ITEM_CREATED and cat.item_id:
            return {"channel_app_task_id": cat_id, "skipped": "item already created"}
        if cat.status != AccountStatus.RELEASING or cat.uploaded_at is None:
            self._reject(cat, AccountStatus.UNDER_REVIEW, job, "create item refused")
        task = cat.task
        if cat.item_id is None:
            channel = self.s.channel(task.channel_type)
            account = channel.account(cat.account)
            article = Article(task.id, task.uuid, task.source, task.title, task.body)
            item = channel.create(account, article, dict(cat.media or {}),
                                  keys.adapter_idempotency_key(task.source, task.uuid, cat.account, cat.round))
            created = item.created_at or from_us(now_us())
            item_id = item.item_id
            C.update(item_id=item_id, item_created_at=created).where(C.id == cat_id, C.item_id.is_null()).execute()
        else:  # created before a crash; finish the transition
            item_id, created = cat.item_id, cat.item_created_at

        def unit() -> Any:
            result = self.s.transitions.move_in_tx(cat_id, AccountStatus.UNDER_REVIEW, reason="item created",
                                                   job=job)
            if result.accepted:
                self.s.write_pub_log(task.id, cat_id, status=PubLogStatus.SUCCESS, code=0,
                                     message=f"published to account {cat.account}; the platform is reviewing it",
                                     data={"item_id": item_id, "item_created_at": iso(created)},
                                     dedup_key=keys.success_log_key(cat_id, cat.round, AccountStatus.UNDER_REVIEW))
            return result

        result = self.s.tx(unit)
        if not result.accepted:
            raise StepRejectedError.make(account=cat.account, task_id=task.id,
                                         status=AccountStatus.label_of(result.found))
        return {"channel_app_task_id": cat_id, "item_id": item_id}

    # -- final failures of upload-asset / pub-article -------------------------------------------------

    def row_failed(self, cat_id: int, error: BaseException | None, job: JobRef) -> list[int]:
        """That one row → 3 with a pub_log row and a callback; siblings untouched. Once per event key."""
        if isinstance(error, StepRejectedError) or getattr(error, "biz_code", None) == StepRejectedError.biz_code:
            return []  # the step already recorded its rejected transition; the row is not ours to fail
        callback = self.s.tx(lambda: self._fail_row(cat_id, error, job, keys.account_failure_log_key(job, cat_id)))
        return self.s.dispatch([callback]) if callback else []

    def _fail_row(self, cat_id: int, error: BaseException | None, job: JobRef, log_key: str, *,
                  callback: bool = True, code: int | None = None, message: str | None = None) -> Any:
        """Inside a transaction: → 3 and its pub_log row. Returns the callback id (or 1/0 without one)."""
        if self.s.pub_log_exists(log_key):
            return 0
        cat = self.s.channel_app_task(cat_id)
        if code is None or message is None:
            code, message = describe(error, task_id=cat.task_id, account=cat.account)
        result = self.s.transitions.move_in_tx(
            cat_id, AccountStatus.FAILED, reason=f"{job.queue or 'operator'} failed", code=code, job=job, callback=callback,
            fields={"error_code": code, "error_message": message})
        if not result.accepted:
            return 0
        self.s.write_pub_log(cat.task_id, cat_id, status=PubLogStatus.ERROR, code=code, message=message,
                             data={**job.as_data(), "account": cat.account}, dedup_key=log_key)
        return result.callback_id if callback else 1

    # -- source-callback ---------------------------------------------------------------------------------

    def send_callback(self, event_id: str, job: JobRef) -> dict[str, Any]:
        row = self.s.outbox.callback_row(event_id)
        if row is None:
            raise StepRejectedError(f"callback event {event_id} does not exist")
        if row.state in (OutboxState.SENT, OutboxState.SKIPPED):
            return {"event_id": event_id, "skipped": f"already {row.state}"}
        task = self.s.task(row.task_id)
        if not task.callback_url:
            self.s.outbox.mark_callback(event_id, OutboxState.SKIPPED, "the task has no callback_url")
            return {"event_id": event_id, "skipped": "task has no callback_url"}
        payload = {
            "event_id": event_id, "event": row.reason,
            "task": {"id": task.id, "uuid": task.uuid, "source": task.source, "channel_type": task.channel_type},
            "accounts": [{k: v for k, v in a.items() if k != "enabled"} for a in self.s.accounts_view(task.id)],
        }
        status = self.sender.send(task.callback_url, payload, task_id=task.id)
        self.s.outbox.mark_callback(event_id, OutboxState.SENT)
        self.s.tx(lambda: self.s.transitions.step(task.id, row.channel_app_task_id,
                                                  f"callback sent (HTTP {status})", job=job))
        return {"event_id": event_id, "http_status": status}

    def callback_failed(self, event_id: str, error: BaseException | None, job: JobRef) -> None:
        """Final failure of a callback: the row is marked failed and the task's publish log says so."""
        row = self.s.outbox.callback_row(event_id)
        if row is None:
            return
        code, message = describe(error, task_id=row.task_id)

        def unit() -> None:
            self.s.outbox.mark_callback(event_id, OutboxState.FAILED, message)
            self.s.write_pub_log(row.task_id, None, status=PubLogStatus.ERROR, code=code, message=message,
                                 data=job.as_data(), dedup_key=keys.callback_failure_log_key(job))

        self.s.tx(unit)

    # -- review sync -------------------------------------------------------------------------------------

    def sync_reviews(self, task_id: int | None = None, job: JobRef | None = None) -> list[dict[str, Any]]:
        """Poll the adapters for rows under review (4) and record 4→5 / 4→6."""
        C = self.m.ChannelAppTask
        query = C.select().where(C.status == AccountStatus.UNDER_REVIEW, C.item_id.is_null(False))
        if task_id is not None:
            self.s.task(task_id)
            query = query.where(C.task == task_id)
        changes, callbacks = [], []
        for cat in query.order_by(C.id):
            channel = self.s.channel(cat.channel_type)
            verdict = channel.review(channel.account(cat.account), cat.item_id)
            to = VERDICT_STATUS.get(verdict)
            if to is None:
                continue

            def unit(cat: Any = cat, to: AccountStatus = to, verdict: str = verdict) -> Any:
                result = self.s.transitions.move_in_tx(cat.id, to, reason=f"review: {verdict}",
                                                       job=job or JobRef(queue="sync"))
                if result.accepted:
                    published = to == AccountStatus.PUBLISHED
                    self.s.write_pub_log(
                        cat.task_id, cat.id, status=PubLogStatus.SUCCESS if published else PubLogStatus.ERROR,
                        code=0 if published else ItemRejectedError.biz_code,
                        message=f"account {cat.account}: the platform published the item" if published
                        else ItemRejectedError.make(account=cat.account).user_message,
                        data={"item_id": cat.item_id}, dedup_key=keys.success_log_key(cat.id, cat.round, to))
                return result

            result = self.s.tx(unit)
            if result.accepted:
                callbacks.append(result.callback_id)
                changes.append({"channel_app_task_id": cat.id, "account": cat.account, "status": int(to)})
        self.s.dispatch(callbacks)
        return changes

    # -- helpers ---------------------------------------------------------------------------------------

    def _start(self, cat_id: int, job: JobRef, reason: str) -> Any:
        """Begin a row's upload: 1→2, or resume a row already at 2; None when the row is past it."""
        cat = self.s.channel_app_task(cat_id)
        if cat.status == AccountStatus.PENDING and cat.enabled:
            result = self.s.transitions.move(cat_id, AccountStatus.RELEASING, reason=reason, job=job)
            if result.accepted:
                return self.s.channel_app_task(cat_id)
            cat = self.s.channel_app_task(cat_id)
        if cat.status == AccountStatus.RELEASING and cat.enabled:
            return cat
        if cat.status in ITEM_CREATED:
            return None
        self._reject(cat, AccountStatus.RELEASING, job, reason)
        return None  # pragma: no cover - _reject raises

    def _reject(self, cat: Any, to: AccountStatus, job: JobRef, reason: str) -> None:
        """Record the refused transition, then fail the job permanently, naming `pubq task retry`."""
        result = self.s.transitions.move(cat.id, to, reason=reason, job=job)
        status = "disabled" if not cat.enabled else AccountStatus.label_of(result.found)
        raise StepRejectedError.make(account=cat.account, task_id=cat.task_id, status=status)

    def _files(self, task_id: int) -> list[UploadFile]:
        A = self.m.Asset
        files = []
        for a in A.select().where(A.task == task_id, A.enabled == True).order_by(A.position):  # noqa: E712
            if not a.relative_path:
                raise AssetsNotCopiedError.make(task_id=task_id)
            path = Path(self.s.settings.publish_dirs[a.type]) / a.relative_path.lstrip("/")
            if not path.is_file():
                raise AssetMissingError.make(task_id=task_id, index=a.position, reason="copied file is gone")
            files.append(UploadFile(a.id, a.type, path, a.relative_path, a.size or 0, a.sha256 or ""))
        return files
