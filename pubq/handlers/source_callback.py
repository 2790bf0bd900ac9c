"""source-callback: after the final failure, mark the outbox row failed and tell the publish log."""

from __future__ import annotations

from ..events import ExecEvent
from .base import arg, is_final, job_ref, pipeline


class SourceCallbackEventHandler:
    def after_error(self, event: ExecEvent) -> None:
        event_id = arg(event, "event_id")
        if event_id is not None and is_final(event):
            pipeline(event).callback_failed(event_id, event.error, job_ref(event))
