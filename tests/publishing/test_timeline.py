"""The status timeline explains every attempt (issue 11): a failed attempt that another follows is an
event of its own, once per attempt; when the last attempt dies with its worker, the submitter sees
the platform's own last error instead of the generic 35000."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pubq.app import App
from pubq.config import parse_config
from pubq.handlers.upload_asset import UploadAssetEventHandler
from pubq.publishing.preset import publishing_preset
from pubq.publishing.service import service_for
from pubq.publishing.vocabulary import EventKind
from pubq.worker import Worker
from tests.helpers import wait_until

from .httpserver import Reply, ScriptedServer
from .recorder import recording
from .support import pipeline_config, request_doc, run_queue
from .test_http_adapter import http_channel_types


class FlakyPlatform:
    """Answers 503 to an account's first ``fails[account]`` uploads, then works."""

    def __init__(self) -> None:
        self.fails: Counter[str] = Counter()
        self.items = 0

    def __call__(self, req: Any) -> Reply:
        account = re.match(r"^/accounts/([^/]+)/", req.path).group(1)
        if req.path.endswith("/media"):
            if self.fails[account] > 0:
                self.fails[account] -= 1
                return Reply(503, b'{"error": "media store is down"}')
            return Reply(200, json.dumps({"media_id": f"m-{account}"}).encode())
        if req.path.endswith("/items"):
            self.items += 1
            return Reply(200, json.dumps({"item_id": f"item-{self.items}"}).encode())
        return Reply(200, b'{"status": "review"}')


@pytest.fixture
def platform():
    p = FlakyPlatform()
    with ScriptedServer(p) as srv:
        p.url = srv.url
        yield p


def make_app(tmp_path: Path, database_url: str, url: str, *, held: tuple[str, ...] = (),
             **upload: Any) -> App:
    config = pipeline_config(tmp_path, database_url, held=held, channel_types=http_channel_types(url))
    config["queues"]["upload-asset"].update(upload)
    return App(parse_config(config, None, tmp_path, preset=publishing_preset()))


def timeline(service: Any, task_id: int, account: str) -> list[tuple[str, Any, Any, int | None, int | None]]:
    """(kind, from, to, attempt, code) of the account's upload-asset events that are not steps."""
    return [(e["kind"], e["from"], e["to"], e["attempt"], e["code"]) for e in service.trace(task_id)
            if e["account"] == account and e["queue"] == "upload-asset" and e["kind"] != EventKind.STEP]


def test_an_account_that_took_three_attempts_shows_all_three(tmp_path, platform, database_url) -> None:
    app = make_app(tmp_path, database_url, platform.url)
    try:
        service = service_for(app)
        platform.fails.update({"a2": 2, "a3": 5})  # a2 succeeds on attempt 3; a3 never does
        task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"], channel_type="web"))
        run_queue(app, "upload-asset")
        run_queue(app, "pub-article")
        assert timeline(service, task_id, "a2") == [
            ("transition", 1, 2, 1, None),
            ("attempt_failed", 2, 2, 1, 35041),
            ("attempt_failed", 2, 2, 2, 35041),
        ]
        assert timeline(service, task_id, "a3") == [
            ("transition", 1, 2, 1, None),
            ("attempt_failed", 2, 2, 1, 35041),
            ("attempt_failed", 2, 2, 2, 35041),
            ("transition", 2, 3, 3, 35041),
        ]
        assert timeline(service, task_id, "a1") == [("transition", 1, 2, 1, None)]
        a3 = [e for e in service.trace(task_id) if e["account"] == "a3" and e["kind"] == EventKind.ATTEMPT_FAILED]
        assert all("unavailable for account a3" in e["reason"] for e in a3)
        view = {a["account"]: a["status"] for a in service.accounts_view(task_id)}
        assert view == {"a1": 4, "a2": 4, "a3": 3}
    finally:
        app.close()


def test_running_the_handlers_of_a_failed_attempt_again_records_it_once(tmp_path, platform, database_url) -> None:
    app = make_app(tmp_path, database_url, platform.url)
    try:
        service = service_for(app)
        platform.fails["a1"] = 1
        task_id = service.submit(request_doc(tmp_path, accounts=["a1"], channel_type="web"))
        run_queue(app, "upload-asset")
        [first] = [r for r in recording(app).runs_of("UploadAssetJob") if r.retry]
        UploadAssetEventHandler().after_error(first.event)  # a recovering worker replays it
        kinds = Counter(e[0] for e in timeline(service, task_id, "a1"))
        assert kinds[EventKind.ATTEMPT_FAILED] == 1
    finally:
        app.close()


def test_a_last_attempt_lost_with_its_worker_reports_the_platforms_own_error(tmp_path, platform,
                                                                             database_url) -> None:
    # attempt 1: the platform answers 503 (35041), another attempt follows; attempt 2: the worker
    # holding it dies; its reclaimer fails the job finally with a TTR error, which says nothing.
    app = make_app(tmp_path, database_url, platform.url, held=("upload-asset",), attempts=2, ttr=1, grace=0)
    try:
        service = service_for(app)
        platform.fails["a1"] = 1
        task_id = service.submit(request_doc(tmp_path, accounts=["a1"], channel_type="web"))
        queue = app.queue("upload-asset")
        Worker(queue, isolate=False, install_signals=False, max_jobs=1).run()  # attempt 1 fails
        driver = queue.driver
        wait_until(lambda: driver.counts().waiting == 1, message="attempt 2 to be due")
        held = driver.reserve(0)
        assert held is not None and held.attempt == 2  # ... and its worker is killed here
        wait_until(lambda: driver.now() > held.deadline, message="the lost attempt's TTR to pass")
        run_queue(app, "upload-asset")
        [account] = service.accounts_view(task_id)
        assert account["status"] == 3
        assert account["code"] == 35041, account
        assert "unavailable for account a1" in account["message"]
        [log] = [p for p in service.show(task_id)["pub_log"] if p["channel_app_task_id"] == account["channel_app_task_id"]]
        assert (log["code"], log["message"]) == (35041, account["message"])
        assert timeline(service, task_id, "a1")[-1] == ("transition", 2, 3, 2, 35041)
    finally:
        app.close()


def test_a_lost_worker_without_an_earlier_platform_error_is_still_the_generic_error(tmp_path, platform,
                                                                                   database_url) -> None:
    app = make_app(tmp_path, database_url, platform.url, held=("upload-asset",), attempts=1, ttr=1, grace=0)
    try:
        service = service_for(app)
        task_id = service.submit(request_doc(tmp_path, accounts=["a1"], channel_type="web"))
        driver = app.queue("upload-asset").driver
        held = driver.reserve(0)  # attempt 1, lost with its worker
        wait_until(lambda: driver.now() > held.deadline, message="the lost attempt's TTR to pass")
        run_queue(app, "upload-asset")
        [account] = service.accounts_view(task_id)
        assert (account["status"], account["code"]) == (3, 35000)
    finally:
        app.close()
