"""The generic HTTP adapter against a local platform that can fail given accounts, time out or 429."""

from __future__ import annotations

import json
import re

import pytest

from pubq.errors import PermanentError, RetryableError
from pubq.publishing.adapters.base import Article, UploadFile
from pubq.publishing.adapters.http import HttpAdapter
from pubq.publishing.codes import AdapterError, AdapterUnavailableError
from pubq.publishing.service import service_for

from .httpserver import Reply, ScriptedServer
from .recorder import recording
from .support import ACCOUNTS, make_settings, pipeline_app, request_doc, run_queue


class Platform:
    """The fake platform: per-account failure modes, idempotent item creation."""

    def __init__(self) -> None:
        self.fail: dict[str, Reply] = {}
        self.items: dict[str, str] = {}

    def __call__(self, req) -> Reply:
        account = re.match(r"^/accounts/([^/]+)/", req.path).group(1)
        if account in self.fail:
            return self.fail[account]
        if req.path.endswith("/media"):
            return Reply(200, json.dumps({"media_id": f"m-{account}-{len(req.body)}"}).encode())
        if req.path.endswith("/items"):
            key = req.headers["idempotency-key"]
            item = self.items.setdefault(key, f"item-{len(self.items) + 1}")
            return Reply(200, json.dumps({"item_id": item, "created_at": "2024-05-01T10:00:00.123456Z"}).encode())
        return Reply(200, b'{"status": "published"}')


def http_channel_types(url: str, timeout: float = 1.0) -> dict:
    """The ``channel_types`` section: channel type ``web`` on the HTTP adapter, accounts a1..a8."""
    return {"web": {
        "adapter": "http",
        "options": {"base_url": url, "timeout": timeout},
        "rate_limit": {"rate": 1000, "burst": 1000},
        "accounts": [{"id": a, "credentials": {"token": "${PUBQ_TEST_TOKEN_" + a.upper() + ":-tok-" + a + "}"}}
                     for a in ACCOUNTS],
    }}


def http_settings(tmp_path, url: str, timeout: float = 1.0):
    return make_settings(tmp_path, channel_types=http_channel_types(url, timeout))


@pytest.fixture
def platform():
    p = Platform()
    with ScriptedServer(p) as srv:
        p.server = srv
        yield p


def adapter_for(tmp_path, platform, timeout: float = 1.0) -> tuple[HttpAdapter, object]:
    settings = http_settings(tmp_path, platform.server.url, timeout)
    ctype = settings.channel_types["web"]
    return HttpAdapter(ctype), ctype


def test_upload_and_create_send_auth_and_idempotency_key(tmp_path, platform) -> None:
    adapter, ctype = adapter_for(tmp_path, platform)
    f = tmp_path / "a.png"
    f.write_bytes(b"png")
    media = adapter.upload_assets(ctype.accounts["a1"], [UploadFile(7, "image", f, "/x.png", 3, "abc")],
                                  idempotency_key="k1")
    assert media == {"7": media["7"]} and media["7"].startswith("m-a1-")
    article = Article(1, "u", "vms", "t", "b")
    first = adapter.create_item(ctype.accounts["a1"], article, media, idempotency_key="k1")
    again = adapter.create_item(ctype.accounts["a1"], article, media, idempotency_key="k1")
    assert first.item_id == again.item_id == "item-1"
    assert first.created_at.microsecond == 123456
    assert all(r.headers["authorization"] == "Bearer tok-a1" for r in platform.server.requests)
    assert platform.server.requests[0].headers["idempotency-key"] == "k1:7"
    assert adapter.review_status(ctype.accounts["a1"], "item-1") == "published"


@pytest.mark.parametrize("reply,error,base", [
    (Reply(400, b'{"error": "title too long"}'), AdapterError, PermanentError),
    (Reply(429), AdapterUnavailableError, RetryableError),
    (Reply(502), AdapterUnavailableError, RetryableError),
    (Reply(200, b"{}", delay=1.5), AdapterUnavailableError, RetryableError),
])
def test_platform_failures_map_to_permanent_or_retryable(tmp_path, platform, reply, error, base) -> None:
    adapter, ctype = adapter_for(tmp_path, platform, timeout=0.5)
    platform.fail["a2"] = reply
    with pytest.raises(error) as info:
        adapter.create_item(ctype.accounts["a2"], Article(1, "u", "vms", "t", "b"), {}, idempotency_key="k")
    assert isinstance(info.value, base)
    assert "tok-a2" not in str(info.value) and "account a2" in str(info.value)


def test_pipeline_with_http_platform_fails_only_the_given_accounts(tmp_path, platform, database_url) -> None:
    app = pipeline_app(tmp_path, database_url, channel_types=http_channel_types(platform.server.url))
    try:
        service = service_for(app)
        platform.fail["a2"] = Reply(403, b'{"error": "account banned"}')
        platform.fail["a3"] = Reply(429)  # retryable: upload-asset has three attempts
        doc = request_doc(tmp_path, accounts=["a1", "a2", "a3"], channel_type="web")
        task_id = service.submit(doc)  # the sync queues run the pipeline inside the pushes
        run_queue(app, "upload-asset")  # a3's retries: a sync queue runs jobs only inside push()
        view = {a["account"]: a for a in service.accounts_view(task_id)}
        a3_uploads = [r for r in recording(app).runs_of("UploadAssetJob")
                      if r.args["channel_app_task_id"] == view["a3"]["channel_app_task_id"]]
        assert [(r.attempt, r.retry) for r in a3_uploads] == [(1, True), (2, True), (3, False)]
        assert {a: v["status"] for a, v in view.items()} == {"a1": 4, "a2": 3, "a3": 3}
        assert view["a2"]["code"] == 35040 and "account banned" in view["a2"]["message"]
        assert view["a3"]["code"] == 35041
    finally:
        app.close()
