"""The publish log (``pub_log``): business outcomes shown to the person who submitted the content.

One row per outcome and per event: a row written under a dedup key (see :mod:`.keys`) is never
written twice, so a handler replayed for the same event adds nothing. Messages are for people,
never tracebacks (those go to the system log).
"""

from __future__ import annotations

from typing import Any

from .models import Models, now_us
from .vocabulary import PubLogStatus


class PublishLog:
    def __init__(self, models: Models) -> None:
        self.models = models

    def exists(self, dedup_key: str) -> bool:
        """Whether a row was written under ``dedup_key``."""
        PubLog = self.models.PubLog
        return PubLog.select().where(PubLog.dedup_key == dedup_key).exists()

    def exists_under(self, task_id: int, key_prefix: str) -> bool:
        """Whether the task has a row whose key is ``key_prefix`` followed by ``:`` and more."""
        PubLog = self.models.PubLog
        return PubLog.select().where(PubLog.task == task_id, PubLog.dedup_key.startswith(f"{key_prefix}:")).exists()

    def write(self, task_id: int, cat_id: int | None, *, status: PubLogStatus, code: int, message: str,
              data: dict[str, Any] | None = None, dedup_key: str | None = None) -> bool:
        """Add a row (inside the caller's transaction); False when ``dedup_key`` exists already."""
        if dedup_key is not None and self.exists(dedup_key):
            return False
        self.models.PubLog.create(task=task_id, channel_app_task=cat_id, status=status, code=code,
                                  message=message, data=data, dedup_key=dedup_key, created_at=now_us())
        return True
