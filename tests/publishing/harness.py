"""A tiny stand-in for worker + handlers, so pipeline steps can be tested without the queue core.

It mirrors what pubq.jobs / pubq.handlers do: execute the step, then afterExec on success or the
final afterError (one attempt) on failure, with the event key (queue, job id, attempt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pubq.publishing.pipeline import Pipeline
from pubq.publishing.transitions import JobRef

from .conftest import FakeQueues


@dataclass
class Outcome:
    job: str
    args: dict[str, Any]
    ok: bool
    result: Any = None
    error: BaseException | None = None
    follow_up_error: BaseException | None = None


class MiniWorker:
    def __init__(self, pipeline: Pipeline, queues: FakeQueues) -> None:
        self.p = pipeline
        self.q = queues
        self.done = 0  # index into queues.pushed of the next job to run

    def pending(self) -> list[tuple[int, str, dict[str, Any]]]:
        return [(i + 1, job, args) for i, (_, job, args) in enumerate(self.q.pushed) if i >= self.done]

    def run(self, job_id: int) -> Outcome:
        """Run the pushed job with this id (ids are 1-based push order)."""
        queue, job, args = self.q.pushed[job_id - 1]
        job = job.rsplit(".", 1)[-1]
        ref = JobRef(queue, job_id, 1)
        try:
            result = self._execute(job, args, ref)
        except Exception as exc:  # noqa: BLE001 - becomes the afterError event
            self._after_error(job, args, ref, exc)
            return Outcome(job, args, False, error=exc)
        try:
            self._after_exec(job, args, ref)
        except Exception as exc:  # noqa: BLE001 - a follow-up failure; the job stays done
            return Outcome(job, args, True, result, follow_up_error=exc)
        return Outcome(job, args, True, result)

    def drain(self, limit: int = 200) -> list[Outcome]:
        outcomes = []
        while self.done < len(self.q.pushed) and len(outcomes) < limit:
            self.done += 1
            outcomes.append(self.run(self.done))
        return outcomes

    def _execute(self, job: str, args: dict[str, Any], ref: JobRef) -> Any:
        if job == "CopyAssetJob":
            return self.p.copy_assets(args["task_id"], ref)
        if job == "UploadAssetJob":
            return self.p.upload(args["channel_app_task_id"], ref)
        if job == "PubArticleJob":
            return self.p.publish_article(args["channel_app_task_id"], ref)
        if job == "SourceCallbackJob":
            return self.p.send_callback(args["event_id"], ref)
        raise AssertionError(job)

    def _after_exec(self, job: str, args: dict[str, Any], ref: JobRef) -> None:
        if job == "CopyAssetJob":
            try:
                self.p.fan_out(args["task_id"], ref)
            except Exception as exc:
                self.p.fail_task(args["task_id"], exc, ref, stage="follow-up")
                raise
        elif job in ("UploadAssetJob", "PubArticleJob"):
            self.p.push_follow_ups(args["channel_app_task_id"])

    def _after_error(self, job: str, args: dict[str, Any], ref: JobRef, error: BaseException) -> None:
        if job == "CopyAssetJob":
            self.p.fail_task(args["task_id"], error, ref, stage="copy")
        elif job in ("UploadAssetJob", "PubArticleJob"):
            self.p.row_failed(args["channel_app_task_id"], error, ref)
        elif job == "SourceCallbackJob":
            self.p.callback_failed(args["event_id"], error, ref)
