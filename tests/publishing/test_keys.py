"""The stored formats of publish state: dedup keys and enum values never change.

Existing rows hold these strings and numbers. A step finds its earlier run by building the same key
again, so a changed format does not fail anything: it pushes a job twice or writes a second error
row. If one of these tests fails, the change breaks every deployment that has rows already.
"""

from __future__ import annotations

import pytest

from pubq.publishing import keys
from pubq.publishing.transitions import OPERATOR, JobRef
from pubq.publishing.vocabulary import (
    AccountStatus,
    CopyFailureStage,
    EventKind,
    OutboxKind,
    OutboxState,
    PubLogStatus,
    ReviewVerdict,
)

from .support import request_doc

UPLOAD = JobRef("upload-asset", 42, 3)
COPY = JobRef("copy-asset", 7, 1)


def test_event_keys_name_queue_job_and_attempt() -> None:
    assert keys.event_key("upload-asset", 42, 3) == "upload-asset:42:3"
    assert UPLOAD.event_key() == "upload-asset:42:3"
    assert OPERATOR.event_key() == "operator:None:None"


def test_outbox_job_keys() -> None:
    assert keys.copy_job_key(5, 0) == "job:copy:5:0"
    assert keys.copy_job_key(5, 2) == "job:copy:5:2"
    assert keys.upload_job_key(17, 0) == "job:upload:17:0"
    assert keys.article_job_key(17, 1) == "job:article:17:1"


def test_outbox_callback_keys() -> None:
    assert keys.status_callback_key(17, 0, AccountStatus.UNDER_REVIEW) == "callback:17:0:4"
    assert keys.status_callback_key(17, 2, AccountStatus.FAILED) == "callback:17:2:3"
    assert keys.copy_failure_callback_key(5, 0, CopyFailureStage.COPY) == "callback:copy:5:0:copy"
    assert keys.copy_failure_callback_key(5, 1, CopyFailureStage.FOLLOW_UP) == "callback:copy:5:1:follow-up"


def test_publish_log_keys() -> None:
    assert keys.copy_failure_log_prefix(COPY, CopyFailureStage.COPY) == "copy-asset:7:1:copy"
    assert keys.copy_failure_log_key(COPY, CopyFailureStage.COPY, 17) == "copy-asset:7:1:copy:17"
    assert keys.copy_failure_log_key(COPY, CopyFailureStage.FOLLOW_UP, 17) == "copy-asset:7:1:follow-up:17"
    assert keys.copy_failure_task_log_key(COPY, CopyFailureStage.FOLLOW_UP) == "copy-asset:7:1:follow-up:task"
    assert keys.fan_out_failure_log_key(COPY, 17) == "copy-asset:7:1:fanout:17"
    assert keys.account_failure_log_key(UPLOAD, 17) == "upload-asset:42:3:17"
    assert keys.callback_failure_log_key(JobRef("source-callback", 9, 5)) == "source-callback:9:5:callback"
    assert keys.success_log_key(17, 0, AccountStatus.UNDER_REVIEW) == "success:17:0:4"
    assert keys.success_log_key(17, 1, AccountStatus.REJECTED) == "success:17:1:6"


def test_platform_and_rate_limit_keys() -> None:
    key = keys.adapter_idempotency_key("vms", "u-1", "a1", 0)
    assert key == "vms:u-1:a1:0"
    assert keys.asset_upload_key(key, 12) == "vms:u-1:a1:0:12"
    assert keys.rate_bucket_key("douyin", "a1") == "douyin:a1"


def test_stored_enum_values() -> None:
    assert {s.name: int(s) for s in AccountStatus} == {
        "PENDING": 1, "RELEASING": 2, "FAILED": 3, "UNDER_REVIEW": 4, "PUBLISHED": 5, "REJECTED": 6}
    assert [str(k) for k in OutboxKind] == ["job", "callback"]
    assert [str(s) for s in OutboxState] == ["pending", "pushing", "pushed", "sent", "skipped", "failed"]
    assert [str(k) for k in EventKind] == ["transition", "rejected", "step", "attempt_failed"]
    assert [str(s) for s in PubLogStatus] == ["success", "error"]
    assert [str(v) for v in ReviewVerdict] == ["review", "published", "rejected"]
    assert [str(s) for s in CopyFailureStage] == ["copy", "follow-up"]


@pytest.mark.fail_accounts("a2")
def test_the_pipeline_stores_exactly_these_keys(service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"]))
    ok, failed = (a["channel_app_task_id"] for a in service.accounts_view(task_id))
    failed_upload = recorded.pushed("UploadAssetJob", channel_app_task_id=failed)
    Outbox, PubLog = service.models.Outbox, service.models.PubLog

    outbox = [r.dedup_key for r in Outbox.select().where(Outbox.task == task_id).order_by(Outbox.id)]
    pub_log = [r.dedup_key for r in PubLog.select().where(PubLog.task == task_id).order_by(PubLog.id)]

    assert sorted(outbox) == sorted([
        f"job:copy:{task_id}:0", f"job:upload:{ok}:0", f"job:upload:{failed}:0", f"job:article:{ok}:0",
        f"callback:{ok}:0:4", f"callback:{failed}:0:3"])
    assert sorted(pub_log) == sorted([f"success:{ok}:0:4", f"upload-asset:{failed_upload.id}:1:{failed}"])
