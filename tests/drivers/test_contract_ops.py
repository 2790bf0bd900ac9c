"""The driver conformance suite, operations part (spec §7.2-7.4): job listing, pause, cancel,
progress, the holder of a reservation and the worker registry — on every driver kind.

Same fixtures and rules as ``test_contract.py`` (one run per kind in ``DRIVER_KINDS``, real backends,
waits on conditions, no timing assertions).
"""

from __future__ import annotations

import threading

import pytest

from pubq.drivers.base import (
    CANCELLED_CODE,
    CancelState,
    Counts,
    FailureInfo,
    JobStatus,
    ReclaimKind,
    WorkerInfo,
)
from pubq.drivers.redis import KEY_NAMES
from tests.drivers.test_contract import INFO, push, take, wait_backend_past, wait_for

W, D, R, F = JobStatus.WAITING, JobStatus.DELAYED, JobStatus.RESERVED, JobStatus.FAILED


def page_ids(driver, state, limit=50, after=None):
    page = driver.list_jobs(state, limit, after)
    return [j.job_id for j in page.jobs], page.next_after


def all_pages(driver, state, limit):
    ids, after = [], None
    while True:
        got, after = page_ids(driver, state, limit, after)
        ids += got
        if after is None:
            return ids


# -- listing ----------------------------------------------------------------------------------


def test_waiting_jobs_are_listed_in_run_order_page_by_page(driver):
    prios = [5, 1, 5, 3, 1, 9, 0]
    ids = [push(driver, priority=p) for p in prios]
    expected = [i for _, i in sorted(zip(prios, ids, strict=True))]
    assert all_pages(driver, W, 3) == expected
    first, after = page_ids(driver, W, 3)
    assert first == expected[:3] and after == expected[2]
    assert page_ids(driver, W, 7) == (expected, None)  # an exactly full last page has no next
    info = driver.list_jobs(W, 1).jobs[0]
    assert (info.status, info.priority, info.attempt, info.payload) == (W, 0, 0, b"{}")


def test_a_page_continues_where_its_cursor_sorted_when_that_job_left_waiting(driver):
    ids = [push(driver) for _ in range(5)]
    got, after = page_ids(driver, W, 2)
    assert got == ids[:2]
    r = take(driver)  # the first job leaves waiting; the cursor (ids[1]) is still there
    assert r.job_id == ids[0]
    take(driver)  # now the cursor job itself is reserved
    assert page_ids(driver, W, 10, after)[0] == ids[2:]


def test_delayed_reserved_and_failed_jobs_are_listed_with_their_state_fields(driver):
    d1 = push(driver, delay=300)
    d2 = push(driver, delay=100)
    assert page_ids(driver, D) == ([d2, d1], None)
    assert driver.list_jobs(D).jobs[0].due_at is not None
    a, b = push(driver), push(driver)
    ra = driver.reserve(0, holder="host:1:abc")
    rb = take(driver)
    reserved = driver.list_jobs(R).jobs
    assert sorted(j.job_id for j in reserved) == [a, b]
    by_id = {j.job_id: j for j in reserved}
    assert by_id[a].holder == "host:1:abc" and by_id[b].holder == ""
    assert by_id[a].started_at == pytest.approx(ra.deadline - ra.ttr, abs=0.01)
    assert driver.fail(rb, INFO) is True
    failed = driver.list_jobs(F).jobs
    assert [j.job_id for j in failed] == [b]
    assert (failed[0].status, failed[0].error_class, failed[0].unsettled) == (F, INFO.error_class, True)
    assert page_ids(driver, F, 10, b) == ([], None)


def test_listing_an_empty_state_or_a_zero_limit_gives_an_empty_page(driver):
    assert page_ids(driver, W) == ([], None)
    push(driver)
    assert page_ids(driver, W, 0) == ([], None)
    with pytest.raises(ValueError):
        driver.list_jobs(JobStatus.DONE)


# -- holder -------------------------------------------------------------------------------------


def test_a_reservation_records_its_holder_also_when_fused_with_an_ack(driver):
    a, b = push(driver), push(driver)
    r = driver.reserve(0, holder="h1:10:aa")
    assert driver.get(a).holder == "h1:10:aa"
    ok, nxt = driver.ack_and_reserve(r, holder="h2:20:bb")
    assert ok and nxt.job_id == b
    assert driver.get(b).holder == "h2:20:bb"
    assert driver.release(nxt) is True
    assert driver.get(b).holder == ""  # a waiting job has no holder
    r = driver.reserve(0)
    assert driver.get(b).holder == ""  # nor a job reserved without one


# -- pause --------------------------------------------------------------------------------------


def test_a_paused_queue_reserves_nothing_but_accepts_pushes_and_resumes(driver):
    push(driver)
    assert driver.paused() is False
    driver.pause()
    driver.pause()  # idempotent
    assert driver.paused() is True
    assert driver.reserve(0) is None
    assert driver.reserve(0.2) is None
    push(driver, delay=0)
    assert driver.counts().waiting == 2
    driver.resume()
    assert driver.paused() is False
    assert take(driver).attempt == 1


def test_pause_stops_a_fused_ack_and_reserve_and_a_second_handle_sees_it(driver, make_driver):
    other = make_driver(channel=driver.channel)
    push(driver), push(driver)
    r = take(driver)
    other.pause()
    assert driver.paused() is True
    ok, nxt = driver.ack_and_reserve(r)
    assert ok is True and nxt is None
    other.resume()
    assert take(driver) is not None


def test_resume_wakes_a_reserve_blocked_on_a_paused_queue(driver, make_driver):
    other = make_driver(channel=driver.channel)
    push(driver)
    driver.pause()
    out = []
    t = threading.Thread(target=lambda: out.append(other.reserve(10)), daemon=True)
    t.start()
    driver.resume()
    t.join(15)
    assert out and out[0] is not None


def test_pause_belongs_to_one_queue(driver, make_driver):
    neighbour = make_driver()
    push(driver), push(neighbour)
    driver.pause()
    assert neighbour.paused() is False
    assert take(neighbour) is not None
    driver.resume()


# -- cancel -------------------------------------------------------------------------------------


def test_cancelling_a_waiting_job_makes_an_unsettled_cancelled_failure_to_settle(driver):
    jid = push(driver, ttr=40, priority=7)
    result = driver.cancel(jid, "not needed any more")
    assert result.state is CancelState.CANCELLED
    r = result.reservation
    assert (r.job_id, r.ttr, r.priority, r.attempt) == (jid, 40, 7, 0)
    entry = driver.failed_get(jid)
    assert (entry.error_class, entry.message, entry.code) == ("JobCancelledError", "not needed any more",
                                                               CANCELLED_CODE)
    assert entry.unsettled is True and entry.retry_delay is None
    assert driver.counts() == Counts(failed=1)
    assert driver.settle(r) is True
    assert driver.settle(r) is False
    assert driver.counts() == Counts(failed=1, failed_total=1, cancelled=1)
    assert driver.cancel(jid).state is CancelState.FINISHED


def test_cancelling_a_delayed_job_cancels_it_too(driver):
    jid = push(driver, delay=300)
    result = driver.cancel(jid, "")
    assert result.state is CancelState.CANCELLED
    assert driver.counts().delayed == 0
    assert driver.status(jid) is F


def test_an_unsettled_cancel_is_handed_out_by_reclaim_when_its_canceller_dies(make_driver):
    driver = make_driver(settle_within=0.2, hold=30)
    jid = push(driver)
    lost = driver.cancel(jid, "why").reservation
    wait_backend_past(driver, lost.deadline + 0.05)
    items = driver.reclaim_expired()
    assert [(i.kind, i.reservation.job_id) for i in items] == [(ReclaimKind.UNSETTLED, jid)]
    assert items[0].failure.code == CANCELLED_CODE and items[0].failure.retry_delay is None
    assert driver.settle(lost) is False  # the dead canceller's token is stale
    assert driver.settle(items[0].reservation) is True
    assert driver.counts().cancelled == 1


def test_cancelling_a_reserved_job_stores_a_request_its_holder_reads(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.cancel_requested(r) is None
    assert driver.cancel(jid, "operator said so").state is CancelState.REQUESTED
    assert driver.cancel_requested(r) == "operator said so"
    assert driver.get(jid).cancel_reason == "operator said so"
    assert driver.status(jid) is R  # the holder ends it
    assert driver.fail(r, FailureInfo("JobCancelledError", "operator said so", code=CANCELLED_CODE)) is True
    assert driver.settle(r) is True
    assert driver.counts().cancelled == 1


def test_a_cancel_request_does_not_outlive_the_reservation(driver):
    jid = push(driver)
    r = take(driver)
    driver.cancel(jid, "x")
    assert driver.retry_later(r, 0) is True
    r2 = take(driver)
    assert driver.cancel_requested(r2) is None
    assert driver.counts().retried == 1


def test_a_dead_holders_reclaimer_sees_the_cancel_request(make_driver):
    driver = make_driver(grace=0)
    jid = push(driver, ttr=1)
    r = take(driver)
    driver.cancel(jid, "stop it")
    wait_backend_past(driver, r.deadline + 0.05)
    items = wait_for(driver.reclaim_expired, what="the lost reservation")
    assert [(i.kind, i.cancel_reason) for i in items] == [(ReclaimKind.LOST, "stop it")]


def test_a_lost_reservation_without_a_request_has_no_cancel_reason(make_driver):
    driver = make_driver(grace=0)
    push(driver, ttr=1)
    r = take(driver)
    wait_backend_past(driver, r.deadline + 0.05)
    items = wait_for(driver.reclaim_expired, what="the lost reservation")
    assert items[0].cancel_reason is None


def test_cancel_of_a_finished_or_unknown_job(driver):
    done = push(driver)
    driver.ack(take(driver))
    failed = push(driver)
    r = take(driver)
    driver.fail(r, INFO)
    assert driver.cancel(done).state is CancelState.FINISHED
    assert driver.cancel(failed).state is CancelState.FINISHED
    # an id no block can hold yet (Redis producers reserve up to 256 ids ahead; a sharded id is
    # local * SHARD_SPAN + shard): at or below a queue's id counter, an id without a job reads finished
    assert driver.cancel(failed + 10**9).state is CancelState.NOT_FOUND
    assert driver.counts().cancelled == 0


# -- progress -----------------------------------------------------------------------------------


def test_progress_is_stored_with_the_reservation_clamped_and_token_guarded(driver):
    jid = push(driver)
    r = take(driver)
    assert driver.get(jid).progress is None
    assert driver.progress(r, 0.25, "copied 1 of 4") is True
    info = driver.get(jid)
    assert (info.progress, info.progress_message) == (pytest.approx(0.25), "copied 1 of 4")
    assert driver.progress(r, 7, "") is True
    assert driver.get(jid).progress == pytest.approx(1.0)
    assert driver.list_jobs(R).jobs[0].progress == pytest.approx(1.0)
    driver.release(r)
    assert driver.progress(r, 0.5) is False
    r2 = take(driver)
    assert driver.get(jid).progress is None  # a new attempt starts without progress
    assert driver.progress(r2, -1) is True and driver.get(jid).progress == 0


# -- the worker registry ------------------------------------------------------------------------


def worker(wid: str = "host:1:aaaa", **kw) -> WorkerInfo:
    base = dict(worker_id=wid, queue="q", host="host", pid=1, started_at=1000.0, heartbeat=2.0)
    base.update(kw)
    return WorkerInfo(**base)


def test_workers_register_beat_and_unregister(driver, make_driver):
    other = make_driver(channel=driver.channel)
    assert driver.workers() == []
    before = driver.now()
    driver.register_worker(worker("a", started_at=1.0))
    other.heartbeat(worker("b", started_at=2.0, state="busy", job_id=7, progress=0.5, progress_message="half"))
    got = driver.workers()
    assert [w.worker_id for w in got] == ["a", "b"]
    assert got[1].state == "busy" and got[1].job_id == 7 and got[1].progress == 0.5
    assert all(before - 0.05 <= w.last_seen <= driver.now() + 0.05 and not w.lost for w in got)
    driver.heartbeat(worker("a", started_at=1.0, state="paused", done=3))
    assert [(w.worker_id, w.state, w.done) for w in driver.workers()][0] == ("a", "paused", 3)
    other.unregister_worker("a")
    assert [w.worker_id for w in driver.workers()] == ["b"]
    driver.unregister_worker("nobody")  # no error


def test_a_silent_worker_is_lost_after_three_beats_then_dropped(driver, make_driver):
    neighbour = make_driver()
    driver.heartbeat(worker("quiet", heartbeat=0.1))
    driver.heartbeat(worker("steady", heartbeat=30))
    neighbour.heartbeat(worker("elsewhere"))
    w = wait_for(lambda: [w for w in driver.workers() if w.worker_id == "quiet" and w.lost],
                 what="the quiet worker to be lost")
    assert w[0].lost
    wait_for(lambda: [w.worker_id for w in driver.workers()] == ["steady"], what="the quiet worker to go")
    assert [w.worker_id for w in neighbour.workers()] == ["elsewhere"]


def _stored_workers(driver, kind: str) -> int:
    """How many registry entries the backend holds now, expired ones included (a peek behind the contract)."""
    if kind == "memory":
        return len(driver._workers)
    if kind == "redis-sharded":  # the worker registry lives on shard 0
        first = driver._drivers[0]
        return first.client.hlen(first.keys[KEY_NAMES.index("workers")])
    if kind.startswith("redis"):
        return driver.client.hlen(driver.keys[KEY_NAMES.index("workers")])
    return driver.conn.read("SELECT COUNT(*) AS n FROM {W} WHERE channel = ?", (driver.channel,))["n"]


def test_a_non_sweeping_read_hides_expired_workers_and_writes_nothing(driver, kind):
    driver.heartbeat(worker("quiet", heartbeat=0.05))
    driver.heartbeat(worker("steady", heartbeat=30))
    wait_for(lambda: [w.worker_id for w in driver.workers(sweep=False)] == ["steady"],
             what="the quiet worker's entry to expire")
    assert _stored_workers(driver, kind) == 2  # the viewer's read left the expired entry in place
    assert [w.worker_id for w in driver.workers()] == ["steady"]
    assert _stored_workers(driver, kind) == 1  # the ordinary read sweeps it
