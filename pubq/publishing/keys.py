"""Every dedup and idempotency key of publish state, built in one place.

A step recognises its own earlier run by finding the same key again: outbox rows
(``outbox.dedup_key``) and publish-log rows (``pub_log.dedup_key``) are unique per key, rate-limit
buckets are stored by key, and platforms receive idempotency keys. The keys are stored, so their
format never changes: a key built differently in two places, or changed between versions, makes a
re-run push a job twice or write a second error row without any error. ``tests/publishing/
test_keys.py`` pins each format.

``round`` is the channel app task's retry round and ``copy_round`` the task's copy round (each bumped
by an operator retry), so a retried step gets fresh keys while a re-run of the same round does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .transitions import JobRef


# -- the queue event behind a write --------------------------------------------------------------

def event_key(queue: str | None, job_id: int | None, attempt: int | None) -> str:
    """The job attempt that caused a write, ``{queue}:{job id}:{attempt}``; unique per attempt."""
    return f"{queue}:{job_id}:{attempt}"


# -- outbox: follow-up jobs ------------------------------------------------------------------------

def copy_job_key(task_id: int, copy_round: int) -> str:
    """The task's CopyAssetJob of one copy round."""
    return f"job:copy:{task_id}:{copy_round}"


def upload_job_key(channel_app_task_id: int, round: int) -> str:
    """The UploadAssetJob of one channel app task in one round."""
    return f"job:upload:{channel_app_task_id}:{round}"


def article_job_key(channel_app_task_id: int, round: int) -> str:
    """The PubArticleJob of one channel app task in one round."""
    return f"job:article:{channel_app_task_id}:{round}"


# -- outbox: source callbacks ----------------------------------------------------------------------

def status_callback_key(channel_app_task_id: int, round: int, status: int) -> str:
    """The callback sent when a channel app task reaches ``status`` in one round."""
    return f"callback:{channel_app_task_id}:{round}:{int(status)}"


def copy_failure_callback_key(task_id: int, copy_round: int, stage: str) -> str:
    """The one callback of a task whose copy-asset ``stage`` failed in one copy round."""
    return f"callback:copy:{task_id}:{copy_round}:{stage}"


# -- publish log -----------------------------------------------------------------------------------

def copy_failure_log_prefix(job: JobRef, stage: str) -> str:
    """What every publish-log key of one copy-asset failure event starts with (before ``:``)."""
    return f"{job.event_key()}:{stage}"


def copy_failure_log_key(job: JobRef, stage: str, channel_app_task_id: int) -> str:
    """The error row of one account when the task's copy-asset ``stage`` failed."""
    return f"{copy_failure_log_prefix(job, stage)}:{channel_app_task_id}"


def copy_failure_task_log_key(job: JobRef, stage: str) -> str:
    """The error row kept on the task when no account could carry the copy-asset failure."""
    return f"{copy_failure_log_prefix(job, stage)}:task"


def fan_out_failure_log_key(job: JobRef, channel_app_task_id: int) -> str:
    """The error row of one account that the copy-asset fan-out could not start (e.g. unknown account)."""
    return f"{job.event_key()}:fanout:{channel_app_task_id}"


def account_failure_log_key(job: JobRef, channel_app_task_id: int) -> str:
    """The error row of one account whose upload-asset or pub-article job failed for good."""
    return f"{job.event_key()}:{channel_app_task_id}"


def callback_failure_log_key(job: JobRef) -> str:
    """The error row of a task whose source-callback job failed for good."""
    return f"{job.event_key()}:callback"


def success_log_key(channel_app_task_id: int, round: int, status: int) -> str:
    """The row telling the user that a channel app task reached ``status`` (4, 5 or 6) in one round."""
    return f"success:{channel_app_task_id}:{round}:{int(status)}"


# -- platforms and rate limits ---------------------------------------------------------------------

def adapter_idempotency_key(source: str, uuid: str, account: str, round: int) -> str:
    """What a platform receives with an upload or create call, so a re-run creates nothing twice."""
    return f"{source}:{uuid}:{account}:{round}"


def asset_upload_key(idempotency_key: str, asset_id: int) -> str:
    """The idempotency key of one asset's upload within an account's upload call."""
    return f"{idempotency_key}:{asset_id}"


def rate_bucket_key(channel_type: str, account: str) -> str:
    """The token bucket shared by every worker calling one account of one channel type."""
    return f"{channel_type}:{account}"
