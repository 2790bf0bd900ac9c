"""Stored payloads that cannot become a job (issue 11, incident 002), on every backend.

Whatever goes wrong while turning stored bytes into a job — JSON nested 100,000 deep, a job whose
``__post_init__`` raises anything at all — makes an *invalid job*: failed at once with its reason,
never retried, afterError once, and the worker goes on with the next job (no crash loop, no
head-of-line blocking). In the worker, in an isolating worker, for a job reclaimed from a dead
worker, and for the sync driver's inline runs.
"""

from __future__ import annotations

import json

import pytest

from pubq import events as ev
from pubq.drivers.base import JobStatus
from pubq.runner import JobRunner
from pubq.worker import Worker
from tests.drivers.backends import kind_params, open_driver
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import RecordJob, read_lines


@pytest.fixture(params=kind_params())
def driver(request, tmp_path):
    drv, cleanup = open_driver(request.param, tmp_path, grace=0)
    yield drv
    cleanup()


def refusing(what: str) -> bytes:
    return json.dumps({"job": "tests.Refusing", "args": {"what": what}}).encode()


#: payload → what the failure must say
BAD = {
    "list nested 100,000 deep": (b'{"job": "tests.Record", "args": {"path": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
                                 "nested too deeply"),
    "object nested 100,000 deep": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "args nested 200 deep": (b'{"job": "tests.Typed", "args": {"count": 1, "anything": ' + b"[" * 200 + b"]" * 200
                             + b"}}", "nested deeper than 100 levels"),
    "args of the wrong type": (b'{"job": "tests.Typed", "args": {"count": "three"}}',
                               "args.count must be an integer (got 'three')"),
    "__post_init__ raises RuntimeError": (refusing("RuntimeError"), "refused its arguments: RuntimeError: refused"),
    "__post_init__ raises KeyError": (refusing("KeyError"), "refused its arguments: KeyError: 'missing'"),
    "__post_init__ raises RecursionError": (refusing("RecursionError"), "RecursionError: too deep"),
    "__post_init__ raises an error that cannot be printed": (refusing("Unprintable"), "_UnprintableError"),
}


def watch(queue):
    seen: list[tuple[int, int, bool, str]] = []
    queue.bus.on(ev.AFTER_ERROR, lambda e: seen.append((e.id, e.attempt, bool(e.retry), type(e.error).__name__)))
    return seen


def assert_invalid(queue, seen, bad: int, says: str) -> None:
    entry = queue.driver.failed_get(bad)
    assert entry is not None, "the bad job must stay in the failed registry"
    assert entry.error_class == "InvalidJobError" and says in entry.message, entry.message
    assert entry.attempts == 1 and not entry.unsettled
    assert [s for s in seen if s[0] == bad] == [(bad, 1, False, "InvalidJobError")]


@pytest.mark.parametrize("isolate", [False, True], ids=["in process", "isolate"])
@pytest.mark.parametrize("payload, says", BAD.values(), ids=list(BAD))
def test_a_payload_that_cannot_become_a_job_is_failed_once_and_the_worker_goes_on(
        driver, payload, says, isolate, tmp_path):
    q = make_queue(driver, attempts=3)
    seen = watch(q)
    bad = q.driver.push(payload, ttr=30)
    done = str(tmp_path / "done")
    q.push(RecordJob(path=done))
    q.push(RecordJob(path=done))
    assert Worker(q, isolate=isolate, install_signals=False).run() == 0
    assert_invalid(q, seen, bad, says)
    assert len(read_lines(done)) == 2, "the jobs behind the bad one must run"
    counts = q.driver.counts()
    assert (counts.waiting, counts.reserved, counts.done, counts.failed) == (0, 0, 2, 1)


def test_bad_payloads_held_by_a_dead_worker_are_failed_by_its_reclaimer_for_their_own_reason(driver):
    q = make_queue(driver, ttr=1, attempts=3)
    seen = watch(q)
    cases = [BAD["list nested 100,000 deep"], BAD["__post_init__ raises KeyError"], BAD["args of the wrong type"]]
    bad = [q.driver.push(payload, ttr=1) for payload, _ in cases]
    held = [q.driver.reserve(0) for _ in cases]
    assert [r.job_id for r in held] == bad  # the worker holding them dies here
    wait_until(lambda: q.driver.now() > max(r.deadline for r in held),
               message="the backend clock to pass the jobs' TTR")
    assert Worker(q, isolate=False, install_signals=False).run() == 0
    for job_id, (_, says) in zip(bad, cases, strict=True):
        assert_invalid(q, seen, job_id, says)
        assert q.driver.status(job_id) is JobStatus.FAILED


def test_the_inline_runner_of_the_sync_driver_fails_bad_payloads_and_goes_on(tmp_path):
    drv, cleanup = open_driver("memory", tmp_path)
    try:
        q = make_queue(drv, attempts=3)
        seen = watch(q)
        bad = [q.driver.push(payload, ttr=30) for payload, _ in BAD.values()]
        q.push(RecordJob(path=str(tmp_path / "done")))
        JobRunner(q).drain()
        for job_id, (_, says) in zip(bad, BAD.values(), strict=True):
            assert_invalid(q, seen, job_id, says)
        assert len(read_lines(str(tmp_path / "done"))) == 1
    finally:
        cleanup()
