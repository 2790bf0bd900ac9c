"""A config for dashboard tests: the publishing pipeline on ``sync`` queues (a publish runs inline)
and SQLite publish state, plus a ``work`` queue on Redis with a unique channel for the test jobs."""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import yaml

from pubq.app import App
from pubq.config import load_config
from pubq.publishing.preset import publishing_preset
from tests.drivers.backends import REDIS_URL
from tests.helpers import CREATED_CONFIGS, subprocess_env
from tests.publishing.support import douyin, pipeline_config, request_doc

__all__ = ["csrf_of", "dashboard_config", "make_client", "open_app", "request_doc"]


def dashboard_config(tmp_path: Path, *, fail: tuple[str, ...] = ("a2",), top: dict[str, Any] | None = None) -> Path:
    """Writes ``tmp_path/pubq.yaml`` and returns its path; its Redis keys go after the test."""
    cfg = pipeline_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}",
                          channel_types=douyin(tmp_path, fail=list(fail)))
    cfg["redis"] = REDIS_URL
    cfg["jobs"] = ["tests.sample_jobs"]
    cfg["queues"]["work"] = {
        "driver": "redis", "channel": f"pubq-test:dash:{uuid.uuid4().hex[:10]}", "ttr": 30, "attempts": 1,
        "retry": {"backoff": "fixed", "delay": 0, "jitter": False}, "grace": 0.2, "heartbeat": 0.5,
    }
    cfg.update(top or {})
    path = tmp_path / "pubq.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    CREATED_CONFIGS.append((path, subprocess_env()))
    return path


def open_app(path: Path) -> App:
    return App(load_config(path, env={}, preset=publishing_preset()))


def make_client(app: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
        from starlette.testclient import TestClient

        from pubq.dashboard import create_app

        return TestClient(create_app(app, **kwargs), follow_redirects=False)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "the page has no form with a CSRF token"
    return m.group(1)
