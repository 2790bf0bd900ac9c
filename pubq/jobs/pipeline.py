"""The publishing pipeline's jobs. Thin: each one calls a step of :mod:`pubq.publishing.pipeline`.

Steps only record outcomes and follow-ups in publish state; pushing the follow-ups is left to the
queue's afterExec handler (pubq.handlers), which runs in the worker process, never in an isolated
child.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError
from ..job import Job

if TYPE_CHECKING:  # pragma: no cover
    from ..limits import LimitKey
    from ..publishing.pipeline import Pipeline
    from ..publishing.transitions import JobRef
    from ..runner import JobContext


class PublishingJob(Job):
    """Shared plumbing: the app's pipeline and this attempt's identity."""

    abstract = True

    @staticmethod
    def pipeline(ctx: JobContext) -> Pipeline:
        # Imported here: every job registry loads pubq.jobs, and a worker of an unrelated queue
        # should not pay for peewee, tenacity and the publishing package.
        from ..publishing.pipeline import pipeline_for

        if ctx.app is None:
            raise PermanentError("publishing jobs need a queue built by pubq.app.App (no app attached)")
        return pipeline_for(ctx.app)

    @staticmethod
    def job_ref(ctx: JobContext) -> JobRef:
        """This attempt, which the pipeline records and builds its dedup keys from."""
        from ..publishing.transitions import JobRef

        return JobRef(ctx.queue.name, ctx.job_id, ctx.attempt)


@dataclass
class CopyAssetJob(PublishingJob):
    """Copy the task's enabled assets into the publish directory (35020 when there are none)."""

    name = "pubq.jobs.CopyAssetJob"

    task_id: int

    def execute(self, ctx: JobContext) -> Any:
        return self.pipeline(ctx).copy_assets(self.task_id, self.job_ref(ctx), progress=ctx.progress)


@dataclass
class UploadAssetJob(PublishingJob):
    """Upload the assets for one channel app task (one account)."""

    name = "pubq.jobs.UploadAssetJob"

    channel_app_task_id: int

    def limit_key(self, ctx: JobContext) -> LimitKey | None:
        """The account's rate limit (the job carries only the row id: the account is looked up)."""
        return self.pipeline(ctx).account_limit(self.channel_app_task_id)

    def execute(self, ctx: JobContext) -> Any:
        return self.pipeline(ctx).upload(self.channel_app_task_id, self.job_ref(ctx))


@dataclass
class PubArticleJob(PublishingJob):
    """Create the item on the platform for one channel app task."""

    name = "pubq.jobs.PubArticleJob"

    channel_app_task_id: int

    def limit_key(self, ctx: JobContext) -> LimitKey | None:
        """The account's rate limit, shared with its upload-asset jobs."""
        return self.pipeline(ctx).account_limit(self.channel_app_task_id)

    def execute(self, ctx: JobContext) -> Any:
        return self.pipeline(ctx).publish_article(self.channel_app_task_id, self.job_ref(ctx))


@dataclass
class SourceCallbackJob(PublishingJob):
    """POST the task's per-account results to the source, signed; ``event_id`` names the outbox row."""

    name = "pubq.jobs.SourceCallbackJob"

    event_id: str

    def execute(self, ctx: JobContext) -> Any:
        return self.pipeline(ctx).send_callback(self.event_id, self.job_ref(ctx))
