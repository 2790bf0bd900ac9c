"""Per-key limits end to end (issue 16): 4 workers share 200 jobs over 5 keys on every backend.

* ``concurrency: 1`` → the recorded run intervals of one key never overlap;
* ``rate: 20/s`` → no one-second window of a key holds more than 20 starts;
* neither stalls (the drain must end within its wait); the time against the ideal is printed
  (``-s``) and measured by the bench (bench/README.md), never asserted here.

Workers are threads of this process, each with its own driver handle on the backend (the memory
backend is shared in-process); the slot state lives in the backend, as for workers on many hosts.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubq.config import load_config
from pubq.drivers.base import JobStatus
from pubq.errors import ConfigError
from pubq.limits import Limits, parse_limits, parse_rate
from pubq.worker import Worker
from tests.drivers.backends import CORE_KINDS, open_driver
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import KeyedJob, OwnLimitJob, read_lines

WORKERS, JOBS, KEYS = 4, 200, 5


class _Run:
    """What one drain recorded: the job runs, the limiter's admissions, and the wall time."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []
        #: (key, time before the limit_acquire call, time after it) of each admission: the
        #: backend's admission instant lies between the two.
        self.admitted: list[tuple[str, float, float]] = []
        self.took = 0.0


def _spy(driver, run: _Run) -> None:
    """Record every admission of ``driver`` (an instance attribute wrapping its own method)."""
    inner = driver.limit_acquire
    if getattr(inner, "spied", False):
        return

    def limit_acquire(r, key, **kw):
        before = time.time()
        wait = inner(r, key, **kw)
        if wait == 0:
            run.admitted.append((key, before, time.time()))
        return wait

    limit_acquire.spied = True  # type: ignore[attr-defined]
    driver.limit_acquire = limit_acquire


def _drain(kind: str, tmp_path: Path, limits: Limits | None, body: float) -> _Run:
    """Push JOBS keyed jobs round-robin over KEYS accounts and drain them with WORKERS worker
    threads, each with its own driver handle on one channel."""
    channel = f"pubq-test:limits:{uuid.uuid4().hex[:12]}"
    path = str(tmp_path / f"runs-{uuid.uuid4().hex[:6]}")
    run = _Run()
    cleanups = []
    queues = []
    for _ in range(WORKERS):
        driver, cleanup = open_driver(kind, tmp_path, channel=channel)
        cleanups.append(cleanup)
        _spy(driver, run)
        queue = make_queue(driver, name="limited")
        queue.config = replace(queue.config, limits=limits)
        queues.append(queue)
    try:
        queues[0].push_many([KeyedJob(account=f"acct{i % KEYS}", path=path, sleep=body) for i in range(JOBS)])
        workers = [Worker(q, isolate=False, install_signals=False, heartbeat=0, max_seconds=120) for q in queues]
        threads = [threading.Thread(target=w.listen, args=(1,), daemon=True) for w in workers]
        for t in threads:
            t.start()
        wait_until(lambda: len(read_lines(path)) >= JOBS, timeout=90, interval=0.05, message=f"{JOBS} runs")
        for w in workers:
            w.stopping = True
        for t in threads:
            t.join(10)
        counts = queues[0].driver.counts()
        assert counts.done == JOBS and counts.waiting == counts.delayed == counts.reserved == 0, counts
        assert counts.failed_total == 0 and counts.retried == 0  # a limited job never spends an attempt
        # Round robin over 5 keys with 4 workers needs no refusal when every run takes as long: only
        # timing jitter makes one, so a limited drain may have none; an unlimited one never has.
        assert limits is not None or counts.limited == 0
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
    for line in read_lines(path):
        account, start, end, _job_id, attempt = line.split()
        assert attempt == "1"
        run.runs.append((account, float(start), float(end)))
    assert len(run.runs) == JOBS
    run.took = max(r[2] for r in run.runs) - min(r[1] for r in run.runs)
    return run


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_concurrency_one_never_overlaps_within_a_key(kind: str, tmp_path: Path) -> None:
    body = 0.1
    free = _drain(kind, tmp_path, None, body)
    run = _drain(kind, tmp_path, Limits(key="{account}", concurrency=1), body)
    for key in {r[0] for r in run.runs}:
        mine = sorted((s, e) for a, s, e in run.runs if a == key)
        assert len(mine) == JOBS // KEYS
        for (s1, e1), (s2, _e2) in zip(mine, mine[1:], strict=False):
            assert s2 >= e1, f"{kind}: two runs of {key} overlap: [{s1}, {e1}] and one starting at {s2}"
    # Ideal: the same drain without limits (4 workers never idle: 5 keys for 4 workers), unless
    # one key's jobs run back to back would take longer.
    ideal = max(free.took, JOBS // KEYS * body)
    print(f"\n{kind}: concurrency 1, {JOBS} jobs of {body} s over {KEYS} keys, {WORKERS} workers: "
          f"{run.took:.3f} s (ideal {ideal:.3f} s: no limits {free.took:.3f} s)")


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_rate_twenty_per_second_per_key(kind: str, tmp_path: Path) -> None:
    body = 0.001
    free = _drain(kind, tmp_path, None, body)
    run = _drain(kind, tmp_path, Limits(key="{account}", rate=20, per=1.0), body)
    # No one-second window holds more than 20 admissions of a key: the 21st is at least 1 s after
    # the 1st (checked with the bounds of each admission instant: the later one's end of call
    # against the earlier one's start of call).
    gaps = []
    for key in {a[0] for a in run.admitted}:
        mine = sorted((b, e) for k, b, e in run.admitted if k == key)
        assert len(mine) == JOBS // KEYS
        gaps += [later[1] - first[0] for first, later in zip(mine, mine[20:], strict=False)]
    assert gaps and min(gaps) >= 1.0, f"{kind}: 21 admissions of a key within {min(gaps):.4f} s"
    # Ideal: each key's second 20 can start 1 s after its first 20, and running those 100 jobs
    # takes half the backend's unlimited drain of all 200.
    ideal = 1.0 + free.took / 2
    print(f"\n{kind}: rate 20/s, {JOBS} jobs over {KEYS} keys, {WORKERS} workers: {run.took:.3f} s "
          f"(ideal {ideal:.3f} s: no limits {free.took:.3f} s; closest 21st admission {min(gaps):.4f} s)")


# -- configuration ------------------------------------------------------------------------------------


def test_rates_parse() -> None:
    assert parse_rate("10/m") == (10, 60.0)
    assert parse_rate("20/s") == (20, 1.0)
    assert parse_rate("600 / h") == (600, 3600.0)
    assert parse_rate("5/30s") == (5, 30.0)
    assert parse_limits({"key": "{account_id}", "concurrency": 1, "rate": "10/m"}, "x") == Limits(
        key="{account_id}", concurrency=1, rate=10, per=60.0)


@pytest.mark.parametrize(("limits", "message"), [
    ("1/s", "queues.send.limits: must be a mapping"),
    ({"concurrency": 1}, "queues.send.limits.key: must be a non-empty template"),
    ({"key": "{a}"}, "queues.send.limits: give concurrency, rate or both"),
    ({"key": "{a}", "concurrency": "one"}, "queues.send.limits.concurrency: must be an integer 1 to 10000"),
    ({"key": "{a}", "concurrency": -1}, "queues.send.limits.concurrency: must be an integer 1 to 10000"),
    ({"key": "{a}", "rate": "10/fortnight"}, "queues.send.limits.rate: must be COUNT/UNIT"),
    ({"key": "{a}", "rate": "0/s"}, "queues.send.limits.rate: count must be 1 to 10000"),
    ({"key": "{a}", "rate": 10}, "queues.send.limits.rate: must be a string like 10/s"),
    ({"key": "{a", "rate": "1/s"}, "queues.send.limits.key: unbalanced braces"),
    ({"key": "{a-b}", "rate": "1/s"}, "queues.send.limits.key: {a-b} is not a field name"),
    ({"key": "{a}", "rate": "1/s", "bucket": 3}, "queues.send.limits.bucket: unknown key"),
    ({"key": "{a}", "concurrency": 1, "burst": 3}, "queues.send.limits.burst: needs a rate"),
    ({"key": "{a}", "rate": "1/s", "burst": "3"}, "queues.send.limits.burst: must be an integer 1 to 10000"),
    ({"key": "{a}", "rate": "1/s", "burst": 0.5}, "queues.send.limits.burst: must be an integer 1 to 10000"),
])
def test_bad_limits_are_one_line_config_errors(tmp_path: Path, limits, message: str) -> None:
    import yaml

    path = tmp_path / "pubq.yaml"
    path.write_text(yaml.safe_dump({"database": f"sqlite:///{tmp_path}/q.db",
                                    "queues": {"send": {"driver": "db", "limits": limits}}}))
    with pytest.raises(ConfigError) as err:
        load_config(str(path), env={})
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: {message}"), text


def test_queue_limits_load(tmp_path: Path) -> None:
    path = tmp_path / "pubq.yaml"
    path.write_text(f"database: sqlite:///{tmp_path}/q.db\nqueues:\n  send:\n    driver: db\n"
                    "    limits: {key: \"{account_id}\", concurrency: 2, rate: 10/m}\n")
    config = load_config(str(path), env={})
    assert config.queues["send"].limits == Limits(key="{account_id}", concurrency=2, rate=10, per=60.0)
    assert parse_limits({"key": "{a}", "rate": "10/m", "burst": 5}, "x") == Limits(
        key="{a}", rate=10, per=60.0, burst=5)


def test_job_class_limits_name_its_fields() -> None:
    from pubq.job import Job, JobRegistry

    JobRegistry([OwnLimitJob])
    assert OwnLimitJob.limits == Limits(key="acct-{account}", concurrency=1)  # parsed when registered

    class Bad(Job):
        name = "tests.BadLimits"
        limits = {"key": "{nope}", "concurrency": 1}

    with pytest.raises(ConfigError, match=r"job tests.BadLimits: limits.key: the job has no field 'nope'"):
        JobRegistry([Bad])


# -- the runner -------------------------------------------------------------------------------------


def test_a_limited_job_fires_no_event_and_keeps_its_attempt(tmp_path: Path) -> None:
    from pubq import events as ev
    from pubq.drivers.memory import MemoryDriver

    driver = MemoryDriver("limits-runner")
    queue = make_queue(driver, name="limited")
    queue.config = replace(queue.config, limits=Limits(key="{account}", concurrency=1))
    fired: list[str] = []
    queue.bus.on(ev.BEFORE_EXEC, lambda e: fired.append(f"before {e.id}"))
    path = str(tmp_path / "runs")
    first = queue.push(KeyedJob(account="a", path=path))
    second = queue.push(KeyedJob(account="a", path=path))
    other = queue.push(KeyedJob(account="b", path=path))
    from pubq.runner import JobRunner

    runner = JobRunner(queue)
    r1 = driver.reserve(0)
    e1 = runner.begin(r1)
    assert not e1.limited and fired == [f"before {first}"]
    e2 = runner.begin(driver.reserve(0))
    assert e2.limited and fired == [f"before {first}"]  # no beforeExec for the refused one
    assert driver.get(second).attempt == 0 and driver.counts().limited == 1
    r3 = driver.reserve(0)
    assert r3.job_id == other and not runner.begin(r3).limited  # other keys pass it
    runner.ack(r1)  # frees the slot: the waiting job is due now
    r2 = driver.reserve(0)
    assert r2.job_id == second and r2.attempt == 1 and not runner.begin(r2).limited


def test_job_class_limits_win_and_a_missing_field_is_an_invalid_job(tmp_path: Path) -> None:
    from pubq.drivers.memory import MemoryDriver
    from pubq.runner import JobRunner

    driver = MemoryDriver("limits-own")
    queue = make_queue(driver, name="limited")
    queue.config = replace(queue.config, limits=Limits(key="{path}", concurrency=1))
    queue.push(OwnLimitJob(account="x"))
    queue.push(OwnLimitJob(account="y"))  # same queue key ({path} is ''), other own key: not limited
    runner = JobRunner(queue)
    assert not runner.begin(driver.reserve(0)).limited
    assert not runner.begin(driver.reserve(0)).limited
    queue.config = replace(queue.config, limits=Limits(key="{tenant}", concurrency=1))
    queue.push(KeyedJob(account="a", path=str(tmp_path / "runs")))
    event = runner.begin(driver.reserve(0))
    assert "no field 'tenant'" in str(event.error)


def test_limited_jobs_are_counted_in_pubq_jobs_total() -> None:
    from pubq.drivers.memory import MemoryDriver
    from pubq.metrics import BackendCollector

    driver = MemoryDriver("limits-metrics")
    for _ in range(2):
        driver.push(b'{"job":"x"}', ttr=30)
    first, second = driver.reserve(0), driver.reserve(0)
    assert driver.limit_acquire(first, "k", concurrency=1) == 0
    assert driver.limit_acquire(second, "k", concurrency=1) > 0
    totals = next(m for m in BackendCollector(lambda: [("send", driver)]).collect() if m.name == "pubq_jobs")
    found = {s.labels["outcome"]: s.value for s in totals.samples if s.name == "pubq_jobs_total"}
    assert found["limited"] == 1 and found["retried"] == 0


# -- computed keys (Job.limit_key) and token buckets ------------------------------------------------


def _runner_queue(name: str, limits: Limits | None = None):
    from pubq.drivers.memory import MemoryDriver
    from pubq.runner import JobRunner

    driver = MemoryDriver(name)
    queue = make_queue(driver, name="limited")
    queue.config = replace(queue.config, limits=limits, attempts=3)
    return driver, queue, JobRunner(queue)


def test_limit_key_computes_the_key_of_a_job_without_the_field() -> None:
    from tests.sample_jobs import ComputedLimitJob

    driver, queue, runner = _runner_queue("limits-computed")
    for row in (1, 2, 3):  # rows 1 and 2 are account a's, 3 is b's
        queue.push(ComputedLimitJob(row=row))
    r1 = driver.reserve(0)
    assert not runner.begin(r1).limited
    assert runner.begin(driver.reserve(0)).limited  # row 2: a's slot is taken
    assert not runner.begin(driver.reserve(0)).limited  # row 3: b passes
    runner.ack(r1)  # frees a's slot under the computed key and wakes row 2
    r2 = driver.reserve(0)
    assert r2.job_id == 2 and not runner.begin(r2).limited


def test_limit_key_string_takes_the_numbers_of_the_limits_and_none_means_unlimited() -> None:
    from tests.sample_jobs import ComputedLimitJob

    driver, queue, runner = _runner_queue("limits-computed-str", Limits(key="{row}", rate=1, per=100))
    queue.push(ComputedLimitJob(row=1, mode="key"))
    queue.push(ComputedLimitJob(row=2, mode="key"))  # same account: the key is acct-a, not the row
    queue.push(ComputedLimitJob(row=1, mode="none"))
    assert not runner.begin(driver.reserve(0)).limited
    assert runner.begin(driver.reserve(0)).limited
    assert not runner.begin(driver.reserve(0)).limited
    _, queue, runner = _runner_queue("limits-computed-bare")
    queue.push(ComputedLimitJob(row=1, mode="key"))  # a key with no numbers anywhere: invalid
    event = runner.begin(queue.driver.reserve(0))
    assert "neither the class nor queue limited has limits" in str(event.error)


def test_a_failing_limit_key_fails_the_attempt_like_execute() -> None:
    from tests.sample_jobs import ComputedLimitJob

    driver, queue, runner = _runner_queue("limits-computed-fail")
    first = queue.push(ComputedLimitJob(row=1, mode="fail"))
    r = driver.reserve(0)
    event = runner.begin(r)
    assert not event.limited and "lookup of row 1 failed" in str(event.error)
    runner.failed(r, event, event.error)
    assert driver.get(first).status is JobStatus.WAITING and driver.get(first).attempt == 1  # retried
    second = queue.push(ComputedLimitJob(row=1, mode="permanent"))
    driver.remove(first)
    r = driver.reserve(0)
    event = runner.begin(r)
    runner.failed(r, event, event.error)
    assert driver.get(second).status is JobStatus.FAILED  # a PermanentError is never retried


@settings(max_examples=200, deadline=None)
@given(arrivals=st.lists(st.integers(0, 5000), min_size=1, max_size=60),
       burst=st.integers(1, 6), interval_ms=st.integers(1, 400))
def test_a_token_bucket_admits_burst_then_one_per_interval(arrivals: list[int], burst: int,
                                                           interval_ms: int) -> None:
    """Property of the shared rule (every driver runs it): in any span [a, b] at most ``burst +
    (b - a) / interval`` starts are admitted; an idle key admits ``burst`` at once; nothing is
    refused before the burst is spent."""
    from pubq.drivers.limiter import KeyState, admit

    state, admitted = KeyState(), []
    interval = interval_ms / 1000
    for job_id, ms in enumerate(sorted(arrivals)):
        now = ms / 1000
        wait = admit(state, job_id=job_id, token=1, now=now, concurrency=0, rate=1, per=interval,
                     live=lambda *_: False, burst=burst)
        if wait == 0:
            admitted.append(now)
        else:
            assert wait > 0 and len(admitted) >= burst
    for i, a in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + (admitted[j] - a) / interval + 1e-6
    ordered = sorted(arrivals)
    if len(ordered) >= burst and ordered[burst - 1] == ordered[0]:
        assert admitted[:burst] == [ordered[0] / 1000] * burst  # a full bucket: burst at one instant
