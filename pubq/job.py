"""Jobs: dataclass subclasses of :class:`Job`, known by name through a :class:`JobRegistry`.

A payload names its job and carries JSON arguments (``{"job": name, "args": {...}}``). Only classes
in the registry can be named, so a payload can never make pubq import or build an arbitrary class.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InvalidJobError, UnknownJobError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .runner import JobContext

_JSON_SCALARS = (str, int, float, bool, type(None))
#: Compact JSON that refuses NaN/Infinity and non-JSON types (checked by json itself, at C speed).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class Job:
    """Base class of every job. Subclasses are dataclasses whose fields are the job's JSON arguments.

    ``ttr`` (seconds) and ``attempts`` may be set on a subclass to override the queue's defaults;
    ``can_retry`` may be overridden to refuse retries for some errors.
    """

    #: Stable name stored in payloads; defaults to ``module.QualName`` (see :meth:`job_name`).
    name: ClassVar[str | None] = None
    #: Seconds a reserved job may run before it is reclaimed; None = the queue's ttr.
    ttr: ClassVar[int | None] = None
    #: Total attempts (first run included); None = the queue's attempts.
    attempts: ClassVar[int | None] = None
    #: True on a shared base class that must not be registered itself.
    abstract: ClassVar[bool] = False

    def execute(self, ctx: JobContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.execute is not implemented")

    def can_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether another attempt may follow ``attempt`` (1-based) that failed with ``error``.

        Asked only while attempts remain (the attempts limit is an upper bound this refines);
        ``PermanentError`` and invalid jobs are never retried whatever this says.
        """
        return True

    @classmethod
    def job_name(cls) -> str:
        if cls.name:
            return cls.name
        return f"{cls.__module__}.{cls.__qualname__}"

    def to_args(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _arg_names(type(self))}


def _arg_names(cls: type) -> tuple[str, ...]:
    """Dataclass field names, cached on the class (push_many calls this per job)."""
    names = cls.__dict__.get("_pubq_arg_names")
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
        cls._pubq_arg_names = names  # type: ignore[attr-defined]
    return names


def _check_json(value: Any, path: str) -> None:
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            raise ValueError(f"{path}: NaN is not allowed")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings")
            _check_json(item, f"{path}.{k}")
        return
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON type")


class JobRegistry:
    """Name → Job class. Built from module names; holds no global state."""

    def __init__(self, classes: Iterable[type[Job]] = ()) -> None:
        self._by_name: dict[str, type[Job]] = {}
        for cls in classes:
            self.register(cls)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> JobRegistry:
        reg = cls()
        for modname in modules:
            reg.register_module(modname)
        return reg

    def register_module(self, modname: str) -> None:
        module = importlib.import_module(modname)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Job)
                and obj is not Job
                and not obj.__dict__.get("abstract", False)
            ):
                self.register(obj)

    def register(self, cls: type[Job]) -> type[Job]:
        name = cls.job_name()
        existing = self._by_name.get(name)
        if existing is not None and existing is not cls:
            raise UsageError(f"two job classes share the name {name!r}: {existing!r} and {cls!r}")
        self._by_name[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> type[Job]:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownJobError(f"unknown job {name!r}{self._hint(name)}") from None

    def _hint(self, name: str) -> str:
        """A close registered name, or the registered names when there are few (``pubq jobs`` lists them)."""
        import difflib

        close = difflib.get_close_matches(name, self._by_name, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]!r}? (pubq jobs lists every registered job)"
        names = self.names()
        if not names:
            return " (no job is registered: list your job modules under jobs:)"
        if len(names) <= 8:
            return f" (registered: {', '.join(names)})"
        return " (pubq jobs lists every registered job)"

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    # -- codec ---------------------------------------------------------------------------

    def build(self, name: str, args: dict[str, Any]) -> Job:
        """Instantiate a registered job from JSON arguments; ``UsageError``-family on bad input."""
        cls = self.get(name)
        if not isinstance(args, dict):
            raise UsageError(f"arguments of {name} must be a JSON object")
        try:
            _check_json(args, "args")
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        if dataclasses.is_dataclass(cls):
            fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
            unknown = sorted(set(args) - set(fields))
            if unknown:
                raise UsageError(f"{name}: unknown argument(s): {', '.join(unknown)}")
            missing = sorted(
                n for n, f in fields.items()
                if n not in args
                and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
            )
            if missing:
                raise UsageError(f"{name}: missing argument(s): {', '.join(missing)}")
        elif args:
            raise UsageError(f"{name} takes no arguments")
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{name}: {exc}") from None

    def encode(self, job: Job) -> bytes:
        name = job.job_name()
        if self._by_name.get(name) is not type(job):
            raise UnknownJobError(f"job class {type(job).__qualname__} is not registered (name {name!r})")
        try:
            text = _dumps({"job": name, "args": job.to_args()})
        except (TypeError, ValueError):
            try:  # find the offending field for the message
                _check_json(job.to_args(), "args")
            except ValueError as exc:
                raise UsageError(f"{name}: {exc}") from None
            raise UsageError(f"{name}: arguments are not JSON-serializable") from None
        return text.encode()

    def decode(self, payload: bytes) -> Job:
        """Payload bytes → job. Anything wrong raises :class:`InvalidJobError` with a clear reason."""
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidJobError(f"payload is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("job"), str):
            raise InvalidJobError('payload must be a JSON object with a string "job"')
        name = data["job"]
        if name not in self._by_name:
            raise InvalidJobError(f"unknown job {name!r}")
        args = data.get("args", {})
        try:
            return self.build(name, args)
        except UsageError as exc:
            raise InvalidJobError(str(exc)) from None


@dataclass(frozen=True)
class JobField:
    """One argument of a job class, for ``pubq jobs`` and completion."""

    name: str
    #: The annotation as written (``int``, ``dict[str, Any]``…).
    type: str
    required: bool
    #: ``repr`` of the default, '' when required.
    default: str = ""


def job_fields(cls: type[Job]) -> list[JobField]:
    """The job's arguments (its dataclass fields) in declaration order."""
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", repr(f.type))
        if f.default is not dataclasses.MISSING:
            out.append(JobField(f.name, kind, False, repr(f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            out.append(JobField(f.name, kind, False, repr(f.default_factory())))
        else:
            out.append(JobField(f.name, kind, True))
    return out


def peek_name(payload: bytes) -> str | None:
    """The job name a payload claims, for display; None when unreadable."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    name = data.get("job") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
