"""A drain through a Redis failover, counted: shared by tests/reliability/test_failover.py (small) and
bench/scale/failover.py (the full 5,000 jobs).

Half the jobs are pushed first, then two ``listen`` workers start while a producer pushes the other
half in small batches; once a third has run, the master is failed over (``SENTINEL FAILOVER``,
SIGKILL of the master, or ``CLUSTER FAILOVER`` on the replica of the queue's master). Every job
appends its tag to a file when it runs. At the end:

* ``lost``: jobs whose push was acknowledged (durably, when the queue asks for durability) that
  never ran and are not in the queue;
* ``twice``: jobs that ran more than once (an ack lost in the failover makes a job run again);
* ``not_durable``: pushes that raised NotDurableError (not acknowledged: never counted as lost);
* ``pause_s``: from the failover to the first job run on the new master;
* ``unrun``: for each acknowledged job that never ran, what the queue holds of it (state, attempt,
  holder, deadline or failure), read twice: when the drain stalls (``at='stall'``, the queue still
  holding jobs none of the workers is running) and at the end (``at='end'``), so a failure says
  whether a job is gone from Redis or stranded (e.g. reserved by a reply lost in the failover).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pubq.app import App
from pubq.config import load_config
from pubq.errors import NotDurableError
from tests.helpers import PUBQ, ROOT, Cli, wait_until
from tests.sample_jobs import RecordJob, read_lines
from tests.topology import RedisClusterSet, SentinelSet


@dataclass
class FailoverResult:
    event: str
    durability: bool
    jobs: int
    acknowledged: int
    not_durable: int
    ran: int
    lost: int
    twice: int
    pause_s: float
    drain_s: float
    workers_alive: bool
    unrun: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ran_tags(path: str) -> Counter[str]:
    return Counter(line.split(" ", 1)[0] for line in read_lines(path))


def drain_through_failover(tmp_path: Path, topology: SentinelSet | RedisClusterSet, event: str, *, jobs: int,
                           durability: bool, workers: int = 2, timeout: float = 90) -> FailoverResult:
    """Run the drain described above on ``topology`` (started by the caller, changed by this)."""
    # TTR 5 s and two attempts: a reserve whose reply a dropped connection lost leaves its job reserved
    # by nobody (the retry reserves another); reclaim brings it back after TTR + grace and it runs late,
    # on its second attempt. Closing that window needs reserve to recognise its own earlier try
    # (docs/scaling.md, "What a failover can still cost").
    overrides: dict[str, Any] = {"on": {}, "behaviors": [], "ttr": 5, "grace": 1, "attempts": 2}
    if durability:
        # On SENTINEL FAILOVER every replica must confirm: the old master goes on taking writes for about
        # a second after the promotion, confirmed by its *other* replica, and those are then dropped
        # (docs/scaling.md, "Durability"). A killed master takes no writes, and after it the new master
        # has one replica fewer, so there one confirmation is what can be asked.
        replicas = topology.replicas if event == "sentinel-failover" else 1
        overrides["durability"] = {"replicas": replicas, "timeout_ms": 500}
    cli = Cli.create(tmp_path, "redis", env={"PUBQ_REDIS_URL": topology.url}, top={"give_up_after": 60},
                     **overrides)
    ran = str(tmp_path / "ran")
    app = App(load_config(cli.path, env=cli.env))
    queue = app.queue("work")
    acked: set[str] = set()
    ids: dict[str, int] = {}
    refused: set[str] = set()
    batch = 10

    def push(tags: list[str]) -> None:
        try:
            pushed = queue.push_many([RecordJob(path=ran, tag=t) for t in tags])
            ids.update((t, i) for t, i in zip(tags, pushed, strict=True) if i is not None)
            acked.update(tags)
        except NotDurableError:
            refused.update(tags)

    first = [f"j{n}" for n in range(jobs // 2)]
    for start in range(0, len(first), 500):
        push(first[start:start + 500])
    rest = [f"j{n}" for n in range(jobs // 2, jobs)]
    producer = threading.Thread(target=lambda: [push(rest[i:i + batch]) for i in range(0, len(rest), batch)])
    procs = []
    for n in range(workers):  # output to files: a pipe nobody reads would stop a worker at 64 KiB
        with open(tmp_path / f"worker{n}.out", "wb") as out:
            procs.append(subprocess.Popen([*PUBQ, "--config", str(cli.path), "work", "listen", "1", "--isolate=0"],
                                          stdout=out, stderr=subprocess.STDOUT, env=cli.env, cwd=ROOT))
    began = time.monotonic()
    try:
        producer.start()
        wait_until(lambda: len(read_lines(ran)) >= jobs // 3, timeout=timeout, interval=0.05,
                   message="a third of the jobs to run before the failover")
        before = len(read_lines(ran))
        failed_at = time.monotonic()
        _fail_over(topology, event, queue.driver)
        wait_until(lambda: len(read_lines(ran)) > before + 2 * workers, timeout=timeout, interval=0.02,
                   message="jobs to run again after the failover")
        pause = time.monotonic() - failed_at
        producer.join(timeout=timeout)
        stall: list[dict[str, Any]] = []

        def settled() -> bool:
            if acked <= set(_ran_tags(ran)) or _queue_empty(queue):
                return True
            stall.extend(_stalled(queue, ids, acked - set(_ran_tags(ran))))
            return bool(stall)

        wait_until(settled, timeout=timeout, interval=0.1, message="the acknowledged jobs to run")
        wait_until(lambda: _queue_empty(queue), timeout=timeout, interval=0.1, message="the queue to empty")
        drain = time.monotonic() - began
        alive = all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a worker that does not stop is killed
                p.kill()
        app.close()
    runs = _ran_tags(ran)
    unrun = stall + _states(queue, ids, acked - set(runs), "end")
    return FailoverResult(
        event=event, durability=durability, jobs=jobs, acknowledged=len(acked), not_durable=len(refused),
        ran=len(runs), lost=len(acked - set(runs)), twice=sum(1 for n in runs.values() if n > 1),
        pause_s=round(pause, 2), drain_s=round(drain, 2), workers_alive=alive,
        unrun=unrun,
    )


#: A reservation held this long by a job that appends one line is stranded, not running.
STRANDED_S = 20.0
#: Unrun jobs described in a result at most (each moment).
DESCRIBED = 20


def _states(queue: Any, ids: dict[str, int], tags: set[str], at: str) -> list[dict[str, Any]]:
    """What the queue holds of each job in ``tags`` (None: nothing, the job is gone from Redis)."""
    out: list[dict[str, Any]] = []
    for tag in sorted(tags)[:DESCRIBED]:
        info = queue.driver.get(ids[tag]) if tag in ids else None
        state: dict[str, Any] = {"at": at, "tag": tag, "id": ids.get(tag), "state": None}
        if info is not None:
            state.update(state=info.status.value, attempt=info.attempt, holder=info.holder,
                         started_at=info.started_at, error=f"{info.error_class}: {info.message}".strip(": "))
        out.append(state)
    return out


def _stalled(queue: Any, ids: dict[str, int], unrun: set[str]) -> list[dict[str, Any]]:
    """The unrun jobs' states once nothing is left to pick up and every unrun job sits in a
    reservation older than :data:`STRANDED_S` (or failed): empty while the drain still moves."""
    c = queue.driver.counts()
    if c.waiting + c.delayed > 0:
        return []
    states = _states(queue, ids, unrun, "stall")
    now = queue.driver.now()
    stranded = [s for s in states if s["state"] == "reserved" and now - (s["started_at"] or now) > STRANDED_S]
    done = [s for s in states if s["state"] in (None, "failed", "done")]
    return states if len(stranded) + len(done) == len(states) else []


def _queue_empty(queue: Any) -> bool:
    c = queue.driver.counts()
    return c.waiting + c.delayed + c.reserved == 0


def _fail_over(topology: SentinelSet | RedisClusterSet, event: str, driver: Any) -> None:
    if event == "sentinel-failover":
        old = topology.failover()  # type: ignore[union-attr]
        topology.wait_promoted(old)  # type: ignore[union-attr]
    elif event == "kill-master":
        old = topology.kill_master()  # type: ignore[union-attr]
        topology.wait_promoted(old)  # type: ignore[union-attr]
    elif event == "cluster-failover":
        cluster: RedisClusterSet = topology  # type: ignore[assignment]
        slot = redis.cluster.key_slot(f"{{{driver.channel}}}:stats".encode())
        master = cluster.master_of_slot(slot)
        replica = cluster.replica_of(master)
        redis.Redis(port=replica).execute_command("CLUSTER", "FAILOVER")
        wait_until(lambda: cluster.master_of_slot(slot) == replica, timeout=30, interval=0.05,
                   message="the replica to take the queue's slot over")
    else:
        raise ValueError(f"unknown failover event {event!r}")


def unique_dir(root: Path) -> Path:
    path = root / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


__all__ = ["FailoverResult", "drain_through_failover", "unique_dir"]
