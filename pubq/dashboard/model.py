"""What the pages show, read from the queues as plain data; nothing here writes to a backend.

Reads go to each queue's own driver, without outage retries (a page wants the answer now; a backend
that does not answer is shown as such), and the worker registry is read with ``sweep=False``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..database import redact_url
from ..drivers.base import Driver
from ..drivers.records import FailedJob, JobInfo, JobStatus, WorkerInfo
from ..errors import PubqError

#: Rows of one page of jobs, failed entries, tasks.
PAGE = 50
#: Most rows one filtered page reads before it stops and offers "more" (keeps a page fast on a
#: 1M-job queue whose jobs mostly do not match).
SCAN_LIMIT = 2_000
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact(text: str) -> str:
    """Every URL in ``text`` with its password and secret query values replaced by ``***``."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def raw(driver: Driver) -> Driver:
    """The driver under a ResilientDriver (no outage retries), else the driver itself."""
    return getattr(driver, "inner", driver)


def job_name(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        return str(data.get("job") or "unknown job") if isinstance(data, dict) else "unknown job"
    except (ValueError, UnicodeDecodeError):
        return "unknown job"


def pretty_args(payload: bytes) -> str:
    """The job's args, indented JSON with URLs redacted; the raw text of a payload that is not JSON."""
    try:
        data = json.loads(payload)
        args = data.get("args", {}) if isinstance(data, dict) else data
        text = json.dumps(args, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except (ValueError, UnicodeDecodeError):
        text = payload.decode("utf-8", "replace")
    return redact(text)


@dataclass
class QueueRow:
    name: str
    driver_kind: str
    backend: str
    counts: dict[str, int] = field(default_factory=dict)
    paused: bool = False
    workers: int = 0
    lost_workers: int = 0
    error: str = ""


def queue_row(name: str, kind: str, url: str, driver: Driver) -> QueueRow:
    row = QueueRow(name, kind, redact_url(url) if kind != "sync" else "in-process")
    try:
        d = raw(driver)
        row.counts = d.counts().as_dict()
        row.paused = d.paused()
        workers = d.workers(sweep=False)
        row.workers = sum(1 for w in workers if not w.lost)
        row.lost_workers = sum(1 for w in workers if w.lost)
    except PubqError as exc:
        row.error = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return row


@dataclass
class Health:
    backend: str
    ok: bool
    ms: float
    error: str = ""


def ping(backend: str, driver: Driver) -> Health:
    start = time.perf_counter()
    try:
        raw(driver).ping()
    except PubqError as exc:
        return Health(backend, False, (time.perf_counter() - start) * 1000, redact(str(exc).splitlines()[0]))
    return Health(backend, True, (time.perf_counter() - start) * 1000)


def job_view(j: JobInfo) -> dict[str, Any]:
    """One job for the queue page and the job page."""
    return {
        "id": j.job_id, "state": j.status.value, "job": job_name(j.payload), "attempt": j.attempt,
        "priority": j.priority, "ttr": j.ttr, "pushed_at": j.pushed_at, "due_at": j.due_at, "deadline": j.deadline,
        "started_at": j.started_at, "holder": j.holder, "progress": j.progress,
        "progress_message": j.progress_message, "cancel_reason": j.cancel_reason, "failed_at": j.failed_at,
        "error_class": j.error_class, "message": j.message, "code": j.code, "unsettled": j.unsettled,
        "args": pretty_args(j.payload),
    }


@dataclass
class JobList:
    jobs: list[dict[str, Any]]
    next_after: int | None
    scanned: int


def list_jobs(driver: Driver, state: JobStatus, job_class: str = "", after: int | None = None,
              limit: int = PAGE) -> JobList:
    """A keyset page of ``state``; with ``job_class``, only that job's rows, reading at most
    :data:`SCAN_LIMIT` rows (the cursor then continues the scan)."""
    d = raw(driver)
    if not job_class:
        page = d.list_jobs(state, limit, after)
        return JobList([job_view(j) for j in page.jobs], page.next_after, len(page.jobs))
    out: list[dict[str, Any]] = []
    scanned = 0
    cursor = after
    while scanned < SCAN_LIMIT:
        page = d.list_jobs(state, min(500, SCAN_LIMIT - scanned), cursor)
        for j in page.jobs:
            scanned += 1
            cursor = j.job_id
            if job_name(j.payload) == job_class:
                out.append(job_view(j))
                if len(out) == limit:
                    return JobList(out, cursor, scanned)
        if page.next_after is None:
            return JobList(out, None, scanned)
    return JobList(out, cursor, scanned)


def failed_matches(f: FailedJob, job_class: str, message: str) -> bool:
    if job_class and job_name(f.payload) != job_class:
        return False
    return not message or message.lower() in f"{f.error_class}: {f.message}".lower()


def failed_view(f: FailedJob) -> dict[str, Any]:
    return {"id": f.job_id, "job": job_name(f.payload), "attempts": f.attempts, "error_class": f.error_class,
            "message": f.message, "code": f.code, "failed_at": f.failed_at, "unsettled": f.unsettled}


def list_failed(driver: Driver, job_class: str = "", message: str = "", offset: int = 0,
                limit: int = PAGE) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the failed registry (newest first), filtered; returns the rows and the offset of
    the next page. A filtered page reads at most :data:`SCAN_LIMIT` entries."""
    d = raw(driver)
    if not job_class and not message:
        rows = d.failed_list(offset, limit + 1)
        more = len(rows) > limit
        return [failed_view(f) for f in rows[:limit]], (offset + limit if more else None)
    out: list[dict[str, Any]] = []
    pos = offset
    while pos - offset < SCAN_LIMIT:
        batch = d.failed_list(pos, 500)
        for f in batch:
            pos += 1
            if failed_matches(f, job_class, message):
                out.append(failed_view(f))
                if len(out) == limit:
                    return out, pos
        if len(batch) < 500:
            return out, None
    return out, pos


def worker_view(w: WorkerInfo, now: float) -> dict[str, Any]:
    return {
        "id": w.worker_id, "queue": w.queue, "host": w.host, "pid": w.pid, "state": w.state, "lost": w.lost,
        "age": max(now - w.last_seen, 0.0), "heartbeat": w.heartbeat, "job_id": w.job_id, "job": w.job_name,
        "attempt": w.attempt, "progress": w.progress, "progress_message": w.progress_message, "done": w.done,
        "failed": w.failed, "rss_mib": w.rss_mib, "started_at": w.started_at, "concurrency": w.concurrency,
        "in_flight": w.in_flight, "job_ids": list(w.job_ids),
    }
