"""Signed source callbacks against a local HTTP server: signature, retry on 5xx/429/timeouts, 4xx permanent."""

from __future__ import annotations

import json

import pytest

from pubq.jobs import SourceCallbackJob
from pubq.publishing.callback import SIGNATURE_HEADER, CallbackSender, canonical_json, sign, verify
from pubq.publishing.codes import CallbackFailedError, CallbackNotAllowedError, CallbackRejectedError
from pubq.publishing.vocabulary import OutboxKind, OutboxState

from .httpserver import Reply, ScriptedServer
from .support import make_settings, request_doc


def sender(tmp_path, sleeps: list[float] | None = None, **callback) -> CallbackSender:
    settings = make_settings(tmp_path, callback={
        "secret": "${PUBQ_TEST_CALLBACK_SECRET:-test-secret}", "allow_hosts": ["127.0.0.1"],
        "max_seconds": 3, "timeout": 0.5, **callback})
    return CallbackSender(settings.callback, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = canonical_json({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()
    header = sign(body, "k")
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(body, "k", header) and not verify(body + b" ", "k", header) and not verify(body, "x", header)


def test_posts_signed_json_and_recovers_after_5xx(tmp_path) -> None:
    answers = iter([Reply(503), Reply(502), Reply(200, b"ok")])
    sleeps: list[float] = []
    with ScriptedServer(lambda r: next(answers)) as srv:
        status = sender(tmp_path, sleeps).send(f"{srv.url}/cb", {"event_id": "e1", "x": 1}, task_id=1)
    assert status == 200 and len(srv.requests) == 3 and len(sleeps) == 2
    for req in srv.requests:
        assert req.headers["content-type"] == "application/json"
        assert verify(req.body, "test-secret", req.headers[SIGNATURE_HEADER.lower()])
        assert json.loads(req.body)["event_id"] == "e1"
        assert req.headers["x-pubq-event-id"] == "e1"


def test_4xx_is_permanent_and_not_retried(tmp_path) -> None:
    with ScriptedServer(lambda r: Reply(400, b"bad")) as srv:
        with pytest.raises(CallbackRejectedError, match="HTTP 400"):
            sender(tmp_path).send(f"{srv.url}/cb", {"event_id": "e"}, task_id=1)
    assert len(srv.requests) == 1


def test_429_honours_retry_after(tmp_path) -> None:
    answers = iter([Reply(429, headers={"Retry-After": "2"}), Reply(204)])
    sleeps: list[float] = []
    with ScriptedServer(lambda r: next(answers)) as srv:
        assert sender(tmp_path, sleeps).send(f"{srv.url}/cb", {"event_id": "e"}, task_id=1) == 204
    assert sleeps and sleeps[0] >= 2


def test_timeouts_retry_until_the_budget_then_raise_retryable(tmp_path) -> None:
    with ScriptedServer(lambda r: Reply(200, delay=0.8)) as srv:
        with pytest.raises(CallbackFailedError, match="timed out") as info:
            sender(tmp_path, max_seconds=1.2).send(f"{srv.url}/cb", {"event_id": "e"}, task_id=1)
    assert len(srv.requests) >= 2
    from pubq.errors import RetryableError

    assert isinstance(info.value, RetryableError)


def test_private_callback_host_is_refused_unless_allowed(tmp_path) -> None:
    with pytest.raises(CallbackNotAllowedError, match="private or loopback"):
        sender(tmp_path, allow_hosts=[]).send("http://127.0.0.1:9/cb", {"event_id": "e"}, task_id=3)


def test_pipeline_callback_reports_every_account_once_per_event(app, service, recorded, tmp_path) -> None:
    with ScriptedServer(lambda r: Reply(200)) as srv:  # the sync queues send both callbacks in submit()
        task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"], callback_url=f"{srv.url}/hook"))
    bodies = [json.loads(r.body) for r in srv.requests]
    assert len(bodies) == 2 and len({b["event_id"] for b in bodies}) == 2
    last = bodies[-1]
    assert last["task"]["id"] == task_id
    assert [(a["account"], a["status"]) for a in last["accounts"]] == [("a1", 4), ("a2", 4)]
    assert {o["state"] for o in service.show(task_id)["outbox"] if o["kind"] == OutboxKind.CALLBACK} == {OutboxState.SENT}
    # Re-running a sent callback job sends nothing again.
    event_id = bodies[0]["event_id"]
    app.queue("source-callback").push(SourceCallbackJob(event_id))
    rerun = recorded.run(recorded.pushes[-1])
    assert rerun.ok and rerun.result["skipped"] == "already sent"


def test_a_callback_goes_to_the_address_that_was_checked(tmp_path, monkeypatch) -> None:
    import socket

    from .test_copying import Rebinding

    resolver = Rebinding(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with ScriptedServer(lambda r: Reply(204)) as srv:
        port = srv.httpd.server_address[1]
        status = sender(tmp_path, allow_hosts=["127.0.0.0/8"]).send(
            f"http://rebind.test:{port}/cb", {"event_id": "e"}, task_id=1)
    assert status == 204 and resolver.lookups == 1
    assert srv.requests[0].headers["host"] == f"rebind.test:{port}"
