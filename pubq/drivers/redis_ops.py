"""The Redis driver's registries and operations: the failed registry, follow-up failures, job
listing, pause, cancel, progress, the worker registry and throughput buckets.

Split from :mod:`.redis` by concern (the job lifecycle stays there); a mixin of
:class:`~pubq.drivers.redis.RedisDriver`, whose scripts, client and keys it uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import history as attempt_history
from .base import (
    THROUGHPUT_KEEP,
    CancelResult,
    CancelState,
    FailedJob,
    FollowUpFailure,
    JobInfo,
    JobPage,
    JobStatus,
    Reservation,
    ThroughputBucket,
    WorkerInfo,
)
from .ops_codec import cancel_failure, progress_value
from .redis_replies import _ERRORS, _live, _meta, _meta_numbers, _record, _reservation, _text, _wrap

if TYPE_CHECKING:  # pragma: no cover
    from .redis_client import Client


class RedisOperations:
    """What a queue on Redis shows and lets operators steer, besides the job lifecycle."""

    channel: str
    keys: tuple[str, ...]
    _followups_key: str
    _paused_key: str
    _live_key: str
    _tput_key: str

    if TYPE_CHECKING:  # pragma: no cover
        @property
        def client(self) -> Client: ...

        def _run(self, name: str, *args: Any) -> Any: ...

        def _found(self, name: str, *args: Any) -> Any: ...

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        if limit <= 0:
            return []
        return [self._failed_row(row) for row in self._run("failed_read", "range", max(0, int(offset)), int(limit))]

    def failed_get(self, job_id: int) -> FailedJob | None:
        rows = self._run("failed_read", "id", int(job_id))
        if not rows:
            return None
        return replace(self._failed_row(rows[0][:6]), history=attempt_history.attempts(rows[0][6]))

    def _failed_row(self, row: Sequence[Any]) -> FailedJob:
        job_id, payload, meta, record, failed_at, unsettled = row
        attempt, ttr, priority, pushed_at = _meta_numbers(meta)
        return self._failed_job(int(job_id), payload, record, failed_at, unsettled == 1, attempts=attempt,
                                ttr=ttr, priority=priority, pushed_at=pushed_at)

    @staticmethod
    def _failed_job(job_id: int, payload: bytes, record: bytes, failed_at: bytes, unsettled: bool,
                    **fields: Any) -> FailedJob:
        info = _record(record)
        retry_delay = info.get("retry_delay") if unsettled else None
        return FailedJob(
            job_id=job_id, payload=payload, error_class=info.get("error_class", ""),
            message=info.get("message", ""), traceback=info.get("traceback", ""), code=info.get("code", ""),
            failed_at=float(failed_at), unsettled=unsettled,
            retry_delay=float(retry_delay) if type(retry_delay) in (int, float) else None, **fields,
        )

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        return self._run("requeue_failed", int(job_id), 1 if reset_attempts else 0, float(delay)) == 1

    def failed_purge(self) -> int:
        return int(self._run("failed_purge"))

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        self._run("follow_up", json.dumps({
            "job_id": failure.job_id, "attempt": failure.attempt, "event": failure.event,
            "handler": failure.handler, "error_class": failure.error_class, "message": failure.message,
            "traceback": failure.traceback, "at": failure.at,
        }))

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        """One LRANGE (the list is kept newest first)."""
        if limit <= 0:
            return []
        offset = max(0, int(offset))
        try:
            rows = self.client.lrange(self._followups_key, offset, offset + int(limit) - 1)
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc
        out = []
        for row in rows:
            seq, _, record = row.partition(b"|")
            try:
                out.append(FollowUpFailure(seq=int(seq), **json.loads(record)))
            except (ValueError, TypeError, RecursionError):  # a foreign or hand-edited entry (#11)
                out.append(FollowUpFailure(job_id=0, attempt=0, event="?", handler="?", error_class="?",
                                           message=f"unreadable record: {_text(row)[:200]}", traceback="", at=0.0))
        return out

    # -- operations -----------------------------------------------------------------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        """One script: ZRANK of the cursor (or a binary search where it sorted), then ZRANGE."""
        code = {JobStatus.WAITING: "w", JobStatus.DELAYED: "d", JobStatus.RESERVED: "r", JobStatus.FAILED: "f"}
        if state not in code:
            raise ValueError(f"cannot list jobs in state {state.value}")
        if limit <= 0:
            return JobPage([])
        reply = self._run("list", code[state], int(limit), "" if after is None else int(after))
        jobs = [self._listed(state, row) for row in reply[1:]]
        return JobPage(jobs, jobs[-1].job_id if reply[0] == 1 and jobs else None)

    def _listed(self, state: JobStatus, row: Sequence[Any]) -> JobInfo:
        job_id, meta, payload, score, holder, progress, cancel, reason, record, unsettled = row
        attempt, ttr, priority, pushed_at = _meta_numbers(meta)  # an unreadable meta lists as zeros (#11)
        info = JobInfo(job_id=int(job_id), status=state, payload=payload, attempt=attempt, ttr=ttr,
                       priority=priority, pushed_at=pushed_at)
        if state is JobStatus.RESERVED:
            fields = _meta(meta)
            deadline = fields[6] if len(fields) == 8 else b""
            return replace(info, deadline=float(deadline or 0), **_live(holder, progress, cancel, reason))
        if state is JobStatus.FAILED:
            failure = json.loads(record)
            return replace(info, failed_at=float(score), error_class=failure.get("error_class", ""),
                           message=failure.get("message", ""), code=failure.get("code", ""),
                           unsettled=unsettled == 1)
        if state is JobStatus.DELAYED:
            return replace(info, due_at=float(score))
        return info

    def pause(self) -> None:
        self._run("pause", "1")

    def resume(self) -> None:
        self._run("pause", "0")

    def paused(self) -> bool:
        try:
            return bool(self.client.exists(self._paused_key))
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        reply = self._found("cancel", int(job_id), reason, cancel_failure(reason))
        state = CancelState(reply[0].decode())
        if state is CancelState.CANCELLED:
            return CancelResult(state, _reservation(reply[1:9]))
        return CancelResult(state)

    def cancel_requested(self, r: Reservation) -> str | None:
        """One HGET."""
        try:
            raw = self.client.hget(self._live_key, f"{r.job_id}:c")
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc
        return None if raw is None else raw.decode("utf-8", "replace")

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        return self._run("progress", r.job_id, r.token, progress_value(fraction, message)) == 1

    def heartbeat(self, info: WorkerInfo) -> None:
        """One script call: the entry, its expiry, a sweep of expired entries."""
        self._run("worker", "beat", info.worker_id, info.to_json(), float(info.ttl))

    def unregister_worker(self, worker_id: str) -> None:
        self._run("worker", "drop", worker_id)

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        """One script call: two HINCRBY on the queue's throughput hash (a new minute trims old ones)."""
        self._run("throughput", "add", int(done), int(failed), "" if minute is None else int(minute),
                  THROUGHPUT_KEEP)

    def throughput(self, since: int) -> list[ThroughputBucket]:
        """One HGETALL of a hash of at most ~2 x THROUGHPUT_KEEP fields."""
        try:
            raw = self.client.hgetall(self._tput_key)
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc
        buckets: dict[int, list[int]] = {}
        for field, value in raw.items():
            text = field.decode()
            minute = int(text[:-1])
            if minute >= since:
                buckets.setdefault(minute, [0, 0])[text[-1] == "f"] = int(value)
        return [ThroughputBucket(m, d, f) for m, (d, f) in sorted(buckets.items())]

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        reply = self._run("worker", "list" if sweep else "peek")
        now = float(reply[0])
        out = []
        for i in range(1, len(reply) - 1, 2):
            seen, _, text = reply[i + 1].partition(b"|")
            info = WorkerInfo.from_json(text, float(seen), now)
            if info is not None:
                out.append(info)
        return sorted(out, key=lambda w: (w.started_at, w.worker_id))
