"""Bad configuration: one line naming file, queue and key; exit 2; nothing runs."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import PUBQ, ROOT, subprocess_env


def run(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "pubq.yaml"
    path.write_text(text)
    return subprocess.run([*PUBQ, "--config", str(path), *args], capture_output=True, text=True,
                          env=subprocess_env(), cwd=ROOT, timeout=60)


BASE = "database: sqlite:///x.db\nqueues:\n  work:\n    driver: db\n"


@pytest.mark.parametrize("text, message", [
    ("queues: [1, 2\n", "invalid YAML (line 2, column 1)"),
    (BASE + "    ttl: 3\n", "queues.work.ttl: unknown key (allowed: attempts, behaviors, channel,"),
    (BASE + "    ttr: abc\n", "queues.work.ttr: must be an integer from 1 to 604,800 s (got 'abc')"),
    (BASE + "    attempts: 0\n", "queues.work.attempts: must be an integer from 1 to 1,000 (got 0)"),
    (BASE + "    on:\n      afterExec: nowhere.module:Handler.run\n",
     "queues.work.on.afterExec: cannot import handler 'nowhere.module:Handler.run'"),
    (BASE + "    on:\n      afterWhatever: tests.sample_jobs:Recorder.after_exec\n",
     "queues.work.on.afterWhatever: unknown key"),
    (BASE + "    driver: redis\n", "queues.work.driver: driver redis needs a top-level 'redis: redis://…' URL"),
    ("queues:\n  task:\n    driver: db\n", "queues.task: 'task' is a pubq command and cannot be a queue name"),
    ("database: ftp://x\nqueues:\n  work: {}\n", "database: must be a URL starting with sqlite://"),
    ("surprise: 1\nqueues:\n  work: {}\n", "surprise: unknown key"),
    ("queues: {}\n", "queues: at least one queue must be configured"),
])
def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path, text, message):
    out = run(tmp_path, text, "work", "info")
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"Error: {tmp_path / 'pubq.yaml'}: ")
    assert message in out.stderr


def test_a_missing_config_file_is_named(tmp_path):
    out = subprocess.run([*PUBQ, "--config", str(tmp_path / "nope.yaml"), "queues"], capture_output=True,
                         text=True, env=subprocess_env(), cwd=ROOT, timeout=60)
    assert (out.returncode, out.stderr) == (2, f"Error: {tmp_path / 'nope.yaml'}: config file not found\n")


def test_env_overrides_change_urls_not_drivers(tmp_path):
    from pubq.config import load_config

    path = tmp_path / "pubq.yaml"
    path.write_text("redis: redis://127.0.0.1:6379/0\nqueues:\n  a: {}\n  b: {driver: db}\n")
    cfg = load_config(path, env={"PUBQ_REDIS_URL": "redis://127.0.0.1:6379/5",
                                 "PUBQ_DATABASE_URL": "sqlite:////tmp/other.db"})
    assert cfg.queues["a"].driver == "redis" and cfg.queues["a"].url.endswith("/5")
    assert cfg.queues["b"].driver == "db" and cfg.queues["b"].url == "sqlite:////tmp/other.db"


def test_relative_sqlite_paths_resolve_next_to_the_config_file(tmp_path):
    from pubq.config import load_config

    path = tmp_path / "pubq.yaml"
    path.write_text("database: sqlite:///state.db\nqueues:\n  a: {}\n")
    cfg = load_config(path, env={})
    assert cfg.database == f"sqlite:///{tmp_path / 'state.db'}"
    assert cfg.queues["a"].driver == "db"
