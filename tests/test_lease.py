"""Lease tokens end "first writer wins": a worker whose job was reclaimed after its TTR can no longer
record an outcome for it, and fires no event for it (on every driver)."""

from __future__ import annotations

import threading

import pytest

from pubq import events as ev
from pubq.drivers.base import ReclaimKind
from pubq.runner import JobRunner
from pubq.worker import Worker
from tests.drivers.backends import kind_params, open_driver, unique_channel
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import SleepJob, read_lines


@pytest.fixture(params=kind_params())
def two_workers(request, tmp_path):
    """Two queues on one channel, as two worker processes would see it (grace 0: reclaim right at TTR)."""
    channel = unique_channel("lease")
    opened = [open_driver(request.param, tmp_path, channel=channel, grace=0, hold=60) for _ in range(2)]
    yield [make_queue(driver, ttr=1) for driver, _ in opened]
    for _, cleanup in reversed(opened):
        cleanup()


def _record(queue, seen):
    for name in (ev.AFTER_EXEC, ev.AFTER_ERROR):
        queue.bus.on(name, lambda e, n=name: seen.append((n, e.id, e.attempt, e.retry, type(e.error).__name__)))


def test_an_overrunning_jobs_late_success_fires_no_after_exec_and_is_not_counted(two_workers, tmp_path):
    late, reclaimer = two_workers
    late_seen: list[tuple] = []
    reclaimer_seen: list[tuple] = []
    _record(late, late_seen)
    _record(reclaimer, reclaimer_seen)
    log = str(tmp_path / "runs")
    job_id = late.push(SleepJob(seconds=30, path=log))

    # The late worker runs the job in-process (--no-isolate): nothing kills it at its TTR of 1 s.
    worker = Worker(late, isolate=False, install_signals=False)
    release = threading.Event()
    job = late.registry.get("tests.Sleep")
    original = job.execute

    def slow(self, ctx):  # runs until the reclaimer has taken the job, then finishes successfully
        original(SleepJob(seconds=0, path=self.path), ctx)
        release.wait(60)

    job.execute = slow
    try:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        wait_until(lambda: read_lines(log), message="the job to start")
        # Another worker finds the job past its TTR, takes its lease and fails it finally.
        items = wait_until(lambda: reclaimer.driver.reclaim_expired(), timeout=15, message="the job to be reclaimed")
        assert [i.kind for i in items] == [ReclaimKind.LOST]
        JobRunner(reclaimer).recover(items[0])
        release.set()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        job.execute = original
        release.set()

    assert late_seen == []  # neither afterExec (the late success) nor afterError from the late worker
    assert reclaimer_seen == [("afterError", job_id, 1, False, "TtrExceededError")]
    counts = late.driver.counts()
    assert (counts.done, counts.failed, counts.failed_total, counts.reserved) == (0, 1, 1, 0)
    assert late.driver.failed_get(job_id).error_class == "TtrExceededError"
