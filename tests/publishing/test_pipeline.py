"""The publishing flow step by step (publishing.md §3/§3a), on every database."""

from __future__ import annotations

import re

import pytest

from pubq.publishing.codes import DuplicateTaskError, NoChannelAppTasksError, ServerError, StepRejectedError
from pubq.publishing.models import FAILED, PENDING, PUBLISHED, REVIEW
from pubq.publishing.pipeline import Pipeline
from pubq.publishing.transitions import JobRef

from .conftest import request_doc
from .harness import MiniWorker

PATH = re.compile(r"^/\d{4}/\d{2}/\d{2}/\d{10}\.\d{4}\.\d{10}\.mp4$")


@pytest.fixture
def worker(service, queues) -> MiniWorker:
    return MiniWorker(Pipeline(service), queues)


def job_id(queues, job: str, **args) -> int:
    ids = [i + 1 for i, (_, name, a) in enumerate(queues.pushed) if name.rsplit(".", 1)[-1] == job and a == args]
    assert len(ids) == 1, (job, args, queues.pushed)
    return ids[0]


def accounts(service, task_id: int) -> dict[str, dict]:
    return {a["account"]: a for a in service.accounts_view(task_id)}


def logs(service, task_id: int, status: str = "error") -> list[dict]:
    return [p for p in service.show(task_id)["pub_log"] if p["status"] == status]


def test_happy_path_publishes_every_account(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"]))
    assert queues.jobs("CopyAssetJob") == [{"task_id": task_id}]

    outcomes = worker.drain()

    assert all(o.ok and o.follow_up_error is None for o in outcomes), outcomes
    view = accounts(service, task_id)
    assert {a: v["status"] for a, v in view.items()} == {"a1": REVIEW, "a2": REVIEW, "a3": REVIEW}
    assert all(v["item_id"] and v["item_created_at"] for v in view.values())
    asset = service.show(task_id)["assets"][0]
    assert PATH.match(asset["relative_path"]) and asset["size"] == 1100 and len(asset["sha256"]) == 64
    assert (tmp_path / "publish" / "video" / asset["relative_path"].lstrip("/")).is_file()
    assert len(queues.jobs("UploadAssetJob")) == 3 and len(queues.jobs("PubArticleJob")) == 3
    assert len(queues.jobs("SourceCallbackJob")) == 3  # one per account reaching 4
    assert len(logs(service, task_id, "success")) == 3 and not logs(service, task_id)
    steps = [(e["account"], e["kind"], e["from"], e["to"]) for e in service.trace(task_id)
             if e["account"] == "a2" and e["kind"] == "transition"]
    assert steps == [("a2", "transition", 1, 2), ("a2", "transition", 2, 4)]


@pytest.mark.fail_accounts("a1", "a4", "a5")
def test_incident_000_failures_around_a_sibling_create(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2", "a3", "a4", "a5"]))
    worker.run(1)  # copy-asset → 5 uploads
    cats = {a: v["channel_app_task_id"] for a, v in accounts(service, task_id).items()}

    def up(a: str):
        return worker.run(job_id(queues, "UploadAssetJob", channel_app_task_id=cats[a]))

    def art(a: str):
        return worker.run(job_id(queues, "PubArticleJob", channel_app_task_id=cats[a]))

    assert not up("a1").ok           # fails before any sibling's create
    assert up("a2").ok and up("a3").ok
    assert art("a2").ok              # a sibling's successful create
    assert not up("a4").ok           # two failures after it
    assert art("a3").ok
    assert not up("a5").ok

    view = accounts(service, task_id)
    assert {a: v["status"] for a, v in view.items()} == {"a1": 3, "a2": 4, "a3": 4, "a4": 3, "a5": 3}
    assert view["a2"]["item_created_at"] and view["a3"]["item_created_at"]
    errors = logs(service, task_id)
    assert sorted(e["data"]["account"] for e in errors) == ["a1", "a4", "a5"]
    assert {e["code"] for e in errors} == {35040}
    assert all("fail_accounts" in e["message"] and "Traceback" not in e["message"] for e in errors)
    trace = service.trace(task_id)
    for a, path in {"a1": [(1, 2), (2, 3)], "a2": [(1, 2), (2, 4)], "a4": [(1, 2), (2, 3)]}.items():
        assert [(e["from"], e["to"]) for e in trace if e["account"] == a and e["kind"] == "transition"] == path
    assert not [e for e in trace if e["kind"] == "rejected"]
    assert len(queues.jobs("SourceCallbackJob")) == 5

    # afterError replayed for the same event key (e.g. after a crash): nothing is written twice.
    first = job_id(queues, "UploadAssetJob", channel_app_task_id=cats["a1"])
    worker._after_error("UploadAssetJob", {"channel_app_task_id": cats["a1"]},
                        JobRef("upload-asset", first, 1), RuntimeError("again"))
    assert len(logs(service, task_id)) == 3


def test_35020_when_no_asset_is_enabled(service, queues, worker, tmp_path) -> None:
    doc = request_doc(tmp_path, accounts=["a1", "a2"])
    doc["assets"][0]["enabled"] = False
    task_id = service.submit(doc)

    outcome = worker.run(1)

    assert isinstance(outcome.error, ServerError)
    assert f"{type(outcome.error).__name__}: {outcome.error}" == (
        f"ServerError: based on task ID: {task_id}, list of enabled resources is empty")
    assert {v["status"] for v in accounts(service, task_id).values()} == {FAILED}
    errors = logs(service, task_id)
    assert [e["code"] for e in errors] == [35020, 35020]
    assert len(queues.jobs("SourceCallbackJob")) == 1  # once per task
    # afterError replayed for the same event key (a reclaim after a crash): nothing new.
    worker._after_error("CopyAssetJob", {"task_id": task_id}, JobRef("copy-asset", 1, 1), outcome.error)
    assert len(logs(service, task_id)) == 2 and len(queues.jobs("SourceCallbackJob")) == 1


def test_35021_when_no_channel_app_task_is_enabled(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    C = service.m.ChannelAppTask
    C.update(enabled=False).where(C.task == task_id).execute()

    outcome = worker.run(1)

    assert outcome.ok and isinstance(outcome.follow_up_error, NoChannelAppTasksError)
    errors = logs(service, task_id)
    assert [(e["code"], e["channel_app_task_id"]) for e in errors] == [(35021, None)]
    worker.p.fail_task(task_id, outcome.follow_up_error, JobRef("copy-asset", 1, 1), stage="follow-up")
    assert len(logs(service, task_id)) == 1  # replay of the same event key writes nothing
    assert "list of enabled channel app tasks is empty" in errors[0]["message"]
    assert len(queues.jobs("SourceCallbackJob")) == 1 and not queues.jobs("UploadAssetJob")


def test_a_raising_follow_up_still_logs_and_calls_back(service, queues, worker, tmp_path, monkeypatch) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"]))

    def broken(code):
        raise RuntimeError("adapter factory exploded: password=hunter2")

    monkeypatch.setattr(service, "channel", broken)
    outcome = worker.run(1)

    assert outcome.ok and isinstance(outcome.follow_up_error, RuntimeError)
    assert {v["status"] for v in accounts(service, task_id).values()} == {FAILED}
    errors = logs(service, task_id)
    assert [e["code"] for e in errors] == [35000, 35000]
    assert all("hunter2" not in e["message"] for e in errors)  # internals never reach pub_log
    assert len(queues.jobs("SourceCallbackJob")) == 1


def test_steps_are_idempotent_when_rerun(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    worker.run(1)
    path = service.show(task_id)["assets"][0]["relative_path"]
    worker.run(1)  # copy again: nothing re-copied, no second upload job
    assert service.show(task_id)["assets"][0]["relative_path"] == path
    assert len(queues.jobs("UploadAssetJob")) == 1
    cat = accounts(service, task_id)["a1"]["channel_app_task_id"]
    upload = job_id(queues, "UploadAssetJob", channel_app_task_id=cat)
    assert worker.run(upload).ok and worker.run(upload).ok
    assert len(queues.jobs("PubArticleJob")) == 1
    article = job_id(queues, "PubArticleJob", channel_app_task_id=cat)
    assert worker.run(article).ok and worker.run(article).ok
    items = list((tmp_path / "platform" / "a1" / "items").glob("*.json"))
    assert len(items) == 1
    assert len(list((tmp_path / "platform" / "a1" / "media").iterdir())) == 1
    assert [e["to"] for e in service.trace(task_id) if e["kind"] == "transition"] == [2, 4]


@pytest.mark.fail_accounts("a1")
def test_stale_job_on_a_failed_row_is_rejected_and_names_task_retry(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    worker.run(1)
    upload = job_id(queues, "UploadAssetJob", **queues.jobs("UploadAssetJob")[0])
    assert not worker.run(upload).ok  # fails: row → 3

    again = worker.run(upload)  # e.g. `failed retry` of the old job

    assert isinstance(again.error, StepRejectedError)
    assert f"pubq task retry {task_id} --account a1" in str(again.error)
    assert [e["kind"] for e in service.trace(task_id) if e["kind"] != "step"][-1] == "rejected"
    assert len(logs(service, task_id)) == 1  # the rejected re-run wrote no second error row


@pytest.mark.fail_accounts("a1")
def test_operator_retry_moves_3_to_1_and_repushes_the_step(service, queues, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1", "a2"]))
    worker.drain()
    assert {a: v["status"] for a, v in accounts(service, task_id).items()} == {"a1": FAILED, "a2": REVIEW}
    uploads = len(queues.jobs("UploadAssetJob"))

    result = service.retry(task_id)

    assert result.retried == ("a1",) and result.step == "upload"
    assert result.skipped == (("a2", "under review"),)
    view = accounts(service, task_id)
    assert view["a1"]["status"] == PENDING and view["a1"]["round"] == 1 and view["a2"]["status"] == REVIEW
    assert len(queues.jobs("UploadAssetJob")) == uploads + 1
    worker.drain()  # still configured to fail: fails again, with its own pub_log row
    assert accounts(service, task_id)["a1"]["status"] == FAILED
    assert len(logs(service, task_id)) == 2
    operator = [e for e in service.trace(task_id) if e["queue"] == "operator" and e["kind"] == "transition"]
    assert [(e["from"], e["to"]) for e in operator] == [(3, 1)]


def test_retry_of_a_failed_copy_repushes_the_copy(service, queues, worker, tmp_path) -> None:
    doc = request_doc(tmp_path, accounts=["a1"])
    doc["assets"][0]["enabled"] = False
    task_id = service.submit(doc)
    worker.drain()
    A = service.m.Asset
    A.update(enabled=True).where(A.task == task_id).execute()

    result = service.retry(task_id)
    worker.drain()

    assert result.step == "copy" and len(queues.jobs("CopyAssetJob")) == 2
    assert accounts(service, task_id)["a1"]["status"] == REVIEW


def test_duplicate_uuid_is_refused_and_creates_nothing(service, tmp_path) -> None:
    doc = request_doc(tmp_path, uid="same-uuid-1")
    first = service.submit(doc)
    T = service.m.Task
    before = T.select().count()
    with pytest.raises(DuplicateTaskError, match=f"task ID: {first}"):
        service.submit(doc)
    assert T.select().count() == before


def test_lost_push_is_kept_in_the_outbox_and_flushed(service, queues, tmp_path) -> None:
    queues.fail = True
    task_id = service.submit(request_doc(tmp_path))
    assert not queues.pushed
    assert [o["state"] for o in service.show(task_id)["outbox"]] == ["pending"]
    queues.fail = False
    pushed, left = service.flush_outbox()
    assert pushed >= 1 and queues.jobs("CopyAssetJob") == [{"task_id": task_id}]
    assert [o["state"] for o in service.show(task_id)["outbox"]] == ["pushed"]


@pytest.mark.review("published")
def test_sync_moves_reviewed_items_to_published(service, worker, tmp_path) -> None:
    task_id = service.submit(request_doc(tmp_path, accounts=["a1"]))
    worker.drain()
    changes = Pipeline(service).sync_reviews(task_id)
    assert [c["status"] for c in changes] == [PUBLISHED]
    assert accounts(service, task_id)["a1"]["status"] == PUBLISHED
