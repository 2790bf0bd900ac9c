"""The driver conformance suite: one set of guarantees every driver must keep.

Each test runs once per kind in ``DRIVER_KINDS`` on that kind's real backend. Real drivers use the
server clock, so anything about delays or TTR uses short real times and waits on a condition with a
deadline (``wait_for``); no test sleeps for a fixed long time or asserts on elapsed wall time. Only
the memory driver takes a fake clock, which the stateful test uses to expire reservations.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pubq.bounds import PRIORITY
from pubq.drivers.base import (
    DEFAULT_PRIORITY,
    Counts,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobStatus,
    PushItem,
    ReclaimKind,
    Reservation,
)
from tests.drivers.backends import open_driver, unique_channel

#: Kinds whose factory accepts ``clock=`` (a fake backend clock).
CLOCK_CONTROLLED = frozenset({"memory"})
#: Tolerance for times read back from a backend (float storage, clock reads around a call), seconds.
EPS = 0.05
INFO = FailureInfo("app.errors.ServerError", "list of enabled resources is empty", "Traceback…\nServerError", "permanent")


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def wait_backend_past(driver: Any, t: float) -> None:
    wait_for(lambda: driver.now() > t, what=f"backend clock past {t}")


def push(driver: Any, payload: bytes = b"{}", *, ttr: int = 60, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
    return driver.push(payload, ttr=ttr, delay=delay, priority=priority)


def take(driver: Any) -> Reservation:
    r = driver.reserve(0)
    assert r is not None, "expected a due job"
    return r


def failed_job(driver: Any, payload: bytes = b"{}", *, settle: bool = True, **kw: Any) -> Reservation:
    """A job whose one attempt failed, in the registry (settled unless told not to); its last lease."""
    push(driver, payload, **kw)
    r = take(driver)
    assert driver.fail(r, INFO) is True
    if settle:
        assert driver.settle(r) is True
    return r


def drain(driver: Any) -> list[Reservation]:
    out = []
    while (r := driver.reserve(0)) is not None:
        out.append(r)
    return out


# -- push / reserve / ack -------------------------------------------------------------------


def test_a_new_queue_counts_nothing(driver):
    assert driver.counts() == Counts()
    assert driver.reserve(0) is None


def test_a_pushed_job_is_reserved_then_acked_and_counted_done_once(driver):
    jid = push(driver, b'{"job":"a"}', ttr=30, priority=7)
    assert driver.counts() == Counts(waiting=1)
    r = take(driver)
    assert (r.job_id, r.payload, r.attempt, r.ttr, r.priority) == (jid, b'{"job":"a"}', 1, 30, 7)
    assert driver.counts() == Counts(reserved=1)
    assert driver.ack(r) is True
    assert driver.counts() == Counts(done=1)
    assert driver.ack(r) is False
    assert driver.counts().done == 1
    assert driver.status(jid) is JobStatus.DONE
    assert driver.get(jid) is None


def test_reserve_records_the_deadline_and_push_time_on_the_backend_clock(driver):
    before = driver.now()
    push(driver, ttr=45)
    r = take(driver)
    after = driver.now()
    assert before - EPS <= r.pushed_at <= after + EPS
    assert before + 45 - EPS <= r.deadline <= after + 45 + EPS


def test_job_ids_increase_and_are_never_reused_even_after_remove_and_clear(driver):
    first = [push(driver) for _ in range(3)]
    assert first == sorted(first) and len(set(first)) == 3
    assert driver.remove(first[-1]) is True
    after_remove = push(driver)
    assert after_remove > first[-1]
    driver.clear()
    after_clear = push(driver)
    assert after_clear > after_remove


def test_lower_priority_runs_first_and_ties_run_in_push_order(driver):
    prios = [5, 1, 5, 0, PRIORITY.high, 1, DEFAULT_PRIORITY]
    ids = [push(driver, priority=p) for p in prios]
    got = [r.job_id for r in drain(driver)]
    expected = [i for _, i in sorted(zip(prios, ids, strict=True))]
    assert got == expected


def test_priority_zero_is_kept_and_not_replaced_by_the_default(driver):
    push(driver, priority=5)
    jid = push(driver, priority=0)
    assert driver.get(jid).priority == 0
    r = take(driver)
    assert (r.job_id, r.priority) == (jid, 0)


def test_a_delayed_job_is_not_reservable_before_its_due_time_and_is_after(driver):
    before = driver.now()
    jid = push(driver, delay=1.0)
    assert driver.counts() == Counts(delayed=1)
    assert driver.status(jid) is JobStatus.DELAYED
    early = driver.reserve(0)
    if driver.now() < before + 1.0 - EPS:  # only meaningful while the job is surely not due
        assert early is None
    r = early or wait_for(lambda: driver.reserve(0), what="the delayed job to become due")
    assert r.job_id == jid
    assert r.attempt == 1


def test_reserve_with_a_timeout_returns_none_when_nothing_is_due(driver):
    assert driver.reserve(0.3) is None
    assert driver.reserve(0) is None
    assert driver.counts() == Counts()


def _reserve_in_thread(driver: Any, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(driver.reserve(timeout)), daemon=True)
    t.start()
    return t, out


def _blocked(driver: Any, thread: threading.Thread) -> bool:
    """Whether ``thread`` sits in a blocking wait inside ``driver.reserve`` (not running, not waiting
    for the GIL): the memory driver's condition has a waiter; a real driver's thread sleeps in the
    kernel on something other than a futex (a socket read, select, or the poll interval)."""
    if hasattr(driver, "_cond"):
        return bool(driver._cond._waiters)
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/self/task/{thread.native_id}/wchan") as fh:
            wchan = fh.read()
    except OSError:
        return False
    return state == "S" and "futex" not in wchan


def _wait_blocked(driver: Any, thread: threading.Thread) -> None:
    seen = 0

    def settled() -> bool:
        nonlocal seen
        seen = seen + 1 if _blocked(driver, thread) else 0
        return seen >= 3  # three looks in a row, 20 ms apart: not a passing moment

    wait_for(settled, what="the reserve to block")


def test_a_blocked_reserve_picks_up_a_job_pushed_from_another_connection(make_driver):
    channel = unique_channel("wake")
    consumer, producer = make_driver(channel=channel), make_driver(channel=channel)
    t, out = _reserve_in_thread(consumer, 30)
    _wait_blocked(consumer, t)  # the job must arrive long before its 30 s timeout
    assert out == []
    jid = push(producer, b"wake")
    wait_for(lambda: out, what="the blocked reserve to return")
    t.join(1)
    assert out[0] is not None and (out[0].job_id, out[0].payload) == (jid, b"wake")


def test_a_blocked_reserve_wakes_up_when_a_delayed_job_becomes_due(driver):
    jid = push(driver, delay=0.5)
    t, out = _reserve_in_thread(driver, 30)
    wait_for(lambda: out, what="the blocked reserve to return the delayed job")
    t.join(1)
    assert out[0] is not None and out[0].job_id == jid


def test_concurrent_reserves_never_hand_out_the_same_job_twice(make_driver):
    channel = unique_channel("race")
    producer = make_driver(channel=channel)
    ids = producer.push_many([PushItem(b"%d" % i, ttr=60) for i in range(120)])
    consumers = [make_driver(channel=channel) for _ in range(4)]
    got: list[list[int]] = [[] for _ in consumers]

    def work(d: Any, sink: list[int]) -> None:
        while (r := d.reserve(0)) is not None:
            sink.append(r.job_id)
            assert d.ack(r)

    threads = [threading.Thread(target=work, args=(d, s)) for d, s in zip(consumers, got, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    flat = [i for s in got for i in s]
    assert sorted(flat) == ids
    assert producer.counts() == Counts(done=len(ids))


# -- retry, fail, settle, unfail ---------------------------------------------------------------


def test_retry_later_without_delay_makes_the_job_waiting_and_the_next_reserve_is_attempt_two(driver):
    jid = push(driver, b"p")
    r = take(driver)
    assert driver.retry_later(r, 0) is True
    assert driver.counts() == Counts(waiting=1, retried=1)
    assert driver.status(jid) is JobStatus.WAITING
    assert driver.ack(r) is False
    r2 = take(driver)
    assert (r2.job_id, r2.attempt, r2.payload) == (jid, 2, b"p")
    assert r2.token != r.token


def test_retry_later_with_a_delay_keeps_the_job_delayed_until_due(driver):
    jid = push(driver)
    r = take(driver)
    before = driver.now()
    assert driver.retry_later(r, 1.0) is True
    assert driver.counts() == Counts(delayed=1, retried=1)
    early = driver.reserve(0)
    if driver.now() < before + 1.0 - EPS:
        assert early is None
    r2 = early or wait_for(lambda: driver.reserve(0), what="the retried job to become due")
    assert (r2.job_id, r2.attempt) == (jid, 2)


def _forged(r: Reservation, **changes: Any) -> Reservation:
    return replace(r, **changes)


def test_every_settling_write_is_refused_for_a_wrong_token_or_an_unknown_job(driver):
    jid = push(driver)
    r = take(driver)
    for wrong in (_forged(r, token=r.token + 1), _forged(r, token=r.token - 1), _forged(r, job_id=jid + 1000)):
        assert driver.ack(wrong) is False
        assert driver.release(wrong) is False
        assert driver.extend(wrong, 60) is False
        assert driver.retry_later(wrong, 0) is False
        assert driver.fail(wrong, INFO) is False
    assert driver.counts() == Counts(reserved=1)
    assert driver.fail(r, INFO) is True
    wrong = _forged(r, token=r.token + 1)
    assert driver.settle(wrong) is False
    assert driver.unfail(wrong, 0) is False
    assert driver.failed_get(jid).unsettled is True


def test_a_job_that_was_never_reserved_cannot_be_settled_in_any_way(driver):
    jid = push(driver)
    ghost = Reservation(jid, b"{}", 1, 60, driver.now() + 60, 1)
    for write in (driver.ack, driver.release, lambda r: driver.retry_later(r, 0), lambda r: driver.fail(r, INFO),
                  driver.settle, lambda r: driver.unfail(r, 0), lambda r: driver.extend(r, 5)):
        assert write(ghost) is False
    assert driver.counts() == Counts(waiting=1)


def test_fail_moves_the_job_to_the_failed_registry_with_its_error_at_once(driver):
    jid = push(driver, b"payload", ttr=33, priority=9)
    r = take(driver)
    before = driver.now()
    assert driver.fail(r, INFO) is True
    after = driver.now()
    assert driver.counts() == Counts(failed=1)  # counted in failed_total once settled
    f = driver.failed_get(jid)
    assert isinstance(f, FailedJob)
    assert (f.job_id, f.payload, f.attempts, f.ttr, f.priority) == (jid, b"payload", 1, 33, 9)
    assert (f.error_class, f.message, f.traceback, f.code) == (INFO.error_class, INFO.message, INFO.traceback, INFO.code)
    assert f.unsettled is True and f.retry_delay is None
    assert before - EPS <= f.failed_at <= after + EPS
    assert abs(f.pushed_at - r.pushed_at) <= EPS
    assert driver.status(jid) is JobStatus.FAILED
    assert driver.fail(r, INFO) is False
    assert driver.ack(r) is False
    assert driver.retry_later(r, 0) is False
    assert driver.counts() == Counts(failed=1)


def test_settle_counts_the_final_failure_exactly_once(driver):
    r = failed_job(driver, settle=False)
    assert driver.settle(r) is True
    assert driver.failed_get(r.job_id).unsettled is False
    assert driver.counts() == Counts(failed=1, failed_total=1)
    assert driver.settle(r) is False
    assert driver.unfail(r, 0) is False
    assert driver.counts() == Counts(failed=1, failed_total=1)


def test_a_failure_records_the_workers_retry_decision_until_it_is_settled(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.fail(r, replace(INFO, retry_delay=12.5)) is True
    assert driver.failed_get(jid).retry_delay == 12.5
    assert driver.failed_list()[0].retry_delay == 12.5


@pytest.mark.parametrize("delay", [0, 30])
def test_unfail_turns_an_unsettled_failure_into_the_next_attempt(driver, delay):
    r = failed_job(driver, b"again", settle=False)
    assert driver.unfail(r, delay) is True
    assert driver.failed_get(r.job_id) is None
    c = driver.counts()
    assert (c.waiting, c.delayed, c.failed, c.failed_total) == ((0, 1, 0, 0) if delay else (1, 0, 0, 0))
    assert driver.unfail(r, 0) is False
    assert driver.settle(r) is False
    if not delay:
        r2 = take(driver)
        assert (r2.job_id, r2.attempt, r2.payload) == (r.job_id, 2, b"again")
        assert r2.token != r.token


def test_a_settled_failure_cannot_be_unfailed(driver):
    r = failed_job(driver)
    assert driver.settle(r) is False
    assert driver.unfail(r, 0) is False
    assert driver.counts() == Counts(failed=1, failed_total=1)


def test_extend_keeps_the_lease_past_its_deadline_and_grace(make_driver):
    driver = make_driver(grace=0)
    push(driver, ttr=1)
    r = take(driver)
    assert driver.extend(r, 30) is True
    wait_backend_past(driver, r.deadline + 0.2)
    assert driver.reclaim_expired() == []  # held for 30 s more
    assert driver.ack(r) is True
    assert driver.extend(r, 30) is False
    assert driver.counts() == Counts(done=1)


# -- reclaim and release ---------------------------------------------------------------------


def test_a_reservation_past_its_ttr_is_reclaimed_as_lost_only_after_the_grace_period(make_driver):
    driver = make_driver(grace=1.0, hold=30)
    jid = push(driver, b"slow", ttr=1)
    r = take(driver)
    assert driver.reclaim_expired() == []
    wait_backend_past(driver, r.deadline + 0.1)
    early = driver.reclaim_expired()
    if driver.now() < r.deadline + 1.0 - EPS:
        assert early == []
    wait_backend_past(driver, r.deadline + 1.0)
    items = early or wait_for(lambda: driver.reclaim_expired(), what="the lost job to be reclaimed")
    assert len(items) == 1
    (item,) = items
    now = driver.now()
    assert item.kind is ReclaimKind.LOST and item.failure is None
    got = item.reservation
    assert (got.job_id, got.attempt, got.payload, got.ttr) == (jid, 1, b"slow", 1)
    assert got.token != r.token
    assert item.overdue >= 1.0 - EPS
    if not early:
        assert now + 30 - 5 <= got.deadline <= now + 30 + EPS
    assert driver.reclaim_expired() == []
    assert driver.counts() == Counts(reserved=1)
    assert driver.status(jid) is JobStatus.RESERVED


def _lost(driver: Any) -> tuple[Reservation, Reservation]:
    """A job whose holder's lease ran out and was taken by a reclaimer: (stale, current)."""
    push(driver, ttr=1)
    stale = take(driver)
    (item,) = wait_for(lambda: driver.reclaim_expired(), what="the lost job")
    return stale, item.reservation


def test_a_reclaimed_workers_stale_lease_is_refused_by_every_settling_write(make_driver):
    driver = make_driver(grace=0, hold=60)
    stale, current = _lost(driver)
    assert stale.attempt == current.attempt and stale.token != current.token
    assert driver.ack(stale) is False
    assert driver.release(stale) is False
    assert driver.extend(stale, 60) is False
    assert driver.retry_later(stale, 0) is False
    assert driver.fail(stale, INFO) is False
    assert driver.counts() == Counts(reserved=1)
    ok, nxt = driver.ack_and_reserve(stale)
    assert ok is False and nxt is None
    # the reclaimer's writes go through, and the stale lease stays refused afterwards
    assert driver.fail(current, INFO) is True
    assert driver.settle(stale) is False and driver.unfail(stale, 0) is False
    assert driver.settle(current) is True
    assert driver.counts() == Counts(failed=1, failed_total=1)


def test_a_late_ack_from_a_reclaimed_worker_is_refused_and_never_double_counted(make_driver):
    driver = make_driver(grace=0, hold=60)
    stale, current = _lost(driver)
    assert driver.retry_later(current, 0) is True
    assert driver.ack(stale) is False
    r2 = take(driver)
    assert r2.attempt == 2
    assert driver.ack(r2) is True
    assert driver.ack(stale) is False and driver.ack(current) is False
    assert driver.counts() == Counts(done=1, retried=1)


def test_an_unsettled_failure_is_handed_out_again_under_a_new_lease_after_its_settle_deadline(make_driver):
    driver = make_driver(settle_within=1, hold=1.0)
    jid = push(driver, b"half")
    r = take(driver)
    assert driver.fail(r, replace(INFO, retry_delay=3.0)) is True
    f = driver.failed_get(jid)
    early = driver.reclaim_expired()
    if driver.now() < f.failed_at + 1 - EPS:
        assert early == []
    (item,) = early or wait_for(lambda: driver.reclaim_expired(), what="the unsettled failure")
    if driver.now() < item.reservation.deadline - EPS:  # claimed for `hold`: not handed out twice
        assert driver.reclaim_expired() == []
    assert item.kind is ReclaimKind.UNSETTLED
    got = item.reservation
    assert (got.job_id, got.attempt, got.payload) == (jid, 1, b"half")
    assert got.token != r.token
    assert item.failure is not None and item.failure.unsettled is True and item.failure.retry_delay == 3.0
    assert (item.failure.job_id, item.failure.error_class, item.failure.message) == (jid, INFO.error_class, INFO.message)
    assert driver.settle(r) is False  # the dead worker's lease
    assert driver.settle(got) is True
    wait_backend_past(driver, got.deadline + EPS)
    assert driver.reclaim_expired() == []
    assert driver.counts() == Counts(failed=1, failed_total=1)


def test_a_settled_failure_is_never_reclaimed(make_driver):
    driver = make_driver(settle_within=1)
    jid = push(driver)
    r = take(driver)
    assert driver.fail(r, INFO) is True
    assert driver.settle(r) is True
    wait_backend_past(driver, driver.failed_get(jid).failed_at + 1 + EPS)
    assert driver.reclaim_expired() == []
    assert driver.failed_get(jid).unsettled is False


def test_reclaim_hands_out_at_most_limit_items_per_call(make_driver):
    driver = make_driver(grace=0, hold=60)
    ids = [push(driver, ttr=1) for _ in range(3)]
    held = drain(driver)
    wait_backend_past(driver, max(r.deadline for r in held) + 0.05)
    first = wait_for(lambda: driver.reclaim_expired(limit=2), what="lost jobs")
    second = driver.reclaim_expired(limit=2)
    assert len(first) == 2
    assert sorted(i.reservation.job_id for i in first + second) == ids
    assert driver.reclaim_expired(limit=2) == []


def test_release_puts_the_job_back_without_counting_the_attempt(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.release(r) is True
    assert driver.counts() == Counts(waiting=1)
    assert driver.get(jid).attempt == 0
    assert driver.release(r) is False
    r2 = take(driver)
    assert (r2.job_id, r2.attempt) == (jid, 1)
    assert r2.token != r.token  # the same attempt again, but a new lease


# -- remove and clear ------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["waiting", "delayed", "reserved", "failed"])
def test_remove_deletes_a_job_from_any_state(make_driver, state):
    driver = make_driver(settle_within=0.1)
    jid = push(driver, delay=60 if state == "delayed" else 0)
    r = take(driver) if state in ("reserved", "failed") else None
    if state == "failed":
        assert driver.fail(r, INFO) is True
    assert driver.status(jid) is JobStatus(state)
    assert driver.remove(jid) is True
    assert driver.status(jid) is JobStatus.DONE
    assert driver.get(jid) is None and driver.failed_get(jid) is None
    assert driver.remove(jid) is False
    if r is not None:
        assert driver.ack(r) is False and driver.settle(r) is False and driver.unfail(r, 0) is False
    c = driver.counts()
    assert (c.waiting, c.delayed, c.reserved, c.done, c.failed) == (0, 0, 0, 0, 0)
    if state == "failed":  # a removed unsettled failure is not handed out for its handlers either
        wait_backend_past(driver, driver.now() + 0.1 + EPS)
    assert driver.reclaim_expired() == []


def test_remove_of_an_unknown_id_returns_false(driver):
    jid = push(driver)
    assert driver.remove(jid + 1000) is False
    assert driver.counts() == Counts(waiting=1)


def _populate(driver: Any) -> dict[str, int]:
    """One job in every state, one follow-up record; returns their ids."""
    failed = failed_job(driver).job_id
    done = push(driver)
    assert driver.ack(take(driver))
    reserved = push(driver)
    take(driver)
    waiting, delayed = push(driver), push(driver, delay=60)
    driver.record_follow_up(FollowUpFailure(done, 1, "afterExec", "h:f", "E", "m", "tb", driver.now()))
    return {"failed": failed, "done": done, "reserved": reserved, "waiting": waiting, "delayed": delayed}


def test_clear_removes_only_this_queues_jobs_failed_entries_and_follow_ups(make_driver):
    base = unique_channel("clear")
    mine, theirs = make_driver(channel=base), make_driver(channel=base + "2")  # a prefix must not match
    _populate(mine)
    ids = _populate(theirs)
    before = theirs.counts()
    assert mine.clear() == 3  # waiting, delayed, reserved
    assert mine.counts() == Counts(done=1, failed_total=1, follow_up_failed=1)
    assert mine.failed_list() == [] and mine.follow_up_list() == []
    assert mine.reserve(0) is None
    assert theirs.counts() == before
    assert [f.job_id for f in theirs.failed_list()] == [ids["failed"]]
    assert len(theirs.follow_up_list()) == 1
    assert theirs.status(ids["reserved"]) is JobStatus.RESERVED
    assert theirs.get(ids["waiting"]).status is JobStatus.WAITING


def test_clear_keeps_the_id_sequence_and_the_done_and_failed_totals(driver):
    ids = _populate(driver)
    driver.clear()
    assert push(driver) > max(ids.values())
    c = driver.counts()
    assert (c.done, c.failed_total, c.waiting, c.failed) == (1, 1, 1, 0)
    assert driver.clear() == 1
    assert driver.clear() == 0


# -- failed registry -------------------------------------------------------------------------


def test_failed_list_is_newest_first_and_pages_with_offset_and_limit(driver):
    ids = [failed_job(driver, b"%d" % i).job_id for i in range(5)]
    newest_first = ids[::-1]
    assert [f.job_id for f in driver.failed_list()] == newest_first
    assert [f.job_id for f in driver.failed_list(offset=1, limit=2)] == newest_first[1:3]
    assert [f.job_id for f in driver.failed_list(offset=4, limit=10)] == newest_first[4:]
    assert driver.failed_list(offset=5) == []
    assert [f.payload for f in driver.failed_list(limit=1)] == [b"4"]


def test_the_failed_registry_keeps_only_the_newest_entries_up_to_its_limit(make_driver):
    d = make_driver(failed_limit=3)
    ids = [failed_job(d).job_id for _ in range(5)]
    assert [f.job_id for f in d.failed_list()] == ids[:1:-1]
    c = d.counts()
    assert (c.failed, c.failed_total) == (3, 5)
    assert d.failed_get(ids[0]) is None
    assert d.status(ids[0]) is JobStatus.DONE


def test_requeue_failed_resets_attempts_and_ends_an_unsettled_entry(make_driver):
    driver = make_driver(settle_within=0.2)
    jid = push(driver, b"again")
    r = take(driver)
    assert driver.fail(r, INFO) is True
    failed_at = driver.failed_get(jid).failed_at
    assert driver.requeue_failed(jid) is True
    assert driver.settle(r) is False  # the failed attempt's holder comes too late
    assert driver.counts() == Counts(waiting=1)
    assert driver.failed_get(jid) is None
    assert driver.requeue_failed(jid) is False
    r2 = take(driver)
    assert (r2.job_id, r2.attempt, r2.payload) == (jid, 1, b"again")
    assert driver.ack(r2) is True
    wait_backend_past(driver, failed_at + 0.2 + EPS)
    assert driver.reclaim_expired() == []  # no longer an unsettled failure


def test_requeue_failed_can_keep_the_attempt_count_and_delay_the_job(driver):
    r = failed_job(driver)
    assert driver.requeue_failed(r.job_id, reset_attempts=False, delay=60) is True
    assert driver.counts() == Counts(delayed=1, failed_total=1)
    assert driver.status(r.job_id) is JobStatus.DELAYED
    assert driver.get(r.job_id).attempt == 1
    assert driver.reserve(0) is None
    r2 = failed_job(driver)
    assert driver.requeue_failed(r2.job_id, reset_attempts=False) is True
    assert take(driver).attempt == 2


def test_requeue_failed_of_an_unknown_or_live_job_returns_false(driver):
    jid = push(driver)
    assert driver.requeue_failed(jid) is False
    assert driver.requeue_failed(jid + 1000) is False
    assert driver.counts() == Counts(waiting=1)


def test_failed_purge_empties_the_registry_but_keeps_failed_total(make_driver):
    driver = make_driver(settle_within=0.1)
    ids = [failed_job(driver).job_id for _ in range(2)]
    ids.append(failed_job(driver, settle=False).job_id)
    live = push(driver)
    assert driver.failed_purge() == 3
    wait_backend_past(driver, driver.now() + 0.1 + EPS)
    assert driver.reclaim_expired() == []  # purged unsettled entries are gone for good
    assert driver.failed_list() == []
    assert all(driver.status(i) is JobStatus.DONE for i in ids)
    assert driver.counts() == Counts(waiting=1, failed_total=2)
    assert driver.failed_purge() == 0
    assert driver.status(live) is JobStatus.WAITING


# -- attempt history -------------------------------------------------------------------------


def _attempt_info(i: int) -> FailureInfo:
    return FailureInfo("RuntimeError", f"try {i} failed\nsecond line", f"Traceback (attempt {i})\nRuntimeError: é {i}",
                       f"c{i}")


def test_every_failed_attempt_keeps_its_error_and_traceback_in_the_jobs_history(driver):
    jid = push(driver, b"flaky")
    before = driver.now()
    assert driver.retry_later(take(driver), 0, _attempt_info(1)) is True
    assert driver.retry_later(take(driver), 0) is True  # no failure given: nothing recorded
    r = take(driver)
    assert driver.fail(r, _attempt_info(3)) is True and driver.settle(r) is True
    history = driver.failed_get(jid).history
    assert [(a.attempt, a.error_class, a.message, a.traceback, a.code) for a in history] == [
        (1, "RuntimeError", "try 1 failed\nsecond line", "Traceback (attempt 1)\nRuntimeError: é 1", "c1"),
        (3, "RuntimeError", "try 3 failed\nsecond line", "Traceback (attempt 3)\nRuntimeError: é 3", "c3"),
    ]
    assert before - EPS <= history[0].failed_at <= history[1].failed_at <= driver.now() + EPS


def test_the_history_survives_unfail_and_an_operators_retry(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.fail(r, _attempt_info(1)) is True and driver.unfail(r, 0) is True
    r = take(driver)
    assert driver.fail(r, _attempt_info(2)) is True and driver.settle(r) is True
    assert driver.requeue_failed(jid) is True
    r = take(driver)
    assert r.attempt == 1  # counting restarts after the operator's retry; the history keeps both runs
    assert driver.fail(r, _attempt_info(3)) is True
    assert [a.attempt for a in driver.failed_get(jid).history] == [1, 2, 1]
    assert [a.message.split()[1] for a in driver.failed_get(jid).history] == ["1", "2", "3"]


def test_the_history_keeps_only_the_newest_attempts_up_to_its_limit(make_driver):
    driver = make_driver(history_limit=2)
    jid = push(driver)
    for i in range(1, 4):
        assert driver.retry_later(take(driver), 0, _attempt_info(i)) is True
    r = take(driver)
    assert driver.fail(r, _attempt_info(4)) is True
    assert [a.attempt for a in driver.failed_get(jid).history] == [3, 4]


def test_a_stale_lease_adds_nothing_to_the_history(make_driver):
    driver = make_driver(grace=0, hold=60)
    jid = push(driver, ttr=1)
    r = take(driver)
    wait_for(lambda: driver.reclaim_expired(), what="the reservation to be reclaimed as lost")
    assert driver.retry_later(r, 0, _attempt_info(1)) is False
    assert driver.fail(r, _attempt_info(1)) is False
    assert driver.get(jid).status is JobStatus.RESERVED  # held by the reclaimer, history untouched


# -- follow-up failures ----------------------------------------------------------------------


def _follow_up(i: int) -> FollowUpFailure:
    return FollowUpFailure(
        job_id=i, attempt=2, event="afterExec" if i % 2 else "afterError", handler=f"pkg.mod:H.h{i}",
        error_class="KeyError", message=f"m{i}", traceback=f"Traceback {i}\nKeyError", at=1_700_000_000.5 + i,
    )


def test_follow_up_failures_are_counted_and_listed_newest_first(driver):
    for i in range(1, 5):
        driver.record_follow_up(_follow_up(i))
    got = driver.follow_up_list()
    assert [f.job_id for f in got] == [4, 3, 2, 1]
    f = got[0]
    want = _follow_up(4)
    assert (f.attempt, f.event, f.handler, f.error_class, f.message, f.traceback) == (
        want.attempt, want.event, want.handler, want.error_class, want.message, want.traceback,
    )
    assert abs(f.at - want.at) <= EPS
    seqs = [x.seq for x in got]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4 and seqs[-1] >= 1
    assert [x.job_id for x in driver.follow_up_list(offset=1, limit=2)] == [3, 2]
    assert driver.counts().follow_up_failed == 4


def test_the_follow_up_list_is_bounded_while_the_count_keeps_the_total(make_driver):
    d = make_driver(follow_up_limit=2)
    for i in range(1, 6):
        d.record_follow_up(_follow_up(i))
    assert [f.job_id for f in d.follow_up_list()] == [5, 4]
    assert d.counts().follow_up_failed == 5


# -- batches and fused steps -----------------------------------------------------------------


def test_push_many_returns_increasing_ids_in_input_order_and_honours_each_item(driver):
    assert driver.push_many([]) == []
    ids = driver.push_many([
        PushItem(b"a", ttr=10), PushItem(b"b", ttr=20, priority=0), PushItem(b"c", ttr=30, delay=60),
    ])
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    assert driver.counts() == Counts(waiting=2, delayed=1)
    assert [(r.job_id, r.payload, r.ttr) for r in drain(driver)] == [(ids[1], b"b", 20), (ids[0], b"a", 10)]
    assert driver.status(ids[2]) is JobStatus.DELAYED
    assert push(driver) > ids[2]


def test_ack_and_reserve_acks_then_hands_out_the_next_job(driver):
    a, b = push(driver), push(driver)
    r = take(driver)
    ok, nxt = driver.ack_and_reserve(r)
    assert ok is True and nxt is not None and (r.job_id, nxt.job_id, nxt.attempt) == (a, b, 1)
    ok, nothing = driver.ack_and_reserve(nxt)
    assert ok is True and nothing is None
    assert driver.counts() == Counts(done=2)


def test_ack_and_reserve_with_a_stale_reservation_refuses_the_ack_but_still_reserves(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.remove(jid) is True
    other = push(driver)
    ok, nxt = driver.ack_and_reserve(r)
    assert ok is False and nxt is not None and nxt.job_id == other
    assert driver.counts() == Counts(reserved=1)


# -- inspection and payloads -----------------------------------------------------------------


def test_status_and_get_describe_the_job_in_each_state(driver):
    w = push(driver, b"w", ttr=11, priority=3)
    info = driver.get(w)
    assert (info.job_id, info.status, info.payload, info.attempt, info.ttr, info.priority) == (w, JobStatus.WAITING, b"w", 0, 11, 3)
    d = push(driver, b"d", delay=60)
    assert driver.status(d) is JobStatus.DELAYED and driver.get(d).payload == b"d"
    r = take(driver)
    assert abs(info.pushed_at - driver.now()) < 5 and info.deadline is None and info.failed_at is None
    assert driver.get(d).due_at > driver.now() + 50
    assert driver.status(w) is JobStatus.RESERVED
    held = driver.get(w)
    assert (held.attempt, held.status) == (1, JobStatus.RESERVED)
    assert abs(held.deadline - r.deadline) <= EPS
    assert driver.fail(r, INFO) is True
    info = driver.get(w)
    assert (info.status, info.payload, info.attempt) == (JobStatus.FAILED, b"w", 1)
    assert (info.error_class, info.message, info.code, info.unsettled) == (INFO.error_class, INFO.message, INFO.code, True)
    assert info.failed_at is not None
    assert driver.status(w) is JobStatus.FAILED
    x = push(driver)
    assert driver.ack(take(driver)) is True
    assert driver.status(x) is JobStatus.DONE and driver.get(x) is None


def test_an_unknown_id_has_status_done_and_no_info(driver):
    assert driver.status(987_654_321) is JobStatus.DONE
    assert driver.get(987_654_321) is None
    assert driver.failed_get(987_654_321) is None


PAYLOADS = {
    "empty": b"",
    "all-bytes": bytes(range(256)),
    "not-utf8": b"\xff\xfe\x00{\"job\": \"\xc3\x28\"}\r\n\x00",
    "one-mib": os.urandom(1 << 20),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_bytes_round_trip_exactly_through_every_state(driver, name):
    payload = PAYLOADS[name]
    jid = push(driver, payload)
    assert driver.get(jid).payload == payload
    r = take(driver)
    assert r.payload == payload and type(r.payload) is bytes
    assert driver.fail(r, INFO) is True
    assert driver.failed_get(jid).payload == payload
    assert driver.failed_list(limit=1)[0].payload == payload
    assert driver.requeue_failed(jid) is True
    assert take(driver).payload == payload


def test_now_is_the_backend_clock_and_ping_answers(driver):
    a = driver.now()
    b = driver.now()
    assert isinstance(a, float) and a > 1_500_000_000 and b >= a
    assert driver.ping() is None


# -- stateful: random operation sequences against a model ------------------------------------

TTR, HOLD = 10, 10


def _machine(open_fresh: Callable[..., Any], clocked: bool) -> type[RuleBasedStateMachine]:
    delays = st.sampled_from([0, 0, 5] if clocked else [0])
    settle_within = 3 if clocked else 60
    pick = st.integers(0, 1_000)

    class DriverMachine(RuleBasedStateMachine):
        """Every pushed id is in exactly one model state; the driver must agree on each step."""

        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock() if clocked else None
            opts: dict[str, Any] = {"grace": 0, "hold": HOLD, "settle_within": settle_within}
            if clocked:
                opts["clock"] = self.clock
            self.d, self._cleanup = open_fresh(**opts)
            self.state: dict[int, str] = {}  # waiting|delayed|reserved|done|failed|removed
            self.attempt: dict[int, int] = {}
            self.priority: dict[int, int] = {}
            self.payload: dict[int, bytes] = {}
            self.fresh: set[int] = set()  # never re-enqueued: FIFO among equal priorities is exact
            self.due: dict[int, float] = {}
            self.held: dict[int, Reservation] = {}
            self.stale: list[Reservation] = []
            #: failed attempts not settled yet: id → (settle deadline, the lease that may settle it)
            self.unsettled: dict[int, tuple[float, Reservation]] = {}
            self.done = self.failed_total = 0

        def teardown(self) -> None:
            self._cleanup()

        def now(self) -> float:
            return self.clock() if self.clock else 0.0

        def ids(self, *states: str) -> list[int]:
            return sorted(i for i, s in self.state.items() if s in states)

        def requeued(self, jid: int, delay: float) -> None:
            self.state[jid] = "delayed" if delay else "waiting"
            if delay:
                self.due[jid] = self.now() + delay
            self.fresh.discard(jid)

        @rule(priority=st.sampled_from([0, 7, DEFAULT_PRIORITY]), delay=delays)
        def push(self, priority: int, delay: float) -> None:
            payload = b"job-%d" % len(self.state)
            jid = self.d.push(payload, ttr=TTR, delay=delay, priority=priority)
            assert all(jid > i for i in self.state)
            self.state[jid], self.attempt[jid], self.priority[jid], self.payload[jid] = "", 0, priority, payload
            self.requeued(jid, delay)
            if not delay:
                self.fresh.add(jid)

        @rule()
        def reserve(self) -> None:
            for jid in self.ids("delayed"):
                if self.due[jid] <= self.now():
                    self.requeued(jid, 0)
            r = self.d.reserve(0)
            waiting = self.ids("waiting")
            if not waiting:
                assert r is None
                return
            assert r is not None
            best = min(self.priority[i] for i in waiting)
            top = [i for i in waiting if self.priority[i] == best]
            assert r.job_id in top
            if all(i in self.fresh for i in top):
                assert r.job_id == min(top)
            jid = r.job_id
            assert (r.attempt, r.payload, r.priority) == (self.attempt[jid] + 1, self.payload[jid], best)
            assert all(r.token != old.token for old in self.stale if old.job_id == jid)
            if self.clock:
                assert r.deadline == self.now() + TTR
            self.attempt[jid] += 1
            self.state[jid], self.held[jid] = "reserved", r
            self.fresh.discard(jid)

        def _held(self, n: int) -> Reservation:
            jid = sorted(self.held)[n % len(self.held)]
            return self.held.pop(jid)

        def _unsettled(self, n: int) -> tuple[int, Reservation]:
            jid = sorted(self.unsettled)[n % len(self.unsettled)]
            return jid, self.unsettled.pop(jid)[1]

        @precondition(lambda self: self.held)
        @rule(n=pick)
        def ack(self, n: int) -> None:
            r = self._held(n)
            assert self.d.ack(r) is True
            self.state[r.job_id] = "done"
            self.done += 1
            self.stale.append(r)

        @precondition(lambda self: self.held)
        @rule(n=pick)
        def fail(self, n: int) -> None:
            r = self._held(n)
            assert self.d.fail(r, INFO) is True
            self.state[r.job_id] = "failed"
            self.unsettled[r.job_id] = (self.now() + settle_within, r)
            self.stale.append(r)

        @precondition(lambda self: self.held)
        @rule(n=pick, delay=delays)
        def retry_later(self, n: int, delay: float) -> None:
            r = self._held(n)
            assert self.d.retry_later(r, delay) is True
            self.requeued(r.job_id, delay)
            self.stale.append(r)

        @precondition(lambda self: self.held)
        @rule(n=pick)
        def release(self, n: int) -> None:
            r = self._held(n)
            assert self.d.release(r) is True
            self.attempt[r.job_id] -= 1
            self.requeued(r.job_id, 0)
            self.stale.append(r)  # the next reserve of this job takes a new lease

        @precondition(lambda self: self.unsettled)
        @rule(n=pick)
        def settle(self, n: int) -> None:
            jid, r = self._unsettled(n)
            assert self.d.settle(r) is True
            self.failed_total += 1
            assert self.d.settle(r) is False

        @precondition(lambda self: self.unsettled)
        @rule(n=pick, delay=delays)
        def unfail(self, n: int, delay: float) -> None:
            jid, r = self._unsettled(n)
            assert self.d.unfail(r, delay) is True
            self.requeued(jid, delay)

        @precondition(lambda self: self.stale)
        @rule(n=pick)
        def a_stale_lease_is_refused_by_every_write(self, n: int) -> None:
            r = self.stale[n % len(self.stale)]
            assert self.d.ack(r) is False
            assert self.d.release(r) is False
            assert self.d.extend(r, 1) is False
            assert self.d.retry_later(r, 0) is False
            assert self.d.fail(r, INFO) is False
            pending = self.unsettled.get(r.job_id)
            if pending is None or pending[1].token != r.token:  # else r is the failure's current lease
                assert self.d.settle(r) is False
                assert self.d.unfail(r, 0) is False

        @precondition(lambda self: self.state)
        @rule(n=pick)
        def remove(self, n: int) -> None:
            jid = sorted(self.state)[n % len(self.state)]
            live = self.state[jid] in ("waiting", "delayed", "reserved", "failed")
            assert self.d.remove(jid) is live
            if live:
                self.state[jid] = "removed"
                if jid in self.held:
                    self.stale.append(self.held.pop(jid))
                self.unsettled.pop(jid, None)
                self.due.pop(jid, None)

        @precondition(lambda self: self.ids("failed"))
        @rule(n=pick, reset=st.booleans())
        def requeue_failed(self, n: int, reset: bool) -> None:
            failed = self.ids("failed")
            jid = failed[n % len(failed)]
            assert self.d.requeue_failed(jid, reset_attempts=reset) is True
            if reset:
                self.attempt[jid] = 0
            self.unsettled.pop(jid, None)
            self.requeued(jid, 0)

        if clocked:

            @rule(seconds=st.sampled_from([0, 1, 4, 11]))
            def advance_clock_and_reclaim(self, seconds: int) -> None:
                self.clock.advance(seconds)
                now = self.now()
                lost = {i for i, r in self.held.items() if now > r.deadline}
                unsettled = {i for i, (by, _) in self.unsettled.items() if now > by}
                items = self.d.reclaim_expired(1_000)
                assert len(items) == len(lost) + len(unsettled)
                assert {i.reservation.job_id for i in items if i.kind is ReclaimKind.LOST} == lost
                assert {i.reservation.job_id for i in items if i.kind is ReclaimKind.UNSETTLED} == unsettled
                for item in items:
                    jid, r = item.reservation.job_id, item.reservation
                    assert r.attempt == self.attempt[jid]
                    if item.kind is ReclaimKind.LOST:
                        old = self.held[jid]
                        assert item.overdue == now - old.deadline and r.deadline == now + HOLD
                        assert r.token != old.token
                        self.stale.append(old)
                        self.held[jid] = r
                    else:
                        assert item.failure is not None and item.failure.job_id == jid
                        old = self.unsettled[jid][1]
                        assert r.token != old.token
                        self.stale.append(old)
                        self.unsettled[jid] = (now + HOLD, r)

        @invariant()
        def counts_match_the_model(self) -> None:
            c = self.d.counts()
            n = Counter(self.state.values())
            assert c.reserved == n["reserved"] == len(self.held)
            assert c.waiting + c.delayed == n["waiting"] + n["delayed"]  # a due job may not be moved yet
            assert (c.done, c.failed, c.failed_total) == (self.done, n["failed"], self.failed_total)

        @invariant()
        def every_job_is_where_the_model_says(self) -> None:
            for jid, s in self.state.items():
                got = self.d.status(jid)
                if s in ("done", "removed"):
                    assert got is JobStatus.DONE, (jid, s, got)
                elif s == "delayed":
                    assert got in (JobStatus.DELAYED, JobStatus.WAITING), (jid, s, got)
                else:
                    assert got is JobStatus(s), (jid, s, got)

    return DriverMachine


def test_random_operation_sequences_keep_counts_consistent_and_lose_no_job(kind, tmp_path):
    machine = _machine(lambda **opts: open_driver(kind, tmp_path, **opts), kind in CLOCK_CONTROLLED)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=200 if kind in CLOCK_CONTROLLED else 25, stateful_step_count=50, deadline=None,
            suppress_health_check=[HealthCheck.too_slow], database=None,
        ),
    )
