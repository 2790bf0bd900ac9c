"""The pipeline steps that jobs (:mod:`pubq.jobs`) and event handlers (:mod:`pubq.handlers`) call.

Each step is idempotent per (task, account, step): its outcome and its follow-up job are recorded in
publish state (outbox) before the job is acked, so a re-run after a crash skips what is done and
pushes nothing twice. Failures are per row: a final failure moves *that* channel app task to failed,
with one publish-log row per event key and one source callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..limits import LimitKey
from . import keys
from .adapters.base import Article, UploadFile
from .callback import CallbackSender
from .channels import ChannelRegistry
from .codes import (
    GENERIC_CODE,
    AssetMissingError,
    AssetsNotCopiedError,
    BizCoded,
    NoChannelAppTasksError,
    ServerError,
    StepRejectedError,
    describe,
    lost_worker,
)
from .copying import copy_asset
from .models import from_us, now_us
from .outbox import ARTICLE_JOB, UPLOAD_JOB, Outbox
from .publog import PublishLog
from .records import PublishRecords
from .review_sync import ReviewSync
from .service import PublishingService, service_for
from .settings import PublishingSettings
from .source_callback import SourceCallbackStep
from .store import PublishStore
from .transitions import JobRef, Transitions
from .views import iso
from .vocabulary import AccountStatus, CopyFailureStage, PubLogStatus

log = logging.getLogger("pubq.publishing")

#: Statuses of a row whose item exists: its upload and create steps are done.
ITEM_CREATED = frozenset({AccountStatus.UNDER_REVIEW, AccountStatus.PUBLISHED, AccountStatus.REJECTED})


def pipeline_for(app: Any) -> Pipeline:
    """The app's pipeline (one per process, built on first use)."""
    return app.extension("publishing.pipeline", lambda a: build_pipeline(service_for(a)))


def build_pipeline(service: PublishingService, *, sender: CallbackSender | None = None) -> Pipeline:
    """The pipeline over a service's publish state, channels and outbox."""
    sender = sender or CallbackSender(service.settings.callback, sleep=service.sleep)
    parts = {"store": service.store, "records": service.records, "transitions": service.transitions,
             "publish_log": service.publish_log, "outbox": service.outbox}
    return Pipeline(
        settings=service.settings, channels=service.channels, **parts,
        callbacks=SourceCallbackStep(views=service.views, sender=sender, **parts),
        reviews=ReviewSync(channels=service.channels, **parts),
    )


class Pipeline:
    def __init__(self, *, settings: PublishingSettings, store: PublishStore, records: PublishRecords,
                 transitions: Transitions, publish_log: PublishLog, outbox: Outbox, channels: ChannelRegistry,
                 callbacks: SourceCallbackStep, reviews: ReviewSync) -> None:
        self.settings = settings
        self.store = store
        self.records = records
        self.transitions = transitions
        self.publish_log = publish_log
        self.outbox = outbox
        self.channels = channels
        self.callbacks = callbacks
        self.reviews = reviews

    # -- copy-asset --------------------------------------------------------------------------------

    def copy_assets(self, task_id: int, job: JobRef,
                    progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
        """Copy every enabled asset not copied yet; 35020 when the task has no enabled asset.

        ``progress`` (the job's ``ctx.progress``) hears the bytes copied as they go, so a large
        asset shows movement in ``pubq workers``."""
        self.records.task(task_id)
        assets = self.records.enabled_assets(task_id)
        if not assets:
            raise ServerError.make(task_id=task_id)
        copied = 0
        total = len(assets)
        for n, asset in enumerate(assets):
            root = self.settings.publish_dirs[asset.type]
            if asset.relative_path and (root / asset.relative_path.lstrip("/")).is_file():
                continue  # done by an earlier run of this step
            on_bytes = None
            if progress is not None:
                def on_bytes(size: int, n: int = n) -> None:
                    progress(n / total, f"asset {n + 1} of {total}: {size:,} bytes copied")
            result = copy_asset(asset.source_url, asset.type, self.settings.sources, root,
                                task_id=task_id, index=asset.position, on_bytes=on_bytes)
            self.records.record_copy(asset.id, result)
            copied += 1

        def record() -> None:
            self.records.mark_task_copied(task_id)
            self.transitions.step(task_id, None, f"assets copied ({copied} new, {len(assets)} enabled)", job=job)

        self.store.tx(record)
        if progress is not None:
            progress(1.0, f"{total} asset{'s' if total != 1 else ''} copied")
        return {"task_id": task_id, "assets": len(assets), "copied": copied}

    def fan_out(self, task_id: int, job: JobRef) -> list[int]:
        """afterExec of copy-asset: one UploadAssetJob per enabled pending account (35021 if none)."""
        task = self.records.task(task_id)
        if not self.records.assets_copied(task_id):
            raise AssetsNotCopiedError.make(task_id=task_id)
        rows = self.records.channel_app_tasks(task_id, enabled_only=True)
        if not rows:
            raise NoChannelAppTasksError.make(task_id=task_id)
        channel = self.channels.get(task.channel_type)

        def unit() -> list[int | None]:
            follow_ups: list[int | None] = []
            for cat in rows:
                if cat.status != AccountStatus.PENDING:
                    continue
                try:
                    channel.account(cat.account)
                except BizCoded as exc:  # one misconfigured account fails alone
                    follow_ups.append(self._fail_row(cat.id, exc, job, keys.fan_out_failure_log_key(job, cat.id))
                                      or None)
                    continue
                follow_ups.append(self.outbox.add_job(
                    task_id=task_id, cat_id=cat.id, queue=self.settings.queues.upload, job=UPLOAD_JOB,
                    args={"channel_app_task_id": cat.id}, dedup_key=keys.upload_job_key(cat.id, cat.round),
                    reason="assets copied"))
                self.transitions.step(task_id, cat.id, "upload job queued", job=job, status=cat.status)
            return follow_ups

        return self.outbox.dispatch(self.store.tx(unit))

    def fail_task(self, task_id: int, error: BaseException | None, job: JobRef, *,
                  stage: CopyFailureStage) -> list[int]:
        """copy-asset finally failed (or its follow-up raised): every enabled pending/releasing row → 3
        (one guarded transition each), one pub_log row per row and one callback for the task.
        Replaying the same event key changes nothing."""
        task = self.records.find_task(task_id)
        if task is None:
            log.warning("copy-asset %s of task %s: the task does not exist, nothing to fail", stage, task_id)
            return []
        code, message = describe(error, task_id=task_id)

        def unit() -> list[int]:
            if self.publish_log.exists_under(task_id, keys.copy_failure_log_prefix(job, stage)):
                return []  # this event was handled already
            logged = 0
            for cat in self.records.channel_app_tasks(task_id, enabled_only=True):
                if cat.status not in (AccountStatus.PENDING, AccountStatus.RELEASING):
                    continue
                if stage == CopyFailureStage.FOLLOW_UP and self.outbox.exists(keys.upload_job_key(cat.id, cat.round)):
                    continue  # its upload was queued before the follow-up broke; it carries on
                logged += self._fail_row(cat.id, error, job, keys.copy_failure_log_key(job, stage, cat.id),
                                         callback=False, code=code, message=message)
            if logged == 0:  # no row could carry the message: keep it on the task
                self.publish_log.write(task_id, None, status=PubLogStatus.ERROR, code=code, message=message,
                                       data=job.as_data(), dedup_key=keys.copy_failure_task_log_key(job, stage))
            return [self.outbox.add_callback(
                task_id=task_id, cat_id=None, reason=f"copy-asset {stage} failed",
                dedup_key=keys.copy_failure_callback_key(task_id, task.copy_round, stage))]

        return self.outbox.dispatch(self.store.tx(unit))

    # -- per-account rate limits -------------------------------------------------------------------

    def account_limit(self, cat_id: int) -> LimitKey | None:
        """The rate limit of the account a channel app task calls (keyed by channel type +
        account), as the core limit its upload-asset and pub-article jobs take before they start.
        None when the row, its channel type or account is gone (the step itself then says why)
        or no rate limit is configured."""
        cat = self.records.find_channel_app_task(cat_id)
        if cat is None:
            return None
        channel_type = self.settings.channel_types.get(cat.channel_type)
        account = channel_type.accounts.get(cat.account) if channel_type is not None else None
        if channel_type is None or account is None:
            return None
        limit = account.rate_limit or channel_type.rate_limit
        return None if limit is None else limit.limit(keys.rate_bucket_key(channel_type.code, account.id))

    # -- upload-asset --------------------------------------------------------------------------------

    def upload(self, cat_id: int, job: JobRef) -> dict[str, Any]:
        """1→2, upload this account's assets once, record the PubArticleJob follow-up."""
        cat = self._start(cat_id, job, "upload started")
        if cat is None:
            return {"channel_app_task_id": cat_id, "skipped": "already past upload"}
        task = cat.task
        if cat.uploaded_at is None:
            channel = self.channels.get(task.channel_type)
            media = channel.upload(channel.account(cat.account), self._files(task.id),
                                   keys.adapter_idempotency_key(task.source, task.uuid, cat.account, cat.round))
        else:
            media = cat.media

        def unit() -> int:
            if cat.uploaded_at is None:
                self.records.record_media(cat_id, media)
                self.transitions.step(task.id, cat_id, f"media uploaded ({len(media)} file(s))", job=job,
                                      status=AccountStatus.RELEASING)
            return self.outbox.add_job(task_id=task.id, cat_id=cat_id, queue=self.settings.queues.article,
                                       job=ARTICLE_JOB, args={"channel_app_task_id": cat_id},
                                       dedup_key=keys.article_job_key(cat_id, cat.round), reason="media uploaded")

        self.store.tx(unit)
        return {"channel_app_task_id": cat_id, "media": len(media)}

    def push_follow_ups(self, cat_id: int) -> list[int]:
        """afterExec of upload-asset / pub-article: push this row's recorded, unpushed follow-ups
        (next job, callbacks). Steps never push themselves: they may run in an isolated child."""
        return self.outbox.dispatch(self.outbox.pending_for(cat_id))

    # -- pub-article ------------------------------------------------------------------------------------

    def publish_article(self, cat_id: int, job: JobRef) -> dict[str, Any]:
        """Create the item once; store item id and item_created_at; 2→4 for this row only."""
        cat = self.records.channel_app_task(cat_id)
        if cat.status in ITEM_CREATED and cat.item_id:
            return {"channel_app_task_id": cat_id, "skipped": "item already created"}
        if cat.status != AccountStatus.RELEASING or cat.uploaded_at is None:
            self._reject(cat, AccountStatus.UNDER_REVIEW, job, "create item refused")
        task = cat.task
        if cat.item_id is None:
            channel = self.channels.get(task.channel_type)
            article = Article(task.id, task.uuid, task.source, task.title, task.body)
            item = channel.create(channel.account(cat.account), article, dict(cat.media or {}),
                                  keys.adapter_idempotency_key(task.source, task.uuid, cat.account, cat.round))
            item_id, created = item.item_id, item.created_at or from_us(now_us())
            self.records.record_item(cat_id, item_id, created)
        else:  # created before a crash; finish the transition
            item_id, created = cat.item_id, cat.item_created_at

        def unit() -> Any:
            result = self.transitions.move_in_tx(cat_id, AccountStatus.UNDER_REVIEW, reason="item created", job=job)
            if result.accepted:
                self.publish_log.write(
                    task.id, cat_id, status=PubLogStatus.SUCCESS, code=0,
                    message=f"account {cat.account}: item created, {AccountStatus.UNDER_REVIEW.label} by the platform",
                    data={"item_id": item_id, "item_created_at": iso(created)},
                    dedup_key=keys.success_log_key(cat_id, cat.round, AccountStatus.UNDER_REVIEW))
            return result

        result = self.store.tx(unit)
        if not result.accepted:
            raise StepRejectedError.make(account=cat.account, task_id=task.id,
                                         status=AccountStatus.label_of(result.found))
        return {"channel_app_task_id": cat_id, "item_id": item_id}

    # -- failed attempts of upload-asset / pub-article -------------------------------------------------

    def attempt_failed(self, cat_id: int, error: BaseException | None, job: JobRef) -> bool:
        """afterError of an attempt that another attempt follows: record it in the row's timeline
        (its code and the message the submitter would see), so every attempt is explained — and so
        a later attempt lost with its worker can still tell the platform's own error. Once per
        attempt; returns whether it was recorded now."""
        cat = self.records.find_channel_app_task(cat_id)
        if cat is None:
            return False
        code, message = describe(error, task_id=cat.task_id, account=cat.account)
        return self.transitions.attempt_failed(cat.task_id, cat_id, message, job=job, code=code, status=cat.status)

    # -- final failures of upload-asset / pub-article -------------------------------------------------

    def row_failed(self, cat_id: int, error: BaseException | None, job: JobRef) -> list[int]:
        """That one row → 3 with a pub_log row and a callback; siblings untouched. Once per event key."""
        if isinstance(error, StepRejectedError) or getattr(error, "biz_code", None) == StepRejectedError.biz_code:
            return []  # the step already recorded its rejected transition; the row is not ours to fail
        callback = self.store.tx(lambda: self._fail_row(cat_id, error, job, keys.account_failure_log_key(job, cat_id)))
        return self.outbox.dispatch([callback]) if callback else []

    def _fail_row(self, cat_id: int, error: BaseException | None, job: JobRef, log_key: str, *,
                  callback: bool = True, code: int | None = None, message: str | None = None) -> Any:
        """Inside a transaction: → 3 and its pub_log row. Returns the callback id (or 1/0 without one)."""
        if self.publish_log.exists(log_key):
            return 0
        cat = self.records.channel_app_task(cat_id)
        if code is None or message is None:
            code, message = describe(error, task_id=cat.task_id, account=cat.account)
            if code == GENERIC_CODE and lost_worker(error):
                # The last attempt died with its worker, saying nothing: what the platform said on
                # an earlier attempt tells the submitter more than "internal error" (#11).
                code, message = self.transitions.last_attempt_error(cat_id) or (code, message)
        result = self.transitions.move_in_tx(
            cat_id, AccountStatus.FAILED, reason=f"{job.queue or 'operator'} failed", code=code, job=job,
            callback=callback, fields={"error_code": code, "error_message": message})
        if not result.accepted:
            return 0
        self.publish_log.write(cat.task_id, cat_id, status=PubLogStatus.ERROR, code=code, message=message,
                               data={**job.as_data(), "account": cat.account}, dedup_key=log_key)
        return result.callback_id if callback else 1

    # -- source-callback and review sync --------------------------------------------------------------

    def send_callback(self, event_id: str, job: JobRef) -> dict[str, Any]:
        """source-callback: send the callback recorded under ``event_id`` (once)."""
        return self.callbacks.send(event_id, job)

    def callback_failed(self, event_id: str, error: BaseException | None, job: JobRef) -> None:
        """afterError of source-callback, final: mark the callback failed and tell the publish log."""
        self.callbacks.failed(event_id, error, job)

    def sync_reviews(self, task_id: int | None = None, job: JobRef | None = None) -> list[dict[str, Any]]:
        """Poll the adapters for rows under review (4) and record 4→5 / 4→6."""
        return self.reviews.sync(task_id, job)

    # -- helpers ---------------------------------------------------------------------------------------

    def _start(self, cat_id: int, job: JobRef, reason: str) -> Any:
        """Begin a row's upload: 1→2, or resume a row already at 2; None when the row is past it."""
        cat = self.records.channel_app_task(cat_id)
        if cat.status == AccountStatus.PENDING and cat.enabled:
            result = self.transitions.move(cat_id, AccountStatus.RELEASING, reason=reason, job=job)
            if result.accepted:
                return self.records.channel_app_task(cat_id)
            cat = self.records.channel_app_task(cat_id)
        if cat.status == AccountStatus.RELEASING and cat.enabled:
            return cat
        if cat.status in ITEM_CREATED:
            return None
        self._reject(cat, AccountStatus.RELEASING, job, reason)
        return None  # pragma: no cover - _reject raises

    def _reject(self, cat: Any, to: AccountStatus, job: JobRef, reason: str) -> None:
        """Record the refused transition, then fail the job permanently, naming `pubq task retry`."""
        result = self.transitions.move(cat.id, to, reason=reason, job=job)
        status = "disabled" if not cat.enabled else AccountStatus.label_of(result.found)
        raise StepRejectedError.make(account=cat.account, task_id=cat.task_id, status=status)

    def _files(self, task_id: int) -> list[UploadFile]:
        """The task's copied assets as files to upload; a copy that vanished is an error."""
        files = []
        for asset in self.records.enabled_assets(task_id):
            if not asset.relative_path:
                raise AssetsNotCopiedError.make(task_id=task_id)
            path = Path(self.settings.publish_dirs[asset.type]) / asset.relative_path.lstrip("/")
            if not path.is_file():
                raise AssetMissingError.make(task_id=task_id, index=asset.position, reason="copied file is gone")
            files.append(UploadFile(asset.id, asset.type, path, asset.relative_path, asset.size or 0,
                                    asset.sha256 or ""))
        return files
