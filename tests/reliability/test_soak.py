"""The reliability soak at small size, on every backend it covers.

Runs ``tests/reliability/soak.py`` as a user would (real CLI workers, SIGKILLs, Redis restarts or PostgreSQL
session kills, failing and malformed jobs) and asserts its invariants; no timing is asserted.
A backend that cannot be reached fails the test with the reason (no skip).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.drivers.backends import POSTGRES_URL
from tests.helpers import ROOT, subprocess_env

JOBS = 1500
WORKERS = 3
MALFORMED = 100


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["redis", "sqlite", "postgres"])
def test_the_soak_loses_no_job_and_fails_each_failed_job_exactly_once(backend, tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "reliability" / "soak.py"), "--backend", backend, "--jobs", str(JOBS),
         "--workers", str(WORKERS), "--kill-every", "2", "--redis-restarts", "2", "--pg-terminations", "2",
         "--fail-rate", "0.01", "--malformed", str(MALFORMED), "--deadline", "300", "--json", str(out),
         "--keep"],  # records and worker logs stay under tmp_path (TMPDIR) to read after a failure
        capture_output=True, text=True, cwd=ROOT, timeout=380,
        env=subprocess_env(PUBQ_SOAK_POSTGRES_URL=POSTGRES_URL, TMPDIR=str(tmp_path)),
    )
    assert out.exists(), f"the soak did not finish ({backend}):\n{proc.stdout}\n{proc.stderr}"
    r = json.loads(out.read_text())
    assert r["problems"] == [], f"{proc.stdout}\nrecords and worker logs: {r.get('workdir')}"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r["pushed"] == JOBS + MALFORMED and r["lost"] == 0
    assert r["done"] + r["failed"] == r["pushed"]
    assert r["run_twice"] == r["run_twice_explained"]
    # One final afterError per failed job; a worker SIGKILLed after its handlers but before its
    # settle makes the reclaimer run them again (explained by the kill, like a run twice).
    assert r["final_after_error_repeats"] == r["final_after_error_repeats_explained"]
    assert r["final_after_error_calls"] - r["final_after_error_repeats"] == r["failed"]
    assert r["failed"] == r["failed_on_purpose"] + MALFORMED
    assert r["malformed_registered"] == MALFORMED and r["malformed_by_kind"]["too_big"] >= 1
    assert r["workers_alive_at_end"] == WORKERS and r["exit_codes_on_sigterm"] == [0] * WORKERS
    assert r["kills"] >= 1, "the run ended before the first SIGKILL: raise JOBS"
    if backend in ("redis", "postgres"):
        assert len(r["outages"]) == 2
