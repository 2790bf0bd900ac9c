"""Prefetch (issue 17): a one-job-at-a-time worker holds the next jobs and writes acks in batches.

On the real Redis (the driver that prefetches): jobs held ahead come back uncounted when their
worker dies, a cancel still wins, a held job whose lease aged is renewed before it starts, acks
never wait past their window, a stop releases what is held, and a drain batches its round trips.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from pubq.drivers.base import JobStatus, ReclaimKind
from pubq.drivers.records import Policy
from pubq.drivers.redis import RedisDriver
from pubq.prefetch import MAX_BATCH, STALE, Prefetch
from pubq.worker import Worker
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import NoopJob


@pytest.fixture
def make(make_redis: Callable[..., RedisDriver]) -> Callable[..., RedisDriver]:
    return make_redis


class FakeClock:
    """A monotonic clock the test moves; every read also moves it a little (a job's time)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def flag(driver: RedisDriver, job_id: int) -> bytes | None:
    return driver.client.hget(driver._live_key, f"{job_id}:a")


def past_deadline(driver: RedisDriver, deadline: float) -> None:
    wait_until(lambda: driver.now() > deadline, message="the backend clock to pass the jobs' TTR")


# -- the driver's `ahead` ------------------------------------------------------------------------


def test_jobs_held_ahead_go_back_uncounted_when_their_worker_dies(make):
    driver = make(policy=Policy(grace=0))
    ids = [driver.push(b"x%d" % i, ttr=1) for i in range(3)]
    taken = driver.reserve_many(3, ahead=2, holder="w1")
    assert [r.job_id for r in taken] == ids
    assert flag(driver, ids[0]) is None and flag(driver, ids[1]) == b"1" == flag(driver, ids[2])
    past_deadline(driver, max(r.deadline for r in taken))  # the worker holding all three died
    items = driver.reclaim_expired(10)
    # the one it had started is lost (failed by whoever reclaims it); the held ones never started
    assert [(i.kind, i.reservation.job_id) for i in items] == [(ReclaimKind.LOST, ids[0])]
    counts = driver.counts()
    assert (counts.waiting, counts.reserved) == (2, 1)
    assert [driver.get(i).attempt for i in ids[1:]] == [0, 0]
    assert driver.ack(taken[1]) is False  # the dead worker's late write is refused
    again = driver.reserve_many(2)
    assert [r.job_id for r in again] == ids[1:]  # back at the front, in order, attempt 1 again
    assert [r.attempt for r in again] == [1, 1]


def test_a_cancel_requested_for_a_held_job_is_reclaimed_as_lost_with_its_reason(make):
    driver = make(policy=Policy(grace=0))
    first, second = driver.push(b"a", ttr=1), driver.push(b"b", ttr=1)
    taken = driver.reserve_many(2, ahead=1)
    assert driver.cancel(second, "operator said so").state.value == "requested"
    past_deadline(driver, taken[1].deadline)
    lost = {i.reservation.job_id: i for i in driver.reclaim_expired(10)}
    assert set(lost) == {first, second}
    assert lost[second].cancel_reason == "operator said so"


def test_settling_a_held_job_drops_its_flag(make):
    driver = make()
    ids = [driver.push(b"x", ttr=60) for _ in range(3)]
    flags, taken = driver.ack_and_reserve_many([], 3, ahead=2)
    assert flags == [] and [flag(driver, i) for i in ids] == [None, b"1", b"1"]
    assert driver.ack(taken[1]) and driver.release(taken[2])
    assert flag(driver, ids[1]) is None and flag(driver, ids[2]) is None
    assert driver.status(ids[2]) is JobStatus.WAITING and driver.get(ids[2]).attempt == 0


# -- Prefetch ------------------------------------------------------------------------------------


def test_batches_follow_the_job_time_and_the_room_left(make):
    driver = make()
    for _ in range(40):
        driver.push(b"x", ttr=60)
    clock = FakeClock()
    pf = Prefetch(driver, grace=0, on_refused=lambda r: None, clock=clock)
    assert pf.batch_size() == 1  # no job time seen yet: one job, the plain fused path
    first = pf.next()
    clock.now += 0.0001  # a 100 µs job
    pf.ack_later(first)
    second = pf.next(room=5)
    assert len(pf.held()) == 4  # five taken, as the room allows
    clock.now += 0.0001
    assert pf.batch_size() == MAX_BATCH
    clock.now += 0.5  # a slow job: one at a time again
    pf.ack_later(second)
    pf.next()
    assert pf.batch_size() == 1
    pf.close(driver.release)


def test_a_held_job_whose_lease_aged_is_renewed_before_it_starts(make):
    driver = make(policy=Policy(grace=0))
    for _ in range(3):
        driver.push(b"x", ttr=30)
    clock = FakeClock()
    pf = Prefetch(driver, grace=0, on_refused=lambda r: None, clock=clock)
    r1 = pf.next()
    clock.now += 0.0001
    pf.ack_later(r1)
    pf.next()  # takes the other two, holds one
    held = pf.held()
    assert len(held) == 1
    pf.put_back(held[0])
    score = driver.client.zscore(driver.keys[5], held[0].job_id)  # {ch}:reserved
    clock.now += STALE + 1  # the job it runs now takes longer than STALE
    taken = pf.next()
    assert taken.job_id == held[0].job_id
    assert driver.client.zscore(driver.keys[5], taken.job_id) > score  # renewed: a whole TTR from now
    assert pf.held_since == clock.now
    pf.close(driver.release)


def test_a_held_job_reclaimed_before_it_starts_is_skipped(make):
    driver = make(policy=Policy(grace=0, hold=60))
    ids = [driver.push(b"x", ttr=1) for _ in range(3)]
    clock = FakeClock()
    pf = Prefetch(driver, grace=0, on_refused=lambda r: None, clock=clock)
    first = pf.next()
    clock.now += 0.0001
    pf.ack_later(first)
    assert pf.next().job_id == ids[1]
    past_deadline(driver, first.deadline + 1)
    driver.reclaim_expired(10)  # the held third goes back to waiting under a new lease
    clock.now += STALE + 1
    assert pf.next().job_id == ids[2]  # the renewal refused, the buffer is empty, it is taken again


def test_acks_are_written_when_the_next_job_runs_past_the_window(make):
    driver = make()
    for _ in range(4):
        driver.push(b"x", ttr=60)
    refused: list[int] = []
    pf = Prefetch(driver, grace=0, on_refused=lambda r: refused.append(r.job_id), window=0.05)
    r1 = pf.next()
    pf.ack_later(r1)  # nothing held: written by the next call
    r2 = pf.next()  # writes it, takes the three others (two held)
    assert len(pf._held) == 2 and driver.counts().done == 1
    pf.ack_later(r2)  # the first of a take: written at once
    r3 = pf.next()
    pf.ack_later(r3)  # ... and the worker's next job runs long: the flusher writes it
    wait_until(lambda: driver.counts().done == 3, message="the flusher to write the ack")
    assert driver.counts().reserved == 1 and refused == []
    pf.close(driver.release)


def test_the_first_job_of_a_take_is_acked_before_the_next_one_starts(make):
    # it was not held ahead: a worker dying after its success must not leave it to be failed as lost
    driver = make()
    ids = [driver.push(b"x", ttr=60) for _ in range(4)]
    clock = FakeClock()  # stands still: the flusher never finds an ack a window old
    pf = Prefetch(driver, grace=0, on_refused=lambda r: None, clock=clock)
    r1 = pf.next()
    clock.now += 0.0001
    pf.ack_later(r1)  # nothing held behind it: its ack goes with the next take
    assert driver.counts().done == 0
    head = pf.next()  # writes r1's ack, takes the other three (two held behind the first)
    assert head.job_id == ids[1] and driver.counts().done == 1
    pf.ack_later(head)
    assert driver.counts().done == 2  # written at once: jobs are held behind it
    second = pf.next()
    pf.ack_later(second)
    assert driver.counts().done == 2  # a held job's ack waits for the next call
    pf.close(driver.release)
    counts = driver.counts()
    assert (counts.done, counts.waiting, counts.reserved) == (3, 1, 0)


def test_close_writes_the_acks_and_releases_the_held_jobs_uncounted(make):
    driver = make()
    ids = [driver.push(b"x", ttr=60) for _ in range(6)]
    clock = FakeClock()
    pf = Prefetch(driver, grace=0, on_refused=lambda r: None, clock=clock)
    r1 = pf.next()
    clock.now += 0.0001
    pf.ack_later(r1)
    r2 = pf.next()
    pf.ack_later(r2)
    pf.close(driver.release)
    counts = driver.counts()
    assert (counts.done, counts.reserved, counts.waiting) == (2, 0, 4)
    assert [driver.get(i).attempt for i in ids[2:]] == [0, 0, 0, 0]


# -- the worker ----------------------------------------------------------------------------------


def test_a_drain_takes_and_acks_its_jobs_in_batches(make):
    driver = make()
    q = make_queue(driver)
    n = 300
    q.push_many([NoopJob() for _ in range(n)])
    calls: list[tuple[int, int]] = []
    fused = driver.ack_and_reserve_many

    def counted(acks, k, **kw):
        calls.append((len(acks), k))
        return fused(acks, k, **kw)

    driver.ack_and_reserve_many = counted  # type: ignore[method-assign]
    single = driver.ack
    heads: list[int] = []

    def ack(r):
        heads.append(r.job_id)
        return single(r)

    driver.ack = ack  # type: ignore[method-assign]
    ticks = itertools.count()
    worker = Worker(q, isolate=False, install_signals=False, heartbeat=0,
                    clock=lambda: next(ticks) * 1e-5)  # every job takes 10 µs by this clock
    assert worker.run() == 0 and worker.jobs == n
    counts = driver.counts()
    assert (counts.done, counts.reserved, counts.waiting) == (n, 0, 0)
    assert sum(a for a, _ in calls) + len(heads) == n  # every ack written, each once
    # per batch: the ack of its first job (never deferred past a start) and one call for the rest
    assert len(calls) <= n // MAX_BATCH + 3 and len(heads) <= n // MAX_BATCH + 3


def test_a_concurrent_worker_holds_jobs_ahead_and_a_limit_leaves_none_held(make):
    driver = make()
    q = make_queue(driver)
    q.push_many([NoopJob() for _ in range(200)])
    aheads: list[int] = []
    fused = driver.ack_and_reserve_many

    def counted(acks, k, **kw):
        aheads.append(kw.get("ahead", 0))
        return fused(acks, k, **kw)

    driver.ack_and_reserve_many = counted  # type: ignore[method-assign]
    worker = Worker(q, isolate=False, install_signals=False, heartbeat=0, concurrency=4, max_jobs=120)
    assert worker.run() == 0 and worker.jobs == 120
    assert max(aheads) >= 1  # short jobs: some were held ahead of a free slot
    counts = driver.counts()
    assert (counts.done, counts.reserved, counts.waiting) == (120, 0, 80)
    waiting = driver.list_jobs(JobStatus.WAITING, limit=100).jobs
    assert len(waiting) == 80 and {j.attempt for j in waiting} == {0}  # nothing held is left counted
