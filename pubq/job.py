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
from itertools import repeat
from typing import TYPE_CHECKING, Any, ClassVar

from . import payload_json
from .argtypes import arg_spec
from .bounds import ATTEMPTS, TTR, UNIQUE_FOR, UNIQUE_UNTIL
from .errors import ConfigError, InvalidJobError, UnknownJobError, UsageError
from .limits import LimitKey, Limits, parse_limits

if TYPE_CHECKING:  # pragma: no cover
    from .runner import JobContext

_JSON_SCALARS = (str, int, float, bool, type(None))
#: Deepest nesting of lists and objects a job's arguments may have. Far past what a job needs, far
#: short of the interpreter's recursion limit (a payload nested 100,000 deep is an invalid job).
MAX_ARGS_DEPTH = 100
#: Compact JSON that refuses NaN/Infinity and non-JSON types (checked by json itself, at C speed).


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
    #: A unique-key template over the job's fields (``"{task_id}"``): a push while a job with the
    #: same key is held returns that job's id instead of storing another (spec §7.9).
    unique: ClassVar[str | None] = None
    #: Seconds the key lives at most (None: until ``unique_until``), and when it is released:
    #: "done" (a final state, the default), "start" (first reserved), "ttl" (only at ``unique_for``).
    unique_for: ClassVar[float | None] = None
    unique_until: ClassVar[str | None] = None
    #: Per-key limits of this job class, overriding the queue's ``limits``: a mapping like
    #: ``{"key": "{account_id}", "concurrency": 1, "rate": "10/m"}`` (checked when registered) or
    #: a :class:`~pubq.limits.Limits`.
    limits: ClassVar[Limits | dict[str, Any] | None] = None

    def execute(self, ctx: JobContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.execute is not implemented")

    def limit_key(self, ctx: JobContext) -> LimitKey | str | None:
        """This job's limit when its key is not a plain field (evaluated in the worker, before the
        job starts): a :class:`~pubq.limits.LimitKey` (key and numbers), a key string (with the
        numbers of the class's or queue's ``limits``), or None (no limit for this job). Only asked
        when a class overrides it; otherwise the ``limits`` key template is filled. An exception
        here fails the attempt like one raised by ``execute`` (``PermanentError``: no retry)."""
        return None

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

    def unique_key(self) -> str | None:
        """The class's ``unique`` template filled with this job's fields; None without one."""
        template = type(self).unique
        if template is None:
            return None
        try:
            return f"{self.job_name()}:{template.format_map(self.to_args())}"
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise UsageError(f"job {self.job_name()}: unique template {template!r} does not fit its fields: "
                             f"{type(exc).__name__}: {exc}") from None


def _arg_names(cls: type) -> tuple[str, ...]:
    """Dataclass field names, cached on the class (push_many calls this per job)."""
    names = cls.__dict__.get("_pubq_arg_names")
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
        cls._pubq_arg_names = names  # type: ignore[attr-defined]
    return names


def _check_unique_template(name: str, cls: type[Job]) -> None:
    """A unique template names only the job's fields; its release options are in range (at registration)."""
    import string

    try:
        names = [field for _, field, _, _ in string.Formatter().parse(str(cls.unique)) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"job {name}: unique: {exc}") from None
    fields = set(_arg_names(cls))
    for field in names:
        base = field.split(".")[0].split("[")[0]
        if base not in fields:
            raise ConfigError(f"job {name}: unique: {{{field}}} is not a field of the job "
                              f"(fields: {', '.join(sorted(fields)) or 'none'})")
    problem = unique_problem(cls.unique_for, cls.unique_until)
    if problem is not None:
        raise ConfigError(f"job {name}: {problem}")


def unique_problem(unique_for: object, unique_until: object) -> str | None:
    """What is wrong with a pair of unique options, or None."""
    if unique_until is not None and unique_until not in UNIQUE_UNTIL:
        return f"unique_until must be one of {', '.join(UNIQUE_UNTIL)} (got {unique_until!r})"
    if unique_for is not None and UNIQUE_FOR.problem(unique_for) is not None:
        return f"unique_for {UNIQUE_FOR.problem(unique_for)}"
    if unique_until == "ttl" and unique_for is None:
        return "unique_until ttl needs unique_for (seconds)"
    return None


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and value - value != 0:  # NaN and ±Infinity are not JSON
            raise ValueError(f"{path}: {value!r} is not allowed")
        return
    if depth >= MAX_ARGS_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_ARGS_DEPTH} levels")
    deep = depth >= 3  # messages name the first levels only
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, path if deep else f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings")
            _check_json(item, path if deep else f"{path}.{k}", depth + 1)
        return
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON type")


def _text(exc: BaseException) -> str:
    """``str(exc)``, even for an error whose ``__str__`` raises (a job's code may be as broken as its data)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return "(message cannot be shown)"


def _describe(exc: BaseException) -> str:
    """``Class: message`` of an error raised by a job's own code."""
    text = _text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        for bound, value in ((TTR, cls.ttr), (ATTEMPTS, cls.attempts)):
            if value is not None and bound.problem(value) is not None:  # one range, here as in the config
                raise ConfigError(f"job {name}: {bound.name} {bound.problem(value)}")
        if cls.unique is not None:
            _check_unique_template(name, cls)
        if cls.limits is not None and not isinstance(cls.limits, Limits):
            cls.limits = parse_limits(cls.limits, f"job {name}: limits", fields=_arg_names(cls))
        elif isinstance(cls.limits, Limits):
            parse_limits(cls.limits, f"job {name}: limits", fields=_arg_names(cls))
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
        """Instantiate a registered job from JSON arguments; ``UsageError``-family on bad input.

        The arguments are checked against the job's field annotations first (:mod:`pubq.argtypes`),
        so the job's own code never sees a string for an int; anything its constructor raises (a
        ``__post_init__`` check) refuses the arguments too."""
        cls = self.get(name)
        if not isinstance(args, dict):
            raise UsageError(f"arguments of {name} must be a JSON object")
        spec = arg_spec(cls)
        # set operations, not comprehensions: no Python frame on the worker's cold path
        if not spec.names.issuperset(args):
            if not dataclasses.is_dataclass(cls):
                raise UsageError(f"{name} takes no arguments")
            shown = sorted(k if isinstance(k, str) else f"<{type(k).__name__}>" for k in args.keys() - spec.names)
            raise UsageError(f"{name}: unknown argument(s): {', '.join(shown)}")
        if not spec.required.issubset(args):
            raise UsageError(f"{name}: missing argument(s): {', '.join(sorted(spec.required.difference(args)))}")
        problem = spec.problem(args)
        if problem is not None:
            raise UsageError(f"{name}: {problem}")
        if not spec.closed:  # a field of Any type: walk it (depth, NaN, non-JSON values)
            try:
                _check_json(args, "args")
            except ValueError as exc:
                raise UsageError(f"{name}: {exc}") from None
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{name}: {_text(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. __post_init__ raising: the arguments are refused
            raise UsageError(f"{name}: the job refused its arguments: {_describe(exc)}") from None

    def encode(self, job: Job) -> bytes:
        cls = type(job)
        name = cls.name or job.job_name()
        if self._by_name.get(name) is not cls:
            raise UnknownJobError(f"job class {cls.__qualname__} is not registered (name {name!r})")
        if cls.to_args is Job.to_args:  # to_args without its frames (a producer pushing now and then runs cold)
            names = _arg_names(cls)
            args = dict(zip(names, map(getattr, repeat(job), names), strict=True))
        else:
            args = job.to_args()
        problem = arg_spec(cls).problem(args)
        if problem is not None:
            raise UsageError(f"{name}: {problem}")
        try:
            return payload_json.dumps({"job": name, "args": args}).encode()
        except UnicodeEncodeError:
            raise UsageError(f"{name}: arguments hold text that is not valid Unicode (a lone surrogate)") from None
        except (TypeError, ValueError, RecursionError):
            try:  # find the offending field for the message
                _check_json(job.to_args(), "args")
            except ValueError as exc:
                raise UsageError(f"{name}: {exc}") from None
            raise UsageError(f"{name}: arguments are not JSON-serializable") from None

    def decode(self, payload: bytes) -> Job:
        """Payload bytes → job. Anything wrong raises :class:`InvalidJobError` with a clear reason."""
        try:
            data = payload_json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidJobError(f"payload is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidJobError("payload is nested too deeply to decode") from None
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
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    name = data.get("job") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
