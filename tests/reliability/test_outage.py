"""Backend outages: a listening worker logs, backs off, reconnects and goes on; one-shot
commands give up after their retry budget with one line and exit 1."""

from __future__ import annotations

import json
import re
import signal

import pytest
import yaml

from tests.helpers import Cli, PrivateRedis, free_port, wait_until
from tests.sample_jobs import read_lines


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of the test's own on a free port, so it can be killed and restarted."""
    with PrivateRedis(dir=tmp_path) as server:
        yield server


def test_a_listening_worker_survives_a_redis_restart_and_takes_new_jobs(tmp_path, redis_server):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": redis_server.url})
    ran = str(tmp_path / "ran")
    proc = cli.popen("work", "listen", "2", "--isolate=0", "-v", "--color=0")
    try:
        cli("work", "push", "tests.Record", "--args", json.dumps({"path": ran, "tag": "before"}))
        wait_until(lambda: read_lines(ran), message="the first job")
        redis_server.kill()
        log = tmp_path / "system.log"
        wait_until(lambda: log.exists() and "retrying with backoff" in log.read_text(), message="the worker to meet the outage")
        assert proc.poll() is None, "the worker must not exit on an outage"
        redis_server.start()
        assert cli("work", "push", "tests.Record", "--args", json.dumps({"path": ran, "tag": "after"})).returncode == 0
        wait_until(lambda: len(read_lines(ran)) == 2, timeout=40, message="the job pushed after the restart")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0
    log = (tmp_path / "system.log").read_text()
    assert log.count("queue work: backend lost") == 1 and log.count("queue work: backend is back after") == 1
    # The console says it too, once each way, in the verbose lines' shape.
    lost = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[pid: \d+\] - Backend lost: redis: .+; retrying with backoff$",
                      out, re.M)
    back = re.findall(r"^\S+ \S+ \[pid: \d+\] - Backend is back after \d+\.\d s$", out, re.M)
    assert (len(lost), len(back)) == (1, 1), out
    assert out.index("Backend lost") < out.index("Backend is back")


def test_a_one_shot_command_gives_up_after_its_budget_with_one_line_naming_the_queue_once(tmp_path):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                     top={"give_up_after": 1})
    out = cli("work", "info")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: queue work: backend unavailable for 1 s: redis: ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert cli.channel not in out.stderr  # the queue is named, once; the channel is not


@pytest.mark.parametrize("extra, budget", [((), 2), (("--max-seconds", "1"), 1)])
def test_run_with_redis_down_says_so_and_gives_up_within_one_budget_for_reclaim_and_reserve(tmp_path, extra,
                                                                                             budget):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                     top={"give_up_after": 2})
    out = cli("work", "run", "-v", "--color=0", *extra)
    assert out.returncode == 1
    assert out.stderr == "".join(re.findall(r"^Error: .*\n", out.stderr, re.M))  # one line
    assert out.stderr.startswith(f"Error: queue work: backend unavailable for {budget} s: redis: ")
    lines = [line.split(" - ", 1)[1] for line in out.stdout.splitlines()]
    assert lines[0] == "Worker is started"
    assert lines[1].startswith("Backend lost: redis: ") and lines[1].endswith("; retrying with backoff")
    assert lines[2:] == ["Worker stops: the backend is unavailable", lines[-1]]
    assert lines[-1].startswith("Worker is stopped (")
    assert (tmp_path / "system.log").read_text().count("queue work: backend lost") == 1


def test_listen_never_gives_up_on_an_outage_but_ends_normally_at_max_seconds(tmp_path):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                     top={"give_up_after": 0.5})  # listen ignores it
    out = cli("work", "listen", "1", "-v", "--color=0", "--max-seconds", "2")
    assert (out.returncode, out.stderr) == (0, "")
    lines = [line.split(" - ", 1)[1] for line in out.stdout.splitlines()]
    assert lines[1].startswith("Backend lost: ") and lines[2] == "Worker stops: --max-seconds 2 reached"


def test_an_idle_worker_stops_at_once_while_redis_is_down(tmp_path, redis_server):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": redis_server.url})
    proc = cli.popen("work", "listen", "1", "-v", "--color=0")
    try:
        wait_until(lambda: "Worker is started" in proc.stdout.readline(), message="worker start")
        redis_server.kill()
        wait_until(lambda: "Backend lost" in proc.stdout.readline(), message="the worker to meet the outage")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)  # far below the 30 s backoff cap
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Worker stops: SIGTERM received" in out


def test_an_idle_worker_stops_at_once_while_redis_hangs(tmp_path, redis_server):
    """A server that accepts but never answers (stopped, a dead link): reads block with no timeout."""
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": redis_server.url})
    proc = cli.popen("work", "listen", "1", "-v", "--color=0")
    try:
        wait_until(lambda: "Worker is started" in proc.stdout.readline(), message="worker start")
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=5)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Worker is stopped" in out


def test_queues_asks_every_queue_at_once_names_each_reason_and_exits_1(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": dead}, top={"give_up_after": 3})
    config = yaml.safe_load(cli.path.read_text())
    for name in ("second", "third", "fourth"):
        config["queues"][name] = {**config["queues"]["work"], "channel": f"{cli.channel}:{name}"}
    config["queues"]["local"] = {"driver": "db", "channel": "local"}
    cli.path.write_text(yaml.safe_dump(config))
    out = cli("queues", timeout=10)  # four 3 s budgets one after the other would not fit
    assert out.returncode == 1
    errors = out.stderr.splitlines()
    assert sorted(e.split(":")[1] for e in errors) == [" queue fourth", " queue second", " queue third",
                                                       " queue work"]
    assert all(" backend unavailable for 3 s: redis: " in e for e in errors)
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert rows["work"][3:] == ["?"] * 5 and rows["local"][3:] == ["0"] * 5
