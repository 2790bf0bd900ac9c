"""Business error codes with message templates for the publish log.

The message of a business error is written for the person who submitted the content (it lands in
pub_log and in the source callback); tracebacks never do. Each code is its own exception class so an
error rebuilt from ``cls(message)`` (e.g. across the isolate pipe) keeps its code.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..errors import PermanentError, RetryableError

#: The code of an error that is not a business error: its text is for the operators, not the submitter.
GENERIC_CODE = 35000
#: code → message template. Placeholders are filled by :meth:`BizCoded.make`.
MESSAGES: dict[int, str] = {
    35000: "publishing failed because of an internal error (task ID: {task_id}); the operators can see the details",
    35001: "invalid publish request: {detail}",
    35002: "a task with uuid {uuid} from source {source} already exists (task ID: {task_id})",
    35003: "task ID {task_id} does not exist",
    35004: "channel app task {cat_id} does not exist",
    35020: "based on task ID: {task_id}, list of enabled resources is empty",
    35021: "based on task ID: {task_id}, list of enabled channel app tasks is empty",
    35022: "asset {index} of task ID {task_id} is larger than the limit of {limit} bytes",
    35023: "asset {index} of task ID {task_id}: source is not allowed ({reason})",
    35024: "asset {index} of task ID {task_id} could not be fetched ({reason})",
    35025: "assets of task ID {task_id} are not copied yet",
    35030: "account {account} of task ID {task_id} is {status}; run `pubq task retry {task_id} --account {account}` to publish it again",
    35040: "channel {channel_type} refused the request for account {account}: {reason}",
    35041: "channel {channel_type} is unavailable for account {account}: {reason}",
    35042: "account {account} is not configured for channel type {channel_type}",
    35050: "callback to the source was rejected with HTTP {status}",
    35051: "callback to the source failed: {reason}",
    35052: "callback of task ID {task_id} cannot be sent: {reason}",
    35060: "account {account}: the platform rejected the item in review",
}


class BizCoded:
    """Mixin: a stable integer ``biz_code`` and a user-facing message built from its template."""

    biz_code: ClassVar[int] = 35000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The stable string code kept in the failed registry: lets describe() recover the
        # business code from a stored failure record (RecordedError.error_code).
        cls.code = f"biz_{cls.biz_code}"

    @classmethod
    def make(cls, **params: Any) -> BizCoded:
        """Build the error from the code's template; missing placeholders show as ``?``."""
        return cls(_format(MESSAGES[cls.biz_code], params))  # type: ignore[call-arg]

    @property
    def user_message(self) -> str:
        return str(self.args[0]) if self.args else MESSAGES[self.biz_code]


class BusinessError(BizCoded, PermanentError):
    """A permanent business failure with a publish-log code."""

    code = "business_error"


class TransientBusinessError(BizCoded, RetryableError):
    """A business failure that may go away on a later attempt (platform down, 429, timeout)."""

    code = "business_retryable"


class InternalPublishError(BusinessError):
    biz_code = 35000


class InvalidRequestError(BusinessError):
    """The publish request failed validation; ``problems`` lists ``path: message`` lines."""

    biz_code = 35001
    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class DuplicateTaskError(BusinessError):
    biz_code = 35002


class TaskNotFoundError(BusinessError):
    biz_code = 35003


class ChannelAppTaskNotFoundError(BusinessError):
    biz_code = 35004


class ServerError(BusinessError):
    """35020 — the name (and message) operators know from the verbose console line."""

    biz_code = 35020


class NoChannelAppTasksError(BusinessError):
    biz_code = 35021


class AssetTooLargeError(BusinessError):
    biz_code = 35022


class SourceNotAllowedError(BusinessError):
    biz_code = 35023


class AssetFetchError(TransientBusinessError):
    biz_code = 35024


class AssetMissingError(BusinessError):
    """The source answered but has no such asset (404, missing file): retrying will not help."""

    biz_code = 35024


class AssetsNotCopiedError(BusinessError):
    biz_code = 35025


class StepRejectedError(BusinessError):
    """The row cannot start this step (e.g. a stale job re-run after the row failed)."""

    biz_code = 35030


class AdapterError(BusinessError):
    biz_code = 35040


class AdapterUnavailableError(TransientBusinessError):
    biz_code = 35041


class UnknownAccountError(BusinessError):
    biz_code = 35042


class CallbackRejectedError(BusinessError):
    biz_code = 35050


class CallbackFailedError(TransientBusinessError):
    biz_code = 35051


class CallbackNotAllowedError(BusinessError):
    biz_code = 35052


class ItemRejectedError(BusinessError):
    biz_code = 35060


#: Stable codes of the errors that mean "the worker running the attempt was lost" (killed, or past
#: its TTR): the attempt ended without a word from the platform.
LOST_WORKER_CODES = frozenset({"worker_lost", "ttr_exceeded", "job_crashed"})


def lost_worker(error: BaseException | None) -> bool:
    """Whether ``error`` says the attempt's worker was lost (also as a recorded failure)."""
    if error is None:
        return False
    code = getattr(error, "error_code", None) or getattr(error, "code", None)
    return code in LOST_WORKER_CODES


def describe(error: BaseException | None, **params: Any) -> tuple[int, str]:
    """(code, user-facing message) for any error that ended a step.

    Unknown errors become 35000 with a generic message: their text may hold paths, SQL or secrets
    and is meant for the system log, not for the person who submitted the content.
    """
    code = getattr(error, "biz_code", None)
    if isinstance(code, int) and code in MESSAGES and error is not None and error.args:
        return code, str(error.args[0])
    recorded = _RECORDED.match(str(getattr(error, "error_code", "") or ""))
    if recorded and int(recorded.group(1)) in MESSAGES:
        return int(recorded.group(1)), str(error)
    return 35000, _format(MESSAGES[35000], params)


_RECORDED = re.compile(r"^biz_(\d+)$")


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _format(template: str, params: dict[str, Any]) -> str:
    return template.format_map(_Defaults(params))
