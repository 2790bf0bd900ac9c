"""Backend outages: a listening worker logs, backs off, reconnects and goes on; one-shot
commands give up after their retry budget with one line and exit 1."""

from __future__ import annotations

import json
import signal

import pytest

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
    proc = cli.popen("work", "listen", "2", "--isolate=0")
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
        proc.communicate(timeout=40)
    assert proc.returncode == 0
    log = (tmp_path / "system.log").read_text()
    assert "retrying with backoff" in log and "backend is back" in log


def test_a_one_shot_command_gives_up_after_its_budget_with_one_line(tmp_path):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                     top={"give_up_after": 1})
    out = cli("work", "info")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1
    assert "unavailable" in out.stderr and "Traceback" not in out.stderr
