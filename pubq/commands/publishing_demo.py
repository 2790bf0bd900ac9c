"""``pubq demo``: a self-contained run of the whole pipeline inside one directory."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from ..publishing.preset import pipeline_queues

#: A 1×1 transparent PNG, so the demo's image is a real image.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)
QUEUE_ORDER = ("copy-asset", "upload-asset", "pub-article", "source-callback")


def demo_config(accounts: list[str], failing: str) -> dict[str, Any]:
    queues = pipeline_queues()
    for q in queues.values():
        q["driver"] = "db"
        q["retry"] = {"backoff": "fixed", "delay": 1, "jitter": False}
    return {
        "database": "sqlite:///state.db",
        "queue_database": "sqlite:///queues.db",
        "log": {"file": "pubq.log", "level": "INFO"},
        "queues": queues,
        "publishing": {
            "source_root": "sources",
            "publish_dir": "publish",
            "callback": {"secret": "${PUBQ_DEMO_CALLBACK_SECRET:-demo-secret}"},
            "channel_types": {"demo": {
                "adapter": "filesystem",
                "options": {"dir": "platform", "fail_accounts": [failing], "review": "review"},
                "rate_limit": {"rate": 50, "burst": 50},
                "accounts": [{"id": a, "name": f"Demo account {a}"} for a in accounts],
            }},
        },
    }


def run_demo(directory: Path, *, accounts: int = 3, timeout: float = 60.0) -> dict[str, Any]:
    """Write config and sources into ``directory``, publish, drain every queue, return the task."""
    from ..app import App
    from ..config import load_config
    from ..logs import configure_logging
    from ..publishing.service import service_for
    from ..runner import JobRunner
    from .options import cli_preset

    root = directory.resolve()
    (root / "sources").mkdir(parents=True, exist_ok=True)
    names = [f"demo-{i}" for i in range(1, accounts + 1)]
    failing = names[-1]
    config_path = root / "pubq.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(names, failing), sort_keys=False), encoding="utf-8")
    (root / "sources" / "cover.png").write_bytes(PNG)
    (root / "sources" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"demo-video" * 4096)

    config = load_config(config_path, preset=cli_preset())
    configure_logging(config.log)
    app = App(config)
    try:
        service = service_for(app)
        task_id = service.submit({
            "uuid": f"demo-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}",
            "source": "cms", "channel_type": "demo", "title": "pubq demo article",
            "body": "Published by `pubq demo` through the filesystem adapter.",
            "accounts": names,
            "assets": [{"type": "image", "url": "cover.png", "enabled": True},
                       {"type": "video", "url": "clip.mp4", "enabled": True}],
        })
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            for name in QUEUE_ORDER:
                queue = app.queue(name)
                JobRunner(queue).drain()
                counts = queue.driver.counts()
                busy = busy or bool(counts.waiting or counts.delayed or counts.reserved)
            if not busy:
                break
            time.sleep(0.2)  # a retry is delayed; wait for it to come due
        return {"task_id": task_id, "config": str(config_path), "failing": failing,
                "show": service.show(task_id)}
    finally:
        app.close()
