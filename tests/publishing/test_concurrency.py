"""Order independence: K accounts, success/failure events (plus redeliveries) run from threads in
any interleaving; the final state of each row depends only on its own outcome.

Failures go through the real upload-asset afterError handler; the copy-asset queue is held, so the
pipeline itself never moves the rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubq.events import ExecEvent
from pubq.handlers.upload_asset import UploadAssetEventHandler
from pubq.jobs import UploadAssetJob
from pubq.publishing.codes import AdapterError
from pubq.publishing.models import from_us, now_us
from pubq.publishing.pipeline import pipeline_for
from pubq.publishing.transitions import JobRef
from pubq.publishing.vocabulary import AccountStatus, EventKind, PubLogStatus

from .support import ACCOUNTS, request_doc

pytestmark = pytest.mark.held("copy-asset")


@dataclass
class Event:
    account: int
    kind: str  # start | create | fail
    seq: int   # position in the account's own causal order


def account_events(i: int, outcome: str, fail_early: bool, redeliver: bool) -> list[Event]:
    if outcome == "ok":
        kinds = ["start", "create"] + (["create"] if redeliver else [])
    else:
        kinds = (["fail"] if fail_early else ["start", "fail"]) + (["fail"] if redeliver else [])
    return [Event(i, k, n) for n, k in enumerate(kinds)]


@st.composite
def scenarios(draw):
    k = draw(st.integers(min_value=1, max_value=8))
    per_account = [
        account_events(i, draw(st.sampled_from(["ok", "fail"])), draw(st.booleans()), draw(st.booleans()))
        for i in range(k)
    ]
    # A random interleaving that keeps each account's own order.
    queues = [list(evs) for evs in per_account]
    order = []
    while any(queues):
        i = draw(st.sampled_from([n for n, q in enumerate(queues) if q]))
        order.append(queues[i].pop(0))
    return k, per_account, order


def run_events(app, service, tmp_path, k: int, order: list[Event], workers: int = 4) -> int:
    task_id = service.submit(request_doc(tmp_path, accounts=ACCOUNTS[:k]))
    cats = [c.id for c in service.records.channel_app_tasks(task_id)]
    pipeline_for(app)  # built once, before the threads
    upload_queue = app.queue("upload-asset")
    upload_failed = UploadAssetEventHandler()
    done = {(e.account, e.seq): threading.Event() for e in order}

    def apply(n: int, e: Event) -> None:
        if e.seq > 0:  # the account's previous event has happened (causality within one row)
            assert done[(e.account, e.seq - 1)].wait(30)
        try:
            job = JobRef("upload-asset" if e.kind != "create" else "pub-article", 1000 + n, 1)
            cat = cats[e.account]
            if e.kind == "start":
                service.transitions.move(cat, AccountStatus.RELEASING, reason="upload started", job=job)
            elif e.kind == "create":
                service.transitions.move(cat, AccountStatus.UNDER_REVIEW, reason="item created", job=job,
                                         fields={"item_id": f"item-{cat}", "item_created_at": now_us()})
            else:  # the final failure of an upload job
                error = AdapterError.make(channel_type="douyin", account=ACCOUNTS[e.account], reason="upload refused")
                upload_failed.after_error(ExecEvent(
                    queue=upload_queue, id=job.job_id, job=UploadAssetJob(cat), ttr=900, attempt=job.attempt,
                    error=error, retry=False))
        finally:
            done[(e.account, e.seq)].set()

    with ThreadPoolExecutor(max_workers=workers) as pool:  # FIFO start keeps waits deadlock-free
        for f in [pool.submit(apply, n, e) for n, e in enumerate(order)]:
            f.result()
    return task_id


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_final_state_is_independent_of_event_order(app, service, tmp_path, scenario) -> None:
    k, per_account, order = scenario
    task_id = run_events(app, service, tmp_path, k, order)

    view = service.accounts_view(task_id)
    pub_log = service.show(task_id)["pub_log"]
    trace = service.trace(task_id)
    for i, events in enumerate(per_account):
        row = view[i]
        ok = events[-1].kind == "create"
        assert row["status"] == (AccountStatus.UNDER_REVIEW if ok else AccountStatus.FAILED), (i, events, row)
        assert bool(row["item_created_at"]) == ok
        errors = [p for p in pub_log if p["channel_app_task_id"] == row["channel_app_task_id"] and p["status"] == PubLogStatus.ERROR]
        assert len(errors) == (0 if ok else 1)
        mine = [e for e in trace if e["channel_app_task_id"] == row["channel_app_task_id"] and e["kind"] != EventKind.STEP]
        # Every event is in the timeline: accepted ones in causal order, redeliveries as rejected.
        accepted = [(e["from"], e["to"]) for e in mine if e["kind"] == EventKind.TRANSITION]
        pending, releasing, review, failed = (AccountStatus.PENDING, AccountStatus.RELEASING,
                                              AccountStatus.UNDER_REVIEW, AccountStatus.FAILED)
        expected = [(pending, releasing), (releasing, review)] if ok else (
            [(pending, failed)] if events[0].kind == "fail" else [(pending, releasing), (releasing, failed)])
        assert accepted == expected
        assert len([e for e in mine if e["kind"] == EventKind.REJECTED]) == len(events) - len(expected)
        assert all(a["at_us"] <= b["at_us"] for a, b in zip(mine, mine[1:], strict=False))


def test_incident_000_concurrent_five_accounts(app, service, tmp_path) -> None:
    """Account 1 fails before a sibling's create, accounts 4 and 5 after it, all from threads."""
    e = Event
    order = [e(0, "start", 0), e(1, "start", 0), e(2, "start", 0), e(0, "fail", 1), e(3, "start", 0),
             e(1, "create", 1), e(4, "start", 0), e(3, "fail", 1), e(2, "create", 1), e(4, "fail", 1)]
    task_id = run_events(app, service, tmp_path, 5, order, workers=5)
    view = service.accounts_view(task_id)
    failed, review = AccountStatus.FAILED, AccountStatus.UNDER_REVIEW
    assert [r["status"] for r in view] == [failed, review, review, failed, failed]
    assert all(from_us(0) < _dt(r["item_created_at"]) for r in view if r["status"] == AccountStatus.UNDER_REVIEW)
    errors = [p for p in service.show(task_id)["pub_log"] if p["status"] == PubLogStatus.ERROR]
    assert sorted(p["channel_app_task_id"] for p in errors) == sorted(
        r["channel_app_task_id"] for r in view if r["status"] == AccountStatus.FAILED)


def _dt(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
