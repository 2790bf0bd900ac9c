"""Per-account rate limits, kept by the queue core's per-key limits (one limiter, not two).

The pipeline used to keep its own token buckets in publish state and made a job *sleep* for a
token (up to ``max_wait``, then fail and retry). Now an upload-asset or pub-article job takes its
account's token before it starts (``limit_key``): the same bucket (``burst`` at once, then ``rate``
per second, per channel type + account), but a job whose token is not due goes back delayed until
it is, without consuming an attempt, and other accounts' jobs pass it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pubq.drivers.base import JobStatus
from pubq.limits import LimitKey
from pubq.publishing.accounts import RateLimit

from .support import douyin, pipeline_app, request_doc, run_queue


def test_a_bucket_is_a_core_limit_of_its_key() -> None:
    assert RateLimit(rate=5, burst=10).limit("douyin:a1") == LimitKey("douyin:a1", rate=5, per=1.0, burst=10)
    assert RateLimit(rate=0.5, burst=3).limit("k") == LimitKey("k", rate=1, per=2.0, burst=3)
    assert RateLimit(rate=0.001, burst=1).limit("k").interval == pytest.approx(1000.0)


def _app(tmp_path: Path, database_url: str):
    channel_types = douyin(tmp_path)
    channel_types["douyin"]["rate_limit"] = {"rate": 50, "burst": 50}
    channel_types["douyin"]["accounts"][0]["rate_limit"] = {"rate": 0.001, "burst": 2}  # a1: 2, then 1 per 1000 s
    return pipeline_app(tmp_path, database_url, held=("upload-asset",), channel_types=channel_types)


def test_account_limit_resolves_the_row_account(tmp_path: Path, database_url: str) -> None:
    from pubq.publishing.pipeline import pipeline_for
    from pubq.publishing.service import service_for

    app = _app(tmp_path, database_url)
    try:
        task_id = service_for(app).submit(request_doc(tmp_path, accounts=["a1", "a2"]))
        rows = {row["account"]: row["channel_app_task_id"] for row in service_for(app).accounts_view(task_id)}
        pipeline = pipeline_for(app)
        assert pipeline.account_limit(rows["a1"]) == LimitKey("douyin:a1", rate=1, per=1000.0, burst=2)
        assert pipeline.account_limit(rows["a2"]) == LimitKey("douyin:a2", rate=50, per=1.0, burst=50)
        assert pipeline.account_limit(10**9) is None  # no such row: the step itself reports it
    finally:
        app.close()


def test_an_account_past_its_burst_waits_delayed_and_others_pass(tmp_path: Path, database_url: str) -> None:
    from pubq.publishing.service import service_for

    app = _app(tmp_path, database_url)
    try:
        service = service_for(app)
        for _ in range(3):  # three rows of a1 (one per task), one of a2
            service.submit(request_doc(tmp_path, accounts=["a1"]))
        service.submit(request_doc(tmp_path, accounts=["a2"]))
        run_queue(app, "upload-asset")
        driver = app.queue("upload-asset").driver
        counts = driver.counts()
        assert counts.done == 3 and counts.delayed == 1 and counts.limited == 1 and counts.failed == 0
        [delayed] = driver.list_jobs(JobStatus.DELAYED).jobs
        info = driver.get(delayed.job_id)
        assert info.attempt == 0  # not an attempt: it never started, nothing failed
        assert info.due_at - driver.now() > 900  # its token is due 1000 s after the burst
    finally:
        app.close()
