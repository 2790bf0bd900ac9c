"""Prometheus metrics through the real CLI: ``metrics serve`` (the backend exporter), ``listen
--metrics-port`` and ``run --metrics-textfile`` (a worker's own), parsed with prometheus-client's
parser, and one scrape by a real Prometheus server (Debian's ``prometheus``, installed by .ci/run)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Cli, free_port, wait_until

#: Spec §7.5: the only label names pubq exports (``le`` is the histograms' own bucket label).
ALLOWED_LABELS = {"queue", "job", "outcome", "state", "le"}


@pytest.fixture(params=["redis", "sqlite"])
def cli(request, tmp_path):
    c = Cli.create(tmp_path, request.param, heartbeat=0.5)
    c.procs = []  # type: ignore[attr-defined]
    yield c
    for p in c.procs:  # type: ignore[attr-defined]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    c("work", "resume")
    c("work", "clear", "--yes")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) → value; labels are checked against §7.5."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert set(s.labels) <= ALLOWED_LABELS, s
            assert s.name.startswith("pubq_"), s
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def serve(cli: Cli, *args: str) -> int:
    port = free_port()
    p = cli.popen(*args, str(port)) if args[-1] == "--metrics-port" else cli.popen(*args, "--port", str(port))
    cli.procs.append(p)  # type: ignore[attr-defined]

    def up() -> bool:
        try:
            fetch(port)
            return True
        except OSError:
            assert p.poll() is None, p.stderr.read()
            return False

    wait_until(up, timeout=20, message="the metrics endpoint")
    return port


def test_the_exporter_reads_job_counts_paused_workers_and_totals_from_the_backend(cli):
    for _ in range(3):
        cli("work", "push", "tests.Noop")
    cli("work", "push", "tests.Fail")
    cli("work", "push", "tests.Noop", "--delay", "300")
    assert cli("work", "run", "--no-isolate").returncode == 0
    cli("work", "push", "tests.Noop")
    jid = cli("work", "push", "tests.Noop").stdout.strip()
    cli("work", "cancel", jid)
    cli("work", "pause")
    port = serve(cli, "metrics", "serve")
    found = samples(fetch(port))
    expected_jobs = {"waiting": 1, "delayed": 1, "reserved": 0, "failed": 2}
    for state, n in expected_jobs.items():
        assert value(found, "pubq_queue_jobs", queue="work", state=state) == n, state
    assert value(found, "pubq_queue_paused", queue="work") == 1
    assert value(found, "pubq_up", queue="work") == 1
    totals = {"done": 3, "failed": 2, "retried": 0, "cancelled": 1, "follow_up_failed": 0}
    for outcome, n in totals.items():
        assert value(found, "pubq_jobs_total", queue="work", outcome=outcome) == n, outcome
    for state in ("idle", "busy", "paused", "stopping", "lost"):
        assert value(found, "pubq_workers", queue="work", state=state) == 0
    worker = cli.popen("work", "listen", "1")
    cli.procs.append(worker)  # type: ignore[attr-defined]
    wait_until(lambda: value(samples(fetch(port)), "pubq_workers", queue="work", state="paused") == 1,
               timeout=20, message="the paused worker in pubq_workers")


def test_run_writes_the_workers_own_metrics_to_a_textfile(cli, tmp_path):
    for _ in range(2):
        cli("work", "push", "tests.Noop")
    cli("work", "push", "tests.Fail")
    path = tmp_path / "textfile" / "pubq.prom"
    path.parent.mkdir()
    out = cli("work", "run", "--metrics-textfile", str(path))
    assert out.returncode == 0, out.stderr
    assert [p.name for p in path.parent.iterdir()] == ["pubq.prom"]  # renamed into place, no temp left
    found = samples(path.read_text())
    assert value(found, "pubq_worker_jobs_total", queue="work", outcome="done") == 2
    assert value(found, "pubq_worker_jobs_total", queue="work", outcome="failed") == 1
    assert value(found, "pubq_worker_jobs_total", queue="work", outcome="cancelled") == 0
    assert value(found, "pubq_job_duration_seconds_count", queue="work", job="tests.Noop") == 2
    assert value(found, "pubq_job_duration_seconds_count", queue="work", job="tests.Fail") == 1
    assert value(found, "pubq_job_wait_seconds_count", queue="work") == 3
    assert value(found, "pubq_job_wait_seconds_bucket", queue="work", le="+Inf") == 3


def test_listen_serves_its_metrics_while_it_works(cli):
    port = serve(cli, "work", "listen", "1", "--metrics-port")
    cli("work", "push", "tests.Noop")
    wait_until(lambda: value(samples(fetch(port)), "pubq_worker_jobs_total", queue="work", outcome="done") == 1,
               timeout=20, message="the worker's done counter")
    found = samples(fetch(port))
    assert value(found, "pubq_job_duration_seconds_count", queue="work", job="tests.Noop") == 1


def test_a_real_prometheus_server_scrapes_the_exporter(tmp_path):
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed (apt-get install prometheus; .ci/run installs it)"
    cli = Cli.create(tmp_path, "redis")
    server = None
    try:
        for _ in range(4):
            cli("work", "push", "tests.Noop")
        cli("work", "run", "--no-isolate")
        cli("work", "push", "tests.Noop", "--delay", "300")
        cli.procs = []  # type: ignore[attr-defined]
        target = serve(cli, "metrics", "serve")
        web = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "pubq", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}],
        }))
        server = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
        )

        def query(expr: str) -> list[dict]:
            url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return json.loads(resp.read())["data"]["result"]
            except OSError:
                assert server.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                return []

        done = wait_until(lambda: query('pubq_jobs_total{queue="work",outcome="done"}'), timeout=60,
                          message="Prometheus to scrape pubq_jobs_total")
        assert float(done[0]["value"][1]) == 4
        assert done[0]["metric"]["job"] == "pubq"  # Prometheus's own target label
        delayed = query('pubq_queue_jobs{queue="work",state="delayed"}')
        assert float(delayed[0]["value"][1]) == 1
        assert float(query('pubq_up{queue="work"}')[0]["value"][1]) == 1
        names = {r["metric"]["__name__"] for r in query('{__name__=~"pubq_.*"}')}
        assert names == {"pubq_queue_jobs", "pubq_queue_paused", "pubq_workers", "pubq_jobs_total", "pubq_up"}
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        for p in getattr(cli, "procs", []):
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        cli("work", "clear", "--yes")


def test_listen_refuses_a_metrics_port_in_use(cli):
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("work", "listen", "1", "--metrics-port", str(port))
    assert out.returncode == 2
    assert out.stderr.startswith(f"Error: cannot serve metrics on port {port}:")


def test_metrics_labels_never_carry_job_ids(cli, tmp_path):
    path = Path(tmp_path / "m.prom")
    cli("work", "push", "tests.Noop")
    cli("work", "run", "--metrics-textfile", str(path))
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            assert not any(v.isdigit() and k != "le" for k, v in s.labels.items()), s
