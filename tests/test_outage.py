"""Backend outages: a listening worker logs, backs off, reconnects and goes on; one-shot
commands give up after their retry budget with one line and exit 1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest

from tests.cli.conftest import Cli, write_config
from tests.helpers import subprocess_env, wait_until
from tests.sample_jobs import read_lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a free port, so it can be killed and restarted."""

    def __init__(self, tmp_path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=10, message="private redis-server to answer")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_listening_worker_survives_a_redis_restart_and_takes_new_jobs(tmp_path, redis_server):
    path, channel = write_config(tmp_path, "redis")
    cli = Cli(path=path, env=subprocess_env(PUBQ_REDIS_URL=redis_server.url), channel=channel,
              events=tmp_path / "events")
    ran = str(tmp_path / "ran")
    proc = cli.popen("work", "listen", "2", "--isolate=0")
    try:
        cli("work", "push", "tests.Record", "--args", json.dumps({"path": ran, "tag": "before"}))
        wait_until(lambda: read_lines(ran), message="the first job")
        redis_server.stop()
        time.sleep(2.0)
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
    path, channel = write_config(tmp_path, "redis")
    cli = Cli(path=path, env=subprocess_env(PUBQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"), channel=channel,
              events=tmp_path / "events")
    out = cli("work", "info")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1
    assert "unavailable" in out.stderr and "Traceback" not in out.stderr
