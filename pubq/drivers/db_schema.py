"""Tables, dialects and migrations of the ``db`` driver (Peewee; SQLite, PostgreSQL, MySQL/MariaDB).

Tables (``<prefix>`` defaults to ``pubq_``; one set of tables holds every channel)::

    <prefix>jobs        one row per job that is waiting, delayed, reserved or in the failed registry
        id            autoincrement PK (SQLite AUTOINCREMENT: ids are never reused, also after clear)
        channel       the queue
        state         'waiting' | 'delayed' | 'reserved' | 'failed'
        payload       opaque bytes (LONGBLOB on MySQL)
        ttr, priority, attempt (reserves so far), pushed_at
        lease         the current lease token: a per-job counter, +1 at every reserve and reclaim; a
                      settling write must present it (version 2)
        retried_attempt  unused since version 2 (kept: migrations never drop a column)
        due_at        waiting/delayed: when the job is due ('delayed' rows are promoted to 'waiting' by
                      reserve once due_at <= now); failed: when it failed (orders the registry)
        deadline      reserved: now + ttr at reserve (the Reservation's deadline)
        expires_at    reserved: deadline + grace, or a recoverer's hold (reclaim after it); failed:
                      settle deadline while the entry is unsettled, NULL once settled; NULL otherwise
        error_class, error_message, error_traceback, error_code   failed only
        retry_delay   failed and unsettled: the worker's decision (seconds to the next attempt, NULL
                      when final), for whoever re-runs the handlers (version 2)
        holder        reserved: the holder's worker id (version 3)
        cancel_reason reserved: a pending cancel request's reason, NULL when none (version 3)
        progress, progress_message   reserved: the running job's last progress (version 3)
        history       JSON list of the job's failed attempts, oldest first, capped (each {attempt,
                      error_class, message, traceback, code, failed_at}); NULL before the first
                      failure (version 3)
    <prefix>counters    per (channel, shard): n_waiting, n_delayed, n_reserved, n_failed (current sizes by
                        stored state), done, failed_total, follow_up_total; a queue's counts are the sum over its
                        shards (at most SHARDS rows), so counts() is O(1) and workers do not queue up
                        behind one hot counter row
                        (retried and cancelled since version 3)
    <prefix>follow_ups  raising afterExec/afterError handlers (bounded per channel)
    <prefix>queues      per channel: paused (0/1, read by the reserve statement itself), paused_at (version 3)
    <prefix>workers     the worker registry: id, channel, last_seen, expires_at, info (JSON); rows past
                        expires_at are swept by readers (version 3)
    <prefix>unique      unique keys (version 4): (channel, ukey) PK, job_id of the job last pushed under
                        the key (0: a placeholder row, never swept), mode (done|start|ttl), expires_at,
                        check_at (when the sweep looks at it next; index (channel, check_at))
    <prefix>marks       named times per channel (version 4): a scheduler's last tick
    <prefix>limits      per (channel, lkey): the state of one per-key limit (db_limits): its concurrency
                        slots, rate-window starts and waiters as JSON; the row is also the lock that
                        serializes the key's admissions (version 5; counters.limited too)
    <prefix>throughput  per (channel, bucket): jobs done and failed attempts in that unix minute, added by
                        the workers' beats; buckets past the kept window are deleted by the writers
                        (version 6)
    <prefix>schema      one row: the schema version this code migrated to

Indexes on jobs (why: reserve must stay O(log n) with 1M waiting and 200k delayed rows, yii2-queue #280):
    <prefix>jobs_ready  (channel, state, priority, id)  reserve: first waiting row in priority/push order
    <prefix>jobs_due    (channel, state, due_at, id)    promote due delayed rows; failed registry order
    <prefix>jobs_expiry (channel, expires_at)           reclaim (partial: expires_at IS NOT NULL, where the
                                                        database has partial indexes)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from types import SimpleNamespace

import peewee as pw

from pubq.database import kind_of
from pubq.errors import ConfigError

#: Version of the schema this code writes. Each step in ``_STEPS`` moves it up by one; none drops data.
SCHEMA_VERSION = 6
#: Counter shards per channel on servers with concurrent writers (SQLite has one writer: one shard).
SHARDS = 16
#: Seconds a migration waits for another process's migration (PostgreSQL/MySQL lock, SQLite busy).
MIGRATE_LOCK_TIMEOUT = 60

_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Dialect:
    """What the connected server can do; filled in on first connect."""

    name: str  # "sqlite" | "postgres" | "mysql"
    skip_locked: bool = False
    insert_returning: bool = False
    mariadb: bool = False

    @property
    def shards(self) -> int:
        return 1 if self.name == "sqlite" else SHARDS


def dialect_name(db: pw.Database) -> str:
    """``"sqlite"``, ``"postgres"`` or ``"mysql"`` (URLs are opened by :mod:`pubq.database`)."""
    return kind_of(db)


def detect_dialect(db: pw.Database, conn: object) -> Dialect:
    """Feature detection on a live connection (SKIP LOCKED, INSERT … RETURNING)."""
    name = dialect_name(db)
    if name == "sqlite":
        return Dialect("sqlite", insert_returning=pw.__sqlite_version__ >= (3, 35, 0))
    if name == "postgres":
        return Dialect("postgres", skip_locked=(db.server_version or 0) >= 90500, insert_returning=True)
    info = conn.get_server_info() if hasattr(conn, "get_server_info") else ""  # type: ignore[attr-defined]
    mariadb = "mariadb" in str(info).lower()
    version = tuple(db.server_version or (0, 0, 0))
    if mariadb:
        return Dialect(
            "mysql", skip_locked=version >= (10, 6), insert_returning=version >= (10, 5), mariadb=True
        )
    return Dialect("mysql", skip_locked=version >= (8, 0, 1))


# -- models ----------------------------------------------------------------------------------------


class _AutoIncrementField(pw.AutoField):
    """SQLite ``INTEGER PRIMARY KEY AUTOINCREMENT``: without it SQLite may reuse the ids of deleted rows."""

    def ddl(self, ctx):  # type: ignore[no-untyped-def]
        return pw.NodeList((super().ddl(ctx), pw.SQL("AUTOINCREMENT")))


class _LongBlobField(pw.BlobField):
    field_type = "LONGBLOB"  # MySQL's BLOB stops at 64 KiB (yii2-queue #257)


class _LongTextField(pw.TextField):
    field_type = "LONGTEXT"


def build_models(db: pw.Database, prefix: str) -> SimpleNamespace:
    """Model classes bound to ``db``, built per driver instance (no module-level database)."""
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(f"table_prefix must be letters, digits and _ (at most 40), got {prefix!r}")
    kind = dialect_name(db)
    id_field = _AutoIncrementField if kind == "sqlite" else pw.BigAutoField
    blob = _LongBlobField if kind == "mysql" else pw.BlobField
    text = _LongTextField if kind == "mysql" else pw.TextField

    class Base(pw.Model):
        class Meta:
            database = db

    class Job(Base):
        id = id_field()
        channel = pw.CharField(max_length=255)
        state = pw.CharField(max_length=8)
        payload = blob()
        ttr = pw.IntegerField()
        priority = pw.IntegerField()
        attempt = pw.IntegerField(default=0)
        retried_attempt = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
        lease = pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
        pushed_at = pw.DoubleField()
        due_at = pw.DoubleField()
        deadline = pw.DoubleField(null=True)
        expires_at = pw.DoubleField(null=True)
        error_class = pw.CharField(max_length=255, null=True)
        error_message = text(null=True)
        error_traceback = text(null=True)
        error_code = pw.CharField(max_length=64, null=True)
        retry_delay = pw.DoubleField(null=True)
        holder = pw.CharField(max_length=255, null=True)
        cancel_reason = text(null=True)
        progress = pw.DoubleField(null=True)
        progress_message = pw.CharField(max_length=255, null=True)
        history = text(null=True)

        class Meta:
            table_name = f"{prefix}jobs"

    def counter() -> pw.BigIntegerField:
        return pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Counter(Base):
        channel = pw.CharField(max_length=255)
        shard = pw.SmallIntegerField()
        n_waiting = counter()
        n_delayed = counter()  # "delayed" is a reserved word in MySQL
        n_reserved = counter()
        n_failed = counter()
        done = counter()
        failed_total = counter()
        follow_up_total = counter()
        retried = counter()
        cancelled = counter()
        limited = counter()

        class Meta:
            table_name = f"{prefix}counters"
            primary_key = pw.CompositeKey("channel", "shard")

    class FollowUp(Base):
        seq = id_field()
        channel = pw.CharField(max_length=255)
        job_id = pw.BigIntegerField()
        attempt = pw.IntegerField()
        event = pw.CharField(max_length=32)
        handler = pw.CharField(max_length=255)
        error_class = pw.CharField(max_length=255)
        message = text()
        traceback = text()
        at = pw.DoubleField()

        class Meta:
            table_name = f"{prefix}follow_ups"

    class QueueFlags(Base):
        channel = pw.CharField(max_length=255, primary_key=True)
        paused = pw.SmallIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
        paused_at = pw.DoubleField(null=True)

        class Meta:
            table_name = f"{prefix}queues"

    class Worker(Base):
        id = pw.CharField(max_length=255, primary_key=True)
        channel = pw.CharField(max_length=255)
        last_seen = pw.DoubleField()
        expires_at = pw.DoubleField()
        info = text()

        class Meta:
            table_name = f"{prefix}workers"

    class Unique(Base):
        channel = pw.CharField(max_length=255)
        ukey = pw.CharField(max_length=255)
        job_id = pw.BigIntegerField()
        mode = pw.CharField(max_length=8)
        expires_at = pw.DoubleField(null=True)
        check_at = pw.DoubleField()

        class Meta:
            table_name = f"{prefix}unique"
            primary_key = pw.CompositeKey("channel", "ukey")

    class Mark(Base):
        channel = pw.CharField(max_length=255)
        name = pw.CharField(max_length=255)
        value = pw.DoubleField()

        class Meta:
            table_name = f"{prefix}marks"
            primary_key = pw.CompositeKey("channel", "name")

    class LimitKey(Base):
        channel = pw.CharField(max_length=255)
        lkey = pw.CharField(max_length=255)
        state = text()

        class Meta:
            table_name = f"{prefix}limits"
            primary_key = pw.CompositeKey("channel", "lkey")

    class Throughput(Base):
        channel = pw.CharField(max_length=255)
        bucket = pw.BigIntegerField()
        done = pw.BigIntegerField(default=0)
        failed = pw.BigIntegerField(default=0)

        class Meta:
            table_name = f"{prefix}throughput"
            primary_key = pw.CompositeKey("channel", "bucket")

    class SchemaVersion(Base):
        name = pw.CharField(max_length=64, primary_key=True)
        version = pw.IntegerField()

        class Meta:
            table_name = f"{prefix}schema"

    partial = kind != "mysql"  # MySQL/MariaDB have no partial indexes
    expiry = pw.ModelIndex(Job, (Job.channel, Job.expires_at), name=f"{prefix}jobs_expiry")
    if partial:
        expiry = expiry.where(Job.expires_at.is_null(False))
    indexes = [
        pw.ModelIndex(Job, (Job.channel, Job.state, Job.priority, Job.id), name=f"{prefix}jobs_ready"),
        pw.ModelIndex(Job, (Job.channel, Job.state, Job.due_at, Job.id), name=f"{prefix}jobs_due"),
        expiry,
        pw.ModelIndex(FollowUp, (FollowUp.channel, FollowUp.seq), name=f"{prefix}follow_ups_channel"),
    ]
    #: Indexes of tables added after version 1 (created by their own step).
    v3_indexes = [pw.ModelIndex(Worker, (Worker.channel, Worker.expires_at), name=f"{prefix}workers_channel")]
    v4_indexes = [pw.ModelIndex(Unique, (Unique.channel, Unique.check_at), name=f"{prefix}unique_check")]
    return SimpleNamespace(
        Job=Job, Counter=Counter, FollowUp=FollowUp, SchemaVersion=SchemaVersion, indexes=indexes,
        QueueFlags=QueueFlags, Worker=Worker, v3_indexes=v3_indexes, Unique=Unique, Mark=Mark,
        v4_indexes=v4_indexes, LimitKey=LimitKey, Throughput=Throughput,
    )


# -- migrations --------------------------------------------------------------------------------


def _index_names(db: pw.Database, table: str) -> set[str]:
    return {ix.name for ix in db.get_indexes(table)}


def _step_1(db: pw.Database, models: SimpleNamespace) -> None:
    """Create the tables and indexes (each only if missing, so a half-applied step can be re-run)."""
    for model in (models.Job, models.Counter, models.FollowUp):
        if not db.table_exists(model._meta.table_name):
            model.create_table(safe=False)
    for index in models.indexes:
        table = index._table.__name__
        if index._name not in _index_names(db, table):
            db.execute(index)


#: Columns added by version 2 (lease tokens; the recorded retry decision of an unsettled failure).
_V2_COLUMNS = ("lease", "retry_delay")


def _step_2(db: pw.Database, models: SimpleNamespace) -> None:
    """Add the lease and retry_delay columns where step 1 created the table without them.

    Plain ``ALTER TABLE … ADD COLUMN`` with a constant default: every supported server adds such a
    column without rewriting the table."""
    table = models.Job._meta.table_name
    have = {c.name for c in db.get_columns(table)}
    quote = "`" if dialect_name(db) == "mysql" else '"'
    double = "DOUBLE" if dialect_name(db) == "mysql" else "DOUBLE PRECISION"
    ddl = {"lease": "BIGINT NOT NULL DEFAULT 0", "retry_delay": f"{double} NULL"}
    for name in _V2_COLUMNS:
        if name not in have:
            db.execute_sql(f"ALTER TABLE {quote}{table}{quote} ADD COLUMN {quote}{name}{quote} {ddl[name]}")


def _add_columns(db: pw.Database, table: str, ddl: dict[str, str]) -> None:
    have = {c.name for c in db.get_columns(table)}
    quote = "`" if dialect_name(db) == "mysql" else '"'
    for name, kind in ddl.items():
        if name not in have:
            db.execute_sql(f"ALTER TABLE {quote}{table}{quote} ADD COLUMN {quote}{name}{quote} {kind}")


def _step_3(db: pw.Database, models: SimpleNamespace) -> None:
    """Operations: holder, cancel request and progress of a reserved job; the retried and cancelled
    counters; the pause flags and the worker registry tables. And every job's history of failed
    attempts. Additive, re-runnable."""
    mysql = dialect_name(db) == "mysql"
    double = "DOUBLE" if mysql else "DOUBLE PRECISION"
    text = "LONGTEXT" if mysql else "TEXT"
    _add_columns(db, models.Job._meta.table_name, {
        "holder": "VARCHAR(255) NULL", "cancel_reason": f"{text} NULL", "progress": f"{double} NULL",
        "progress_message": "VARCHAR(255) NULL", "history": f"{text} NULL",
    })
    _add_columns(db, models.Counter._meta.table_name, {
        "retried": "BIGINT NOT NULL DEFAULT 0", "cancelled": "BIGINT NOT NULL DEFAULT 0",
    })
    for model in (models.QueueFlags, models.Worker):
        if not db.table_exists(model._meta.table_name):
            model.create_table(safe=False)
    for index in models.v3_indexes:
        if index._name not in _index_names(db, index._table.__name__):
            db.execute(index)


def _step_4(db: pw.Database, models: SimpleNamespace) -> None:
    """Unique keys and marks (schedules): two new tables. Additive, re-runnable."""
    for model in (models.Unique, models.Mark):
        if not db.table_exists(model._meta.table_name):
            model.create_table(safe=False)
    for index in models.v4_indexes:
        if index._name not in _index_names(db, index._table.__name__):
            db.execute(index)


#: version → step; every step is additive (new tables, columns, indexes), never a drop.
def _step_5(db: pw.Database, models: SimpleNamespace) -> None:
    """Per-key limits: the limits table and the limited counter. Additive, re-runnable."""
    _add_columns(db, models.Counter._meta.table_name, {"limited": "BIGINT NOT NULL DEFAULT 0"})
    if not db.table_exists(models.LimitKey._meta.table_name):
        models.LimitKey.create_table(safe=False)


def _step_6(db: pw.Database, models: SimpleNamespace) -> None:
    """Throughput per minute: one new table. Additive, re-runnable."""
    if not db.table_exists(models.Throughput._meta.table_name):
        models.Throughput.create_table(safe=False)


_STEPS = {1: _step_1, 2: _step_2, 3: _step_3, 4: _step_4, 5: _step_5, 6: _step_6}


def current_version(db: pw.Database, models: SimpleNamespace) -> int:
    if not db.table_exists(models.SchemaVersion._meta.table_name):
        return 0
    row = (
        models.SchemaVersion.select(models.SchemaVersion.version)
        .where(models.SchemaVersion.name == "jobs")
        .first()
    )
    return row.version if row else 0


def migrate(db: pw.Database, models: SimpleNamespace, prefix: str) -> tuple[int, int]:
    """Bring the schema to ``SCHEMA_VERSION``; idempotent and safe to run from many processes at once.

    Returns ``(version_before, version_after)``. PostgreSQL and SQLite run the whole migration in one
    transaction (their DDL is transactional) under a lock; MySQL serializes with ``GET_LOCK`` and each
    step is written so that re-running it after a crash completes it.
    """
    kind = dialect_name(db)
    before = current_version(db, models)
    if before >= SCHEMA_VERSION:
        return before, before
    cursor = db.cursor()
    lock_name = f"pubq_migrate:{prefix}"
    if kind == "mysql":
        cursor.execute("SELECT GET_LOCK(%s, %s)", (lock_name[:64], MIGRATE_LOCK_TIMEOUT))
        if cursor.fetchone()[0] != 1:
            raise pw.OperationalError(
                f"could not take the migration lock {lock_name!r} within {MIGRATE_LOCK_TIMEOUT} s"
            )
    else:
        cursor.execute("BEGIN IMMEDIATE" if kind == "sqlite" else "BEGIN")
        if kind == "postgres":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(lock_name.encode()),))
    try:
        version = current_version(db, models)  # again, under the lock
        before = min(before, version)
        if not db.table_exists(models.SchemaVersion._meta.table_name):
            models.SchemaVersion.create_table(safe=False)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            _STEPS[step](db, models)
            (
                models.SchemaVersion.insert(name="jobs", version=step)
                .on_conflict(
                    conflict_target=[models.SchemaVersion.name], update={models.SchemaVersion.version: step}
                )
                .execute()
                if kind != "mysql"
                else models.SchemaVersion.insert(name="jobs", version=step).on_conflict_replace().execute()
            )
        if kind != "mysql":
            cursor.execute("COMMIT")
    except BaseException:
        if kind != "mysql":
            try:
                cursor.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    finally:
        if kind == "mysql":
            cursor.execute("SELECT RELEASE_LOCK(%s)", (lock_name[:64],))
    return before, SCHEMA_VERSION
