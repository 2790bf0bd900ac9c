"""What every publishing handler needs from an ExecEvent."""

from __future__ import annotations

import logging
from typing import Any

from ..events import ExecEvent
from ..publishing.pipeline import Pipeline, pipeline_for
from ..publishing.transitions import JobRef

log = logging.getLogger("pubq.publishing")


def pipeline(event: ExecEvent) -> Pipeline:
    return pipeline_for(event.queue.app)


def job_ref(event: ExecEvent) -> JobRef:
    """The job attempt behind the event, which the pipeline records and builds its dedup keys from."""
    return JobRef.from_key(event.key)


def arg(event: ExecEvent, name: str) -> Any:
    """A job argument, or None for an invalid job (nothing to attribute the failure to)."""
    return getattr(event.job, name, None) if event.job is not None else None


def is_final(event: ExecEvent) -> bool:
    """afterError fires per failed attempt; only the one with ``retry`` false is the final failure."""
    if event.retry:
        log.info("[%s] %s attempt %s failed, another attempt follows: %s",
                 event.id, event.job_name, event.attempt, event.error)
        return False
    return True
