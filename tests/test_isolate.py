"""Isolate mode's child processes: a fresh process per job, the standby forked ahead, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import pytest

from pubq import Job
from pubq.drivers.memory import MemoryDriver
from pubq.isolate import Isolator
from pubq.job import JobRegistry
from pubq.queue import Queue
from pubq.runner import JobRunner
from pubq.worker import Worker
from tests.helpers import make_queue, wait_until
from tests.sample_jobs import RecordJob, read_lines


def no_children_left() -> bool:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return pid == 0 and not _children_of(os.getpid())


def _children_of(pid: int) -> list[int]:
    """``pid``'s child processes running Python (forks and ``sys.executable`` runs): servers this test
    process started for the session (redis-server, pgbouncer) are not a job's leftovers."""
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as fh:
        children = [int(p) for p in fh.read().split()]
    python = os.path.realpath("/proc/self/exe")
    found = []
    for child in children:
        try:
            if os.path.realpath(f"/proc/{child}/exe") == python:
                found.append(child)
        except OSError:
            continue  # gone meanwhile
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_every_job_gets_a_process_of_its_own_and_none_is_left_behind(tmp_path):
    q = make_queue(MemoryDriver("iso"))
    log = str(tmp_path / "runs")
    for i in range(6):
        q.push(RecordJob(path=log, tag=f"j{i}"))
    assert Worker(q, isolate=True, install_signals=False).run() == 0
    pids = [int(line.split()[3]) for line in read_lines(log)]
    assert [line.split()[0] for line in read_lines(log)] == [f"j{i}" for i in range(6)]
    assert len(set(pids)) == 6 and os.getpid() not in pids
    assert no_children_left()


def test_a_standby_that_died_before_its_job_is_replaced(tmp_path):
    q = make_queue(MemoryDriver("iso"))
    runner = JobRunner(q)
    log = str(tmp_path / "runs")
    isolator = Isolator(runner, keep_ahead=lambda: True)
    try:
        for tag in ("a", "b"):
            q.push(RecordJob(path=log, tag=tag))
        first = runner.begin(q.driver.reserve(0))
        assert isolator.run(first, 10).ok
        standby = isolator._standby
        assert standby is not None and _alive(standby.pid)
        os.kill(standby.pid, signal.SIGKILL)
        wait_until(lambda: not _alive(standby.pid), message="standby killed")
        second = runner.begin(q.driver.reserve(0))
        outcome = isolator.run(second, 10)
        assert outcome.ok and outcome.result == "b"
    finally:
        isolator.close()
    assert [line.split()[0] for line in read_lines(log)] == ["a", "b"]
    assert no_children_left()


def test_a_job_that_will_not_pickle_still_runs_in_a_child(tmp_path):
    @dataclass
    class LocalJob(Job):  # defined in a function: pickle can't name it
        name = "tests.Local"
        path: str = ""

        def execute(self, ctx):
            with open(self.path, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return "local"

    base = make_queue(MemoryDriver("iso"))
    q = Queue(base.config, base.driver, JobRegistry([LocalJob]))
    log = tmp_path / "runs"
    q.push(LocalJob(path=str(log)))
    q.push(LocalJob(path=str(log)))
    assert Worker(q, isolate=True, install_signals=False).run() == 0
    pids = [int(p) for p in log.read_text().split()]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert q.driver.counts().done == 2
    assert no_children_left()


def test_the_standby_of_a_killed_worker_exits_on_its_own(tmp_path):
    """A SIGKILLed worker cannot stop its standby child; the child sees the pipe close and exits."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        import pubq.worker
        from pubq.drivers.memory import MemoryDriver
        from pubq.worker import Worker
        from tests.helpers import make_queue
        from tests.sample_jobs import RecordJob
        pubq.worker.standby_pays_off = lambda: True  # also when this test runs pinned to one CPU
        q = make_queue(MemoryDriver("iso"))
        q.push(RecordJob(path={str(tmp_path / "runs")!r}, tag="one"))
        print("ready", flush=True)
        Worker(q, isolate=True, install_signals=False).listen(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        wait_until(lambda: (tmp_path / "runs").exists() and _children_of(proc.pid), timeout=20,
                   message="job run and standby forked")
        standby = _children_of(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in standby) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in standby), f"standby {standby} outlived its worker"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_running_job_dies_with_its_killed_worker(tmp_path):
    """Nobody is left to report a killed worker's job to, and it will be reclaimed and run again."""
    runs = tmp_path / "runs"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from pubq.drivers.memory import MemoryDriver
        from pubq.worker import Worker
        from tests.helpers import make_queue
        from tests.sample_jobs import SleepJob
        q = make_queue(MemoryDriver("iso"))
        q.push(SleepJob(seconds=60, path={str(runs)!r}))
        Worker(q, isolate=True, install_signals=False).run()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_until(lambda: runs.exists() and runs.read_text().startswith("start"), timeout=20,
                   message="job started")
        job_pid = int(read_lines(str(runs))[0].split()[3])
        assert job_pid != proc.pid and _alive(job_pid)
        proc.kill()
        proc.wait(timeout=10)
        wait_until(lambda: not _alive(job_pid), timeout=10, message="the job's process to die with its worker")
    finally:
        if proc.poll() is None:
            proc.kill()


def count_forks(monkeypatch) -> list[int]:
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork():
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    return forks


@pytest.mark.parametrize(("cpus", "expected_forks"), [({0, 1}, 4), ({0}, 3)])
def test_the_standby_is_forked_ahead_only_when_the_worker_has_more_than_one_cpu(
        tmp_path, monkeypatch, cpus, expected_forks):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus)
    forks = count_forks(monkeypatch)
    q = make_queue(MemoryDriver("iso"))
    for i in range(3):
        q.push(RecordJob(path=str(tmp_path / "runs"), tag=f"j{i}"))
    Worker(q, isolate=True, install_signals=False).run()
    assert len(read_lines(str(tmp_path / "runs"))) == 3
    # two CPUs: a child for the first job, then one forked ahead during each job (the last unused)
    assert len(forks) == expected_forks
    assert no_children_left()


@pytest.mark.parametrize("max_jobs", [1, 3])
def test_no_standby_is_forked_for_a_job_that_will_not_come(tmp_path, monkeypatch, max_jobs):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    forks = count_forks(monkeypatch)
    q = make_queue(MemoryDriver("iso"))
    for i in range(5):
        q.push(RecordJob(path=str(tmp_path / "runs"), tag=f"j{i}"))
    Worker(q, isolate=True, install_signals=False, max_jobs=max_jobs).run()
    assert len(read_lines(str(tmp_path / "runs"))) == max_jobs
    assert len(forks) == max_jobs  # the standby forked during the last job would run nothing
    assert no_children_left()


def test_what_a_job_prints_is_written_once_and_the_worker_output_is_not_repeated():
    script = textwrap.dedent(f"""
        import sys
        from dataclasses import dataclass
        sys.path.insert(0, {os.getcwd()!r})
        import pubq.worker
        from pubq import Job
        from pubq.drivers.memory import MemoryDriver
        from pubq.job import JobRegistry
        from pubq.queue import Queue
        from pubq.worker import Worker
        from tests.helpers import make_queue

        @dataclass
        class PrintJob(Job):
            name = "tests.Print"
            tag: str = ""

            def execute(self, ctx):
                print("job", self.tag)

        pubq.worker.standby_pays_off = lambda: True
        base = make_queue(MemoryDriver("iso"))
        q = Queue(base.config, base.driver, JobRegistry([PrintJob]))
        for tag in "abc":
            q.push(PrintJob(tag=tag))
        print("worker output before the jobs")
        Worker(q, isolate=True, install_signals=False).run()
        print("after")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered, as when piped
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sorted(lines) == sorted(["worker output before the jobs", "job a", "job b", "job c", "after"]), lines
    assert lines[0] == "worker output before the jobs" and lines[-1] == "after"
