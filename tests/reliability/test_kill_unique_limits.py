"""SIGKILL a ``pubq work listen`` worker holding a unique key or a limit slot (issue 16).

* A unique key stays held while the killed worker's job is reserved, and is released when a
  reclaimer ends that job (its last attempt: a final failure): a push of the key then makes a new job.
* A concurrency slot held by the killed worker stops the key's next job until a reclaimer takes
  the lost job (the slot goes with its lease), then that key-mate runs.

Both on Redis and on the db driver (SQLite), through the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.helpers import Cli, wait_until
from tests.sample_jobs import read_lines


@pytest.fixture(params=["redis", "sqlite"])
def backend(request):
    return request.param


def _kill9(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _started_then_killed(cli: Cli, runs: str) -> None:
    """A listening worker starts the first job; SIGKILL it mid-job (the job stays reserved)."""
    proc = cli.popen("work", "listen", "30", "--isolate=0")
    try:
        wait_until(lambda: read_lines(runs), timeout=30, message="the job to start")
    finally:
        _kill9(proc)


def test_a_unique_key_is_held_until_the_reclaimer_ends_the_killed_job(tmp_path, backend) -> None:
    cli = Cli.create(tmp_path, backend, ttr=3, attempts=1)
    runs = str(tmp_path / "runs")
    args = json.dumps({"seconds": 60, "path": runs})
    first = cli("work", "push", "tests.Sleep", "--args", args, "--unique-key", "report:9")
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    _started_then_killed(cli, runs)
    assert cli.info()["reserved"] == 1
    again = cli("work", "push", "tests.Sleep", "--args", args, "--unique-key", "report:9")
    assert again.returncode == 0 and again.stdout == f"Job {job_id} already queued (unique key report:9)\n"
    # past TTR + grace a worker's reclaim sweep ends the lost job (attempts spent: final failure)
    wait_until(lambda: cli("work", "run", "--isolate=0").returncode == 0 and cli.info()["failed"] == 1,
               timeout=30, message="the lost job to be reclaimed and failed")
    after = cli("work", "push", "tests.Noop", "--unique-key", "report:9")
    assert after.returncode == 0 and after.stdout.strip().isdigit() and after.stdout.strip() != job_id, after.stdout
    assert [line.split()[1] for line in read_lines(runs) if line.startswith("start")] == [job_id]


def test_a_limit_slot_of_a_killed_worker_is_freed_by_reclaim(tmp_path, backend) -> None:
    # TTR 10 s: the kill, the push and the first run (three Python start-ups) must end inside it even
    # on a loaded machine, or that run's reclaim sweep already frees the slot.
    cli = Cli.create(tmp_path, backend, ttr=10, attempts=1, limits={"key": "{path}", "concurrency": 1})
    runs = str(tmp_path / "runs")
    lost = cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 60, "path": runs})).stdout.strip()
    _started_then_killed(cli, runs)
    mate = cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 0, "path": runs})).stdout.strip()
    # At once (the lost job's lease is still current): the key-mate is refused, not run.
    out = cli("work", "run", "--isolate=0")
    assert out.returncode == 0, out.stderr
    info = cli.info()
    assert info["limited"] >= 1 and info["done"] == 0 and info["reserved"] == 1
    assert [line.split()[1] for line in read_lines(runs) if line.startswith("start")] == [lost]
    # Past TTR + grace a reclaimer takes the lost job: its slot goes with its lease, the key-mate runs.
    wait_until(lambda: cli("work", "run", "--isolate=0").returncode == 0 and cli.info()["done"] == 1,
               timeout=40, message="the key-mate to run once the lost job was reclaimed")
    info = cli.info()
    assert (info["failed"], info["reserved"], info["waiting"], info["delayed"]) == (1, 0, 0, 0)
    ended = [line.split()[1] for line in read_lines(runs) if line.startswith("end")]
    assert ended == [mate]
