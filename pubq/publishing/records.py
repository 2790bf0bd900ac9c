"""Reading tasks, channel app tasks and assets, and recording what the steps produced.

Status changes are not made here: they go through :class:`~.transitions.Transitions`, guarded and
recorded. The writes below only fill in a step's results (copied path, platform media and item ids),
each at most once.
"""

from __future__ import annotations

from datetime import datetime

import peewee as pw

from ..bounds import TASK_ID
from .codes import ChannelAppTaskNotFoundError, TaskNotFoundError
from .copying import CopiedFile
from .models import Models, now_us
from .vocabulary import AccountStatus


class PublishRecords:
    def __init__(self, models: Models) -> None:
        self.models = models

    # -- tasks -------------------------------------------------------------------------------------

    def find_task(self, task_id: int) -> pw.Model | None:
        Task = self.models.Task
        if TASK_ID.problem(task_id) is not None:  # no such row; the database may not even take the value
            return None
        return Task.get_or_none(Task.id == task_id)

    def task(self, task_id: int) -> pw.Model:
        """The task, or :class:`TaskNotFoundError` (35003)."""
        task = self.find_task(task_id)
        if task is None:
            raise TaskNotFoundError.make(task_id=task_id)
        return task

    def mark_task_copied(self, task_id: int) -> None:
        Task = self.models.Task
        Task.update(copied_at=now_us(), updated_at=now_us()).where(Task.id == task_id).execute()

    def next_copy_round(self, task_id: int) -> int:
        """Start the task's next copy round (its assets count as not copied); returns its number."""
        Task = self.models.Task
        copy_round = Task.get_by_id(task_id).copy_round + 1
        Task.update(copy_round=copy_round, copied_at=None).where(Task.id == task_id).execute()
        return copy_round

    # -- channel app tasks -------------------------------------------------------------------------

    def find_channel_app_task(self, cat_id: int) -> pw.Model | None:
        ChannelAppTask = self.models.ChannelAppTask
        if TASK_ID.problem(cat_id) is not None:
            return None
        return ChannelAppTask.get_or_none(ChannelAppTask.id == cat_id)

    def channel_app_task(self, cat_id: int) -> pw.Model:
        """The channel app task, or :class:`ChannelAppTaskNotFoundError` (35004)."""
        cat = self.find_channel_app_task(cat_id)
        if cat is None:
            raise ChannelAppTaskNotFoundError.make(cat_id=cat_id)
        return cat

    def channel_app_tasks(self, task_id: int, *, enabled_only: bool = False) -> list[pw.Model]:
        """The task's channel app tasks in creation order."""
        ChannelAppTask = self.models.ChannelAppTask
        query = ChannelAppTask.select().where(ChannelAppTask.task == task_id)
        if enabled_only:
            query = query.where(ChannelAppTask.enabled == True)  # noqa: E712 - SQL expression
        return list(query.order_by(ChannelAppTask.id))

    def under_review(self, task_id: int | None = None) -> list[pw.Model]:
        """Channel app tasks whose item waits for the platform's review (of one task, or all)."""
        ChannelAppTask = self.models.ChannelAppTask
        query = ChannelAppTask.select().where(ChannelAppTask.status == AccountStatus.UNDER_REVIEW,
                                              ChannelAppTask.item_id.is_null(False))
        if task_id is not None:
            query = query.where(ChannelAppTask.task == task_id)
        return list(query.order_by(ChannelAppTask.id))

    def record_media(self, cat_id: int, media: dict[str, str]) -> None:
        """Store the platform media ids of an upload (only the first upload's)."""
        ChannelAppTask = self.models.ChannelAppTask
        ChannelAppTask.update(media=media, uploaded_at=now_us(), updated_at=now_us()).where(
            ChannelAppTask.id == cat_id, ChannelAppTask.uploaded_at.is_null()).execute()

    def record_item(self, cat_id: int, item_id: str, created_at: datetime) -> None:
        """Store the platform item id and its creation time (only the first item's)."""
        ChannelAppTask = self.models.ChannelAppTask
        ChannelAppTask.update(item_id=item_id, item_created_at=created_at).where(
            ChannelAppTask.id == cat_id, ChannelAppTask.item_id.is_null()).execute()

    # -- assets ------------------------------------------------------------------------------------

    def enabled_assets(self, task_id: int) -> list[pw.Model]:
        """The task's enabled assets in request order."""
        Asset = self.models.Asset
        query = Asset.select().where(Asset.task == task_id, Asset.enabled == True)  # noqa: E712
        return list(query.order_by(Asset.position))

    def assets_copied(self, task_id: int) -> bool:
        """Whether the task has enabled assets and every one of them is copied."""
        Asset = self.models.Asset
        enabled = Asset.select().where(Asset.task == task_id, Asset.enabled == True)  # noqa: E712
        return enabled.exists() and not enabled.where(Asset.relative_path.is_null()).exists()

    def record_copy(self, asset_id: int, copied: CopiedFile) -> None:
        Asset = self.models.Asset
        Asset.update(relative_path=copied.relative_path, size=copied.size, sha256=copied.sha256,
                     copied_at=now_us()).where(Asset.id == asset_id).execute()
