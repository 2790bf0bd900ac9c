"""upload-asset: push the recorded PubArticleJob after success; record each failed attempt in the
account's timeline; fail only that account finally."""

from __future__ import annotations

from ..events import ExecEvent
from .base import arg, is_final, job_ref, pipeline


class UploadAssetEventHandler:
    def after_exec(self, event: ExecEvent) -> None:
        cat_id = arg(event, "channel_app_task_id")
        if cat_id is not None:
            pipeline(event).push_follow_ups(cat_id)

    def after_error(self, event: ExecEvent) -> None:
        cat_id = arg(event, "channel_app_task_id")
        if cat_id is None:
            return
        if is_final(event):
            pipeline(event).row_failed(cat_id, event.error, job_ref(event))
        else:  # another attempt follows: the timeline still shows this one and why it failed
            pipeline(event).attempt_failed(cat_id, event.error, job_ref(event))
