"""A config file per test and a helper that runs ``python -m pubq`` as a user would."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.drivers.backends import REDIS_URL
from tests.helpers import PUBQ, ROOT, subprocess_env


@dataclass
class Cli:
    path: Path
    env: dict[str, str]
    channel: str
    events: Path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*PUBQ, "--config", str(self.path), *args],
            input=input, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*PUBQ, "--config", str(self.path), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT,
        )


def write_config(tmp_path: Path, driver: str, **queue_overrides) -> tuple[Path, str]:
    channel = f"pubq-test:cli:{uuid.uuid4().hex[:10]}"
    queue = {
        "driver": "redis" if driver == "redis" else "db",
        "channel": channel,
        "ttr": 30,
        "attempts": 1,
        "retry": {"backoff": "fixed", "delay": 0, "jitter": False},
        "on": {
            "afterExec": "tests.sample_jobs:Recorder.after_exec",
            "afterError": "tests.sample_jobs:Recorder.after_error",
        },
        "behaviors": ["log"],
        "grace": 0.2,
    }
    queue.update(queue_overrides)
    data = {
        "database": f"sqlite:///{tmp_path / 'state.db'}",
        "jobs": ["tests.sample_jobs"],
        "queues": {"work": queue},
        "log": {"file": str(tmp_path / "system.log"), "level": "INFO"},
    }
    if driver == "redis":
        data["redis"] = REDIS_URL
    else:
        data["queue_database"] = f"sqlite:///{tmp_path / 'queue.db'}"
    path = tmp_path / "pubq.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, channel


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    path, channel = write_config(tmp_path, request.param)
    events = tmp_path / "events"
    c = Cli(path=path, env=subprocess_env(PUBQ_TEST_EVENTS=str(events)), channel=channel, events=events)
    yield c
    c("work", "clear", "--yes")
