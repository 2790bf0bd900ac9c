"""copy-asset: fan out after success; fail every account of the task after the final failure."""

from __future__ import annotations

from ..events import ExecEvent
from ..publishing.vocabulary import CopyFailureStage
from .base import arg, is_final, job_ref, pipeline


class CopyAssetEventHandler:
    def after_exec(self, event: ExecEvent) -> None:
        """Push one UploadAssetJob per account (35021 when none). If that raises, the accounts still
        get their pub_log rows and the source its callback; then re-raise so the core records the
        follow-up failure too."""
        task_id = arg(event, "task_id")
        if task_id is None:
            return
        steps = pipeline(event)
        try:
            steps.fan_out(task_id, job_ref(event))
        except Exception as exc:
            steps.fail_task(task_id, exc, job_ref(event), stage=CopyFailureStage.FOLLOW_UP)
            raise

    def after_error(self, event: ExecEvent) -> None:
        task_id = arg(event, "task_id")
        if task_id is not None and is_final(event):
            pipeline(event).fail_task(task_id, event.error, job_ref(event), stage=CopyFailureStage.COPY)
