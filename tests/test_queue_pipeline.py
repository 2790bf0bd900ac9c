"""The queue's execution pipeline on real drivers: outcomes, events, follow-ups, invalid jobs."""

from __future__ import annotations

import json

import pytest

from pubq import events as ev
from pubq.drivers.base import JobStatus
from pubq.worker import Worker
from tests.drivers.backends import open_driver
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import FailJob, FlakyJob, NoopJob, RecordJob, SleepJob, SuicideJob, read_lines

KINDS = ["memory", "redis", "sqlite"]


@pytest.fixture(params=KINDS)
def driver(request, tmp_path):
    drv, cleanup = open_driver(request.param, tmp_path, grace=0)
    yield drv
    cleanup()


def record_events(queue, names=(ev.AFTER_EXEC, ev.AFTER_ERROR)):
    seen: list[tuple] = []
    for name in names:
        queue.bus.on(name, lambda e, n=name: seen.append((n, e.id, e.attempt, e.retry, type(e.error).__name__)))
    return seen


def drain(queue, *, isolate=False):
    return Worker(queue, isolate=isolate, install_signals=False).run()


def test_a_raising_job_is_failed_before_the_worker_reserves_the_next_job(driver):
    q = make_queue(driver)
    q.push(FailJob(message="first"))
    q.push(NoopJob())
    failed_seen_at_next_start = []
    q.bus.on(ev.BEFORE_EXEC, lambda e: failed_seen_at_next_start.append(q.driver.counts().failed)
             if e.job_name == "tests.Noop" else None)
    assert drain(q) == 0
    assert failed_seen_at_next_start == [1]
    counts = q.driver.counts()
    assert (counts.failed, counts.done, counts.waiting, counts.reserved) == (1, 1, 0, 0)
    entry = q.driver.failed_list()[0]
    assert entry.error_class == "RuntimeError" and entry.message == "first"
    assert "Traceback" in entry.traceback and entry.attempts == 1


def test_after_error_fires_once_per_attempt_and_the_final_failure_exactly_once(driver):
    q = make_queue(driver, attempts=3)
    seen = record_events(q)
    job_id = q.push(FailJob(message="always"))
    drain(q)
    assert [(n, a, r) for n, _, a, r, _ in seen] == [
        ("afterError", 1, True), ("afterError", 2, True), ("afterError", 3, False)]
    assert q.driver.status(job_id) is JobStatus.FAILED
    entry = q.driver.failed_get(job_id)
    assert entry.attempts == 3 and not entry.unsettled
    assert q.driver.counts().failed_total == 1


def test_a_permanent_error_is_never_retried(driver):
    q = make_queue(driver, attempts=5)
    seen = record_events(q)
    q.push(FailJob(permanent=True))
    drain(q)
    assert [(a, r, name) for _, _, a, r, name in seen] == [(1, False, "PermanentError")]


def test_a_retry_runs_the_next_attempt_and_succeeds(driver, tmp_path):
    log = str(tmp_path / "runs")
    q = make_queue(driver, attempts=3)
    q.push(FlakyJob(path=log, ok_on=2))
    drain(q)
    assert [line.split()[2] for line in read_lines(log)] == ["1", "2"]
    counts = q.driver.counts()
    assert (counts.done, counts.failed) == (1, 0)


def test_a_raising_after_exec_handler_keeps_the_job_done_and_records_a_follow_up(driver, tmp_path):
    log = str(tmp_path / "runs")
    q = make_queue(driver)

    def broken(e):
        raise ValueError("next queue is down")

    q.bus.on(ev.AFTER_EXEC, broken, label="tests:broken")
    later = []
    q.bus.on(ev.AFTER_EXEC, lambda e: later.append(e.id))
    first = q.push(RecordJob(path=log))
    q.push(RecordJob(path=log))
    assert drain(q) == 0
    assert len(read_lines(log)) == 2  # not re-run, worker survived
    counts = q.driver.counts()
    assert (counts.done, counts.failed, counts.follow_up_failed) == (2, 0, 2)
    assert later and later[0] == first  # the next handler still ran
    fu = q.driver.follow_up_list()
    assert {f.event for f in fu} == {"afterExec"} and fu[0].handler == "tests:broken"
    assert fu[0].error_class == "ValueError" and "next queue is down" in fu[0].message


def test_a_raising_after_error_handler_does_not_fire_after_error_twice(driver):
    q = make_queue(driver)
    calls = []

    def broken(e):
        calls.append(e.attempt)
        raise RuntimeError("handler exploded")

    q.bus.on(ev.AFTER_ERROR, broken)
    job_id = q.push(FailJob())
    drain(q)
    assert calls == [1]
    assert q.driver.status(job_id) is JobStatus.FAILED
    assert q.driver.counts().follow_up_failed == 1
    assert not q.driver.failed_get(job_id).unsettled


def test_an_after_error_handler_can_turn_a_final_failure_into_a_retry(driver):
    q = make_queue(driver, attempts=1)

    def one_more(e):
        if e.attempt == 1:
            e.retry = True

    q.bus.on(ev.AFTER_ERROR, one_more)
    seen = record_events(q)  # registered after, so it sees the changed decision
    job_id = q.push(FailJob())
    drain(q)
    assert [(a, r) for _, _, a, r, _ in seen] == [(1, True), (2, False)]
    assert q.driver.failed_get(job_id).attempts == 2
    assert q.driver.counts().failed_total == 1


def test_an_after_error_handler_can_stop_retries(driver):
    q = make_queue(driver, attempts=5)
    q.bus.on(ev.AFTER_ERROR, lambda e: setattr(e, "retry", False))
    job_id = q.push(FailJob())
    drain(q)
    entry = q.driver.failed_get(job_id)
    assert entry is not None and entry.attempts == 1 and not entry.unsettled


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "not valid JSON"),
    (b'{"job": "tests.Nope", "args": {}}', "unknown job 'tests.Nope'"),
    (b'{"job": "tests.Record", "args": {"nope": 1}}', "unknown argument(s): nope"),
    (b'[1, 2]', 'JSON object with a string "job"'),
])
def test_a_malformed_payload_fails_at_once_with_a_reason_and_the_worker_goes_on(driver, payload, reason, tmp_path):
    q = make_queue(driver, attempts=3)
    seen = record_events(q)
    bad = q.driver.push(payload, ttr=30)
    q.push(RecordJob(path=str(tmp_path / "ok")))
    assert drain(q) == 0
    entry = q.driver.failed_get(bad)
    assert entry.error_class == "InvalidJobError" and reason in entry.message
    assert entry.payload == payload and entry.attempts == 1
    assert ("afterError", bad, 1, False, "InvalidJobError") in seen
    assert len(read_lines(str(tmp_path / "ok"))) == 1


def test_a_stored_payload_over_max_payload_bytes_is_an_invalid_job_and_never_runs(driver, tmp_path):
    # Issue #6 soak: a 10 MB body written below the queue's push check ran as a normal job.
    q = make_queue(driver, attempts=3)
    seen = record_events(q)
    ran = str(tmp_path / "ran")
    big = json.dumps({"job": "tests.Record", "args": {"path": ran, "tag": "x" * (2 * 1024 * 1024)}}).encode()
    bad = q.driver.push(big, ttr=30)
    assert drain(q) == 0
    entry = q.driver.failed_get(bad)
    assert entry.error_class == "InvalidJobError" and "max_payload_bytes" in entry.message
    assert entry.attempts == 1 and entry.payload == big
    assert ("afterError", bad, 1, False, "InvalidJobError") in seen
    assert read_lines(ran) == []


def test_a_stop_landing_during_the_fused_ack_and_reserve_puts_the_next_job_back_at_once(driver):
    # Issue #6 soak: a SIGTERM during ack_and_reserve left the next job reserved until its TTR passed.
    q = make_queue(driver, ttr=600)
    q.push(NoopJob())
    second = q.push(NoopJob())
    worker = Worker(q, isolate=False, install_signals=False)
    # one job at a time the worker fuses the ack with the next reserve: for one job, or for a batch
    # when the driver prefetches
    fused, fused_many = q.driver.ack_and_reserve, q.driver.ack_and_reserve_many

    def stop_during(r, **kw):
        worker.stopping = True  # what the signal handler does, mid round trip
        return fused(r, **kw)

    def stop_during_many(acks, n, **kw):
        worker.stopping = True
        return fused_many(acks, n, **kw)

    q.driver.ack_and_reserve = stop_during
    q.driver.ack_and_reserve_many = stop_during_many
    assert worker.listen(1) == 0
    counts = q.driver.counts()
    assert (counts.done, counts.reserved, counts.waiting) == (1, 0, 1)
    assert q.driver.get(second).attempt == 0  # put back uncounted, like a hard stop


def test_a_reclaimed_invalid_payload_is_failed_with_its_own_reason_not_a_ttr(driver):
    # Issue #6 soak: a worker killed holding a wrong-args payload left it to a reclaimer, which
    # stored "TTR exceeded / worker lost" as the reason.
    q = make_queue(driver, ttr=1, attempts=3)
    seen = record_events(q)
    bad = q.driver.push(b'{"job": "tests.Record", "args": {"nope": 1}}', ttr=1)
    held = q.driver.reserve(0)
    assert held.job_id == bad  # the worker holding it dies here
    wait_until(lambda: q.driver.now() > held.deadline, message="the backend clock to pass the job's TTR")
    assert drain(q) == 0
    entry = q.driver.failed_get(bad)
    assert entry.error_class == "InvalidJobError" and "unknown argument(s): nope" in entry.message
    assert [s for s in seen if s[0] == "afterError"] == [("afterError", bad, 1, False, "InvalidJobError")]


def test_a_before_exec_handler_can_skip_a_job(driver, tmp_path):
    q = make_queue(driver)
    q.bus.on(ev.BEFORE_EXEC, lambda e: setattr(e, "handled", True))
    q.push(RecordJob(path=str(tmp_path / "never")))
    drain(q)
    assert read_lines(str(tmp_path / "never")) == []
    assert q.driver.counts().done == 1


def test_max_jobs_stops_the_worker_and_leaves_the_rest_waiting(driver):
    q = make_queue(driver)
    for _ in range(5):
        q.push(NoopJob())
    Worker(q, isolate=False, install_signals=False, max_jobs=2).run()
    counts = q.driver.counts()
    assert (counts.done, counts.waiting, counts.reserved) == (2, 3, 0)


# -- isolate mode ------------------------------------------------------------------------

def test_isolate_runs_the_job_in_a_child_and_fires_events_in_the_parent(driver, tmp_path):
    import os

    log = str(tmp_path / "runs")
    q = make_queue(driver)
    fired_in = []
    q.bus.on(ev.AFTER_EXEC, lambda e: fired_in.append((os.getpid(), e.result)))
    q.push(RecordJob(path=log, tag="iso"))
    drain(q, isolate=True)
    child_pid = int(read_lines(log)[0].split()[3])
    assert child_pid != os.getpid()
    assert fired_in == [(os.getpid(), "iso")]
    assert q.driver.counts().done == 1


def test_isolate_keeps_the_error_class_of_a_failing_child(driver):
    q = make_queue(driver)
    seen = record_events(q)
    job_id = q.push(FailJob(message="in the child"))
    drain(q, isolate=True)
    assert seen == [("afterError", job_id, 1, False, "RuntimeError")]
    assert q.driver.failed_get(job_id).message == "in the child"


def test_isolate_turns_a_killed_child_into_a_failed_attempt(driver, tmp_path):
    q = make_queue(driver, attempts=2)
    seen = record_events(q)
    job_id = q.push(SuicideJob(path=str(tmp_path / "runs")))
    assert drain(q, isolate=True) == 0
    assert [(a, r, n) for _, _, a, r, n in seen] == [(1, True, "JobCrashedError"), (2, False, "JobCrashedError")]
    assert "SIGKILL" in q.driver.failed_get(job_id).message


def test_isolate_kills_a_child_that_runs_past_its_ttr(driver, tmp_path):
    q = make_queue(driver)
    seen = record_events(q)
    job_id = q.push(SleepJob(seconds=30, path=str(tmp_path / "runs")), ttr=1)
    drain(q, isolate=True)
    assert seen == [("afterError", job_id, 1, False, "TtrExceededError")]
    assert "end" not in " ".join(read_lines(str(tmp_path / "runs")))


def test_isolate_retries_a_retryable_error_from_the_child(driver):
    q = make_queue(driver, attempts=2)
    seen = record_events(q)
    q.push(FailJob(retryable=True))
    drain(q, isolate=True)
    assert [(a, r, n) for _, _, a, r, n in seen] == [(1, True, "RetryableError"), (2, False, "RetryableError")]
