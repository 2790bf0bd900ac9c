"""The worker's presence (pubq.heartbeat) and a job's context, in process on the memory driver;
list paging as a property. The same behaviour through real workers is in tests/cli/test_ops.py."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubq.drivers.base import JobStatus, WorkerInfo
from pubq.drivers.memory import MemoryDriver
from pubq.errors import JobCancelledError
from pubq.events import ExecEvent
from pubq.heartbeat import Presence, new_worker_id
from pubq.runner import JobContext
from tests.helpers import wait_until


@dataclass
class View:
    stopping: bool = False
    paused: bool = False
    idle: bool = True


def test_a_worker_id_is_host_pid_random_and_new_each_time():
    import os
    import socket

    a, b = new_worker_id(), new_worker_id()
    host, pid, rand = a.rsplit(":", 2)
    assert (host, int(pid), len(rand)) == (socket.gethostname(), os.getpid(), 6) and a != b


def test_presence_registers_beats_the_running_job_and_unregisters():
    d = MemoryDriver("q")
    view = View()
    p = Presence(d, queue="q", worker=view, interval=0.05)
    p.start()
    try:
        assert [w.worker_id for w in d.workers()] == [p.worker_id]
        d.push(b'{"job": "x"}', ttr=60)
        r = d.reserve(0, holder=p.worker_id)
        view.idle = False
        p.job_started(r, ExecEvent(queue=None, id=r.job_id, job=None, ttr=60, attempt=1, job_name="x"))  # type: ignore[arg-type]
        p.report_progress(0.5, "half")
        w = wait_until(lambda: [w for w in d.workers() if w.progress == 0.5], message="the progress in a beat")[0]
        assert (w.state, w.job_id, w.job_name, w.progress_message) == ("busy", r.job_id, "x", "half")
        wait_until(lambda: d.get(r.job_id).progress == 0.5, message="the progress stored with the job")
        d.cancel(r.job_id, "stop")
        wait_until(lambda: p.cancel_reason(r.job_id) == "stop", message="the cancel request seen")
        assert p.cancel_reason(r.job_id + 1) is None
        p.job_finished(r, False)
        view.idle, view.paused = True, True
        wait_until(lambda: d.workers()[0].state == "paused" and d.workers()[0].failed == 1, message="paused")
    finally:
        p.stop()
    assert d.workers() == []


def test_a_cancel_calls_on_cancel_once():
    d = MemoryDriver("q")
    seen: list[str] = []
    p = Presence(d, queue="q", worker=View(idle=False), interval=5, on_cancel=seen.append)
    d.push(b"{}", ttr=60)
    r = d.reserve(0)
    p.job_started(r, ExecEvent(queue=None, id=r.job_id, job=None, ttr=60, attempt=1))  # type: ignore[arg-type]
    p._job.started -= 10  # type: ignore[union-attr]  # running long enough to be polled
    d.cancel(r.job_id, "why")
    p.start()
    try:
        wait_until(lambda: seen == ["why"], message="on_cancel")
    finally:
        p.stop()
    assert seen == ["why"]


class Reporter:
    def __init__(self, reason=None):
        self.reason = reason
        self.progress: list[tuple[float, str]] = []

    def report_progress(self, fraction, message=""):
        self.progress.append((fraction, message))

    def cancel_reason(self, job_id):
        return self.reason


def test_job_context_progress_cancelled_and_checkpoint():
    log = logging.getLogger("t")
    bare = JobContext(queue=None, job_id=1, attempt=1, log=log)  # type: ignore[arg-type]
    bare.progress(0.5)
    bare.checkpoint()
    assert bare.cancelled is False
    rep = Reporter()
    ctx = JobContext(queue=None, job_id=1, attempt=1, log=log, reporter=rep)  # type: ignore[arg-type]
    ctx.progress(0.25, "a quarter")
    ctx.checkpoint()
    assert rep.progress == [(0.25, "a quarter")] and not ctx.cancelled
    rep.reason = "no more"
    assert ctx.cancelled
    with pytest.raises(JobCancelledError, match="no more") as info:
        ctx.checkpoint()
    assert info.value.code == "cancelled"


@settings(max_examples=60, deadline=None)
@given(prios=st.lists(st.integers(0, 5), max_size=40), limit=st.integers(1, 7),
       taken=st.integers(0, 10))
def test_paging_waiting_jobs_visits_every_job_once_in_run_order(prios, limit, taken):
    d = MemoryDriver("q")
    for p in prios:
        d.push(b"{}", ttr=60, priority=p)
    got, after = [], None
    while True:
        page = d.list_jobs(JobStatus.WAITING, limit, after)
        got += [j.job_id for j in page.jobs]
        if page.next_after is None:
            break
        after = page.next_after
        for _ in range(taken):  # jobs leave waiting between pages; the cursor holds its place
            if d.reserve(0) is None:
                break
        taken = 0
    remaining = [j.job_id for j in d.list_jobs(JobStatus.WAITING, 10_000).jobs]
    assert len(got) == len(set(got))
    assert set(remaining) <= set(got)
    order = {jid: n for n, jid in enumerate(sorted(range(1, len(prios) + 1), key=lambda i: (prios[i - 1], i)))}
    assert got == sorted(got, key=order.__getitem__)


@given(st.builds(WorkerInfo, worker_id=st.text(min_size=1), queue=st.text(), host=st.text(),
                 pid=st.integers(1, 2**22), started_at=st.floats(0, 2e9), state=st.sampled_from(
                     ["idle", "busy", "paused", "stopping"]), progress=st.none() | st.floats(0, 1),
                 progress_message=st.text(), done=st.integers(0, 2**40), concurrency=st.integers(1, 512),
                 in_flight=st.integers(0, 512), job_ids=st.lists(st.integers(1, 2**53), max_size=20)))
def test_worker_info_survives_its_json(info):
    back = WorkerInfo.from_json(info.to_json(), 10.0, 10.0)
    assert back == info.__class__(**{**info.__dict__, "last_seen": 10.0, "lost": False})
    assert json.loads(info.to_json())["worker_id"] == info.worker_id
