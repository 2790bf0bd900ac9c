"""Queue events (the Yii names) and the bus that calls their handlers.

Handlers receive one mutable event object. The fields mirror yii2-queue's PushEvent/ExecEvent/
WorkerEvent (``handled``, ``retry``, ``result``, ``error``, ``attempt``) so Yii users find them where
they expect; ``key`` (queue, job id, attempt) lets a handler make its effects exactly-once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .job import Job
    from .queue import Queue

BEFORE_PUSH = "beforePush"
AFTER_PUSH = "afterPush"
BEFORE_EXEC = "beforeExec"
AFTER_EXEC = "afterExec"
AFTER_ERROR = "afterError"
WORKER_START = "workerStart"
WORKER_LOOP = "workerLoop"
WORKER_STOP = "workerStop"

EVENT_NAMES: tuple[str, ...] = (
    BEFORE_PUSH,
    AFTER_PUSH,
    BEFORE_EXEC,
    AFTER_EXEC,
    AFTER_ERROR,
    WORKER_START,
    WORKER_LOOP,
    WORKER_STOP,
)

#: Events whose raising handlers are kept as follow-up failures instead of propagating.
GUARDED_EVENTS = frozenset({AFTER_EXEC, AFTER_ERROR})

log = logging.getLogger("pubq.events")

Handler = Callable[[Any], Any]


@dataclass
class PushEvent:
    queue: Queue
    job: Job
    ttr: int
    delay: float = 0.0
    priority: int = 1024
    #: Set by a beforePush handler to cancel the push (push() then returns None).
    handled: bool = False
    #: Set after the driver stored the job.
    id: int | None = None


@dataclass
class ExecEvent:
    queue: Queue
    id: int
    #: None when the payload could not be decoded (invalid job); ``payload`` still holds the bytes.
    job: Job | None
    ttr: int
    attempt: int
    payload: bytes = b""
    job_name: str = "unknown job"
    #: Set by a beforeExec handler to skip the job (it is then acked without running).
    handled: bool = False
    result: Any = None
    error: BaseException | None = None
    #: afterError: whether another attempt follows. Handlers may change it (the Yii contract).
    retry: bool = False
    #: Seconds the job ran (None when this process did not run it, e.g. a lost worker).
    duration: float | None = None
    #: Peak RSS of the process that ran the job, in MiB, when known.
    memory_mib: float | None = None
    #: Formatted traceback of ``error`` (kept across the isolate pipe, where the exception is rebuilt).
    traceback: str = ""
    #: Handlers of this afterExec/afterError that raised so far (later handlers, such as the
    #: verbose console's, can mark the job's line).
    follow_up_failures: list[HandlerFailure] = field(default_factory=list)
    #: Backend times the job was pushed and this attempt reserved (None when unknown), for metrics.
    pushed_at: float | None = None
    reserved_at: float | None = None
    #: Set by the runner when the job's limit key was at its limit: the job went back delayed,
    #: uncounted, and no event fires for this reservation (spec §7.10).
    limited: bool = False

    @property
    def key(self) -> tuple[str, int, int]:
        """(queue name, job id, attempt): unique per attempt, stable across reclaims."""
        return (self.queue.name, self.id, self.attempt)


@dataclass
class WorkerEvent:
    queue: Queue
    pid: int
    #: A workerStart/workerLoop handler sets this to stop the worker with that exit code.
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HandlerFailure:
    """What a guarded handler raised; the queue turns it into a FollowUpFailure record."""

    event: str
    handler: str
    error: BaseException
    traceback: str


class EventBus:
    """Ordered handlers per event name."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[str, Handler]]] = {name: [] for name in EVENT_NAMES}

    def on(self, name: str, handler: Handler, *, label: str | None = None) -> None:
        if name not in self._handlers:
            raise ValueError(f"unknown event {name!r} (known: {', '.join(EVENT_NAMES)})")
        self._handlers[name].append((label or _label(handler), handler))

    def off(self, name: str, handler: Handler) -> None:
        self._handlers[name] = [(lbl, h) for lbl, h in self._handlers[name] if h is not handler]

    def has(self, name: str) -> bool:
        return bool(self._handlers.get(name))

    def trigger(self, name: str, event: Any) -> list[HandlerFailure]:
        """Call every handler of ``name`` in order.

        For afterExec/afterError every handler runs even when an earlier one raised; the failures
        are returned (never raised) so one broken follow-up cannot stop the others or the worker.
        For other events a raising handler propagates, as in Yii.
        """
        failures: list[HandlerFailure] = []
        for label, handler in list(self._handlers.get(name, ())):
            if name not in GUARDED_EVENTS:
                handler(event)
                continue
            try:
                handler(event)
            except Exception as exc:  # noqa: BLE001 - kept and reported, by contract
                import traceback as tb

                failure = HandlerFailure(name, label, exc, tb.format_exc())
                failures.append(failure)
                seen = getattr(event, "follow_up_failures", None)
                if isinstance(seen, list):
                    seen.append(failure)
        return failures


def _label(handler: Handler) -> str:
    owner = getattr(handler, "__self__", None)
    qual = getattr(handler, "__qualname__", None) or repr(handler)
    if owner is not None and not isinstance(owner, type):
        qual = f"{type(owner).__qualname__}.{getattr(handler, '__name__', '?')}"
    module = getattr(handler, "__module__", None) or (type(owner).__module__ if owner else "?")
    return f"{module}:{qual}"
