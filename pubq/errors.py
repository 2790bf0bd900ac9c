"""Typed errors. Each carries a stable ``code`` so logs, JSON output and tests can match on it.

Errors are raised deep inside pubq and rendered exactly once, at the CLI edge
(``pubq.commands``), as one ``Error: …`` line with an exit code taken from ``exit_code``.
"""

from __future__ import annotations


class PubqError(Exception):
    """Base of every error pubq raises on purpose."""

    code: str = "pubq_error"
    #: Process exit code when this error reaches the CLI edge (1 runtime, 2 usage/config).
    exit_code: int = 1


# -- configuration and usage --------------------------------------------------------------


class ConfigError(PubqError):
    """The configuration file (or an environment override) is invalid."""

    code = "config_error"
    exit_code = 2


class UsageError(PubqError):
    """A command was called with bad arguments."""

    code = "usage_error"
    exit_code = 2


class PayloadTooLargeError(PubqError):
    """A job payload is bigger than the queue's ``max_payload_bytes``."""

    code = "payload_too_large"
    exit_code = 2


class UnknownJobError(PubqError):
    """A job name that is not registered (CLI push or stored payload)."""

    code = "unknown_job"
    exit_code = 2


class JobNotFoundError(PubqError):
    """The job id does not exist in this queue (``remove``, ``failed show``…)."""

    code = "job_not_found"
    exit_code = 1


class JobFinishedError(PubqError):
    """A command needs a live job, and this one already finished (``cancel`` of a done job)."""

    code = "job_finished"
    exit_code = 1


# -- backends --------------------------------------------------------------------------------


class DriverError(PubqError):
    """A backend (Redis, database) failed or is unreachable."""

    code = "driver_error"
    exit_code = 1


class BackendUnavailableError(DriverError):
    """The backend did not answer within the retry budget."""

    code = "backend_unavailable"


class BackendDataError(DriverError):
    """The backend refused a value (a number out of range, a text it cannot store): bad input, not an
    outage. Never retried (:class:`~pubq.drivers.resilient.ResilientDriver` raises it at once)."""

    code = "backend_data_error"
    exit_code = 2


class NotDurableError(PubqError):
    """A write happened on the Redis master but fewer replicas than the queue's ``durability`` asks
    confirmed it in time (it could vanish in a failover). Not a DriverError: retrying would write
    it twice, so nothing retries it."""

    code = "not_durable"
    exit_code = 1

    def __init__(self, message: str, *, job_id: int | None = None) -> None:
        super().__init__(message)
        #: The id the write stored (a push's new job), when known.
        self.job_id = job_id


# -- job outcomes ----------------------------------------------------------------------------


class JobError(PubqError):
    """Base of errors that describe what happened to a job."""

    code = "job_error"


class PermanentError(JobError):
    """Raised by a job: this failure will not go away by retrying."""

    code = "permanent"


class RetryableError(JobError):
    """Raised by a job: retry while attempts remain."""

    code = "retryable"


class InvalidJobError(PermanentError):
    """A stored payload cannot be turned into a job (bad JSON, unknown name, bad arguments)."""

    code = "invalid_job"


class JobCancelledError(PermanentError):
    """The job was cancelled by an operator (``pubq QUEUE cancel``); never retried. The message is
    the reason given."""

    code = "cancelled"


class WorkerLostError(JobError):
    """The worker that held the job died (or stopped answering) before it reported an outcome."""

    code = "worker_lost"


class TtrExceededError(WorkerLostError):
    """The job ran longer than its TTR and was killed (isolate) or reclaimed."""

    code = "ttr_exceeded"


class JobCrashedError(JobError):
    """An isolated child process died without reporting (signal, exit code, OOM)."""

    code = "job_crashed"


class RecordedError(JobError):
    """A failure known only from its stored record (re-running the handlers of an unsettled failure,
    or an isolated child's error that would not pickle): keeps the original class name and code."""

    code = "recorded"

    def __init__(self, error_class: str, message: str, code: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class
        self.error_code = code

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def error_name(error: BaseException) -> str:
    """The class name shown for an error (a recorded one keeps its original name)."""
    if isinstance(error, RecordedError):
        return error.error_class
    return type(error).__name__


def error_code(error: BaseException) -> str:
    """The stable code of an error, '' when it has none."""
    code = getattr(error, "error_code", None) or getattr(error, "code", "")
    return code if isinstance(code, str) else str(code)
