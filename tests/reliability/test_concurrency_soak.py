"""The reliability soak with many jobs in flight per worker (issue 17, spec §7.11).

Real CLI workers at ``--concurrency`` under SIGKILLs (each kill drops up to N jobs in flight at
once) and a Redis restart: the invariants of docs/reliability.md hold as for one job at a time —
nothing lost, every run twice explained by a kill before its ack, one final afterError per failed
job. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, subprocess_env

MALFORMED = 20


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize(("workers", "concurrency", "isolate", "jobs"), [
    (4, 16, False, 1200),  # threads
    (2, 2, True, 300),  # isolated children
])
def test_concurrent_workers_under_sigkill_lose_nothing_and_fail_each_job_once(workers, concurrency, isolate, jobs,
                                                                             tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "tests" / "reliability" / "soak.py"), "--backend", "redis", "--jobs", str(jobs),
           "--workers", str(workers), "--concurrency", str(concurrency), "--kill-every", "1",
           "--redis-restarts", "1", "--fail-rate", "0.01", "--malformed", str(MALFORMED), "--big", "1",
           "--sleep-ms", "20", "--ttr", "3", "--settle-within", "3", "--deadline", "150", "--json", str(out), "--keep"]
    if not isolate:
        cmd.append("--no-isolate")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=190,
                          env=subprocess_env(TMPDIR=str(tmp_path)))
    assert out.exists(), f"the soak did not finish:\n{proc.stdout}\n{proc.stderr}"
    r = json.loads(out.read_text())
    assert r["problems"] == [], f"{proc.stdout}\nrecords and worker logs: {r.get('workdir')}"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r["pushed"] == jobs + MALFORMED and r["lost"] == 0
    assert r["done"] + r["failed"] == r["pushed"]
    assert r["run_twice"] == r["run_twice_explained"]
    assert r["final_after_error_repeats"] == r["final_after_error_repeats_explained"]
    assert r["final_after_error_calls"] - r["final_after_error_repeats"] == r["failed"]
    assert r["failed"] == r["failed_on_purpose"] + MALFORMED
    assert r["workers_alive_at_end"] == workers and r["exit_codes_on_sigterm"] == [0] * workers
    assert r["kills"] >= 1, "the run ended before the first SIGKILL: raise the job count"
    assert len(r["outages"]) == 1
