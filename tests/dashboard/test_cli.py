"""``pubq dashboard`` as a user starts it: the bind rule at the CLI edge, and a real server with auth."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers import PUBQ, ROOT, free_port, subprocess_env, wait_until

from .support import dashboard_config


def test_another_host_without_auth_exits_2_with_one_line(tmp_path: Path):
    path = dashboard_config(tmp_path)
    proc = subprocess.run([*PUBQ, "--config", str(path), "dashboard", "--host", "0.0.0.0", "--port",
                           str(free_port())], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "without auth" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_another_host_with_auth_starts_and_asks_for_it(tmp_path: Path):
    path = dashboard_config(tmp_path, top={"dashboard": {"auth": {"token_env": "PUBQ_TEST_DASH_TOKEN"}}})
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*PUBQ, "--config", str(path), "dashboard", "--host", "0.0.0.0", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=subprocess_env(PUBQ_TEST_DASH_TOKEN="s3cret-token"))
    try:
        def status(token: str) -> int | None:
            assert proc.poll() is None, log.read_text()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {token}"})
            try:
                return urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None

        wait_until(lambda: status("s3cret-token") == 200, timeout=30, message="the dashboard to answer with auth")
        assert status("wrong") == 401
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Serving the pubq dashboard on http://0.0.0.0:" in log.read_text()
    assert "s3cret-token" not in log.read_text()
