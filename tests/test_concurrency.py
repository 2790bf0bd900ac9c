"""Many jobs in flight in one worker (issue 17, spec §7.11): threads, async jobs on one event loop,
isolated children; limits, cancel and TTR per job. In process, on the memory and Redis drivers;
the SIGKILL soak lives in tests/reliability/test_concurrency_soak.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pubq import events as ev
from pubq.drivers.base import JobStatus
from pubq.drivers.memory import MemoryDriver
from pubq.worker import Worker
from tests.drivers.backends import open_driver, unique_channel
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import (
    AsyncSleepJob,
    ExitJob,
    FailJob,
    NoopJob,
    ProgressJob,
    RendezvousJob,
    SleepJob,
    read_lines,
)


@pytest.fixture(params=["memory", "redis"])
def driver(request, tmp_path):
    d, cleanup = open_driver(request.param, tmp_path, channel=unique_channel("conc"))
    yield d
    cleanup()


def worker(queue: Any, **kw: Any) -> Worker:
    kw.setdefault("isolate", False)
    kw.setdefault("install_signals", False)
    kw.setdefault("heartbeat", 0)
    return Worker(queue, **kw)


def test_threads_run_n_jobs_at_once_and_each_once(driver, tmp_path):
    q = make_queue(driver)
    path = str(tmp_path / "meet")
    ids = [q.push(RendezvousJob(path=path, count=8)) for _ in range(8)]
    ids += [q.push(NoopJob()) for _ in range(20)]
    w = worker(q, concurrency=8)
    assert w.run() == 0 and w.stop_reason == "drained"
    assert driver.counts().done == 28 and driver.counts().failed == 0
    assert sorted(int(line.split()[1]) for line in read_lines(path)) == sorted(ids[:8])
    assert w.jobs == 28


def test_events_fire_in_the_main_thread_once_per_job(driver):
    q = make_queue(driver)
    seen: list[tuple[str, int, bool]] = []
    main = threading.get_ident()
    for name in (ev.BEFORE_EXEC, ev.AFTER_EXEC, ev.AFTER_ERROR):
        q.bus.on(name, lambda e, name=name: seen.append((name, e.id, threading.get_ident() == main)))
    ok = [q.push(SleepJob(seconds=0.01)) for _ in range(10)]
    bad = [q.push(FailJob()) for _ in range(3)]
    assert worker(q, concurrency=4).run() == 0
    assert all(in_main for _, _, in_main in seen)
    assert sorted(i for n, i, _ in seen if n == ev.AFTER_EXEC) == ok
    assert sorted(i for n, i, _ in seen if n == ev.AFTER_ERROR) == bad
    assert sorted(i for n, i, _ in seen if n == ev.BEFORE_EXEC) == ok + bad
    assert driver.counts().failed_total == 3


def test_async_jobs_share_one_loop_beside_threads(driver, tmp_path):
    q = make_queue(driver)
    path = str(tmp_path / "async")
    ids = [q.push(AsyncSleepJob(seconds=0.05, path=path)) for _ in range(20)]
    bad = q.push(AsyncSleepJob(seconds=0.01, fail=True))
    ids += [q.push(SleepJob(seconds=0.01)) for _ in range(5)]
    assert worker(q, concurrency=10).run() == 0
    counts = driver.counts()
    assert counts.done == 25 and counts.failed == 1
    assert driver.failed_get(bad).error_class == "RuntimeError"
    assert sum(1 for line in read_lines(path) if line.startswith("end")) == 20


def test_an_async_job_runs_in_the_one_job_worker_too(driver):
    q = make_queue(driver)
    q.push(AsyncSleepJob(seconds=0.01))
    assert worker(q).run() == 0 and driver.counts().done == 1


def test_max_jobs_counts_finished_jobs_and_reserves_no_more(driver):
    q = make_queue(driver)
    for _ in range(10):
        q.push(SleepJob(seconds=0.02))
    w = worker(q, concurrency=4, max_jobs=6)
    assert w.run() == 0 and w.stop_reason == "max-jobs" and w.jobs == 6
    counts = driver.counts()
    assert (counts.done, counts.waiting, counts.reserved) == (6, 4, 0)


def test_the_queue_setting_gives_the_default_concurrency(tmp_path):
    from dataclasses import replace

    d = MemoryDriver(unique_channel("cfg"))
    q = make_queue(d)
    q.config = replace(q.config, concurrency=3)
    assert worker(q).concurrency == 3 and worker(q, concurrency=5).concurrency == 5


def _run_in_thread(w: Worker, listen: bool = False) -> threading.Thread:
    t = threading.Thread(target=(lambda: w.listen(1)) if listen else w.run, daemon=True)
    t.start()
    return t


def test_isolated_children_run_two_at_once(driver, tmp_path):
    q = make_queue(driver)
    path = str(tmp_path / "meet")
    ids = [q.push(RendezvousJob(path=path, count=2)) for _ in range(4)]
    w = worker(q, isolate=True, concurrency=2)
    assert w.run() == 0
    assert driver.counts().done == 4
    pids = {line.split()[2] for line in read_lines(path)}
    assert len(pids) == 4  # a child per job
    assert sorted(int(line.split()[1]) for line in read_lines(path)) == ids


def test_a_ttr_kill_of_one_child_leaves_its_sibling_running(driver, tmp_path):
    q = make_queue(driver)
    path = str(tmp_path / "log")
    slow = q.push(SleepJob(seconds=60, path=path), ttr=1)
    sibling = q.push(SleepJob(seconds=2.5, path=path), ttr=30)
    w = worker(q, isolate=True, concurrency=2)
    assert w.run() == 0
    failed = driver.failed_get(slow)
    assert failed is not None and failed.error_class == "TtrExceededError"
    assert driver.status(sibling) is JobStatus.DONE and f"end {sibling} 1" in read_lines(path)
    assert driver.counts().done == 1


@pytest.mark.parametrize("isolate", [True, False])
def test_cancel_of_one_job_leaves_its_siblings_running(driver, tmp_path, isolate):
    from tests.sample_jobs import CheckpointJob

    q = make_queue(driver)
    path = str(tmp_path / "log")
    victim = q.push(CheckpointJob(seconds=60, path=path))
    siblings = [q.push(SleepJob(seconds=1.5, path=path)) for _ in range(2)]
    w = Worker(q, isolate=isolate, concurrency=3, install_signals=False, heartbeat=0.2)
    t = _run_in_thread(w)
    wait_until(lambda: len(read_lines(path)) >= 3, message="three jobs started")
    driver.cancel(victim, "not needed")
    t.join(30)
    assert not t.is_alive()
    failed = driver.failed_get(victim)
    assert failed is not None and failed.error_class == "JobCancelledError"
    assert all(f"end {s} 1" in read_lines(path) for s in siblings)
    assert driver.counts().done == 2 and driver.counts().cancelled == 1


@pytest.mark.parametrize("isolate", [True, False])
def test_a_stop_finishes_every_job_in_flight_and_a_hard_stop_puts_them_back(driver, tmp_path, isolate):
    q = make_queue(driver)
    path = str(tmp_path / "log")
    for _ in range(3):
        q.push(SleepJob(seconds=0.5, path=path))
    w = worker(q, isolate=isolate, concurrency=3)
    t = _run_in_thread(w, listen=True)
    wait_until(lambda: len(read_lines(path)) >= 3, message="three jobs started")
    w.signals, w.stopping = 1, True  # what the first TERM does
    t.join(30)
    assert w.stop_reason == "signal" and driver.counts().done == 3
    for _ in range(3):
        q.push(SleepJob(seconds=60, path=path))
    w2 = worker(q, isolate=isolate, concurrency=3)
    t = _run_in_thread(w2, listen=True)
    wait_until(lambda: sum(1 for x in read_lines(path) if x.startswith("start")) >= 6, message="three more started")
    w2.signals, w2.stopping = 2, True  # a second TERM
    t.join(30)
    counts = driver.counts()
    assert (counts.waiting, counts.reserved, counts.done) == (3, 0, 3)
    assert all(driver.get(j.job_id).attempt == 0 for j in driver.list_jobs(JobStatus.WAITING).jobs)


def test_a_job_that_calls_sys_exit_gives_its_slot_back(driver):
    """Regression (issue 17): SystemExit ended its pool thread silently and the slot never came
    back; with as many such jobs as slots the worker stalled with jobs waiting."""
    q = make_queue(driver)
    bad = [q.push(ExitJob()) for _ in range(2)]
    for _ in range(6):
        q.push(NoopJob())
    w = worker(q, concurrency=2)
    t = _run_in_thread(w)
    wait_until(lambda: not t.is_alive(), timeout=20, message="the worker drained the queue")
    counts = driver.counts()
    assert (counts.done, counts.failed, counts.waiting, counts.reserved) == (6, 2, 0, 0)
    assert w.stop_reason == "drained"
    for job_id in bad:
        failure = driver.failed_get(job_id)
        assert failure.error_class == "JobCrashedError" and "SystemExit" in failure.message


class _CountingMemory(MemoryDriver):
    """Records the timeout of every reserve a worker makes (blocking or not) and how many jobs the
    worker had in flight then."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.calls: list[float] = []

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Any]:
        self.calls.append(timeout)
        return super().reserve_many(n, timeout, holder=holder)

    def ack_and_reserve_many(self, acks: Any, n: int, *, holder: str = "") -> Any:
        self.calls.append(0.0)
        return super().ack_and_reserve_many(acks, n, holder=holder)


def test_a_partly_busy_listener_blocks_for_new_work_instead_of_polling(tmp_path):
    """While one job runs and the queue is empty, the worker waits for a push in a blocking reserve
    (its reserver thread), and a job pushed then starts beside the running one."""
    d = _CountingMemory(unique_channel("reserver"))
    q = make_queue(d)
    path = str(tmp_path / "meet")
    q.push(RendezvousJob(path=path, count=2))
    w = worker(q, concurrency=4)
    t = _run_in_thread(w, listen=True)
    try:
        wait_until(lambda: len(read_lines(path)) == 1, timeout=10, message="the first job started")
        calls = len(d.calls)
        wait_until(lambda: any(c > 0 for c in d.calls[calls:]), timeout=10,
                   message="a blocking reserve while the first job runs")
        polls = sum(1 for c in d.calls[calls:] if c == 0)
        assert polls <= 2, f"{polls} non-blocking reserves while partly busy: polling"
        q.push(RendezvousJob(path=path, count=2))
        wait_until(lambda: d.counts().done == 2, timeout=20, message="both jobs met and finished")
    finally:
        w.stopping = True
        t.join(10)
    assert not t.is_alive() and d.counts().failed == 0


def test_the_registry_shows_every_job_in_flight(driver, tmp_path):
    """WorkerInfo of a concurrent worker: how many jobs run of how many it may run, and their ids,
    the oldest first (its job_id); the count drops as they end."""
    q = make_queue(driver)
    release = tmp_path / "release"
    ids = [q.push(ProgressJob(steps=1, release=str(release))) for _ in range(3)]
    w = worker(q, concurrency=4, heartbeat=0.05)
    t = _run_in_thread(w, listen=True)
    try:
        info = wait_until(lambda: [i for i in driver.workers() if i.in_flight == 3], timeout=10,
                          message="three jobs in flight in the registry")[0]
        assert (info.concurrency, sorted(info.job_ids), info.state) == (4, ids, "busy")
        assert info.job_id == info.job_ids[0]
        release.touch()
        wait_until(lambda: [i for i in driver.workers() if i.in_flight == 0 and i.done == 3], timeout=10,
                   message="none in flight after they ended")
    finally:
        release.touch()
        w.stopping = True
        t.join(10)
    assert not t.is_alive()
