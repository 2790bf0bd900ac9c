"""Every dashboard route through Starlette's test client: content, status codes, CSRF, auth,
escaping and read-only mode, on a Redis queue and SQLite publish state."""

from __future__ import annotations

import base64
import re

import pytest

from pubq.dashboard.settings import (
    DashboardSettings,
    check_bind,
    hash_password,
    parse_settings,
    verify_password,
)
from pubq.errors import ConfigError, UsageError
from pubq.publishing.service import service_for

from .support import csrf_of, make_client, request_doc


def run_work(app):
    """Run every due job of ``work`` in this process, as ``pubq work run --isolate=0`` does."""
    from pubq.worker import Worker

    Worker(app.queue("work"), isolate=False, install_signals=False).run()


def fail_one(app, message="boom"):
    """Push a failing job to ``work`` and run it there: one failed registry entry."""
    job_id = app.queue("work").push_name("tests.Fail", {"message": message})
    run_work(app)
    return job_id


def test_overview_shows_each_queue_with_counts_health_and_a_chart(dash_app, client):
    q = dash_app.queue("work")
    for _ in range(3):
        q.push_name("tests.Noop", {})
    html = client.get("/").text
    row = re.search(r'<tr data-queue="work">(.*?)</tr>', html, re.S).group(1)
    assert 'data-count="waiting">3<' in row and 'data-count="failed"><a href="/queues/work/failed">0<' in row
    assert 'data-paused="no"' in row and "<svg" in row
    assert all(f'data-queue="{n}"' in html for n in ("copy-asset", "upload-asset", "pub-article", "source-callback"))
    assert 'id="health"' in html and "redis://127.0.0.1" in html and ">ok<" in html


def chart_total(html: str, queue: str) -> int:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S).group(1)
    return int(re.search(r'</svg> <span class="muted">(\d+)</span>', row).group(1))


def test_the_chart_reads_the_backend_throughput_the_workers_recorded(dash_app, client):
    q = dash_app.queue("work")
    assert chart_total(client.get("/").text, "work") == 0
    for _ in range(3):
        q.push_name("tests.Noop", {})
    q.push_name("tests.Fail", {"message": "x"})
    run_work(dash_app)  # its heartbeat adds 3 done and 1 failed to the backend's minute bucket
    got = q.driver.throughput(0)
    assert (sum(b.done for b in got), sum(b.failed for b in got)) == (3, 1)
    assert chart_total(client.get("/").text, "work") == 4
    with make_client(dash_app) as fresh:  # a second (or restarted) dashboard shows the same
        html = fresh.get("/").text
    assert chart_total(html, "work") == 4 and "<title>3 done</title>" in html and "<title>1 failed</title>" in html


def test_queue_page_pages_by_keyset_and_filters_by_class(dash_app, client):
    q = dash_app.queue("work")
    ids = [q.push_name("tests.Noop", {}) for _ in range(55)]
    special = q.push_name("tests.Record", {"path": "/nowhere", "tag": "t"})
    first = client.get("/queues/work")
    assert first.status_code == 200
    listed = re.findall(r'<a href="/queues/work/jobs/(\d+)">', first.text)
    assert [int(i) for i in listed] == ids[:50]
    nxt = re.search(r'id="next" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    second = client.get(nxt).text
    assert [int(i) for i in re.findall(r'<a href="/queues/work/jobs/(\d+)">', second)] == [*ids[50:], special]
    only = client.get("/queues/work", params={"class": "tests.Record"}).text
    assert [int(i) for i in re.findall(r'<a href="/queues/work/jobs/(\d+)">', only)] == [special]
    assert client.get("/queues/work", params={"state": "nope"}).status_code == 400
    assert client.get("/queues/work", params={"after": "x"}).status_code == 400
    assert client.get("/queues/missing").status_code == 404


def test_job_page_pretty_prints_args_as_text_never_markup(dash_app, client):
    job_id = dash_app.queue("work").push_name(
        "tests.Record", {"path": "<script>alert('x')</script>", "tag": "postgresql://u:hunter2@db/x"})
    html = client.get(f"/queues/work/jobs/{job_id}").text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "hunter2" not in html and "postgresql://u:***@db/x" in html
    assert '"path":' in html.replace("&#34;", '"')  # indented JSON
    assert client.get("/queues/work/jobs/999999").status_code == 404
    assert client.get("/queues/work/jobs/abc").status_code == 404


def test_failed_job_page_shows_each_attempt_with_its_traceback(dash_app, client):
    job_id = fail_one(dash_app, "<b>bad</b>")
    html = client.get(f"/queues/work/jobs/{job_id}").text
    assert "Attempt 1 failed at" in html and "RuntimeError" in html
    assert 'class="traceback"' in html and "Traceback (most recent call last)" in html
    assert "&lt;b&gt;bad&lt;/b&gt;" in html and "<b>bad</b>" not in html


def test_a_post_without_or_with_a_foreign_csrf_token_is_refused(dash_app, client):
    assert client.post("/queues/work/pause").status_code == 403
    assert client.post("/queues/work/pause", data={"csrf": "0" * 64}).status_code == 403
    with make_client(dash_app) as other:
        foreign = csrf_of(other.get("/").text)
    assert client.post("/queues/work/pause", data={"csrf": foreign}).status_code == 403
    assert not dash_app.queue("work").driver.paused()
    assert client.get("/queues/work/pause").status_code == 405  # actions are POST only


def test_pause_and_resume_through_the_buttons(dash_app, client):
    token = csrf_of(client.get("/").text)
    r = client.post("/queues/work/pause", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/queues/work?")
    assert dash_app.queue("work").driver.paused()
    assert 'data-paused="yes"' in client.get("/").text
    assert "Queue work is paused." in client.get(r.headers["location"]).text
    client.post("/queues/work/resume", data={"csrf": token})
    assert not dash_app.queue("work").driver.paused()


def test_cancel_a_waiting_job(dash_app, client):
    job_id = dash_app.queue("work").push_name("tests.Noop", {})
    token = csrf_of(client.get(f"/queues/work/jobs/{job_id}").text)
    r = client.post(f"/queues/work/jobs/{job_id}/cancel", data={"csrf": token, "reason": "not needed"})
    assert r.status_code == 303
    entry = dash_app.queue("work").driver.failed_get(job_id)
    assert entry is not None and entry.code == "cancelled" and entry.message == "not needed"


def test_failed_registry_filters_retries_one_and_all_matching_and_purges_after_confirm(dash_app, client):
    a = fail_one(dash_app, "disk full")
    b = fail_one(dash_app, "timeout talking to x")
    c = fail_one(dash_app, "timeout again")
    html = client.get("/queues/work/failed").text
    assert {int(i) for i in re.findall(r'data-job="(\d+)"', html)} == {a, b, c}
    only = client.get("/queues/work/failed", params={"message": "TIMEOUT"}).text
    assert {int(i) for i in re.findall(r'data-job="(\d+)"', only)} == {b, c}
    assert client.get("/queues/work/failed", params={"class": "tests.Noop"}).text.count("data-job=") == 0
    token = csrf_of(html)
    driver = dash_app.queue("work").driver
    assert client.post(f"/queues/work/failed/{a}/retry", data={"csrf": token}).status_code == 303
    assert driver.status(a).value == "waiting"
    r = client.post("/queues/work/failed/retry", data={"csrf": token, "message": "timeout", "class": ""})
    assert "2+jobs+waiting+again" in r.headers["location"]
    assert driver.status(b).value == "waiting" and driver.status(c).value == "waiting"
    run_work(dash_app)  # all three fail again; the registry holds them
    assert driver.counts().failed == 3
    confirm = client.get("/queues/work/failed/purge")
    assert "3 entries" in confirm.text
    client.post("/queues/work/failed/purge", data={"csrf": token, "confirm": "wrong"})
    assert driver.counts().failed == 3  # not confirmed
    client.post("/queues/work/failed/purge", data={"csrf": token, "confirm": "work"})
    assert driver.counts().failed == 0


def test_workers_page_shows_registry_entries_and_flags_lost_ones_without_writing(dash_app, client):
    from pubq.drivers.base import WorkerInfo

    driver = dash_app.queue("work").driver
    driver.heartbeat(WorkerInfo("host:1:aa", "work", "host", 1, started_at=1.0, state="busy", job_id=5,
                                job_name="tests.Sleep", attempt=1, progress=0.25, done=7, failed=2, rss_mib=40,
                                concurrency=8, in_flight=3, job_ids=[5, 9, 12]))
    html = client.get("/workers").text
    row = re.search(r'<tr data-worker="host:1:aa".*?</tr>', html, re.S).group(0)
    assert 'data-state="busy"' in row and "tests.Sleep" in row and "25%" in row
    assert 'data-in-flight="3">3/8</td>' in row
    assert 'href="/queues/work/jobs/9">9</a>' in row and 'href="/queues/work/jobs/12">12</a>' in row
    assert '<td class="n">7</td><td class="n">2</td><td class="n">40</td>' in row
    driver.heartbeat(WorkerInfo("host:2:bb", "work", "host", 2, started_at=2.0, heartbeat=0.01))
    from tests.helpers import wait_until

    wait_until(lambda: 'data-state="lost"' in client.get("/workers").text, message="the silent worker flagged lost")


def test_tasks_page_lists_newest_first_and_filters_by_status_and_channel(dash_app, client):
    service = service_for(dash_app)
    ok = service.submit(request_doc(dash_app.config.base_dir, accounts=["a1"]))
    bad = service.submit(request_doc(dash_app.config.base_dir, accounts=["a2"]))
    ids = [int(i) for i in re.findall(r'<a href="/tasks/(\d+)">', client.get("/tasks").text)]
    assert ids == [bad, ok]
    failed = client.get("/tasks", params={"status": "3"}).text
    assert [int(i) for i in re.findall(r'<a href="/tasks/(\d+)">', failed)] == [bad]
    assert "No tasks." in client.get("/tasks", params={"channel": "nothere"}).text
    assert client.get("/tasks", params={"status": "x"}).status_code == 400


def test_task_page_shows_every_account_and_timeline_and_retries_a_failed_one(dash_app, client):
    task = service_for(dash_app).submit(request_doc(dash_app.config.base_dir, accounts=["a1", "a2"]))
    html = client.get(f"/tasks/{task}").text
    assert re.search(r'data-account="a1">.*?data-status="under review"', html, re.S)
    assert re.search(r'data-account="a2">.*?data-status="failed"', html, re.S)
    assert "releasing → failed" in html
    # One time format on every page: UTC to the second; timelines to the µs; the ISO value kept in datetime=
    assert re.search(r'<time datetime="[^"]+Z">\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}</time>', html)
    assert re.search(r"<dt>Created</dt><dd><time [^>]+>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}</time>", html)
    assert "T" not in re.search(r'<li class="k-[a-z]+"><time [^>]+>([^<]+)</time>', html).group(1)
    token = csrf_of(html)
    r = client.post(f"/tasks/{task}/retry", data={"csrf": token, "account": "a2"})
    assert r.status_code == 303 and "Retried+a2" in r.headers["location"]
    rows = {a["account"]: a for a in service_for(dash_app).accounts_view(task)}
    assert rows["a2"]["round"] == 1  # the service moved it 3→1 and ran the upload again (sync queues)
    assert client.get("/tasks/999999").status_code == 404


def test_read_only_hides_actions_and_refuses_every_post(dash_app):
    fail_one(dash_app)
    with make_client(dash_app, read_only=True) as c:
        for url in ("/", "/queues/work", "/queues/work/failed", "/queues/work/jobs/1"):
            page = c.get(url)
            assert page.status_code == 200 and 'method="post"' not in page.text, url
        assert c.post("/queues/work/pause").status_code == 403
        assert c.post("/queues/work/failed/purge", data={"confirm": "work"}).status_code == 403
    assert not dash_app.queue("work").driver.paused() and dash_app.queue("work").driver.counts().failed == 1


def test_auth_basic_and_bearer(dash_app):
    settings = DashboardSettings(username="ops", password_hash=hash_password("pw", iterations=1000), token="tok")
    with make_client(dash_app, settings=settings) as c:
        r = c.get("/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        bad = base64.b64encode(b"ops:nope").decode()
        assert c.get("/", headers={"Authorization": f"Basic {bad}"}).status_code == 401
        good = base64.b64encode(b"ops:pw").decode()
        assert c.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Bearer tok"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/queues/work/pause", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_settings_and_the_bind_rule():
    assert verify_password("pw", hash_password("pw", iterations=1000))
    assert not verify_password("pw", "garbage") and not verify_password("other", hash_password("pw", iterations=1000))
    check_bind("127.0.0.1", DashboardSettings())
    with pytest.raises(UsageError, match="without auth"):
        check_bind("0.0.0.0", DashboardSettings())
    check_bind("0.0.0.0", DashboardSettings(token="t"))
    with pytest.raises(ConfigError, match="PUBQ_X is not set"):
        parse_settings({"auth": {"token_env": "PUBQ_X"}}, "pubq.yaml", {})
    assert parse_settings({"auth": {"token_env": "PUBQ_X"}}, "pubq.yaml", {"PUBQ_X": "v"}).token == "v"
    with pytest.raises(ConfigError, match="dashboard.auth.pasword"):
        parse_settings({"auth": {"pasword": "x"}}, "pubq.yaml", {})
    with pytest.raises(ConfigError, match="both"):
        parse_settings({"auth": {"username": "ops"}}, "pubq.yaml", {})


def test_urls_in_shown_text_lose_their_secrets():
    from pubq.dashboard.model import redact

    text = redact('{"cb": "http://u:s3cret@h/cb?token=abc&x=1", "db": "redis://:pw@r:6379/0"}')
    assert "s3cret" not in text and "abc" not in text and ":pw@" not in text
    assert "http://u:***@h/cb?token=***&x=1" in text


def test_static_assets_ship_with_the_package(client):
    assert "svg.chart" in client.get("/static/style.css").text
    assert "autorefresh" in client.get("/static/refresh.js").text
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]


def test_a_notice_shows_only_when_signed_for_this_session(dash_app, client):
    token = csrf_of(client.get("/queues/work").text)
    r = client.post("/queues/work/pause", data={"csrf": token})
    assert r.status_code == 303 and "sig=" in r.headers["location"]
    shown = client.get(r.headers["location"]).text
    assert '<p class="notice" role="status">Queue work is paused.</p>' in shown
    crafted = client.get("/queues/work", params={"notice": "<script>alert(1)</script> Call 555-0100"}).text
    assert 'class="notice"' not in crafted and "555-0100" not in crafted
    forged = client.get("/queues/work", params={"notice": "Call 555-0100", "sig": "0" * 32}).text
    assert 'class="notice"' not in forged
    with make_client(dash_app) as other:  # a link signed for one session shows nothing in another
        assert 'class="notice"' not in other.get(r.headers["location"]).text
