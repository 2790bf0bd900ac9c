"""Publish-state models, built per database and table prefix (no module-level database).

Times are stored as integer microseconds since the epoch (:class:`MicroTimeField`): every database
keeps them exactly (MySQL's DATETIME drops fractions unless declared with a precision) and they sort
the timeline without ties being rounded away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import peewee as pw

from .vocabulary import AccountStatus, EventKind, OutboxKind, OutboxState, PubLogStatus


def now_us() -> int:
    """Wall-clock time in integer microseconds (UTC epoch)."""
    dt = datetime.now(UTC)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def from_us(value: int) -> datetime:
    seconds, micros = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


class MicroTimeField(pw.BigIntegerField):
    """An aware UTC datetime stored as integer microseconds."""

    def db_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return to_us(value)
        return value

    def python_value(self, value: Any) -> Any:
        return None if value is None else from_us(value)


class LongTextField(pw.TextField):
    """TEXT everywhere but MySQL, where TEXT stops at 64 KiB."""

    def ddl_datatype(self, ctx: Any) -> Any:
        if isinstance(self.model._meta.database, pw.MySQLDatabase):
            return pw.SQL("LONGTEXT")
        return super().ddl_datatype(ctx)


class StatusField(pw.SmallIntegerField):
    """An :class:`AccountStatus`, stored as its integer; a value this version does not know reads as
    the plain integer."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else int(value)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return AccountStatus(value)
        except ValueError:
            return int(value)


class EnumCharField(pw.CharField):
    """A string enum member, stored as its plain value (read back as the member when known)."""

    def __init__(self, enum: type[StrEnum], **kwargs: Any) -> None:
        self.enum = enum
        super().__init__(**kwargs)

    def db_value(self, value: Any) -> Any:
        return None if value is None else str(value)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.enum(value)
        except ValueError:
            return value


class JSONField(LongTextField):
    def db_value(self, value: Any) -> Any:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


@dataclass(frozen=True)
class Models:
    """The model classes bound to one database under one table prefix."""

    database: pw.Database
    prefix: str
    SchemaVersion: type[pw.Model]
    Task: type[pw.Model]
    ChannelAppTask: type[pw.Model]
    Asset: type[pw.Model]
    PubLog: type[pw.Model]
    StatusEvent: type[pw.Model]
    Outbox: type[pw.Model]

    def all(self) -> list[type[pw.Model]]:
        """Models in creation order (referenced tables first)."""
        return [self.SchemaVersion, self.Task, self.ChannelAppTask, self.Asset, self.PubLog,
                self.StatusEvent, self.Outbox]


def build_models(database: pw.Database, prefix: str = "pub_") -> Models:
    """Create model classes bound to ``database`` with tables named ``<prefix><name>``."""

    class Base(pw.Model):
        class Meta:
            legacy_table_names = False

    Base._meta.database = database

    def meta(name: str, **extra: Any) -> type:
        return type("Meta", (), {"table_name": prefix + name, "database": database, **extra})

    class SchemaVersion(Base):
        version = pw.IntegerField(primary_key=True)
        name = pw.CharField(max_length=128)
        applied_at = MicroTimeField()
        Meta = meta("schema_version")

    class Task(Base):
        uuid = pw.CharField(max_length=64)
        source = pw.CharField(max_length=64)
        channel_type = pw.CharField(max_length=64)
        callback_url = pw.CharField(max_length=2048, null=True)
        title = pw.CharField(max_length=512, default="")
        body = LongTextField(default="")
        #: Bumped by an operator retry of the copy step, so its follow-ups get fresh dedup keys.
        copy_round = pw.IntegerField(default=0)
        copied_at = MicroTimeField(null=True)
        created_at = MicroTimeField()
        updated_at = MicroTimeField()
        Meta = meta("task", indexes=((("source", "uuid"), True),))

    class ChannelAppTask(Base):
        task = pw.ForeignKeyField(Task, backref="channel_app_tasks", column_name="task_id")
        channel_type = pw.CharField(max_length=64)
        account = pw.CharField(max_length=64)
        enabled = pw.BooleanField(default=True)
        status = StatusField(default=AccountStatus.PENDING)
        #: Bumped by each operator retry (3→1); part of every dedup key of this row's steps.
        round = pw.IntegerField(default=0)
        media = JSONField(null=True)
        uploaded_at = MicroTimeField(null=True)
        item_id = pw.CharField(max_length=191, null=True)
        item_created_at = MicroTimeField(null=True)
        error_code = pw.IntegerField(null=True)
        error_message = pw.TextField(null=True)
        created_at = MicroTimeField()
        updated_at = MicroTimeField()
        Meta = meta("channel_app_task", indexes=((("task", "account"), True),))

    class Asset(Base):
        task = pw.ForeignKeyField(Task, backref="assets", column_name="task_id")
        position = pw.IntegerField()
        type = pw.CharField(max_length=16)
        source_url = pw.CharField(max_length=2048)
        enabled = pw.BooleanField(default=True)
        relative_path = pw.CharField(max_length=255, null=True)
        size = pw.BigIntegerField(null=True)
        sha256 = pw.CharField(max_length=64, null=True)
        copied_at = MicroTimeField(null=True)
        created_at = MicroTimeField()
        Meta = meta("asset", indexes=((("task", "position"), True),))

    class PubLog(Base):
        task = pw.ForeignKeyField(Task, column_name="task_id")
        channel_app_task = pw.ForeignKeyField(ChannelAppTask, null=True, column_name="channel_app_task_id")
        status = EnumCharField(PubLogStatus, max_length=8)
        code = pw.IntegerField()
        message = pw.TextField()
        data = JSONField(null=True)
        #: Unique per (event key, row): a handler replayed for the same event writes nothing twice.
        dedup_key = pw.CharField(max_length=191, null=True, unique=True)
        created_at = MicroTimeField()
        Meta = meta("pub_log")

    class StatusEvent(Base):
        task = pw.ForeignKeyField(Task, column_name="task_id")
        channel_app_task = pw.ForeignKeyField(ChannelAppTask, null=True, column_name="channel_app_task_id")
        kind = EnumCharField(EventKind, max_length=16)
        from_status = StatusField(null=True)
        to_status = StatusField(null=True)
        reason = pw.CharField(max_length=255)
        code = pw.IntegerField(null=True)
        queue = pw.CharField(max_length=64, null=True)
        job_id = pw.BigIntegerField(null=True)
        attempt = pw.IntegerField(null=True)
        at = MicroTimeField(index=True)
        Meta = meta("status_event", indexes=((("task", "at"), False),))

    class Outbox(Base):
        task = pw.ForeignKeyField(Task, column_name="task_id")
        channel_app_task = pw.ForeignKeyField(ChannelAppTask, null=True, column_name="channel_app_task_id")
        kind = EnumCharField(OutboxKind, max_length=16)
        queue = pw.CharField(max_length=64)
        job = pw.CharField(max_length=128)
        args = JSONField()
        reason = pw.CharField(max_length=255, default="")
        dedup_key = pw.CharField(max_length=191, unique=True)
        event_id = pw.CharField(max_length=64, null=True, unique=True)
        state = EnumCharField(OutboxState, max_length=16, default=OutboxState.PENDING)
        job_id = pw.BigIntegerField(null=True)
        push_attempts = pw.IntegerField(default=0)
        last_error = pw.TextField(null=True)
        created_at = MicroTimeField()
        pushed_at = MicroTimeField(null=True)
        sent_at = MicroTimeField(null=True)
        Meta = meta("outbox", indexes=((("state", "created_at"), False),))

    return Models(database, prefix, SchemaVersion, Task, ChannelAppTask, Asset, PubLog, StatusEvent,
                  Outbox)
