"""The publishing pipeline through the real CLI (``python -m pubq`` in a subprocess) and real queues.

Queues run on the db driver (SQLite) and on Redis (unique channels, cleared afterwards); publish
state is SQLite in the test's directory. The platform and the source's callback endpoint are one
local HTTP server in the test process.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pubq.publishing.preset import pipeline_queues as default_pipeline_queues
from tests.drivers.backends import REDIS_URL
from tests.helpers import PUBQ, ROOT, drop_redis_queues, subprocess_env
from tests.publishing.httpserver import Reply, ScriptedServer

QUEUES = ("copy-asset", "upload-asset", "pub-article", "source-callback")
ACCOUNTS = ["d1", "d2", "d3", "d4", "d5"]


class Platform:
    """Platform + callback receiver. ``fail`` maps account → reply for its uploads."""

    def __init__(self) -> None:
        self.fail: dict[str, Reply] = {}
        self.callbacks: list[Any] = []
        self.items = 0

    def __call__(self, req: Any) -> Reply:
        if req.path.startswith("/callback"):
            self.callbacks.append(req)
            return Reply(200, b"ok")
        account = re.match(r"^/accounts/([^/]+)/", req.path).group(1)
        if req.path.endswith("/media"):
            if account in self.fail:
                return self.fail[account]
            return Reply(200, json.dumps({"media_id": f"m-{account}"}).encode())
        if req.path.endswith("/items"):
            self.items += 1
            return Reply(200, json.dumps({"item_id": f"item-{account}-{self.items}"}).encode())
        return Reply(200, b'{"status": "review"}')


@dataclass
class Pipeline:
    dir: Path
    config: Path
    env: dict[str, str]
    platform: Platform
    url: str
    docs: list[Path] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([*PUBQ, "--config", str(self.config), *args], capture_output=True, text=True,
                              env=self.env, cwd=ROOT, timeout=timeout)

    def ok(self, *args: str) -> str:
        out = self(*args)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def info(self, queue: str) -> dict[str, int]:
        data = json.loads(self.ok(queue, "info", "--json"))
        return {k: data[k] for k in ("waiting", "delayed", "reserved", "done", "failed")}

    def request(self, accounts: list[str], **extra: Any) -> Path:
        (self.dir / "sources").mkdir(exist_ok=True)
        (self.dir / "sources" / "clip.mp4").write_bytes(b"video" * 2000)
        doc = {"uuid": uuid.uuid4().hex, "source": "vms", "channel_type": "douyin", "title": "Video",
               "callback_url": f"{self.url}/callback", "accounts": accounts,
               "assets": [{"type": "video", "url": "clip.mp4", "enabled": True}], **extra}
        path = self.dir / f"request-{len(self.docs)}.json"
        path.write_text(json.dumps(doc))
        self.docs.append(path)
        return path

    def publish(self, accounts: list[str], **extra: Any) -> int:
        out = self.ok("publish", str(self.request(accounts, **extra)), "--json")
        return json.loads(out)["task_id"]

    def show(self, task_id: int) -> dict[str, Any]:
        return json.loads(self.ok("task", "show", str(task_id), "--json"))

    def trace(self, task_id: int) -> list[dict[str, Any]]:
        return json.loads(self.ok("task", "trace", str(task_id), "--json"))

    def state_db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.dir / "state.db")


@pytest.fixture(params=["db", "redis"])
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    driver = request.param
    tag = uuid.uuid4().hex[:10]
    queues = default_pipeline_queues()
    for name, q in queues.items():
        q["driver"] = driver
        q["channel"] = f"pubq-test:acc:{tag}:{name}"
        q["retry"] = {"backoff": "fixed", "delay": 0, "jitter": False}
        q["grace"] = 0.5
    platform = Platform()
    with ScriptedServer(platform) as server:
        config: dict[str, Any] = {
            "database": "sqlite:///state.db",
            "queue_database": "sqlite:///queues.db",
            "log": {"file": "system.log", "level": "INFO"},
            "queues": queues,
            "publishing": {
                "source_root": "sources",
                "publish_dir": "publish",
                "callback": {"secret": "${PUBQ_TEST_CALLBACK_SECRET:-acceptance-secret}",
                             "allow_hosts": ["127.0.0.1"], "max_seconds": 2, "timeout": 2},
                "channel_types": {"douyin": {
                    "adapter": "http",
                    "options": {"base_url": server.url, "timeout": 2},
                    "accounts": [{"id": a, "credentials": {"token": "${PUBQ_TEST_DOUYIN_TOKEN:-tok}"}}
                                 for a in ACCOUNTS],
                }},
            },
        }
        if driver == "redis":
            config["redis"] = REDIS_URL
        path = tmp_path / "pubq.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        p = Pipeline(tmp_path, path, subprocess_env(), platform, server.url)
        try:
            yield p
        finally:
            drop_redis_queues(path, p.env)  # every key, the counters too (a clear keeps those)
