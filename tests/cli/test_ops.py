"""Seeing and steering live work through the real CLI (issue 13): workers, jobs, show, pause/resume,
cancel, progress and health, on Redis and on the db driver (SQLite), with real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import Cli, wait_until
from tests.sample_jobs import read_lines

#: Short beats, so "lost" (3 beats) and "dropped" (10 beats) happen within a test's patience.
FAST = {"heartbeat": 0.5}


@pytest.fixture(params=["redis", "sqlite"])
def ops(request, tmp_path):
    c = Cli.create(tmp_path, request.param, **FAST)
    procs: list[subprocess.Popen] = []
    c.procs = procs  # type: ignore[attr-defined]
    yield c
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    c("work", "resume")
    c("work", "clear", "--yes")


def listen(cli: Cli, *args: str) -> subprocess.Popen:
    p = cli.popen("work", "listen", "1", *args)
    cli.procs.append(p)  # type: ignore[attr-defined]
    return p


def workers(cli: Cli) -> list[dict]:
    out = cli("workers", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def push(cli: Cli, name: str, args: dict | None = None, *extra: str) -> int:
    out = cli("work", "push", name, "--args", json.dumps(args or {}), *extra)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def events(cli: Cli) -> list[str]:
    return read_lines(str(cli.events))


# -- the worker registry --------------------------------------------------------------------------


def test_a_worker_registers_and_a_clean_stop_removes_it_at_once(ops):
    p = listen(ops)
    w = wait_until(lambda: [w for w in workers(ops) if w["pid"] == p.pid], message="the worker to register")[0]
    assert w["queue"] == "work" and w["state"] in ("idle", "busy") and w["id"].endswith(f":{p.pid}:" + w["id"][-6:])
    table = ops("workers")
    assert w["id"] in table.stdout and "Worker" in table.stdout
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert workers(ops) == []
    assert ops("workers").stdout.strip() == "No workers."


def test_a_sigkilled_worker_goes_lost_then_is_dropped(ops):
    p = listen(ops)
    wait_until(lambda: workers(ops), message="the worker to register")
    p.kill()
    p.wait(10)
    lost = wait_until(lambda: [w for w in workers(ops) if w["state"] == "lost"], message="the worker to be lost")
    assert lost[0]["pid"] == p.pid
    wait_until(lambda: workers(ops) == [], message="the lost worker to be dropped")


def test_a_reserved_job_names_its_holder_in_jobs_and_show(ops, tmp_path):
    release = tmp_path / "release"
    jid = push(ops, "tests.Progress", {"steps": 2, "release": str(release)})
    p = listen(ops)
    w = wait_until(lambda: [w for w in workers(ops) if w["job_id"] == jid], message="the job to run")[0]
    assert (w["concurrency"], w["in_flight"], w["job_ids"]) == (1, 1, [jid])
    assert "1/1" in ops("workers").stdout
    listed = json.loads(ops("work", "jobs", "--state", "reserved", "--json").stdout)
    assert [(j["id"], j["holder"]) for j in listed["jobs"]] == [(jid, w["id"])]
    show = ops("work", "show", str(jid))
    assert f"holder: {w['id']}" in show.stdout and "state: reserved" in show.stdout
    release.touch()
    wait_until(lambda: ops.info()["done"] == 1, message="the job to finish")
    p.send_signal(signal.SIGTERM)
    p.wait(20)


def test_progress_from_an_isolated_child_appears_in_workers_jobs_and_show(ops, tmp_path):
    release = tmp_path / "release"
    jid = push(ops, "tests.Progress", {"steps": 4, "release": str(release)})
    p = listen(ops, "--isolate")
    w = wait_until(lambda: [w for w in workers(ops) if w["progress"] == 1.0], message="progress 100% in workers")[0]
    assert (w["job_id"], w["progress_message"], w["state"]) == (jid, "step 4 of 4", "busy")
    assert "100% step 4 of 4" in ops("workers").stdout
    reserved = wait_until(lambda: [j for j in json.loads(ops("work", "jobs", "--state", "reserved", "--json").stdout)
                                   ["jobs"] if j["progress"] == 1.0], message="progress stored with the job")
    assert reserved[0]["progress_message"] == "step 4 of 4"
    assert "progress: 100%" in ops("work", "show", str(jid)).stdout
    release.touch()
    wait_until(lambda: ops.info()["done"] == 1, message="the job to finish")
    p.send_signal(signal.SIGTERM)
    p.wait(20)


# -- listing ---------------------------------------------------------------------------------------


def test_jobs_pages_with_after_and_show_prints_any_state(ops):
    ids = [push(ops, "tests.Noop", {}, "--priority", str(p)) for p in (5, 1, 5)]
    delayed = push(ops, "tests.Noop", {}, "--delay", "300")
    first = json.loads(ops("work", "jobs", "--limit", "2", "--json").stdout)
    assert [j["id"] for j in first["jobs"]] == [ids[1], ids[0]] and first["next_after"] == ids[0]
    second = json.loads(ops("work", "jobs", "--limit", "2", "--after", str(ids[0]), "--json").stdout)
    assert [j["id"] for j in second["jobs"]] == [ids[2]] and second["next_after"] is None
    table = ops("work", "jobs", "--limit", "2").stdout
    assert "More: --after" in table and "tests.Noop" in table
    assert [j["id"] for j in json.loads(ops("work", "jobs", "--state", "delayed", "--json").stdout)["jobs"]] == [delayed]
    assert "state: delayed" in ops("work", "show", str(delayed)).stdout
    assert ops("work", "jobs", "--state", "failed").stdout.strip() == "No failed jobs."
    missing = ops("work", "show", "99999")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: The job is not found."


# -- pause and resume ------------------------------------------------------------------------------


def test_pause_with_three_workers_up_reserves_nothing_until_resume(ops):
    procs = [listen(ops) for _ in range(3)]
    wait_until(lambda: len(workers(ops)) == 3, message="three workers")
    assert ops("work", "pause").stdout.strip() == "Queue work is paused."
    wait_until(lambda: [w["state"] for w in workers(ops)] == ["paused"] * 3, timeout=15,
               message="every worker to show paused")
    pushed_at = time.time()
    ids = [push(ops, "tests.Noop") for _ in range(5)]
    # Every worker beats several times after the pushes woke them; through all of it nothing is reserved.
    def quiet_window_passed() -> bool:
        info = ops.info()
        assert (info["waiting"], info["reserved"], info["done"]) == (5, 0, 0), info
        ws = workers(ops)
        return len(ws) == 3 and all(w["state"] == "paused" and w["last_seen"] > pushed_at + 1.0 for w in ws)

    wait_until(quiet_window_passed, timeout=20, message="the workers to stay paused for a second")
    listing = json.loads(ops("work", "jobs", "--json").stdout)
    assert sorted(j["id"] for j in listing["jobs"]) == ids
    assert ops("work", "info").stdout.endswith("- paused: yes\n")
    assert ops("work", "resume").stdout.strip() == "Queue work is resumed."
    wait_until(lambda: ops.info()["done"] == 5, message="the jobs to run after resume")
    assert ops.info()["paused"] is False and "paused" not in ops("work", "info").stdout
    for p in procs:
        p.send_signal(signal.SIGTERM)
    assert [p.wait(20) for p in procs] == [0, 0, 0]


def test_run_on_a_paused_queue_exits_0_saying_so(ops):
    push(ops, "tests.Noop")
    ops("work", "pause")
    out = ops("work", "run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "The queue work is paused."
    assert ops.info()["waiting"] == 1
    ops("work", "resume")
    assert ops("work", "run").returncode == 0 and ops.info()["done"] == 1


# -- cancel ------------------------------------------------------------------------------------------


def _cancelled_once(cli: Cli, jid: int, reason: str) -> None:
    wait_until(lambda: cli.info()["failed"] == 1, message="the cancelled job in the failed registry")
    assert events(cli) == [f"afterError {jid} 1 retry=0 JobCancelledError"]
    entry = json.loads(cli("work", "failed", "show", str(jid), "--json").stdout)
    assert (entry["error_class"], entry["message"], entry["code"]) == ("JobCancelledError", reason, "cancelled")
    info = cli.info()
    assert (info["cancelled"], info["failed_total"], info["reserved"]) == (1, 1, 0)
    listed = json.loads(cli("work", "jobs", "--state", "failed", "--json").stdout)["jobs"]
    assert [(j["id"], j["cancelled"]) for j in listed] == [(jid, True)]


def test_cancel_a_running_isolated_job_kills_its_child(ops, tmp_path):
    log = tmp_path / "runs"
    jid = push(ops, "tests.Sleep", {"seconds": 60, "path": str(log)})
    p = listen(ops, "--isolate")
    wait_until(lambda: read_lines(str(log)), message="the job to start")
    child = int(read_lines(str(log))[0].split()[-1])
    out = ops("work", "cancel", str(jid), "--reason", "operator stop")
    assert out.returncode == 0 and out.stdout.startswith(f"Job {jid} is running: its worker (")
    _cancelled_once(ops, jid, "operator stop")
    assert not os.path.exists(f"/proc/{child}") or "Z" in open(f"/proc/{child}/stat").read().split()[2]
    assert read_lines(str(log)) == [read_lines(str(log))[0]]  # it never ended
    assert p.poll() is None  # the worker goes on
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0


def test_cancel_a_running_job_without_isolate_stops_it_at_its_checkpoint(ops, tmp_path):
    log = tmp_path / "runs"
    jid = push(ops, "tests.Checkpoint", {"seconds": 60, "path": str(log)})
    p = listen(ops, "--no-isolate")
    wait_until(lambda: read_lines(str(log)), message="the job to start")
    assert ops("work", "cancel", str(jid), "--reason", "enough").returncode == 0
    _cancelled_once(ops, jid, "enough")
    assert not any(line.startswith("end") for line in read_lines(str(log)))
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0


def test_cancel_a_waiting_job_settles_it_at_once_and_a_finished_one_is_refused(ops):
    jid = push(ops, "tests.Noop")
    out = ops("work", "cancel", str(jid), "--reason", "not needed")
    assert (out.returncode, out.stdout.strip()) == (0, f"Job {jid} is cancelled.")
    assert events(ops) == [f"afterError {jid} 0 retry=0 JobCancelledError"]
    assert ops.info()["cancelled"] == 1 and ops.info()["waiting"] == 0
    again = ops("work", "cancel", str(jid))
    assert (again.returncode, again.stderr.strip()) == (1, "Error: The job already finished.")
    done = push(ops, "tests.Noop")
    ops("work", "run")
    assert ops("work", "cancel", str(done)).stderr.strip() == "Error: The job already finished."
    missing = ops("work", "cancel", "987654")
    assert (missing.returncode, missing.stderr.strip()) == (1, "Error: The job is not found.")


def test_a_cancel_whose_worker_is_sigkilled_is_finished_by_the_reclaimer(tmp_path):
    cli = Cli.create(tmp_path, "redis", **FAST)
    try:
        log = tmp_path / "runs"
        jid = push(cli, "tests.Sleep", {"seconds": 60, "path": str(log)}, "--ttr", "2")
        p = cli.popen("work", "listen", "1", "--isolate")
        wait_until(lambda: read_lines(str(log)), message="the job to start")
        p.kill()  # the worker dies (its child with it) ...
        p.wait(10)
        assert cli("work", "cancel", str(jid), "--reason", "late").returncode == 0  # ... the request stays
        # Past the TTR (+ grace) any worker's reclaim ends the job as the cancel it was.
        wait_until(lambda: cli("work", "run").returncode == 0 and cli.info()["failed"] == 1, timeout=20,
                   message="the reclaimer to end the job")
        _cancelled_once(cli, jid, "late")
    finally:
        cli("work", "clear", "--yes")


# -- health -------------------------------------------------------------------------------------------


def test_health_needs_a_live_worker_on_every_queue(ops):
    down = ops("health")
    assert down.returncode == 1
    assert down.stderr.strip() == "Error: queue work: no live worker (no heartbeat in the last 10 s)"
    report = json.loads(ops("health", "--json").stdout)
    assert report["healthy"] is False and report["queues"]["work"] == {"backend": True, "live_workers": 0}
    p = listen(ops)
    wait_until(lambda: ops("health", "--queue", "work").returncode == 0, message="health with a worker")
    assert ops("health").stdout.strip() == "OK: 1 queue, 1 live worker."
    p.kill()
    p.wait(10)
    wait_until(lambda: ops("health", "--max-stale", "0.5").returncode == 1, message="health without a live worker")


def test_health_reports_an_unreachable_backend(tmp_path):
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": "redis://127.0.0.1:1/0"})
    out = cli("health")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: queue work: backend does not answer:")
    assert len(out.stderr.strip().splitlines()) == 1
