"""Rows of the ``db`` driver → the contract's dataclasses, every column read by its name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pubq.drivers.records import FailedJob, JobInfo, JobStatus, Reservation


def job_status(state: str, due: bool) -> JobStatus:
    """The status a stored state shows: a delayed job already due counts as waiting."""
    if state == "delayed":
        return JobStatus.WAITING if due else JobStatus.DELAYED
    return JobStatus(state)


def as_bytes(value: Any) -> bytes:
    """A payload column as bytes, whatever the database handed back (memoryview, str in a hand-made row)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else bytes(value)


def reservation(row: Mapping[str, Any]) -> Reservation:
    """A reservation from a row with id, payload, attempt, ttr, deadline, lease, priority, pushed_at."""
    return Reservation(row["id"], as_bytes(row["payload"]), row["attempt"], row["ttr"], float(row["deadline"]),
                       int(row["lease"]), row["priority"], float(row["pushed_at"]))


def failed_job(row: Mapping[str, Any]) -> FailedJob:
    """A failed-registry entry from a row read as ``JOB_COLUMNS``."""
    unsettled = row["expires_at"] is not None
    return FailedJob(
        job_id=row["id"], payload=as_bytes(row["payload"]), attempts=row["attempt"],
        error_class=row["error_class"] or "", message=row["error_message"] or "",
        traceback=row["error_traceback"] or "", code=row["error_code"] or "", pushed_at=float(row["pushed_at"]),
        failed_at=float(row["due_at"]), ttr=row["ttr"], priority=row["priority"], unsettled=unsettled,
        retry_delay=None if not unsettled or row["retry_delay"] is None else float(row["retry_delay"]),
    )  # fmt: skip


def job_info(row: Mapping[str, Any]) -> JobInfo:
    """A row read as ``JOB_COLUMNS`` plus ``db_now``, the database clock."""
    state, due_at, now = row["state"], float(row["due_at"]), float(row["db_now"])
    info = JobInfo(row["id"], job_status(state, due_at <= now), as_bytes(row["payload"]), row["attempt"], row["ttr"],
                   row["priority"], float(row["pushed_at"]))
    if state in ("waiting", "delayed"):
        return replace(info, due_at=due_at)
    if state == "reserved":
        return replace(info, deadline=float(row["deadline"]), **reserved_fields(row))
    return replace(info, failed_at=due_at, unsettled=row["expires_at"] is not None,
                   error_class=row["error_class"] or "", message=row["error_message"] or "",
                   code=row["error_code"] or "")


def reserved_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """JobInfo fields of a reserved row read with ``JOB_COLUMNS`` (holder, cancel request, progress)."""
    return {
        "holder": row["holder"] or "", "cancel_reason": row["cancel_reason"],
        "progress": None if row["progress"] is None else float(row["progress"]),
        "progress_message": row["progress_message"] or "",
    }
