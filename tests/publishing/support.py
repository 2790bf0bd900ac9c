"""Building blocks of the publishing tests: configs, apps on the real queue core, request documents.

Tests run the pipeline through :class:`pubq.app.App` with the real jobs and handlers. Queues use the
``sync`` driver, which runs each job inside its ``push()``: publishing a task runs the whole
pipeline, depth first, before ``submit`` returns. A test that must stop between two steps *holds*
some queues: those get the ``db`` driver (SQLite in the test's directory), keep their jobs until the
test runs them with :func:`run_queue`, and push their follow-ups to the sync queues as usual.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pubq.app import App
from pubq.config import parse_config
from pubq.publishing.preset import pipeline_queues as default_pipeline_queues
from pubq.publishing.preset import publishing_preset
from pubq.publishing.settings import PublishingSettings, load_settings
from pubq.worker import Worker

from .recorder import HANDLERS

POSTGRES_URL = os.environ.get("PUBQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PUBQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SERVER_URLS = {"postgres": POSTGRES_URL, "mysql": MYSQL_URL}
DB_KINDS = ("sqlite", "postgres", "mysql")
#: One prefix per test session: tables of concurrent sessions never collide.
SESSION_PREFIX = f"pt{uuid.uuid4().hex[:8]}_"
ACCOUNTS = [f"a{i}" for i in range(1, 9)]
QUEUE_ORDER = ("copy-asset", "upload-asset", "pub-article", "source-callback")


def douyin(tmp_path: Path, *, fail: list[str] | None = None, review: str = "review") -> dict[str, Any]:
    """The ``channel_types`` section: filesystem adapter ``douyin`` with accounts a1..a8."""
    return {"douyin": {
        "adapter": "filesystem",
        "options": {"dir": str(tmp_path / "platform"), "fail_accounts": fail or [], "review": review},
        "accounts": [{"id": a, "name": f"Account {a}"} for a in ACCOUNTS],
    }}


def publishing_config(tmp_path: Path, *, prefix: str = SESSION_PREFIX, **extra: Any) -> dict[str, Any]:
    """The ``publishing:`` section; keyword arguments replace its keys."""
    config: dict[str, Any] = {
        "table_prefix": prefix,
        "source_root": str(tmp_path / "sources"),
        "publish_dir": str(tmp_path / "publish"),
        "sources": {"allow_hosts": ["127.0.0.1"], "max_bytes": 1024 * 1024, "timeout": 5},
        "callback": {"secret": "${PUBQ_TEST_CALLBACK_SECRET:-test-secret}", "allow_hosts": ["127.0.0.1"],
                     "max_seconds": 3, "timeout": 2},
        "channel_types": douyin(tmp_path),
    }
    config.update(extra)
    return config


def make_settings(tmp_path: Path, **extra: Any) -> PublishingSettings:
    (tmp_path / "sources").mkdir(exist_ok=True)
    return load_settings(publishing_config(tmp_path, **extra), tmp_path)


def pipeline_config(tmp_path: Path, database_url: str, *, driver: str = "sync", held: tuple[str, ...] = (),
                    **publishing: Any) -> dict[str, Any]:
    """A whole config: the four pipeline queues with their real handlers (plus the recorder), on
    ``driver`` except the ``held`` ones (``db``), and publish state in ``database_url``."""
    queues = default_pipeline_queues()
    run = uuid.uuid4().hex[:8]
    for name, queue in queues.items():
        queue["driver"] = "db" if name in held else driver
        queue["channel"] = f"t-{run}-{name}"
        queue["retry"] = {"backoff": "fixed", "delay": 0, "jitter": False}
        for event, ref in HANDLERS.items():
            own = queue["on"].get(event)
            queue["on"][event] = [own, ref] if own else [ref]
    (tmp_path / "sources").mkdir(exist_ok=True)
    return {"database": database_url, "queue_database": f"sqlite:///{tmp_path / 'queues.db'}",
            "queues": queues, "publishing": publishing_config(tmp_path, **publishing)}


def pipeline_app(tmp_path: Path, database_url: str, **options: Any) -> App:
    """An App over :func:`pipeline_config` (close it when done)."""
    return App(parse_config(pipeline_config(tmp_path, database_url, **options), None, tmp_path,
                            preset=publishing_preset()))


def run_queue(app: App, queue: str) -> None:
    """Run every due job of a queue, as ``pubq <queue> run --isolate=0`` does: the jobs of a held
    queue, or retries that a sync queue left waiting (it runs jobs only inside a push)."""
    Worker(app.queue(queue), isolate=False, install_signals=False).run()


def follow_up_failures(app: App, queue: str) -> list[tuple[str, str]]:
    """(event, error class) of each handler that raised after a job of ``queue`` ended, oldest first
    (what ``pubq <queue> failed list --follow-up`` lists)."""
    return [(f.event, f.error_class) for f in reversed(app.queue(queue).driver.follow_up_list())]


def write_source(tmp_path: Path, name: str = "clip.mp4", data: bytes = b"video-bytes" * 100) -> str:
    path = tmp_path / "sources" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def request_doc(tmp_path: Path, *, accounts: list[str] | None = None, uid: str | None = None,
                callback_url: str | None = None, **extra: Any) -> dict[str, Any]:
    """A valid publish request with one video asset under the source root."""
    doc = {
        "uuid": uid or uuid.uuid4().hex,
        "source": "vms",
        "channel_type": "douyin",
        "title": "A video",
        "body": "Body text",
        "accounts": accounts or ["a1", "a2"],
        "assets": [{"type": "video", "url": write_source(tmp_path), "enabled": True}],
    }
    if callback_url:
        doc["callback_url"] = callback_url
    doc.update(extra)
    return doc
