"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (no browser
download: ``executable_path`` points at the system binary), against ``pubq dashboard`` and a
``pubq work listen`` worker run as a user runs them. Screenshots go under the test's tmp_path."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pubq.publishing.service import service_for
from tests.helpers import PUBQ, ROOT, free_port, subprocess_env, wait_until

from .support import dashboard_config, open_app, request_doc

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Served:
    """``pubq dashboard`` (and workers) on a config of the test's own; stopped after the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = dashboard_config(tmp_path)
        self.env = subprocess_env()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.logs = tmp_path / "logs"
        self.logs.mkdir()

    def start(self, *args: str) -> subprocess.Popen:
        out = open(self.logs / f"{len(self.procs)}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*PUBQ, "--config", str(self.path), *args], stdout=out, stderr=subprocess.STDOUT,
                                env=self.env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def serve(self) -> None:
        import urllib.request

        proc = self.start("dashboard", "--port", str(self.port), "--refresh", "0.5")

        def up() -> bool:
            assert proc.poll() is None, (self.logs / "0.log").read_text()
            try:
                return urllib.request.urlopen(self.url + "/static/style.css", timeout=2).status == 200
            except OSError:
                return False

        wait_until(up, timeout=30, message="the dashboard to answer")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.stop()


def count(page: Any, queue: str, name: str) -> int:
    return int(page.inner_text(f'tr[data-queue="{queue}"] [data-count="{name}"]').split()[0])


def test_overview_counts_in_the_browser(browser, served, tmp_path):
    app = open_app(served.path)
    try:
        for _ in range(4):
            app.queue("work").push_name("tests.Noop", {})
        app.queue("work").push_name("tests.Noop", {}, delay=600)
    finally:
        app.close()
    served.serve()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(served.url + "/")
    assert count(page, "work", "waiting") == 4 and count(page, "work", "delayed") == 1
    assert count(page, "work", "failed") == 0 and count(page, "work", "workers") == 0
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    if (out := _docs_shots()) is not None:
        shutil.copy(tmp_path / "overview.png", out / "dashboard-overview.png")


def test_pause_button_pauses_a_live_worker_and_retry_runs_the_failed_job(browser, served, tmp_path):
    runs = tmp_path / "runs"
    app = open_app(served.path)
    try:
        failed_id = app.queue("work").push_name("tests.Fail", {"message": "first", "path": str(runs)})
    finally:
        app.close()
    served.serve()
    served.start("work", "listen")
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    def reads(url: str, selector: str, text: str) -> bool:
        page.goto(served.url + url)
        return text in page.inner_text(selector)

    wait_until(lambda: reads("/queues/work/failed", "#failed", str(failed_id)), timeout=30,
               message="the job to fail into the registry")
    wait_until(lambda: reads("/workers", "#workers", "idle"), timeout=30, message="the worker to show idle")
    page.goto(served.url + "/")
    page.click('tr[data-queue="work"] button[name="pause"]')
    assert "Queue work is paused." in page.inner_text(".notice")
    wait_until(lambda: reads("/workers", "#workers td[data-state]", "paused"), timeout=30,
               message="the worker to go paused")
    page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)
    page.goto(served.url + "/")
    page.click('tr[data-queue="work"] button[name="resume"]')
    page.goto(served.url + "/queues/work/failed")
    page.click(f'tr[data-job="{failed_id}"] button')
    assert f"Job {failed_id} is waiting again." in page.inner_text(".notice")
    wait_until(lambda: len(runs.read_text().splitlines()) == 2, timeout=30, message="the retried job to run")
    wait_until(lambda: reads(f"/queues/work/jobs/{failed_id}", "h1", "failed"), timeout=30,
               message="the retried job's outcome on its page")
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)


def test_task_page_shows_each_accounts_final_status(browser, served, tmp_path):
    app = open_app(served.path)
    try:
        task = service_for(app).submit(request_doc(tmp_path, accounts=["a1", "a2", "a3"]))
    finally:
        app.close()
    served.serve()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served.url + "/tasks")
    page.click(f'a[href="/tasks/{task}"]')
    statuses = {a: page.inner_text(f'#accounts tr[data-account="{a}"] td[data-status]') for a in ("a1", "a2", "a3")}
    assert statuses == {"a1": "4 under review", "a2": "3 failed", "a3": "4 under review"}
    assert page.locator('section.timeline[data-account="a2"] li.k-transition').count() >= 2
    page.screenshot(path=str(tmp_path / "task.png"), full_page=True)
    if (out := _docs_shots()) is not None:
        shutil.copy(tmp_path / "task.png", out / "dashboard-task.png")


def _docs_shots() -> Path | None:
    """``PUBQ_DOCS_SCREENSHOTS=1`` refreshes docs/img (run by hand, never by CI)."""
    import os

    return ROOT / "docs" / "img" if os.environ.get("PUBQ_DOCS_SCREENSHOTS") == "1" else None

