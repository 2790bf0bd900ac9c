"""Bad values at the driver level (issue 11), on every backend: a value a backend refuses is a
``BackendDataError`` that nobody retries (never "backend unavailable"), and a job whose stored state
is out of range or unreadable is failed as an invalid job, never run, never dropped.

The core checks every number before a driver sees it (``pubq.bounds``); these tests write past
those checks on purpose, as another producer, a hand edit or an older version would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from pubq import Job
from pubq import events as ev
from pubq.drivers.base import FailureInfo, JobStatus
from pubq.drivers.resilient import OutageBudget, ResilientDriver
from pubq.errors import BackendDataError
from pubq.worker import Worker
from tests.helpers import make_queue
from tests.sample_jobs import NoopJob, RecordJob, read_lines

HUGE = 10**23
NOOP = b'{"job": "tests.Noop", "args": {}}'


def drain(queue: Any) -> int:
    return Worker(queue, isolate=False, install_signals=False).run()


def after_errors(queue: Any) -> list[tuple[int, int, bool, str]]:
    seen: list[tuple[int, int, bool, str]] = []
    queue.bus.on(ev.AFTER_ERROR, lambda e: seen.append((e.id, e.attempt, bool(e.retry), type(e.error).__name__)))
    return seen


# -- a refused value is bad input, not an outage ---------------------------------------------------------


READS = {
    "failed_list offset": lambda d: d.failed_list(HUGE, 5),
    "failed_list limit": lambda d: d.failed_list(0, HUGE),
    "follow_up_list offset": lambda d: d.follow_up_list(HUGE, 5),
    "remove": lambda d: d.remove(HUGE),
    "failed_get": lambda d: d.failed_get(HUGE),
    "requeue_failed": lambda d: d.requeue_failed(HUGE),
    "get": lambda d: d.get(HUGE),
    "status": lambda d: d.status(HUGE),
}


@pytest.mark.parametrize("call", READS.values(), ids=list(READS))
def test_an_id_or_offset_past_the_backends_range_is_not_found_or_a_data_error_never_an_outage(driver, call):
    lost: list[Exception] = []
    resilient = ResilientDriver(driver, budget=OutageBudget(give_up_after=30, on_lost=lost.append))
    before = driver.counts()
    try:
        answer = call(resilient)
    except BackendDataError as exc:
        assert exc.exit_code == 2 and exc.code == "backend_data_error"
        assert "refused a value" in str(exc) and "\n" not in str(exc)
    else:
        assert answer in (None, False, [], JobStatus.DONE)
    assert lost == [], "a refused value was retried as if the backend were down"
    assert driver.counts() == before


PUSHES = {
    "ttr 2**31": {"ttr": 2**31},
    "ttr 2**63": {"ttr": 2**63},
    "ttr 10**23": {"ttr": HUGE},
    "ttr 0": {"ttr": 0},
    "priority 2**63": {"priority": 2**63},
    "priority -1": {"priority": -1},
}


@pytest.mark.parametrize("opts", PUSHES.values(), ids=list(PUSHES))
def test_a_job_stored_past_the_push_checks_is_refused_or_failed_as_invalid_never_lost(driver, opts, tmp_path):
    # Issue 11: on Redis `push --ttr 9223372036854775808` exited 0, then the next run deleted the job.
    q = make_queue(driver, attempts=3)
    seen = after_errors(q)
    lost: list[Exception] = []
    resilient = ResilientDriver(driver, budget=OutageBudget(give_up_after=30, on_lost=lost.append))
    kwargs = {"ttr": 60, **opts}
    try:
        bad = resilient.push(NOOP, **kwargs)
    except BackendDataError:
        assert lost == [] and driver.counts().waiting == 0
        return
    ok = q.push(RecordJob(path=str(tmp_path / "ok")))
    assert drain(q) == 0
    counts = driver.counts()
    assert (counts.waiting, counts.reserved, counts.delayed) == (0, 0, 0)
    assert len(read_lines(str(tmp_path / "ok"))) == 1, "the job behind the bad one must run"
    assert driver.status(ok) is JobStatus.DONE
    entry = driver.failed_get(bad)
    assert entry is not None, "the bad job was dropped instead of failed"
    assert entry.error_class == "InvalidJobError" and entry.payload == NOOP
    assert ("stored" in entry.message) or ("cannot be read" in entry.message), entry.message
    assert [s for s in seen if s[0] == bad] == [(bad, entry.attempts, False, "InvalidJobError")]


@pytest.mark.parametrize("delay", [math.inf, math.nan])
def test_a_delay_that_is_not_a_number_is_refused_by_every_driver(driver, delay):
    with pytest.raises(BackendDataError, match="not a finite number"):
        driver.push(NOOP, ttr=60, delay=delay)
    assert driver.counts().delayed == 0 and driver.counts().waiting == 0


# -- stored numbers out of range: an invalid job ---------------------------------------------------------


def store(driver: Any, kind: str, job_id: int, **fields: int) -> None:
    """Overwrite numbers stored with a waiting job, the way a hand edit or another producer would."""
    if kind == "memory":
        job = driver._jobs[job_id]
        for name, value in fields.items():
            setattr(job, name, value)
    elif kind.startswith("redis"):
        if kind == "redis-sharded":  # the sub-queue that holds it, under its local id
            driver, job_id = driver._route(job_id)
        names = ("state", "attempt", "ttr", "priority", "pushed_at", "seq", "deadline", "lease")
        driver.status(job_id)  # a plain push waits in the inbox until a script ingests it
        meta = driver.client.hget(driver.keys[2], job_id).split(b"|")
        for name, value in fields.items():
            meta[names.index(name)] = str(value).encode()
        driver.client.hset(driver.keys[2], job_id, b"|".join(meta))
    else:
        sets = ", ".join(f"{name} = ?" for name in fields)
        driver.conn.transaction(lambda tx: tx.execute(f"UPDATE {{J}} SET {sets} WHERE id = ?", (*fields.values(), job_id)))


@pytest.mark.parametrize("fields, says", [
    ({"ttr": 0}, "stored ttr must be an integer from 1 to 604,800 s (got 0)"),
    ({"ttr": 2_000_000_000}, "stored ttr must be an integer from 1 to 604,800 s (got 2000000000)"),
    ({"priority": 2_000_000}, "stored priority must be an integer from 0 to 1,000,000 (got 2000000)"),
], ids=["ttr 0", "ttr 2e9", "priority 2e6"])
def test_a_stored_number_out_of_range_makes_an_invalid_job_on_every_backend(driver, kind, fields, says, tmp_path):
    q = make_queue(driver, attempts=3)
    seen = after_errors(q)
    bad = q.push(NoopJob())
    store(driver, kind, bad, **fields)
    q.push(RecordJob(path=str(tmp_path / "ok")))
    assert drain(q) == 0
    entry = driver.failed_get(bad)
    assert entry is not None and entry.error_class == "InvalidJobError"
    assert says in entry.message
    assert [s for s in seen if s[0] == bad] == [(bad, 1, False, "InvalidJobError")]
    assert len(read_lines(str(tmp_path / "ok"))) == 1


def test_a_stored_negative_attempt_makes_an_invalid_job(driver, kind):
    q = make_queue(driver, attempts=3)
    bad = q.push(NoopJob())
    store(driver, kind, bad, attempt=-5)
    assert drain(q) == 0
    entry = driver.failed_get(bad)
    # Redis cannot even parse a negative attempt: its meta is unreadable, which ends the same way.
    assert entry is not None and entry.error_class == "InvalidJobError"
    assert "stored attempt must be" in entry.message or "cannot be read" in entry.message


# -- text a backend cannot store -------------------------------------------------------------------------


@dataclass
class UnstorableFailure(Job):
    """Raises an error whose message holds ``chars`` (a code point each, so the payload stays clean)."""

    name = "tests.UnstorableFailure"
    chars: list[int]

    def execute(self, ctx: Any) -> None:
        raise RuntimeError("bad " + "".join(map(chr, self.chars)) + " inside")


@pytest.mark.parametrize("chars", [[0], [0xDCFF]], ids=["nul", "lone surrogate"])
def test_an_error_message_no_backend_can_store_as_is_is_still_recorded_and_the_worker_goes_on(
        driver, chars, tmp_path):
    # PostgreSQL refuses NUL in text; no UTF-8 encoding has a lone surrogate. A job's exception
    # message is bad input like any other: it must not stop the worker recording the failure.
    q = make_queue(driver)
    q.registry.register(UnstorableFailure)
    bad = q.push(UnstorableFailure(chars=chars))
    q.push(RecordJob(path=str(tmp_path / "ok")))
    assert drain(q) == 0
    entry = driver.failed_get(bad)
    assert entry is not None and entry.error_class == "RuntimeError"
    assert entry.message.startswith("bad ") and entry.message.endswith(" inside")
    assert "\x00" not in entry.message
    entry.message.encode("utf-8")  # storable everywhere
    assert len(read_lines(str(tmp_path / "ok"))) == 1


# -- Redis: a meta that does not parse -------------------------------------------------------------------


@pytest.fixture
def redis_driver(tmp_path):
    from tests.drivers.backends import open_driver

    driver, cleanup = open_driver("redis", tmp_path, grace=0)
    yield driver
    cleanup()


def _meta_key(driver: Any) -> str:
    return driver.keys[2]


@pytest.mark.parametrize("meta", [b"w|0|-9223372036854775808|1024|1.0|1||0", b"garbage", None],
                         ids=["negative ttr (%d of 2**63)", "garbage", "missing"])
def test_a_waiting_job_whose_meta_does_not_parse_is_failed_as_invalid_not_deleted(redis_driver, meta, tmp_path):
    # Issue 11: push.lua wrote a TTR >= 2**63 with %d (negative), meta_get could not parse it, and
    # the reserve script deleted the job as an orphan.
    q = make_queue(redis_driver, attempts=3)
    seen = after_errors(q)
    bad = q.push(NoopJob())
    redis_driver.status(bad)  # stored: a plain push waits in the inbox until a script ingests it
    if meta is None:
        redis_driver.client.hdel(_meta_key(redis_driver), bad)
    else:
        redis_driver.client.hset(_meta_key(redis_driver), bad, meta)
    assert redis_driver.status(bad) in (JobStatus.WAITING, JobStatus.DONE)  # no crash on a foreign meta
    q.push(RecordJob(path=str(tmp_path / "ok")))
    assert drain(q) == 0
    entry = redis_driver.failed_get(bad)
    assert entry is not None and entry.error_class == "InvalidJobError"
    assert "stored state cannot be read" in entry.message
    assert ("no meta" if meta is None else "unreadable meta") in entry.message
    assert entry.payload == NOOP.replace(b" ", b"")
    assert [s for s in seen if s[0] == bad] == [(bad, 1, False, "InvalidJobError")]
    counts = redis_driver.counts()
    assert (counts.waiting, counts.reserved, counts.failed) == (0, 0, 1)
    assert len(read_lines(str(tmp_path / "ok"))) == 1


def test_a_delayed_job_whose_meta_does_not_parse_is_failed_as_invalid_once_due(redis_driver):
    from tests.helpers import wait_until

    q = make_queue(redis_driver)
    bad = q.push(NoopJob(), delay=0.2)
    due = redis_driver.now() + 0.2
    redis_driver.client.hset(_meta_key(redis_driver), bad, b"d|0|x|y")
    wait_until(lambda: redis_driver.now() > due, message="the delayed job to be due")
    assert drain(q) == 0
    entry = redis_driver.failed_get(bad)
    assert entry is not None and "unreadable meta d|0|x|y" in entry.message


def test_a_reserved_job_whose_meta_does_not_parse_is_reclaimed_as_invalid(redis_driver):
    from tests.helpers import wait_until

    q = make_queue(redis_driver, ttr=1, attempts=3)
    seen = after_errors(q)
    bad = q.push(NoopJob(), ttr=1)
    held = redis_driver.reserve(0)
    assert held.job_id == bad  # its worker dies here, and its meta is garbled
    redis_driver.client.hset(_meta_key(redis_driver), bad, b"r|1|1|")
    wait_until(lambda: redis_driver.now() > held.deadline, message="the reservation to expire")
    assert drain(q) == 0
    entry = redis_driver.failed_get(bad)
    assert entry is not None and entry.error_class == "InvalidJobError" and "unreadable meta" in entry.message
    assert [s for s in seen if s[0] == bad] == [(bad, 1, False, "InvalidJobError")]
    assert redis_driver.counts().reserved == 0


def test_remove_and_the_failed_list_cope_with_unreadable_records(redis_driver):
    kept = redis_driver.push(NOOP, ttr=60)
    gone = redis_driver.push(NOOP, ttr=60)
    redis_driver.counts()  # stored: plain pushes wait in the inbox until a script ingests them
    redis_driver.client.hset(_meta_key(redis_driver), kept, b"w|0|1|2|3|4|5")  # seq 4 is not the member's
    redis_driver.client.hset(_meta_key(redis_driver), gone, b"nonsense")
    assert redis_driver.remove(gone) is True
    assert redis_driver.client.hget(_meta_key(redis_driver), gone) is None
    r = redis_driver.reserve(0)
    assert r is not None and r.job_id == kept and "unreadable meta" in r.unreadable
    assert redis_driver.fail(r, FailureInfo("E", "m"))
    redis_driver.client.hset(redis_driver.keys[7], kept, b"{not json")
    redis_driver.client.hset(_meta_key(redis_driver), kept, b"f|x")
    [entry] = redis_driver.failed_list(0, 10)
    assert entry.job_id == kept and "unreadable record" in entry.message and entry.attempts == 0
    assert redis_driver.failed_get(kept).message == entry.message


def test_an_isolating_worker_fails_a_job_stored_with_a_huge_ttr_instead_of_waiting_on_it(driver, kind, tmp_path):
    # Issue 11: a TTR of ~10**10 s crashed an isolate worker (OverflowError in its wait) and left the
    # job reserved for 317 years. (PostgreSQL and MySQL store TTRs in 32 bits: 2e9 is their largest.)
    q = make_queue(driver, attempts=3)
    bad = q.push(NoopJob())
    store(driver, kind, bad, ttr=2_000_000_000 if kind not in ("memory", "redis", "sqlite") else 10**10)
    q.push(RecordJob(path=str(tmp_path / "ok")))
    assert Worker(q, isolate=True, install_signals=False).run() == 0
    entry = driver.failed_get(bad)
    assert entry is not None and entry.error_class == "InvalidJobError" and "stored ttr" in entry.message
    assert driver.counts().reserved == 0
    assert len(read_lines(str(tmp_path / "ok"))) == 1
