"""Redis driver: every operation is one Lua script (``pubq/drivers/lua``) or one atomic command.

Key layout (``{channel}`` is a Redis Cluster hash tag, so one queue lives in one slot)::

    {ch}:stats      hash  id / seq / done / failed_total / follow_up counters (kept by clear)
    {ch}:payload    hash  id -> payload bytes          {ch}:meta     hash  id -> packed state
    {ch}:waiting    zset  priority, "%016x(seq):id"    {ch}:delayed  zset  id by due time
    {ch}:reserved   zset  id by deadline + grace       {ch}:failed   zset  id by failed_at
    {ch}:failinfo   hash  id -> failure JSON           {ch}:unsettled zset id by settle deadline
    {ch}:followups  list  capped, newest first         {ch}:wake     (no longer written; clear drops it)
    {ch}:inbox      list  plain pushes "id|ttr|priority|pushed|payload" and "~" wake markers
    {ch}:stage      list  entries an idle worker's BLMOVE took from the inbox, not yet ingested
    {ch}:paused     string set while paused
    {ch}:holder     hash  a reservation's live data, dropped by one HDEL on ack: id -> holder worker id,
                    "id:p" -> "fraction|message" (progress), "id:c" -> cancel reason
    {ch}:progress, {ch}:cancel  no longer written (folded into {ch}:holder); clear still drops them
    {ch}:workers    hash  worker id -> "seen|json"     {ch}:workerexp zset worker id by expiry
    {ch}:history    hash  id -> JSON list of the job's failed attempts (capped)
    {ch}:unique     hash  unique key -> "id|until|expires"  {ch}:uniquedue zset key by next sweep look
    {ch}:marks      hash  name -> time (schedulers' last ticks)
    {ch}:limits     hash  limit key -> its slots, rate-window starts and waiters (per-key limits)

Why waiting is a sorted set and not one list per priority: both cost one round trip per
operation (and a round trip costs ~100x the Lua work), but a zset scored by priority whose
members start with a fixed-width submit sequence *is* the priority-ordered list: ZPOPMIN gives
the lowest priority, ties in submit order (equal scores sort by member), in O(log n). It also keeps
``remove`` O(log n) (a list needs LREM, O(n)), ``waiting`` a true O(1) ZCARD (per-priority lists
need a sum or a drift-prone counter), and the key list fixed, so every script declares all its
keys and ``clear`` deletes a known list (no KEYS/SCAN, no dynamic key names).

The inbox (issue 17): a plain push (no delay, queue without ``durability``) is one
``LPUSH {ch}:inbox`` of ``id|ttr|priority|pushed|payload``, no script: its id comes from the
driver's id block (:mod:`.redis_inbox`), ``pushed`` is the *producer's* clock. Every script that
reserves, or reads waiting jobs or the counts, first ingests the inbox (``ingest()`` in
lua/_lib.lua: bounded, oldest first, stored exactly as push.lua stores a waiting job); counts add
what is left, and get/status/remove/cancel of an id not found call again while entries are left.
Delayed, unique, durable pushes and ``push_many`` stay one script (it ingests first, so they
queue behind the plain pushes before them). Needs Redis >= 6.2 (BLMOVE, RPOP with a count); an
older server is refused with a :class:`~pubq.errors.ConfigError` naming the version.

Blocking wait: ``reserve(timeout)`` runs the non-blocking reserve script, and only when nothing is
due blocks in ``BLMOVE {ch}:inbox {ch}:stage RIGHT LEFT`` for at most the time to the next delayed
job: one push wakes exactly one worker, and the entry is never only in a client's hands (a worker
killed after its BLMOVE left it in stage, which the next ingest takes first). Every other wake
source (requeue, release, due delayed jobs, resume ...) LPUSHes ``~`` markers, at most
``wake_cap`` pending; ingest drops them.

The guard of every settling write is the lease token, a per-job counter kept in the meta hash:
every reserve and reclaim takes the next value, and a write carrying an older one changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ..errors import BackendDataError, NotDurableError
from . import limiter
from .base import (
    DEFAULT_PRIORITY,
    BaseDriver,
    Counts,
    FailureInfo,
    JobInfo,
    JobStatus,
    Policy,
    PushItem,
    Reclaimed,
    ReclaimKind,
    Reservation,
    UniqueSpec,
)
from .redis_client import (
    Client,
    ClientRef,
    Durability,
    decodes_responses,
    run_durable,
    socket_timeout,
)
from .redis_inbox import Inbox
from .redis_ops import RedisOperations
from .redis_replies import (
    _ERRORS,
    _failure_record,
    _live,
    _meta,
    _record,
    _reservation,
    _wrap,
)
from .redis_wait import FoundNone
from .unique import RECHECK, SWEEP, check_spec

log = logging.getLogger("pubq.driver")

#: Order of the KEYS every script receives (see lua/_lib.lua).
KEY_NAMES = (
    "stats", "payload", "meta", "waiting", "delayed", "reserved",
    "failed", "failinfo", "unsettled", "followups", "wake", "inbox", "stage",
    "paused", "holder", "progress", "cancel", "workers", "workerexp", "history",
    "unique", "uniquedue", "marks", "limits", "tput",
)
#: Every script the driver runs (``lua/<name>.lua``).
SCRIPT_NAMES = (
    "push", "reserve", "reserve_many", "ack", "ack_reserve", "ack_reserve_many", "release", "extend", "retry_later",
    "fail", "settle", "unfail", "reclaim", "remove", "requeue_failed", "failed_purge", "failed_read", "get", "counts",
    "follow_up", "clear", "list", "cancel", "progress", "pause", "worker", "push_unique", "mark",
    "limit_acquire", "limit_release", "throughput", "reserve_woken", "reserve_many_woken",
)
#: Keys every script gets; the last five (unique keys, their sweep, marks, limits, throughput) only
#: push_unique, mark, the limit scripts, throughput and clear.
CORE_KEYS = len(KEY_NAMES) - 5
#: push (an id block refill or a push_many chunk) touches keys 1-13 only (stats ... stage): it gets
#: those, so a producer's script call packs and parses 7 keys fewer.
PUSH_KEYS = KEY_NAMES.index("stage") + 1
_UNIQUE_SCRIPTS = frozenset({"push_unique", "mark", "limit_acquire", "limit_release", "throughput", "clear"})
#: Jobs per push script call in push_many (bounded script time, bounded argument list) ...
PUSH_CHUNK = 1000
#: ... and payload bytes per call, so big payloads do not build one huge command.
PUSH_CHUNK_BYTES = 4 * 1024 * 1024
#: Shortest BLMOVE wait (s): below this the reserve script is simply called again.
MIN_WAIT = 0.001

_LUA_DIR = Path(__file__).with_name("lua")
_STATES = {b"w": JobStatus.WAITING, b"d": JobStatus.DELAYED, b"r": JobStatus.RESERVED, b"f": JobStatus.FAILED}


#: The scripts a woken worker runs in its wake-up round trip (``_wait_then``): the reserve script of
#: the same name with ``lua/_staged.lua``'s fast take in front, and how each calls it and shapes its reply.
_WOKEN = {
    "reserve_woken": ("reserve", "local taken = staged_take(ARGV[7], false)\n"
                                 "if taken then return {1, unpack(taken)} end\n"),
    "reserve_many_woken": ("reserve_many",
                           "local taken = staged_take(ARGV[8], tonumber(ARGV[9] or 0) >= tonumber(ARGV[7]))\n"
                           "if taken then return {'', taken} end\n"),
}


@cache
def _lua(name: str) -> str:
    """The script ``name`` with the shared prelude in front (read once per process, not at import)."""
    if name in _WOKEN:
        base, call = _WOKEN[name]
        return (_LUA_DIR / "_staged.lua").read_text() + call + _lua(base)
    return (_LUA_DIR / "_lib.lua").read_text() + "\n" + (_LUA_DIR / f"{name}.lua").read_text()


class RedisDriver(RedisOperations, BaseDriver):
    """One queue stored under the ``{channel}`` hash tag of one Redis (or Redis Cluster slot)."""

    #: reserve_many/ack_and_reserve_many take ``ahead``: a worker may hold jobs ahead of their start.
    prefetch = True

    def __init__(
        self,
        client: str | Client | ClientRef,
        channel: str,
        *,
        policy: Policy | None = None,
        wake_cap: int = 1000,
        durability: Durability | None = None,
    ) -> None:
        if not channel:
            raise ValueError("channel must not be empty")
        #: Built on first use from a URL by :mod:`.redis_client`; a client or ClientRef handed in
        #: belongs to the caller.
        self._ref = client if isinstance(client, ClientRef) else (
            ClientRef(client) if isinstance(client, str) else ClientRef(client=client))
        self._owns_client = isinstance(client, str)
        self._bound: Client | None = None
        self.channel = channel
        self.policy = policy = policy or Policy()
        self.wake_cap = max(1, int(wake_cap))
        #: WAIT for this many replicas after push, ack, fail and settle (None: no WAIT).
        self.durability = durability
        self.keys = tuple(f"{{{channel}}}:{name}" for name in KEY_NAMES)
        self._core_keys = self.keys[:CORE_KEYS]
        self._push_keys = self.keys[:PUSH_KEYS]
        self._meta_key = self.keys[KEY_NAMES.index("meta")]
        self._inbox_key = self.keys[KEY_NAMES.index("inbox")]
        self._stage_key = self.keys[KEY_NAMES.index("stage")]
        #: The id block of plain pushes and the entry of a push whose reply was lost.
        self._inbox = Inbox()
        self._followups_key = self.keys[KEY_NAMES.index("followups")]
        self._paused_key = self.keys[KEY_NAMES.index("paused")]
        #: The live hash: holder, progress ("id:p") and cancel request ("id:c") of each reservation.
        self._live_key = self.keys[KEY_NAMES.index("holder")]
        self._tput_key = self.keys[KEY_NAMES.index("tput")]
        #: The ARGV head of every script: the policy, so no call passes it again.
        self._head = (self.wake_cap, int(policy.failed_limit), int(policy.follow_up_limit),
                      float(policy.grace), float(policy.hold), float(policy.settle_within))
        self._scripts: dict[str, Any] = {}
        #: Longest single BLMOVE: under the client's socket timeout, if it has one.
        self._max_wait: float | None = None
        #: This thread's last take that found nothing, for the blocking call that follows it.
        self._found_none = FoundNone()
        if not self._ref.owned:
            self.client  # noqa: B018 - a client handed in is checked now

    @property
    def client(self) -> Client:
        """The redis-py client (bytes responses), built on first use from the URL."""
        try:
            client = self._ref.get()
        except _ERRORS as exc:  # a Cluster connects to learn its slots
            raise _wrap(exc, self.channel) from exc
        if client is not self._bound:
            if decodes_responses(client):
                raise ValueError("RedisDriver needs a client with decode_responses=False (payloads are bytes)")
            # Script objects compute their SHA locally and reload themselves after SCRIPT FLUSH.
            self._scripts = {name: client.register_script(_lua(name)) for name in SCRIPT_NAMES}
            timeout = socket_timeout(client)
            self._max_wait = timeout * 0.8 if timeout else None
            self._bound = client
        return client

    def _keys(self, name: str) -> tuple[str, ...]:
        # only the scripts of unique keys, marks, limits and throughput get the last five keys, and push
        # only the first thirteen: the producer's calls stay as small
        if name == "push":
            return self._push_keys
        return self.keys if name in _UNIQUE_SCRIPTS else self._core_keys

    def _run(self, name: str, *args: Any) -> Any:
        client = self.client
        keys = self._keys(name)
        try:
            return self._scripts[name](keys=keys, args=self._head + args, client=client)
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc

    def _run_durable(self, name: str, what: str, *args: Any, job_id: int | None = None) -> Any:
        """``_run`` plus WAIT when the queue asks for durability; too few replicas: push raises
        :class:`NotDurableError`, the other writes log it (the write happened; spec §7.6)."""
        if self.durability is None:
            return self._run(name, *args)
        client = self.client
        try:
            keys = self._keys(name)
            reply, confirmed = run_durable(client, self._scripts[name], keys, self._head + args,
                                           self.durability)
        except (redis.RedisError, RedisClusterException) as exc:
            raise _wrap(exc, self.channel) from exc
        if confirmed < self.durability.replicas:
            if job_id is not None:
                ident = job_id
            else:
                ident = int(reply) if name == "push" else (int(reply[1]) if name == "push_unique" else None)
            message = (f"{what} of job {ident} is not durable: {confirmed} of {self.durability.replicas} "
                       f"replica(s) confirmed it within {self.durability.timeout_ms} ms")
            if what == "push":
                raise NotDurableError(message, job_id=ident)
            log.warning("queue %s: %s (the write happened)", self.channel, message)
        return reply

    # -- producing ----------------------------------------------------------------------

    def push(self, payload: bytes, *, ttr: int, delay: float = 0, priority: int = DEFAULT_PRIORITY) -> int:
        """A plain push (no delay, no durability): one ``LPUSH`` of an inbox entry, or, when the id
        block is empty, one script that refills it and queues the entry. Else one script: id,
        payload, meta and waiting/delayed entry, plus a wake marker."""
        if delay or self.durability is not None:
            self._inbox.drop()
            return int(self._run_durable("push", "push", "", *self._item(payload, ttr, delay, priority)))
        taken = self._inbox.entry(payload, ttr, priority)
        if taken is None:
            extra = self._inbox.extra()
            first = int(self._run("push", extra, bytes(payload), int(ttr), f"{time.time():.6f}", int(priority)))
            self._inbox.refill(first, extra)
            return first
        job_id, entry = taken
        client = self.client
        try:
            client.lpush(self._inbox_key, entry)
        except _ERRORS as exc:
            self._inbox.lost(payload, ttr, priority, job_id, entry)
            raise _wrap(exc, self.channel) from exc
        return job_id

    def push_many(self, items: Sequence[PushItem]) -> list[int]:
        """One script call per chunk (:data:`PUSH_CHUNK` jobs or :data:`PUSH_CHUNK_BYTES`); ids in order."""
        rows = [self._item(i.payload, i.ttr, i.delay, i.priority) for i in items]  # a bad item stores nothing
        ids: list[int] = []
        self._inbox.drop()
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and end - start < PUSH_CHUNK and (size < PUSH_CHUNK_BYTES or end == start):
                size += len(rows[end][0])
                end += 1
            first = int(self._run_durable("push", "push", "", *(value for row in rows[start:end] for value in row)))
            ids.extend(range(first, first + end - start))
            start = end
        return ids

    def push_unique(
        self, payload: bytes, *, ttr: int, unique: UniqueSpec, delay: float = 0, priority: int = DEFAULT_PRIORITY,
    ) -> tuple[int, bool]:
        """One script: sweep a few released keys, read the key's holder, push only when it is free."""
        check_spec(unique)
        self._inbox.drop()
        ttl = "" if unique.ttl is None else repr(float(unique.ttl))
        created, job_id = self._run_durable("push_unique", "push", unique.key, unique.until, ttl, SWEEP, RECHECK,
                                            *self._item(payload, ttr, delay, priority))
        return int(job_id), created == 1

    def mark_get(self, name: str) -> float | None:
        value = self._run("mark", name, "")
        return None if value is None else float(value)

    def mark_advance(self, name: str, value: float) -> float:
        return float(self._run("mark", name, f"{float(value):.6f}"))

    @staticmethod
    def _item(payload: bytes, ttr: int, delay: float, priority: int) -> tuple[bytes, int, float, int]:
        """The script's four values of one job (the core has checked their ranges)."""
        delay = float(delay)
        if delay - delay != 0:  # inf or nan: Lua would store a job due never (the db drivers refuse it too)
            raise BackendDataError(f"redis refused a value: delay {delay!r} is not a finite number")
        return bytes(payload), ttr, delay, priority

    # -- consuming ----------------------------------------------------------------------

    def reserve(self, timeout: float = 0, *, holder: str = "") -> Reservation | None:
        """Non-blocking reserve script; while nothing is due, block in BLMOVE and try again."""
        self._found_none.take()
        found, next_due = self._reserved(self._run("reserve", holder))
        if found is not None or timeout <= 0:
            return found
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            if next_due is None or next_due > 0:
                wait = left if next_due is None else min(left, next_due)
                if self._max_wait is not None:
                    wait = min(wait, self._max_wait)
                found, next_due = self._reserved(self._wait_then(wait, "reserve", holder))
            else:
                found, next_due = self._reserved(self._run("reserve", holder))
            if found is not None:
                return found

    def _wait_then(self, wait: float, name: str, *args: Any) -> Any:
        """Block in ``BLMOVE inbox -> stage`` for up to ``wait`` s (a push's entry or a wake marker
        ends it), then run the script ``name``, in one round trip; the script ingests the entry,
        or, if this worker dies first, the next ingest of anyone does (the stage goes first).

        Redis runs a client's pipelined commands only after its blocking one is served, so a woken
        worker gets its job in the reply that wakes it (one hop less from push to start). A Cluster
        client's pipeline cannot carry a blocking command: there the script is a second call."""
        client = self.client
        wait = max(wait, MIN_WAIT)
        name += "_woken"  # the same script with the staged entry's fast take in front (lua/_staged.lua)
        try:
            if not isinstance(client, redis.Redis):
                client.blmove(self._inbox_key, self._stage_key, wait, "RIGHT", "LEFT")
                return self._run(name, *args)
            keys = self._keys(name)
            pipe = client.pipeline(transaction=False)
            pipe.blmove(self._inbox_key, self._stage_key, wait, "RIGHT", "LEFT")
            pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *self._head, *args)
            return pipe.execute()[1]
        except redis.exceptions.NoScriptError:
            return self._run(name, *args)  # flushed scripts: the Script object loads it again
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc

    @staticmethod
    def _reserved(reply: Sequence[Any]) -> tuple[Reservation | None, float | None]:
        if reply[0] == 1:
            return _reservation(reply[1:]), None
        return None, (float(reply[1]) if reply[1] else None)

    def ack(self, r: Reservation) -> bool:
        return self._run_durable("ack", "ack", r.job_id, r.token, job_id=r.job_id) == 1

    def ack_and_reserve(self, r: Reservation, *, holder: str = "") -> tuple[bool, Reservation | None]:
        """The worker's hot path: one round trip per job."""
        self._found_none.take()
        reply = self._run_durable("ack_reserve", "ack", r.job_id, r.token, holder, job_id=r.job_id)
        return reply[0] == 1, self._reserved(reply[1:])[0]

    def reserve_many(self, n: int, timeout: float = 0, *, holder: str = "", ahead: int = 0) -> list[Reservation]:
        """One script for up to ``n`` jobs; while nothing is due, block in BLMOVE and try again.

        A blocking call right after this thread's last take found nothing (a prefetching worker's
        ``ack_and_reserve_many``, then its wait) goes straight to the BLMOVE with that take's
        next-due time: a second look would see what the first saw, and anything that becomes due
        in between wakes the BLMOVE (an inbox entry or a wake marker)."""
        if n < 1:
            return []
        checked = self._found_none.take()  # every take uses up the note, blocking or not
        if checked is not None and timeout > 0:
            found, next_due = [], checked
        else:
            found, next_due = self._many(self._run("reserve_many", int(n), holder, int(ahead)))
        if found or timeout <= 0:
            if not found:
                self._found_none.note(next_due)
            return found
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return []
            if next_due is None or next_due > 0:
                wait = left if next_due is None else min(left, next_due)
                if self._max_wait is not None:
                    wait = min(wait, self._max_wait)
                found, next_due = self._many(self._wait_then(wait, "reserve_many", int(n), holder, int(ahead)))
            else:
                found, next_due = self._many(self._run("reserve_many", int(n), holder, int(ahead)))
            if found:
                return found

    def ack_and_reserve_many(self, acks: Sequence[Reservation], n: int, *, holder: str = "",
                             ahead: int = 0) -> tuple[list[bool], list[Reservation]]:
        """One script: the acks, then up to ``n`` reserves."""
        pairs = [v for r in acks for v in (r.job_id, r.token)]
        self._found_none.take()
        reply = self._run_durable("ack_reserve_many", "ack", max(int(n), 0), holder, int(ahead), *pairs,
                                  job_id=acks[0].job_id if acks else None)
        found, next_due = self._many(reply[1:])
        if not found and n > 0:
            self._found_none.note(next_due)
        return [flag == 1 for flag in reply[0]], found

    @staticmethod
    def _many(reply: Sequence[Any]) -> tuple[list[Reservation], float | None]:
        found = list(map(_reservation, reply[1:]))  # no comprehension frame: this is a woken worker's path
        return found, (float(reply[0]) if not found and reply[0] else None)

    def extend(self, r: Reservation, seconds: float) -> bool:
        return self._run("extend", r.job_id, r.token, float(seconds)) == 1

    def release(self, r: Reservation) -> bool:
        return self._run("release", r.job_id, r.token) == 1

    def retry_later(self, r: Reservation, delay: float, info: FailureInfo | None = None) -> bool:
        record = _failure_record(info) if info is not None else ""
        return self._run("retry_later", r.job_id, r.token, float(delay), record,
                         int(self.policy.history_limit)) == 1

    def fail(self, r: Reservation, info: FailureInfo) -> bool:
        return self._run_durable("fail", "fail", r.job_id, r.token, _failure_record(info),
                                 int(self.policy.history_limit), job_id=r.job_id) == 1

    def settle(self, r: Reservation) -> bool:
        return self._run_durable("settle", "settle", r.job_id, r.token, job_id=r.job_id) == 1

    def unfail(self, r: Reservation, delay: float) -> bool:
        return self._run("unfail", r.job_id, r.token, float(delay)) == 1

    def reclaim_expired(self, limit: int = 100) -> list[Reclaimed]:
        out: list[Reclaimed] = []
        if limit <= 0:
            return out
        for row in self._run("reclaim", int(limit)):
            lost = row[0] == b"lost"
            # a lost row: ..., overdue, cancel requested 1|0, cancel reason[, why unreadable]
            reservation = _reservation([*row[1:9], *row[12:13]] if lost else row[1:9])
            if lost:
                cancel = row[11].decode("utf-8", "replace") if row[10] == 1 else None
                out.append(Reclaimed(ReclaimKind.LOST, reservation, overdue=max(0.0, float(row[9])),
                                     cancel_reason=cancel))
            else:
                failure = self._failed_job(reservation.job_id, reservation.payload, row[9], row[10], True,
                                           attempts=reservation.attempt, ttr=reservation.ttr,
                                           priority=reservation.priority, pushed_at=reservation.pushed_at)
                out.append(Reclaimed(ReclaimKind.UNSETTLED, reservation, failure=failure))
        return out

    # -- inspection and maintenance ------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        """The packed meta (get.lua, ingesting the inbox when the id is not stored yet); unknown
        ids are DONE (ids are not kept after ack)."""
        reply = self._found("get", int(job_id), "status")
        # a meta that does not parse belongs to a job still stored: reserve hands it out (as invalid)
        return _STATES.get(reply[0][:1], JobStatus.WAITING) if reply else JobStatus.DONE

    def _found(self, name: str, *args: Any) -> Any:
        """Run a script that looks one id up, again while it answers "not found, entries left"
        (each call ingests a bounded part of the inbox, so the job may be further down)."""
        while True:
            reply = self._run(name, *args)
            if isinstance(reply, list) and len(reply) == 1 and isinstance(reply[0], int):
                continue  # get: {left}
            if reply == -1 or reply == [b"again"]:  # remove, cancel
                continue
            return reply

    def get(self, job_id: int) -> JobInfo | None:
        reply = self._found("get", int(job_id), "")
        if not reply:
            return None
        meta, payload, when, record, unsettled, now, *live = reply
        state, attempt, ttr, priority, pushed_at, _seq, deadline, _lease = _meta(meta)
        status = _STATES[state]
        info = JobInfo(job_id=int(job_id), status=status, payload=payload, attempt=int(attempt), ttr=int(ttr),
                       priority=int(priority), pushed_at=float(pushed_at))
        if status is JobStatus.RESERVED:
            return replace(info, deadline=float(deadline), **_live(*live))
        if status is JobStatus.DELAYED:
            due = float(when)
            return replace(info, status=JobStatus.WAITING if due <= float(now) else status, due_at=due)
        if status is JobStatus.FAILED:
            failure = _record(record)
            return replace(info, failed_at=float(when), error_class=failure.get("error_class", ""),
                           message=failure.get("message", ""), code=failure.get("code", ""),
                           unsettled=unsettled == 1)
        return info

    def limit_acquire(self, r: Reservation, key: str, *, concurrency: int = 0, rate: int = 0, per: float = 1.0,
                      jitter: float = 0.0, burst: int = 0) -> float | None:
        """One script: check the key's live slots and rate state, then take a slot or put the job back."""
        reply = self._run("limit_acquire", r.job_id, r.token, key, int(concurrency), int(rate), float(per),
                          max(float(jitter), 0.0), limiter.BUSY_RECHECK, limiter.BUSY_RECHECK_MAX,
                          limiter.MAX_WAITERS, int(burst))
        if isinstance(reply, list):  # refused while a cancel was requested: the request is not dropped
            self.cancel(r.job_id, reply[1].decode("utf-8", "replace"))
            return float(reply[0])
        return None if reply is None else float(reply)

    def limit_release(self, r: Reservation, key: str) -> None:
        self._run("limit_release", r.job_id, key)

    def counts(self) -> Counts:
        """One read-only script of ZCARDs and HMGET: O(1), one consistent snapshot."""
        return Counts(*(int(v) for v in self._run("counts")))

    def remove(self, job_id: int) -> bool:
        return self._found("remove", int(job_id)) == 1

    def clear(self) -> int:
        self._inbox.drop()
        return int(self._run("clear"))

    def now(self) -> float:
        """Redis TIME, so workers on skewed hosts agree with the deadlines the scripts record."""
        try:
            sec, usec = self.client.time()
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc
        return sec + usec / 1_000_000

    def ping(self) -> None:
        try:
            self.client.ping()
        except _ERRORS as exc:
            raise _wrap(exc, self.channel) from exc

    def close(self) -> None:
        """Close the pool this driver created; a client passed in belongs to the caller."""
        if self._owns_client:
            self._ref.close()  # built again on next use

    def __repr__(self) -> str:
        return f"RedisDriver(channel={self.channel!r})"
