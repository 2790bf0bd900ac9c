"""The publishing flow step by step, through the App's real queues and handlers, on every database."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from pubq.handlers.copy_asset import CopyAssetEventHandler
from pubq.handlers.upload_asset import UploadAssetEventHandler
from pubq.jobs import CopyAssetJob, PubArticleJob, UploadAssetJob
from pubq.publishing.codes import DuplicateTaskError, NoChannelAppTasksError, ServerError, StepRejectedError
from pubq.publishing.vocabulary import AccountStatus, EventKind, OutboxState, PubLogStatus

from .support import QUEUE_ORDER, follow_up_failures, request_doc, run_queue

PATH = re.compile(r"^/\d{4}/\d{2}/\d{2}/\d{10}\.\d{4}\.\d{10}\.mp4$")


def accounts(service, task_id: int) -> dict[str, dict]:
    return {a["account"]: a for a in service.accounts_view(task_id)}


def logs(service, task_id: int, status: str = PubLogStatus.ERROR) -> list[dict]:
    return [p for p in service.show(task_id)["pub_log"] if p["status"] == status]


def no_follow_up_failed(app) -> bool:
    return not any(follow_up_failures(app, name) for name in QUEUE_ORDER)


def test_happy_path_publishes_every_account(app, service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"]))

    # The sync queues ran every job inside its push.
    assert recorded.jobs("CopyAssetJob") == [{"task_id": task_id}]
    assert len(recorded.runs) == 10 and all(r.ok for r in recorded.runs), recorded.runs
    assert no_follow_up_failed(app)
    view = accounts(service, task_id)
    assert {a: v["status"] for a, v in view.items()} == {
        "a1": AccountStatus.UNDER_REVIEW, "a2": AccountStatus.UNDER_REVIEW, "a3": AccountStatus.UNDER_REVIEW}
    assert all(v["item_id"] and v["item_created_at"] for v in view.values())
    asset = service.show(task_id)["assets"][0]
    assert PATH.match(asset["relative_path"]) and asset["size"] == 1100 and len(asset["sha256"]) == 64
    assert (tmp_path / "publish" / "video" / asset["relative_path"].lstrip("/")).is_file()
    assert len(recorded.jobs("UploadAssetJob")) == 3 and len(recorded.jobs("PubArticleJob")) == 3
    assert len(recorded.jobs("SourceCallbackJob")) == 3  # one per account reaching 4
    assert len(logs(service, task_id, PubLogStatus.SUCCESS)) == 3 and not logs(service, task_id)
    steps = [(e["account"], e["kind"], e["from"], e["to"]) for e in service.trace(task_id)
             if e["account"] == "a2" and e["kind"] == EventKind.TRANSITION]
    assert steps == [("a2", EventKind.TRANSITION, 1, 2), ("a2", EventKind.TRANSITION, 2, 4)]


@pytest.mark.fail_accounts("a1", "a4", "a5")
def test_incident_000_failures_around_a_sibling_create(service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3", "a4", "a5"]))
    cats = {a: v["channel_app_task_id"] for a, v in accounts(service, task_id).items()}

    def up(a: str):
        return recorded.run(recorded.pushed("UploadAssetJob", channel_app_task_id=cats[a]))

    def art(a: str):
        return recorded.run(recorded.pushed("PubArticleJob", channel_app_task_id=cats[a]))

    # The sync queues ran the jobs depth first, in account order: a1's upload failed before any
    # sibling's create, a2 and a3 were created, then the uploads of a4 and a5 failed.
    assert not up("a1").ok
    assert up("a2").ok and up("a3").ok
    assert art("a2").ok and art("a3").ok
    assert not up("a4").ok and not up("a5").ok
    trace = service.trace(task_id)
    order = [(e["account"], e["to"]) for e in trace if e["kind"] == EventKind.TRANSITION]
    assert order.index(("a1", 3)) < order.index(("a2", 4)) < order.index(("a4", 3)) < order.index(("a5", 3))

    view = accounts(service, task_id)
    assert {a: v["status"] for a, v in view.items()} == {"a1": 3, "a2": 4, "a3": 4, "a4": 3, "a5": 3}
    assert view["a2"]["item_created_at"] and view["a3"]["item_created_at"]
    errors = logs(service, task_id)
    assert sorted(e["data"]["account"] for e in errors) == ["a1", "a4", "a5"]
    assert {e["code"] for e in errors} == {35040}
    assert all("fail_accounts" in e["message"] and "Traceback" not in e["message"] for e in errors)
    for a, path in {"a1": [(1, 2), (2, 3)], "a2": [(1, 2), (2, 4)], "a4": [(1, 2), (2, 3)]}.items():
        assert [(e["from"], e["to"]) for e in trace if e["account"] == a and e["kind"] == EventKind.TRANSITION] == path
    assert not [e for e in trace if e["kind"] == EventKind.REJECTED]
    assert len(recorded.jobs("SourceCallbackJob")) == 5

    # afterError replayed for the same event key (e.g. after a crash): nothing is written twice.
    UploadAssetEventHandler().after_error(replace(up("a1").event, error=RuntimeError("again")))
    assert len(logs(service, task_id)) == 3


def test_35020_when_no_asset_is_enabled(service, recorded, tmp_path) -> None:
    doc = request_doc(tmp_path, accounts=["a1", "a2"])
    doc["assets"][0]["enabled"] = False
    task_id = service.submit(doc)

    copy = recorded.run(recorded.pushed("CopyAssetJob", task_id=task_id))

    assert isinstance(copy.error, ServerError) and not copy.retry
    assert f"{type(copy.error).__name__}: {copy.error}" == (
        f"ServerError: based on task ID: {task_id}, list of enabled resources is empty")
    assert {v["status"] for v in accounts(service, task_id).values()} == {AccountStatus.FAILED}
    errors = logs(service, task_id)
    assert [e["code"] for e in errors] == [35020, 35020]
    assert len(recorded.jobs("SourceCallbackJob")) == 1  # once per task
    # afterError replayed for the same event key (a reclaim after a crash): nothing new.
    CopyAssetEventHandler().after_error(copy.event)
    assert len(logs(service, task_id)) == 2 and len(recorded.jobs("SourceCallbackJob")) == 1


@pytest.mark.held("copy-asset")
def test_35021_when_no_channel_app_task_is_enabled(app, service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    ChannelAppTask = service.models.ChannelAppTask
    ChannelAppTask.update(enabled=False).where(ChannelAppTask.task == task_id).execute()

    run_queue(app, "copy-asset")

    copy = recorded.run(recorded.pushed("CopyAssetJob", task_id=task_id))
    assert copy.ok and follow_up_failures(app, "copy-asset") == [("afterExec", "NoChannelAppTasksError")]
    errors = logs(service, task_id)
    assert [(e["code"], e["channel_app_task_id"]) for e in errors] == [(35021, None)]
    with pytest.raises(NoChannelAppTasksError):  # the afterExec handler replayed for the same event key
        CopyAssetEventHandler().after_exec(copy.event)
    assert len(logs(service, task_id)) == 1  # ... writes nothing
    assert "list of enabled channel app tasks is empty" in errors[0]["message"]
    assert len(recorded.jobs("SourceCallbackJob")) == 1 and not recorded.jobs("UploadAssetJob")


def test_a_raising_follow_up_still_logs_and_calls_back(app, service, recorded, tmp_path, monkeypatch) -> None:
    def broken(code):
        raise RuntimeError("adapter factory exploded: password=hunter2")

    monkeypatch.setattr(service.channels, "get", broken)
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"]))

    assert recorded.run(recorded.pushed("CopyAssetJob", task_id=task_id)).ok
    assert follow_up_failures(app, "copy-asset") == [("afterExec", "RuntimeError")]
    assert {v["status"] for v in accounts(service, task_id).values()} == {AccountStatus.FAILED}
    errors = logs(service, task_id)
    assert [e["code"] for e in errors] == [35000, 35000]
    assert all("hunter2" not in e["message"] for e in errors)  # internals never reach pub_log
    assert len(recorded.jobs("SourceCallbackJob")) == 1


@pytest.mark.held("copy-asset", "upload-asset", "pub-article")
def test_steps_are_idempotent_when_rerun(app, service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    run_queue(app, "copy-asset")
    path = service.show(task_id)["assets"][0]["relative_path"]
    app.queue("copy-asset").push(CopyAssetJob(task_id))  # copy again: nothing re-copied, no second upload job
    run_queue(app, "copy-asset")
    assert all(r.ok for r in recorded.runs_of("CopyAssetJob")) and len(recorded.runs_of("CopyAssetJob")) == 2
    assert service.show(task_id)["assets"][0]["relative_path"] == path
    assert len(recorded.jobs("UploadAssetJob")) == 1
    cat = accounts(service, task_id)["a1"]["channel_app_task_id"]
    run_queue(app, "upload-asset")
    app.queue("upload-asset").push(UploadAssetJob(cat))  # the same upload again, before pub-article ran
    run_queue(app, "upload-asset")
    assert [r.ok for r in recorded.runs_of("UploadAssetJob")] == [True, True]
    assert len(recorded.jobs("PubArticleJob")) == 1
    run_queue(app, "pub-article")
    app.queue("pub-article").push(PubArticleJob(cat))
    run_queue(app, "pub-article")
    assert [r.ok for r in recorded.runs_of("PubArticleJob")] == [True, True]
    items = list((tmp_path / "platform" / "a1" / "items").glob("*.json"))
    assert len(items) == 1
    assert len(list((tmp_path / "platform" / "a1" / "media").iterdir())) == 1
    assert [e["to"] for e in service.trace(task_id) if e["kind"] == EventKind.TRANSITION] == [2, 4]


@pytest.mark.fail_accounts("a1")
def test_stale_job_on_a_failed_row_is_rejected_and_names_task_retry(app, service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    upload = recorded.pushed("UploadAssetJob", **recorded.jobs("UploadAssetJob")[0])
    assert not recorded.run(upload).ok  # failed: row → 3

    again = app.queue("upload-asset").push(UploadAssetJob(**upload.args))  # e.g. the old job retried

    rerun = recorded.run(recorded.pushes[-1])
    assert recorded.pushes[-1].id == again and isinstance(rerun.error, StepRejectedError)
    assert f"pubq task retry {task_id} --account a1" in str(rerun.error)
    assert [e["kind"] for e in service.trace(task_id) if e["kind"] != EventKind.STEP][-1] == EventKind.REJECTED
    assert len(logs(service, task_id)) == 1  # the rejected re-run wrote no second error row


@pytest.mark.fail_accounts("a1")
@pytest.mark.held("upload-asset")
def test_operator_retry_moves_3_to_1_and_repushes_the_step(app, service, recorded, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"]))
    run_queue(app, "upload-asset")
    assert {a: v["status"] for a, v in accounts(service, task_id).items()} == {
        "a1": AccountStatus.FAILED, "a2": AccountStatus.UNDER_REVIEW}
    uploads = len(recorded.jobs("UploadAssetJob"))

    result = service.retry(task_id)

    assert result.retried == ("a1",) and result.step == "upload"
    assert result.skipped == (("a2", "under review"),)
    view = accounts(service, task_id)
    assert view["a1"]["status"] == AccountStatus.PENDING and view["a1"]["round"] == 1
    assert view["a2"]["status"] == AccountStatus.UNDER_REVIEW
    assert len(recorded.jobs("UploadAssetJob")) == uploads + 1
    run_queue(app, "upload-asset")  # still configured to fail: fails again, with its own pub_log row
    assert accounts(service, task_id)["a1"]["status"] == AccountStatus.FAILED
    assert len(logs(service, task_id)) == 2
    operator = [e for e in service.trace(task_id) if e["queue"] == "operator" and e["kind"] == EventKind.TRANSITION]
    assert [(e["from"], e["to"]) for e in operator] == [(3, 1)]


def test_retry_of_a_failed_copy_repushes_the_copy(service, recorded, tmp_path) -> None:
    doc = request_doc(tmp_path, accounts=["a1"])
    doc["assets"][0]["enabled"] = False
    task_id = service.submit(doc)
    Asset = service.models.Asset
    Asset.update(enabled=True).where(Asset.task == task_id).execute()

    result = service.retry(task_id)

    assert result.step == "copy" and len(recorded.jobs("CopyAssetJob")) == 2
    assert accounts(service, task_id)["a1"]["status"] == AccountStatus.UNDER_REVIEW


def test_duplicate_uuid_is_refused_and_creates_nothing(service, tmp_path) -> None:
    doc = request_doc(tmp_path, uid="same-uuid-1")
    first = service.submit(doc)
    Task = service.models.Task
    before = Task.select().count()
    with pytest.raises(DuplicateTaskError, match=f"task ID: {first}"):
        service.submit(doc)
    assert Task.select().count() == before


@pytest.mark.held("copy-asset")
def test_lost_push_is_kept_in_the_outbox_and_flushed(service, recorded, tmp_path, monkeypatch) -> None:
    def down(queue, job, args):
        raise ConnectionError("queue backend down")

    with monkeypatch.context() as patch:
        patch.setattr(service.outbox, "dispatcher", down)
        task_id = service.submit(request_doc(tmp_path))
    assert not recorded.pushes
    assert [o["state"] for o in service.show(task_id)["outbox"]] == [OutboxState.PENDING]
    pushed, left = service.flush_outbox()
    assert pushed >= 1 and recorded.jobs("CopyAssetJob") == [{"task_id": task_id}]
    assert [o["state"] for o in service.show(task_id)["outbox"]] == [OutboxState.PUSHED]


@pytest.mark.review("published")
def test_sync_moves_reviewed_items_to_published(service, pipeline, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    changes = pipeline.sync_reviews(task_id)
    assert [c["status"] for c in changes] == [AccountStatus.PUBLISHED]
    assert accounts(service, task_id)["a1"]["status"] == AccountStatus.PUBLISHED


@pytest.mark.held("copy-asset")
def test_copy_assets_reports_its_progress_to_the_job(app, service, tmp_path) -> None:
    from pubq.publishing.pipeline import pipeline_for
    from pubq.publishing.transitions import JobRef

    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    seen: list[tuple[float, str]] = []
    pipeline_for(app).copy_assets(task_id, JobRef("copy-asset", 1, 1), progress=lambda f, m: seen.append((f, m)))
    assert seen[0] == (0.0, "asset 1 of 1: 1,100 bytes copied")
    assert seen[-1] == (1.0, "1 asset copied")
