"""Stop signals as supervisor/systemd send them: finish the job, exit 0; idle → at once;
a second signal → hard stop with the job put back (attempt not counted)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.helpers import Cli, signal_handled, wait_started, wait_until
from tests.sample_jobs import read_lines


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    return Cli.create(tmp_path, request.param, attempts=3)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP])
def test_an_idle_listening_worker_exits_at_once_on_a_stop_signal(cli: Cli, sig):
    proc = cli.popen("work", "listen", "60", "--verbose", "--color=0")
    wait_started(proc)
    wait_until(lambda: cli.waiting_for_a_job(proc.pid), message="the worker to wait idle for a job")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=5)  # far below the 60 s wait
    assert proc.returncode == 0, err
    assert f"Worker stops: {signal.Signals(sig).name} received\n" in out and "Worker is stopped" in out


@pytest.mark.parametrize("isolate", ["--isolate=1", "--isolate=0"])
def test_a_busy_worker_finishes_its_job_then_exits_0(cli: Cli, tmp_path, isolate):
    runs = str(tmp_path / "runs")
    cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 1.0, "path": runs}))
    cli("work", "push", "tests.Noop")
    proc = cli.popen("work", "listen", "5", "--verbose", "--color=0", isolate)
    wait_started(proc)
    wait_until(lambda: read_lines(runs), message="the job to start")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert [line.split()[0] for line in read_lines(runs)] == ["start", "end"]
    counts = cli.info()
    assert (counts["done"], counts["waiting"], counts["reserved"]) == (1, 1, 0)  # the Noop was not taken


@pytest.mark.parametrize("isolate", ["--isolate=1", "--isolate=0"])
def test_a_second_signal_stops_hard_and_puts_the_job_back_uncounted(cli: Cli, tmp_path, isolate):
    runs = str(tmp_path / "runs")
    job_id = cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 30, "path": runs})).stdout.strip()
    proc = cli.popen("work", "listen", "5", isolate)
    wait_until(lambda: read_lines(runs), message="the job to start")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: signal_handled(proc.pid, signal.SIGTERM), message="the first SIGTERM to be handled")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert err == f"Second stop signal: job {job_id} (tests.Sleep) is put back to waiting; the worker stops.\n"
    counts = cli.info()
    assert (counts["waiting"], counts["reserved"], counts["done"], counts["failed"]) == (1, 0, 0, 0)
    assert read_lines(str(cli.events)) == []  # no afterError: the attempt did not fail
    # The next run is attempt 1 again.
    cli("work", "push", "tests.Noop")
    cli("work", "remove", job_id)
    assert "end" not in " ".join(read_lines(runs))


def test_with_verbose_a_second_signal_says_the_job_is_put_back_and_why_the_worker_stopped(cli: Cli, tmp_path):
    runs = str(tmp_path / "runs")
    job_id = cli("work", "push", "tests.Sleep", "--args", json.dumps({"seconds": 30, "path": runs})).stdout.strip()
    proc = cli.popen("work", "listen", "5", "-v", "--color=0")
    wait_until(lambda: read_lines(runs), message="the job to start")
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: signal_handled(proc.pid, signal.SIGINT), message="the first SIGINT to be handled")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")
    tail = [line.split(" - ", 1)[1] for line in out.splitlines()[-3:]]
    assert tail[:2] == ["Put back (second stop signal)", "Worker stops: second SIGINT received"]
    assert f"[{job_id}] tests.Sleep (attempt: 1, pid: {proc.pid}) - Put back (second stop signal)" in out


def test_max_seconds_and_max_jobs_end_a_listening_worker(cli: Cli):
    for _ in range(3):
        cli("work", "push", "tests.Noop")
    out = cli("work", "listen", "1", "--max-jobs", "2", "--isolate=0")
    assert out.returncode == 0
    assert cli.info()["done"] == 2
    t = time.monotonic()
    out = cli("work", "listen", "30", "--max-seconds", "1", "--isolate=0")
    assert out.returncode == 0 and time.monotonic() - t < 25
    assert cli.info()["done"] == 3


def test_memory_limit_stops_the_worker_after_a_job(cli: Cli):
    for _ in range(3):
        cli("work", "push", "tests.Noop")
    out = cli("work", "listen", "1", "--memory-limit", "1", "--isolate=0")
    assert out.returncode == 0
    assert cli.info()["done"] == 1 and cli.info()["waiting"] == 2
