"""Jobs and handlers used by the tests (importable by worker subprocesses via PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from pubq import Job, PermanentError, RetryableError


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic across processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh]
    except FileNotFoundError:
        return []


@dataclass
class NoopJob(Job):
    name = "tests.Noop"

    def execute(self, ctx):
        return None


@dataclass
class RecordJob(Job):
    """Appends ``tag`` (and the attempt) to ``path``: proves a run, across processes."""

    name = "tests.Record"
    path: str
    tag: str = "x"
    sleep: float = 0.0

    def execute(self, ctx):
        if self.sleep:
            time.sleep(self.sleep)
        _append(self.path, f"{self.tag} {ctx.job_id} {ctx.attempt} {os.getpid()}")
        return self.tag


@dataclass
class FailJob(Job):
    name = "tests.Fail"
    message: str = "boom"
    permanent: bool = False
    retryable: bool = False
    path: str = ""

    def execute(self, ctx):
        if self.path:
            _append(self.path, f"run {ctx.job_id} {ctx.attempt}")
        if self.permanent:
            raise PermanentError(self.message)
        if self.retryable:
            raise RetryableError(self.message)
        raise RuntimeError(self.message)


@dataclass
class FlakyJob(Job):
    """Fails until ``ok_on`` attempt."""

    name = "tests.Flaky"
    path: str
    ok_on: int = 2

    def execute(self, ctx):
        _append(self.path, f"run {ctx.job_id} {ctx.attempt}")
        if ctx.attempt < self.ok_on:
            raise RuntimeError(f"flaky attempt {ctx.attempt}")
        return "ok"


@dataclass
class SleepJob(Job):
    name = "tests.Sleep"
    seconds: float = 1.0
    path: str = ""

    def execute(self, ctx):
        if self.path:
            _append(self.path, f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
        time.sleep(self.seconds)
        if self.path:
            _append(self.path, f"end {ctx.job_id} {ctx.attempt}")


@dataclass
class SuicideJob(Job):
    """Kills its own process (the isolate child, or the worker itself without isolate)."""

    name = "tests.Suicide"
    path: str = ""

    def execute(self, ctx):
        if self.path:
            _append(self.path, f"run {ctx.job_id} {ctx.attempt} {os.getpid()}")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class TypedJob(Job):
    """Arguments of every annotated shape pubq checks (issue 11)."""

    name = "tests.Typed"
    count: int
    ratio: float = 0.0
    flag: bool = False
    note: str | None = None
    tags: list[str] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    grid: list[list[int]] | None = None
    anything: Any = None

    def execute(self, ctx):
        return self.count


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


@dataclass
class RefusingJob(Job):
    """Its own code refuses its arguments: ``__post_init__`` raises the error named by ``what``
    ("ok" builds it). Stored, it must be an invalid job; pushed, a usage error; never a crash."""

    name = "tests.Refusing"
    what: str = "RuntimeError"

    def __post_init__(self) -> None:
        errors = {"RuntimeError": RuntimeError("refused"), "KeyError": KeyError("missing"),
                  "RecursionError": RecursionError("too deep"), "Unprintable": _UnprintableError()}
        if self.what != "ok":
            raise errors.get(self.what, ValueError(self.what))

    def execute(self, ctx):
        return None


class Recorder:
    """Handler class named in YAML: records every event it sees into $PUBQ_TEST_EVENTS."""

    def _path(self) -> str:
        return os.environ.get("PUBQ_TEST_EVENTS", "/tmp/pubq-test-events")

    def after_exec(self, event) -> None:
        _append(self._path(), f"afterExec {event.id} {event.attempt}")

    def after_error(self, event) -> None:
        name = getattr(event.error, "error_class", None) or type(event.error).__name__
        _append(self._path(), f"afterError {event.id} {event.attempt} retry={int(bool(event.retry))} {name}")


class BrokenFollowUp:
    def after_exec(self, event) -> None:
        raise RuntimeError("follow-up exploded")

    def after_error(self, event) -> None:
        raise RuntimeError("error handler exploded")


class KillBeforeAck:
    """afterExec handler that SIGKILLs the worker: the job returned but was never acked."""

    def after_exec(self, event) -> None:
        marker = os.environ.get("PUBQ_TEST_KILL_ONCE")
        if marker and not os.path.exists(marker):
            _append(marker, "killed")
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class CheckpointJob(Job):
    """A long in-process job that stops at its checkpoints when cancelled (``ctx.checkpoint()``)."""

    name = "tests.Checkpoint"
    seconds: float = 30.0
    path: str = ""

    def execute(self, ctx):
        if self.path:
            _append(self.path, f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            ctx.checkpoint()
            time.sleep(0.02)
        if self.path:
            _append(self.path, f"end {ctx.job_id} {ctx.attempt}")


@dataclass
class ProgressJob(Job):
    """Reports ``steps`` progress values, then holds until ``release`` exists (at most 60 s)."""

    name = "tests.Progress"
    steps: int = 4
    release: str = ""

    def execute(self, ctx):
        for i in range(1, self.steps + 1):
            ctx.progress(i / self.steps, f"step {i} of {self.steps}")
            time.sleep(0.05)
        end = time.monotonic() + 60
        while self.release and not os.path.exists(self.release) and time.monotonic() < end:
            time.sleep(0.02)
        return self.steps


@dataclass
class AsyncSleepJob(Job):
    """``async def execute``: a concurrent worker runs it on its event loop (issue 17)."""

    name = "tests.AsyncSleep"
    seconds: float = 0.1
    path: str = ""
    fail: bool = False

    async def execute(self, ctx):
        import asyncio

        if self.path:
            _append(self.path, f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
        await asyncio.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("async boom")
        if self.path:
            _append(self.path, f"end {ctx.job_id} {ctx.attempt}")
        return "async"


@dataclass
class RendezvousJob(Job):
    """Records its start, then waits (at most ``patience`` s) until ``count`` jobs have started:
    it can only end ``ok`` when that many run at the same time (issue 17)."""

    name = "tests.Rendezvous"
    path: str
    count: int = 2
    patience: float = 20.0

    def execute(self, ctx):
        _append(self.path, f"start {ctx.job_id} {os.getpid()}")
        end = time.monotonic() + self.patience
        while time.monotonic() < end:
            if sum(1 for line in read_lines(self.path) if line.startswith("start ")) >= self.count:
                return "met"
            time.sleep(0.01)
        raise RuntimeError(f"fewer than {self.count} jobs ran at once")


@dataclass
class KeyedJob(Job):
    """Records ``account start end`` (wall clock) to ``path``: the runs of one limit key."""

    name = "tests.Keyed"
    account: str
    path: str
    sleep: float = 0.0

    def execute(self, ctx):
        start = time.time()
        if self.sleep:
            time.sleep(self.sleep)
        _append(self.path, f"{self.account} {start:.6f} {time.time():.6f} {ctx.job_id} {ctx.attempt}")


@dataclass
class OwnLimitJob(Job):
    """A job class with limits of its own (they win over the queue's)."""

    name = "tests.OwnLimit"
    limits = {"key": "acct-{account}", "concurrency": 1}
    account: str
    path: str = ""

    def execute(self, ctx):
        if self.path:
            _append(self.path, f"{self.account} {ctx.job_id}")


@dataclass
class ComputedLimitJob(Job):
    """A job whose limit key is not a field: ``limit_key`` looks it up (here: in ``ACCOUNT_OF``), as
    the publishing jobs look up a row's account. ``mode`` picks what ``limit_key`` returns."""

    name = "tests.ComputedLimit"
    row: int
    mode: str = "limit"  # limit | key | none | fail | permanent

    def limit_key(self, ctx):
        from pubq.limits import LimitKey

        if self.mode == "fail":
            raise RuntimeError(f"lookup of row {self.row} failed")
        if self.mode == "permanent":
            raise PermanentError(f"row {self.row} is gone")
        if self.mode == "none":
            return None
        account = ACCOUNT_OF[self.row]
        return f"acct-{account}" if self.mode == "key" else LimitKey(f"acct-{account}", concurrency=1)

    def execute(self, ctx):
        return self.row


#: row → account of :class:`ComputedLimitJob` (the "database" its limit_key reads).
ACCOUNT_OF = {1: "a", 2: "a", 3: "b"}


@dataclass
class ExitJob(Job):
    """Calls ``sys.exit`` (a BaseException past ``execute``'s net): in a pool thread it must come
    back as a failed attempt, never end the thread with its slot (issue 17)."""

    name = "tests.Exit"
    code: int = 3

    def execute(self, ctx):
        import sys

        sys.exit(self.code)
