"""What the real queues did, seen from the outside: every push, success and failure of an App.

:class:`EventRecorder`'s methods are ``afterPush``/``afterExec``/``afterError`` handlers that the test
config lists *after* the pipeline's own handlers (see :func:`tests.publishing.support.pipeline_config`).
They only record; the jobs, the handlers and their wiring are the real ones.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from pubq.events import ExecEvent, PushEvent


@dataclass
class Push:
    queue: str
    #: The job's short class name (``UploadAssetJob``).
    job: str
    args: dict[str, Any]
    id: int | None


@dataclass
class Run:
    """One attempt of a job, as its afterExec or afterError event saw it."""

    queue: str
    job: str
    args: dict[str, Any]
    id: int
    attempt: int
    ok: bool
    result: Any
    error: BaseException | None
    #: afterError only: another attempt follows.
    retry: bool
    #: The event the pipeline's handler received (replay it to test idempotent handlers).
    event: ExecEvent


@dataclass
class Recording:
    pushes: list[Push] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        """The arguments of every pushed job of class ``name``, in push order."""
        return [p.args for p in self.pushes if p.job == name]

    def pushed(self, name: str, **args: Any) -> Push:
        """The one push of a ``name`` job with exactly these arguments."""
        found = [p for p in self.pushes if p.job == name and p.args == args]
        assert len(found) == 1, (name, args, self.pushes)
        return found[0]

    def run(self, push: Push, attempt: int | None = None) -> Run:
        """The last (or the given) attempt of a pushed job."""
        found = [r for r in self.runs if (r.queue, r.id) == (push.queue, push.id)
                 and (attempt is None or r.attempt == attempt)]
        assert found, (push, self.runs)
        return max(found, key=lambda r: r.attempt)

    def runs_of(self, name: str) -> list[Run]:
        """Every recorded attempt of ``name`` jobs, in the order they ended."""
        return [r for r in self.runs if r.job == name]


_RECORDINGS: weakref.WeakKeyDictionary[Any, Recording] = weakref.WeakKeyDictionary()


def recording(app: Any) -> Recording:
    """What ``app``'s queues did so far."""
    return _RECORDINGS.setdefault(app, Recording())


class EventRecorder:
    def after_push(self, event: PushEvent) -> None:
        recording(event.queue.app).pushes.append(
            Push(event.queue.name, type(event.job).__name__, event.job.to_args(), event.id))

    def after_exec(self, event: ExecEvent) -> None:
        self._record(event, ok=True)

    def after_error(self, event: ExecEvent) -> None:
        self._record(event, ok=False)

    @staticmethod
    def _record(event: ExecEvent, *, ok: bool) -> None:
        job = event.job
        recording(event.queue.app).runs.append(Run(
            event.queue.name, type(job).__name__ if job is not None else event.job_name,
            job.to_args() if job is not None else {}, event.id, event.attempt, ok,
            event.result, event.error, bool(event.retry), event))


#: The recorder's handlers, by event name, as config references.
HANDLERS = {name: f"{__name__}:EventRecorder.{method}"
            for name, method in (("afterPush", "after_push"), ("afterExec", "after_exec"),
                                 ("afterError", "after_error"))}
