"""SIGKILL a worker at every dangerous moment: no job is lost, and a job whose attempts run out
through crashes gets exactly one final failure (afterError once, retry=0)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.helpers import Cli, wait_started, wait_until
from tests.sample_jobs import read_lines


def make_cli(tmp_path, driver: str, **overrides) -> Cli:
    return Cli.create(tmp_path, driver, env={"PUBQ_TEST_KILL_ONCE": str(tmp_path / "killed-once")}, **overrides)


@pytest.fixture(params=["redis", "sqlite"])
def driver_kind(request):
    return request.param


def kill9(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_a_worker_killed_while_blocked_in_listen_loses_no_job(tmp_path, driver_kind):
    cli = make_cli(tmp_path, driver_kind)
    proc = cli.popen("work", "listen", "30", "--verbose", "--color=0", "--isolate=0")
    try:
        wait_started(proc)
        wait_until(lambda: cli.waiting_for_a_job(proc.pid), message="the worker to block in its wait for a job")
    finally:
        kill9(proc)
    cli("work", "push", "tests.Record", "--args", json.dumps({"path": str(tmp_path / "ran")}))
    out = cli("work", "run", "--isolate=0")
    assert out.returncode == 0, out.stderr
    assert len(read_lines(str(tmp_path / "ran"))) == 1
    counts = cli.info()
    assert (counts["done"], counts["waiting"], counts["reserved"]) == (1, 0, 0)


def test_a_worker_killed_mid_job_has_its_job_reclaimed_and_run_again(tmp_path, driver_kind):
    cli = make_cli(tmp_path, driver_kind, ttr=1, attempts=2)
    runs = str(tmp_path / "runs")
    cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 30, "path": runs}))
    proc = cli.popen("work", "listen", "3", "--isolate=0")
    try:
        wait_until(lambda: read_lines(runs), message="the job to start")
    finally:
        kill9(proc)
    assert cli.info()["reserved"] == 1
    cli("work", "push", "tests.Noop")  # proof the queue keeps working around the stuck job
    # Past ttr + grace another worker reclaims it: attempt 2 runs (and fails again by TTR).
    wait_until(lambda: (cli("work", "run", "--isolate=1", "--max-seconds", "5").returncode == 0
                        and cli.info()["failed"] == 1), timeout=30, message="reclaim and final failure")
    starts = [line for line in read_lines(runs) if line.startswith("start")]
    assert [s.split()[2] for s in starts] == ["1", "2"]
    events = read_lines(str(cli.events))
    assert [e for e in events if e.startswith("afterError")] == [
        f"afterError {starts[0].split()[1]} 1 retry=1 TtrExceededError",
        f"afterError {starts[0].split()[1]} 2 retry=0 TtrExceededError",
    ]
    assert cli.info()["done"] == 1


def test_a_worker_killed_after_the_job_returned_but_before_ack_runs_it_again(tmp_path, driver_kind):
    cli = make_cli(tmp_path, driver_kind, ttr=1, attempts=2,
                   on={"afterExec": ["tests.sample_jobs:KillBeforeAck.after_exec"]})
    ran = str(tmp_path / "ran")
    cli("work", "push", "tests.Record", "--args", json.dumps({"path": ran}))
    out = cli("work", "run", "--isolate=0")
    assert out.returncode == -signal.SIGKILL
    assert len(read_lines(ran)) == 1 and cli.info()["reserved"] == 1
    wait_until(lambda: cli("work", "run", "--isolate=0").returncode == 0 and cli.info()["done"] == 1,
               timeout=30, message="the reclaimed job to be done")
    assert [line.split()[2] for line in read_lines(ran)] == ["1", "2"]  # at-least-once, attempt 2
    counts = cli.info()
    assert (counts["failed"], counts["reserved"], counts["waiting"]) == (0, 0, 0)


def test_attempts_exhausted_by_crashes_give_exactly_one_final_failure(tmp_path, driver_kind):
    cli = make_cli(tmp_path, driver_kind, ttr=1, attempts=2)
    runs = str(tmp_path / "runs")
    job_id = int(cli("work", "push", "tests.Suicide", "--args", json.dumps({"path": runs})).stdout)
    # No isolate: the job kills the worker itself, twice; reclaimers then decide.
    for _ in range(6):
        cli("work", "run", "--isolate=0", "--max-seconds", "3")
        if cli.info()["failed"] == 1:
            break
        time.sleep(0.5)
    assert cli.info()["failed"] == 1
    for _ in range(2):  # more workers later change nothing
        assert cli("work", "run", "--isolate=0").returncode == 0
    finals = [e for e in read_lines(str(cli.events)) if "retry=0" in e]
    assert finals == [f"afterError {job_id} 2 retry=0 TtrExceededError"]
    assert [line.split()[2] for line in read_lines(runs)] == ["1", "2"]
    entry = json.loads(cli("work", "failed", "show", str(job_id), "--json").stdout)
    assert entry["error_class"] == "TtrExceededError" and entry["attempts"] == 2 and not entry["unsettled"]
