"""The three incidents the pipeline was built to fix, as acceptance stories through the real CLI and queues:
000 (accounts failing around a sibling's create), 001 (the copy-asset flow and its 35020 failure) and
002 (failures recorded at once, exactly once, and never for a job that succeeded)."""

from __future__ import annotations

import json

from pubq.publishing.callback import verify
from tests.publishing.httpserver import Reply

from .conftest import Pipeline


def statuses(p: Pipeline, task_id: int) -> dict[str, int]:
    return {a["account"]: a["status"] for a in p.show(task_id)["accounts"]}


def test_incident_000_three_of_five_accounts_fail_around_a_siblings_create(pipeline: Pipeline) -> None:
    p = pipeline
    for account in ("d1", "d4", "d5"):
        p.platform.fail[account] = Reply(400, b'{"error": "video rejected by the platform"}')
    task_id = p.publish(["d1", "d2", "d3", "d4", "d5"])
    p.ok("copy-asset", "run")
    assert p.info("upload-asset")["waiting"] == 5

    p.ok("upload-asset", "run", "--max-jobs", "1")   # d1 fails before any sibling's create
    p.ok("upload-asset", "run", "--max-jobs", "2")   # d2, d3 uploaded
    p.ok("pub-article", "run", "--max-jobs", "1")    # d2 created: the sibling's successful create
    p.ok("upload-asset", "run")                      # d4, d5 fail after it
    p.ok("pub-article", "run")                       # d3 created

    assert statuses(p, task_id) == {"d1": 3, "d2": 4, "d3": 4, "d4": 3, "d5": 3}
    shown = p.show(task_id)
    by_account = {a["account"]: a for a in shown["accounts"]}
    assert by_account["d2"]["item_created_at"] and by_account["d3"]["item_created_at"]
    errors = [row for row in shown["pub_log"] if row["status"] == "error"]
    assert sorted(row["data"]["account"] for row in errors) == ["d1", "d4", "d5"]
    assert all(row["code"] == 35040 and "video rejected by the platform" in row["message"] for row in errors)

    trace = p.trace(task_id)
    order = [(e["account"], e["from"], e["to"]) for e in trace if e["kind"] == "transition"]
    assert order == [("d1", 1, 2), ("d1", 2, 3), ("d2", 1, 2), ("d3", 1, 2), ("d2", 2, 4),
                     ("d4", 1, 2), ("d4", 2, 3), ("d5", 1, 2), ("d5", 2, 3), ("d3", 2, 4)]
    assert not [e for e in trace if e["kind"] == "rejected"]
    assert all(a["at_us"] <= b["at_us"] for a, b in zip(trace, trace[1:], strict=False))

    # Every account's outcome reaches the source, signed, with every account's status.
    assert p.info("source-callback")["waiting"] == 5
    p.ok("source-callback", "run")
    assert len(p.platform.callbacks) == 5
    last = p.platform.callbacks[-1]
    assert verify(last.body, "acceptance-secret", last.headers["x-pubq-signature"])
    assert {a["account"]: a["status"] for a in json.loads(last.body)["accounts"]} == statuses(p, task_id)


def test_incident_001_copy_asset_flow_and_the_35020_failure(pipeline: Pipeline) -> None:
    p = pipeline
    task_id = p.publish(["d1", "d2"])
    assert "- waiting: 1" in p.ok("copy-asset", "info")
    out = p.ok("copy-asset", "run", "--verbose=1", "--isolate=1", "--color=0")
    assert "pubq.jobs.CopyAssetJob (attempt: 1, pid:" in out and "- Started" in out and "- Done" in out
    assert p.info("upload-asset")["waiting"] == 2

    # The same flow with the task's assets disabled.
    bad = p.publish(["d1", "d2"], assets=[{"type": "video", "url": "clip.mp4", "enabled": False}])
    out = p("copy-asset", "run", "--verbose=1", "--isolate=1", "--color=0")
    assert out.returncode == 0, out.stderr
    assert "- Error" in out.stdout
    assert f"> ServerError: based on task ID: {bad}, list of enabled resources is empty" in out.stdout
    info = p.info("copy-asset")
    assert (info["done"], info["failed"]) == (1, 1)
    assert p.info("source-callback")["waiting"] == 1
    shown = p.show(bad)
    assert [(r["code"], r["message"]) for r in shown["pub_log"]] == [
        (35020, f"based on task ID: {bad}, list of enabled resources is empty")] * 2
    assert all(a["status"] == 3 for a in shown["accounts"])
    system_log = (p.dir / "system.log").read_text()
    assert "Traceback" in system_log and "ServerError" in system_log
    assert "Traceback" not in json.dumps(shown["pub_log"])
    assert statuses(p, task_id) == {"d1": 1, "d2": 1}  # the first task is untouched


def test_incident_002_a_raising_follow_up_never_fails_the_job(pipeline: Pipeline) -> None:
    p = pipeline
    task_id = p.publish(["d1", "d2"])
    with p.state_db() as db:  # every channel app task disabled: the copy-asset follow-up raises 35021
        db.execute("UPDATE pub_channel_app_task SET enabled = 0 WHERE task_id = ?", (task_id,))
    out = p("copy-asset", "run", "--verbose", "--no-isolate", "--color=0")
    assert out.returncode == 0 and "- Done" in out.stdout, out.stdout + out.stderr
    info = json.loads(p.ok("copy-asset", "info", "--json"))
    assert (info["done"], info["failed"], info["follow_up_failed"]) == (1, 0, 1)
    follow_ups = json.loads(p.ok("copy-asset", "failed", "list", "--follow-up", "--json"))
    assert [(f["event"], f["error_class"]) for f in follow_ups] == [("afterExec", "NoChannelAppTasksError")]
    rows = p.show(task_id)["pub_log"]
    assert [r["code"] for r in rows] == [35021]
    assert p.info("source-callback")["waiting"] == 1


def test_incident_002_a_final_failure_fires_after_error_once_per_account(pipeline: Pipeline) -> None:
    p = pipeline
    p.platform.fail["d2"] = Reply(503)  # transient: three attempts, then the final failure
    task_id = p.publish(["d1", "d2"])
    p.ok("copy-asset", "run")
    out = p("upload-asset", "run", "--verbose", "--color=0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("- Error") == 3  # attempts: 3, each failed at once, retried without delay
    assert p.info("upload-asset")["failed"] == 1
    shown = p.show(task_id)
    assert statuses(p, task_id) == {"d1": 2, "d2": 3}
    assert [(r["code"], r["data"]["account"]) for r in shown["pub_log"] if r["status"] == "error"] == [(35041, "d2")]
    assert [o["kind"] for o in shown["outbox"] if o["kind"] == "callback"] == ["callback"]

    # `pubq task retry` puts the failed account back and re-pushes its upload; it then succeeds.
    p.platform.fail.clear()
    assert "retrying d2 from the upload step" in p.ok("task", "retry", str(task_id), "--account", "d2")
    p.ok("upload-asset", "run")
    p.ok("pub-article", "run")
    assert statuses(p, task_id) == {"d1": 4, "d2": 4}


def test_publish_reports_invalid_fields_by_path_and_refuses_duplicates(pipeline: Pipeline) -> None:
    p = pipeline
    bad = p.request(["d1", "nobody"], assets=[{"type": "video", "url": "../../etc/passwd"}])
    out = p("publish", str(bad))
    assert out.returncode == 2
    assert out.stderr.startswith("Error: invalid publish request:")
    assert "accounts[1]: 'nobody' is not configured" in out.stderr
    assert "assets[0].url: path leaves the source root" in out.stderr
    good = p.request(["d1"])
    assert p("publish", str(good)).returncode == 0
    again = p("publish", str(good))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert p.info("copy-asset")["waiting"] == 1


def test_demo_runs_in_its_own_directory_and_again(pipeline: Pipeline, tmp_path) -> None:
    target = tmp_path / "demo"
    for _ in range(2):
        out = pipeline("demo", "--dir", str(target), "--color=0")
        assert out.returncode == 0, out.stderr
        assert "3 accounts: 1 failed, 2 under review." in out.stdout
        assert "demo-3" in out.stdout and "35040" in out.stdout
    assert sorted(p.name for p in target.iterdir()) == [
        "platform", "publish", "pubq.log", "pubq.yaml", "queues.db", "queues.db-pubq.lock", "sources", "state.db"]
