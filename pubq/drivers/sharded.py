"""A hot queue spread over N Redis sub-queues (``shards: N``), one hash slot each.

One queue's keys share one hash tag, so on a Redis Cluster a queue lives on one master and one
core. ``ShardedDriver`` spreads it over sub-queues ``{CHANNEL#0}`` … ``{CHANNEL#N-1}`` (each a
plain :class:`~pubq.drivers.redis.RedisDriver`, every script still on one slot) and implements the
whole :class:`~pubq.drivers.base.Driver` contract on top (what it reports names the queue's ids):

* **ids carry the shard**: ``id = local_id * 1000 + shard``, so ids stay unique per queue with no
  cross-slot counter and any id is routed without a lookup (``12003`` is job 12 of shard 3).
* **push** goes round robin (from a random start per process), or, given ``key_of``, to
  ``crc32(key) % N`` so the jobs of one key keep their order.
* **reserve** rotates over the shards, one script call per shard tried; a worker stays on a shard for
  up to :data:`STREAK` jobs (``ack_and_reserve`` is then one round trip, as unsharded) before it
  moves on, so no shard starves. Priority holds within a shard; across shards order is by turn.
* **pause** is written to every shard (each reserve script reads its own flag), read from shard 0;
  the worker registry lives on shard 0.
* A queue whose ``shards`` shrank keeps draining the higher shards: the widest N ever used is kept
  in shard 0's stats hash, and every shard below it is reserved from, counted, listed and cleared.
* Listings page shard by shard (a cursor is a job id, which names its shard); the failed registry is
  merged newest first (each shard keeps ``failed_limit`` entries); follow-up records live on shard 0.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import NotDurableError
from .base import (
    DEFAULT_PRIORITY,
    BaseDriver,
    CancelResult,
    Counts,
    FailedJob,
    FailureInfo,
    FollowUpFailure,
    JobInfo,
    JobPage,
    JobStatus,
    Policy,
    PushItem,
    Reclaimed,
    Reservation,
    ThroughputBucket,
    UniqueSpec,
    WorkerInfo,
)
from .redis import _ERRORS, RedisDriver, _wrap
from .redis_client import Client, ClientRef, Durability

#: Ids carry the shard in their last three decimal digits.
SHARD_SPAN = 1000
#: Jobs a worker takes from one shard in a row before it moves on to the next.
STREAK = 8
#: Longest single blocking wait on one shard's inbox (BLMOVE) while the queue is idle (s): a job
#: pushed to another shard is picked up within about this long.
WAIT_SLICE = 0.2
#: Field of shard 0's stats hash holding the widest shard count ever used.
_WIDEST_FIELD = "shards"


def shard_channel(channel: str, index: int) -> str:
    """The channel of sub-queue ``index`` (its keys are ``{CHANNEL#i}:…``)."""
    return f"{channel}#{index}"


def _gid(index: int, local: int) -> int:
    """The queue's id of job ``local`` of shard ``index``."""
    return local * SHARD_SPAN + index


class _Shard(RedisDriver):
    """One sub-queue. Its scripts work on local ids, but what it tells people (the "not durable"
    error of a push, the warning of an ack, fail or settle) names the queue's id: the only id a
    user ever sees, and the one ``pubq QUEUE status`` answers for."""

    def __init__(self, client: ClientRef, channel: str, index: int, **opts: Any) -> None:
        super().__init__(client, shard_channel(channel, index), **opts)
        self.index = index

    def _run_durable(self, name: str, what: str, *args: Any, job_id: int | None = None) -> Any:
        gid = None if job_id is None else _gid(self.index, job_id)
        try:
            return super()._run_durable(name, what, *args, job_id=gid)
        except NotDurableError as exc:  # a push: the id was learnt from the script's reply
            if gid is not None or exc.job_id is None:
                raise
            queue_id = _gid(self.index, exc.job_id)
            head, sep, tail = str(exc).partition(" is not durable")
            message = f"{what} of job {queue_id}{sep}{tail}" if sep else str(exc)
            raise NotDurableError(message, job_id=queue_id) from None


class ShardedDriver(BaseDriver):
    """One queue over ``shards`` Redis sub-queues (see the module docstring)."""

    def __init__(
        self,
        client: str | Client | ClientRef,
        channel: str,
        *,
        shards: int,
        policy: Policy | None = None,
        durability: Durability | None = None,
        key_of: Callable[[bytes], str | None] | None = None,
        wake_cap: int = 1000,
    ) -> None:
        if not 1 <= shards < SHARD_SPAN:
            raise ValueError(f"shards must be from 1 to {SHARD_SPAN - 1}")
        self.channel = channel
        self.policy = policy or Policy()
        self.shards = shards
        self._ref = client if isinstance(client, ClientRef) else (
            ClientRef(client) if isinstance(client, str) else ClientRef(client=client))
        self._owns_client = not isinstance(client, ClientRef)
        self._opts: dict[str, Any] = {"policy": self.policy, "durability": durability, "wake_cap": wake_cap}
        self._drivers = [self._open(i) for i in range(shards)]
        self._key_of = key_of
        self._next_push = random.randrange(shards)
        self._turn = random.randrange(shards)
        self._streak = 0
        self._widest_known = False

    def _open(self, index: int) -> RedisDriver:
        return _Shard(self._ref, self.channel, index, **self._opts)

    # -- routing ---------------------------------------------------------------------------

    def _all(self) -> list[RedisDriver]:
        """Every shard that may hold jobs: the configured ones and any wider count used before."""
        if not self._widest_known:
            first = self._drivers[0]
            stats = first.keys[0]
            try:
                raw = first.client.hget(stats, _WIDEST_FIELD)
                widest = max(self.shards, int(raw or 0))
                if widest > int(raw or 0):
                    first.client.hset(stats, _WIDEST_FIELD, widest)
            except _ERRORS as exc:  # an outage: the caller (ResilientDriver) retries
                raise _wrap(exc, self.channel) from exc
            self._drivers.extend(self._open(i) for i in range(len(self._drivers), widest))
            self._widest_known = True
        return self._drivers

    def _route(self, job_id: int) -> tuple[RedisDriver, int] | None:
        job_id = int(job_id)
        index, local = job_id % SHARD_SPAN, job_id // SHARD_SPAN
        drivers = self._all()
        if job_id <= 0 or local <= 0 or index >= len(drivers):
            return None
        return drivers[index], local

    def _in(self, r: Reservation) -> tuple[int, RedisDriver, Reservation]:
        index = r.job_id % SHARD_SPAN
        drivers = self._all()
        if index >= len(drivers):
            raise ValueError(f"job {r.job_id} names shard {index}, which this queue never had")
        return index, drivers[index], replace(r, job_id=r.job_id // SHARD_SPAN)

    _gid = staticmethod(_gid)

    def _out(self, index: int, r: Reservation | None) -> Reservation | None:
        return None if r is None else replace(r, job_id=self._gid(index, r.job_id))

    def _shard_for(self, payload: bytes) -> int:
        self._all()  # the first push records this shard count as the widest used (once per process)
        key = self._key_of(payload) if self._key_of is not None else None
        if key is not None:
            return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.shards
        index = self._next_push
        self._next_push = (index + 1) % self.shards
        return index

    def _took(self, index: int) -> None:
        """A job came from shard ``index``: stay there up to STREAK jobs, then move on."""
        if index == self._turn:
            self._streak += 1
        else:
            self._turn, self._streak = index, 1
        if self._streak >= STREAK:
            self._turn, self._streak = (index + 1) % len(self._all()), 0

    # -- producing -------------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        index = self._shard_for(payload)
        return self._gid(index, self._drivers[index].push(payload, ttr=ttr, delay=delay, priority=priority))

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        """One push_many per shard used (each chunked as unsharded); ids in input order."""
        groups: dict[int, list[int]] = {}
        for position, item in enumerate(items):
            groups.setdefault(self._shard_for(item.payload), []).append(position)
        ids = [0] * len(items)
        for index, positions in groups.items():
            local = self._drivers[index].push_many([items[p] for p in positions])
            for position, job_id in zip(positions, local, strict=True):
                ids[position] = self._gid(index, job_id)
        return ids

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        """On the shard of the unique key (not of ``shard_key``): one key is held queue-wide only if
        all its pushes meet on one shard. (A changed ``shards`` count moves keys: a key held before
        the change is not seen by pushes after it.)"""
        self._all()
        index = zlib.crc32(unique.key.encode("utf-8", "surrogatepass")) % self.shards
        job_id, created = self._drivers[index].push_unique(payload, ttr=ttr, unique=unique, delay=delay,
                                                           priority=priority)
        return self._gid(index, job_id), created

    def mark_get(self, name: str) -> float | None:
        """Marks (a scheduler's last tick) live on shard 0."""
        return self._drivers[0].mark_get(name)

    def mark_advance(self, name: str, value: float) -> float:
        return self._drivers[0].mark_advance(name, value)

    # -- consuming -------------------------------------------------------------------------

    def _reserve_pass(self, holder: str) -> Reservation | None:
        drivers = self._all()
        for step in range(len(drivers)):
            index = (self._turn + step) % len(drivers)
            found = drivers[index].reserve(0, holder=holder)
            if found is not None:
                self._took(index)
                return self._out(index, found)
        return None

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        """A pass over the shards from the one whose turn it is; while all are empty, a blocking
        wait of at most :data:`WAIT_SLICE` on each shard's inbox (BLMOVE) in turn, then another pass."""
        found = self._reserve_pass(holder)
        if found is not None or timeout <= 0:
            return found
        end = time.monotonic() + timeout
        waiting_on = self._turn
        while (left := end - time.monotonic()) > 0:
            drivers = self._all()
            waiting_on = (waiting_on + 1) % len(drivers)
            found = drivers[waiting_on].reserve(min(left, WAIT_SLICE), holder=holder)
            if found is not None:
                self._took(waiting_on)
                return self._out(waiting_on, found)
            found = self._reserve_pass(holder)
            if found is not None:
                return found
        return None

    def ack(self, r: Reservation) -> bool:
        _, driver, inner = self._in(r)
        return driver.ack(inner)

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        """One round trip while the worker stays on the job's shard; else the ack, then a pass."""
        index, driver, inner = self._in(r)
        if index == self._turn:
            ok, found = driver.ack_and_reserve(inner, holder=holder)
            if found is not None:
                self._took(index)
                return ok, self._out(index, found)
            self._turn, self._streak = (index + 1) % len(self._all()), 0
            return ok, self._reserve_pass(holder)
        return driver.ack(inner), self._reserve_pass(holder)

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "") -> list[Reservation]:
        """From the shard whose turn it is, then the next ones, until ``n``; blocking like ``reserve``
        while every shard is empty."""
        if n < 1:
            return []
        out = self._reserve_many_pass(n, holder)
        if out or timeout <= 0:
            return out
        first = self.reserve(timeout, holder=holder)
        return [] if first is None else [first, *self._reserve_many_pass(n - 1, holder)]

    def _reserve_many_pass(self, n: int, holder: str) -> list[Reservation]:
        out: list[Reservation] = []
        drivers = self._all()
        start = self._turn
        for step in range(len(drivers)):
            if len(out) >= n:
                break
            index = (start + step) % len(drivers)
            got = drivers[index].reserve_many(n - len(out), 0, holder=holder)
            out.extend(self._out(index, r) for r in got)  # type: ignore[misc]
            for _ in got:
                self._took(index)
        return out

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *,
                             holder: str = "") -> tuple[list[bool], list[Reservation]]:
        """The acks grouped by shard (one call per shard; the turn's shard also reserves), then a
        pass over the shards for what is still missing."""
        by_shard: dict[int, list[tuple[int, Reservation]]] = {}
        for position, r in enumerate(acks):
            index, _, inner = self._in(r)
            by_shard.setdefault(index, []).append((position, inner))
        flags = [False] * len(acks)
        out: list[Reservation] = []
        drivers = self._all()
        for index, group in by_shard.items():
            want = max(n, 0) if index == self._turn else 0
            got_flags, got = drivers[index].ack_and_reserve_many([r for _, r in group], want, holder=holder)
            for (position, _), flag in zip(group, got_flags, strict=True):
                flags[position] = flag
            out.extend(self._out(index, r) for r in got)  # type: ignore[misc]
            for _ in got:
                self._took(index)
        if len(out) < n:
            out.extend(self._reserve_many_pass(n - len(out), holder))
        return flags, out

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        """On the job's shard: a key's limit is counted per shard, so it is exact for the queue
        when ``shard_key`` names the limited argument (all of a key's jobs on one shard)."""
        _, driver, inner = self._in(r)
        return driver.limit_acquire(inner, key, concurrency=concurrency, rate=rate, per=per, jitter=jitter,
                                    burst=burst)

    def limit_release(self, r: Reservation, key: str) -> None:
        _, driver, inner = self._in(r)
        driver.limit_release(inner, key)

    def extend(self, r: Reservation, seconds: float) -> bool:
        _, driver, inner = self._in(r)
        return driver.extend(inner, seconds)

    def release(self, r: Reservation) -> bool:
        _, driver, inner = self._in(r)
        return driver.release(inner)

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        _, driver, inner = self._in(r)
        return driver.retry_later(inner, delay, info)

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        _, driver, inner = self._in(r)
        return driver.fail(inner, info)

    def settle(self, r: Reservation) -> bool:
        _, driver, inner = self._in(r)
        return driver.settle(inner)

    def unfail(self, r: Reservation, delay: float) -> bool:
        _, driver, inner = self._in(r)
        return driver.unfail(inner, delay)

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        out: list[Reclaimed] = []
        for index, driver in enumerate(self._all()):
            if len(out) >= limit:
                break
            for item in driver.reclaim_expired(limit - len(out)):
                failure = item.failure
                if failure is not None:
                    failure = replace(failure, job_id=self._gid(index, failure.job_id))
                out.append(replace(item, reservation=self._out(index, item.reservation), failure=failure))
        return out

    # -- inspection and maintenance ---------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        routed = self._route(job_id)
        return JobStatus.DONE if routed is None else routed[0].status(routed[1])

    def get(self, job_id: int) -> JobInfo | None:
        routed = self._route(job_id)
        info = None if routed is None else routed[0].get(routed[1])
        return None if info is None else replace(info, job_id=int(job_id))

    def counts(self) -> Counts:
        """The sum of every shard's counters (one script per shard)."""
        total = Counts()
        for driver in self._all():
            c = driver.counts()
            total = Counts(**{k: v + getattr(c, k) for k, v in total.as_dict().items()})
        return total

    def remove(self, job_id: int) -> bool:
        routed = self._route(job_id)
        return routed is not None and routed[0].remove(routed[1])

    def clear(self) -> int:
        return sum(driver.clear() for driver in self._all())

    def failed_list(self, offset: int = 0, limit: int = 50) -> list[FailedJob]:
        """Each shard's newest ``offset + limit``, merged newest first."""
        if limit <= 0:
            return []
        offset = max(0, int(offset))
        rows = [replace(f, job_id=self._gid(index, f.job_id))
                for index, driver in enumerate(self._all()) for f in driver.failed_list(0, offset + limit)]
        rows.sort(key=lambda f: (f.failed_at, f.job_id), reverse=True)
        return rows[offset:offset + limit]

    def failed_get(self, job_id: int) -> FailedJob | None:
        routed = self._route(job_id)
        found = None if routed is None else routed[0].failed_get(routed[1])
        return None if found is None else replace(found, job_id=int(job_id))

    def requeue_failed(self, job_id: int, *, reset_attempts: bool = True, delay: float = 0) -> bool:
        routed = self._route(job_id)
        return routed is not None and routed[0].requeue_failed(routed[1], reset_attempts=reset_attempts,
                                                                 delay=delay)

    def failed_purge(self) -> int:
        return sum(driver.failed_purge() for driver in self._all())

    def record_follow_up(self, failure: FollowUpFailure) -> None:
        """Follow-up records live on shard 0 under the queue's own job ids (one newest-first list)."""
        self._drivers[0].record_follow_up(failure)

    def follow_up_list(self, offset: int = 0, limit: int = 50) -> list[FollowUpFailure]:
        return self._drivers[0].follow_up_list(offset, limit)

    def now(self) -> float:
        return self._drivers[0].now()

    def ping(self) -> None:
        self._drivers[0].ping()

    def close(self) -> None:
        if self._owns_client:
            self._ref.close()

    def drop_keys(self) -> None:
        """Delete every key of every shard, counters included (tests and maintenance tools)."""
        for driver in self._all():
            driver.client.delete(*driver.keys)

    # -- operations ---------------------------------------------------------------------------

    def list_jobs(self, state: JobStatus, limit: int = 50, after: int | None = None) -> JobPage:
        """Shard by shard, each in the state's order; the cursor's id names the shard to go on in."""
        if limit <= 0:
            return JobPage([])
        drivers = self._all()
        index, local = 0, None
        if after is not None:
            routed = self._route(after)
            if routed is not None:
                index, local = int(after) % SHARD_SPAN, routed[1]
        jobs: list[JobInfo] = []
        while index < len(drivers) and len(jobs) < limit:
            page = drivers[index].list_jobs(state, limit - len(jobs), local)
            jobs.extend(replace(j, job_id=self._gid(index, j.job_id)) for j in page.jobs)
            if page.next_after is not None:
                return JobPage(jobs, jobs[-1].job_id)
            index, local = index + 1, None
        more = len(jobs) >= limit and index < len(drivers)
        return JobPage(jobs, jobs[-1].job_id if more and jobs else None)

    def pause(self) -> None:
        for driver in self._all():
            driver.pause()

    def resume(self) -> None:
        for driver in self._all():
            driver.resume()

    def paused(self) -> bool:
        return self._drivers[0].paused()

    def cancel(self, job_id: int, reason: str = "") -> CancelResult:
        routed = self._route(job_id)
        if routed is None:
            return self._drivers[0].cancel(0, reason)  # NOT_FOUND, in the driver's own words
        result = routed[0].cancel(routed[1], reason)
        index = int(job_id) % SHARD_SPAN
        return replace(result, reservation=self._out(index, result.reservation))

    def cancel_requested(self, r: Reservation) -> str | None:
        _, driver, inner = self._in(r)
        return driver.cancel_requested(inner)

    def progress(self, r: Reservation, fraction: float, message: str = "") -> bool:
        _, driver, inner = self._in(r)
        return driver.progress(inner, fraction, message)

    def register_worker(self, info: WorkerInfo) -> None:
        self._drivers[0].register_worker(info)

    def heartbeat(self, info: WorkerInfo) -> None:
        self._drivers[0].heartbeat(info)

    def unregister_worker(self, worker_id: str) -> None:
        self._drivers[0].unregister_worker(worker_id)

    def workers(self, *, sweep: bool = True) -> list[WorkerInfo]:
        return self._drivers[0].workers(sweep=sweep)

    def record_throughput(self, done: int, failed: int, minute: int | None = None) -> None:
        """Kept by the first shard, like the worker registry (the beats that write it go there)."""
        self._drivers[0].record_throughput(done, failed, minute)

    def throughput(self, since: int) -> list[ThroughputBucket]:
        return self._drivers[0].throughput(since)

    def __repr__(self) -> str:
        return f"ShardedDriver(channel={self.channel!r}, shards={self.shards})"
