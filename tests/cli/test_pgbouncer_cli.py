"""A user's config pointed at PostgreSQL behind PgBouncer: push, ``run`` (fork per job) and ``listen``
work through session and transaction pooling, with only the ``queue_database`` URL changed.

Each test makes a database of its own, a PgBouncer of its own in front of it (both gone after the
test), and a config whose queue database comes from ``$PUBQ_QUEUE_DATABASE_URL``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.drivers.backends import POSTGRES_URL
from tests.helpers import Cli, PrivatePgBouncer, fresh_pg_database, wait_until
from tests.sample_jobs import read_lines


def _waiting(pid: int) -> bool:
    """Whether the worker's main thread sleeps between polls (transaction pooling) or in select() on
    its LISTEN connection (session pooling)."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    except FileNotFoundError:
        return False
    return wchan == "hrtimer_nanosleep" or wchan.startswith("poll_schedule_timeout")


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_push_run_and_listen_through_pgbouncer(mode: str, tmp_path: Path):
    url, drop = fresh_pg_database(POSTGRES_URL, "pubq_pgb")
    bouncer = PrivatePgBouncer(url, transaction_pool_size=2)
    try:
        bouncer.start()
        cli = Cli.create(tmp_path, "sqlite", env={"PUBQ_QUEUE_DATABASE_URL": bouncer.url(mode)})
        out = tmp_path / "ran.txt"
        for tag in ("a", "b", "c"):
            pushed = cli("work", "push", "tests.Record", "--args", json.dumps({"path": str(out), "tag": tag}))
            assert pushed.returncode == 0, pushed.stderr
        ran = cli("work", "run")  # isolate: each job in a forked child, the parent's connection forgotten
        assert ran.returncode == 0, ran.stderr
        assert sorted((line.split()[0], line.split()[2]) for line in read_lines(str(out))) == [
            ("a", "1"), ("b", "1"), ("c", "1")]  # tag, attempt

        worker = cli.popen("work", "listen", "1")
        try:
            wait_until(lambda: worker.poll() is not None or _waiting(worker.pid), timeout=60,
                       message="the listening worker to wait for a job")
            assert worker.poll() is None, worker.communicate()[1]
            pushed = cli("work", "push", "tests.Record", "--args", json.dumps({"path": str(out), "tag": "late"}))
            assert pushed.returncode == 0, pushed.stderr
            wait_until(lambda: any(line.startswith("late ") for line in read_lines(str(out))), timeout=30,
                       message="the listener to run the job")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.communicate(timeout=30)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        info = json.loads(cli("work", "info", "--json").stdout)
        assert info["done"] == 4 and info["waiting"] == 0, info
    finally:
        bouncer.cleanup()
        drop()
