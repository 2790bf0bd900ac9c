"""The words of publish state: account statuses, outbox rows, timeline events, publish-log rows.

Each enum's values are what the database stores and what ``--json`` output shows; existing rows and
deployments read them, so a value never changes. Members compare equal to their stored value
(``AccountStatus.FAILED == 3``, ``OutboxState.PENDING == "pending"``).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class AccountStatus(IntEnum):
    """Status of a channel app task (one task on one account), ``channel_app_task.status``."""

    PENDING = 1
    #: The channel release is in progress (assets uploading, item being created).
    RELEASING = 2
    #: The channel release failed; only an operator retry moves the row back to pending.
    FAILED = 3
    #: The platform holds the item for review.
    UNDER_REVIEW = 4
    PUBLISHED = 5
    #: The platform's review refused the item.
    REJECTED = 6

    @property
    def label(self) -> str:
        """The name shown to people: ``under review``."""
        return self.name.lower().replace("_", " ")

    @classmethod
    def label_of(cls, value: int | None) -> str:
        """The label of a stored value; ``?`` for a value this version does not know."""
        try:
            return cls(value).label
        except ValueError:
            return "?"


class OutboxKind(StrEnum):
    """What an outbox row asks for, ``outbox.kind``."""

    #: A follow-up job of the pipeline.
    JOB = "job"
    #: A source callback (a SourceCallbackJob named by the row's ``event_id``).
    CALLBACK = "callback"


class OutboxState(StrEnum):
    """Where an outbox row is, ``outbox.state``."""

    #: Written with the state change; not pushed yet (or its push failed and flush retries it).
    PENDING = "pending"
    #: Claimed by one dispatcher, which is pushing it now.
    PUSHING = "pushing"
    #: On its queue (``job_id`` is set).
    PUSHED = "pushed"
    #: Callback rows only: the source accepted the callback.
    SENT = "sent"
    #: Callback rows only: nothing to send (the task has no callback URL).
    SKIPPED = "skipped"
    #: Callback rows only: the callback job failed for good.
    FAILED = "failed"


class EventKind(StrEnum):
    """What a timeline row records, ``status_event.kind``."""

    #: An accepted status transition.
    TRANSITION = "transition"
    #: A transition whose guard did not match; ``from_status`` is the status found.
    REJECTED = "rejected"
    #: A step that changes no status (assets copied, media uploaded, callback sent…).
    STEP = "step"
    #: An attempt of a job that failed with another attempt to follow (the final one is the
    #: transition to failed): ``code`` and ``reason`` are what the submitter would have been told.
    ATTEMPT_FAILED = "attempt_failed"


class PubLogStatus(StrEnum):
    """The outcome a publish-log row tells the user about, ``pub_log.status``."""

    SUCCESS = "success"
    ERROR = "error"


class ReviewVerdict(StrEnum):
    """What a channel adapter's ``review_status`` answers."""

    UNDER_REVIEW = "review"
    PUBLISHED = "published"
    REJECTED = "rejected"


class CopyFailureStage(StrEnum):
    """Which part of copy-asset failed for the whole task (part of its dedup keys)."""

    #: The copy job itself failed for good (afterError).
    COPY = "copy"
    #: The job succeeded but its fan-out to the accounts raised (afterExec).
    FOLLOW_UP = "follow-up"


class RetryStep(StrEnum):
    """The step an operator retry pushes again."""

    COPY = "copy"
    UPLOAD = "upload"
