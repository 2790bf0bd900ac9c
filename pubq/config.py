"""YAML configuration → frozen dataclasses, validated at load.

Every problem is one :class:`ConfigError` line naming the file, the queue and the key, e.g.
``pubq.yaml: queues.copy-asset.ttr: must be an integer ≥ 1 (got 'abc')``. Nothing here runs at
import; environment variables are read only by :func:`load_config`.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from . import bounds
from .bounds import DEFAULT_FAILED_LIMIT, DEFAULT_PRIORITY, Bound
from .database import resolve_url
from .errors import ConfigError, PubqError
from .events import EVENT_NAMES
from .job import JobRegistry
from .limits import Limits, parse_limits
from .redis_url import SCHEMES as REDIS_URL_SCHEMES
from .redis_url import parse_redis_url, redact, url_from_mapping
from .schedules import Schedule, parse_schedule

DEFAULT_CONFIG_NAME = "pubq.yaml"
DEFAULT_DATABASE = "sqlite:///pubq.db"
#: Seconds a one-shot command keeps retrying an unreachable backend before it gives up.
DEFAULT_GIVE_UP_AFTER = 10.0
DRIVERS = ("redis", "db", "sync")
BEHAVIOR_ALIASES = {"log": "pubq.behaviors.log:LogBehavior"}
_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_TOP_KEYS = {"redis", "database", "queue_database", "jobs", "queues", "publishing", "log", "give_up_after",
             "schedules", "dashboard"}
_QUEUE_KEYS = {
    "driver", "channel", "ttr", "attempts", "retry", "on", "behaviors", "max_payload_bytes",
    "failed_limit", "grace", "settle_within", "description", "heartbeat", "concurrency", "limits",
    "durability", "shards", "shard_key",
}
_DURABILITY_KEYS = {"replicas", "timeout_ms"}
#: Most sub-queues one queue may spread over (ids carry the shard in their last 3 digits).
MAX_SHARDS = 100
_RETRY_KEYS = {"backoff", "delay", "max_delay", "jitter"}
_LOG_KEYS = {"level", "file", "format"}


@dataclass(frozen=True)
class RetryPolicy:
    backoff: str = "exponential"  # fixed | exponential
    delay: float = 5.0
    max_delay: float = 600.0
    jitter: bool = True


@dataclass(frozen=True)
class Durability:
    """``durability: {replicas, timeout_ms}``: Redis ``WAIT`` after each write that matters."""

    replicas: int = 1
    timeout_ms: int = 200


@dataclass(frozen=True)
class QueueConfig:
    name: str
    driver: str
    channel: str
    url: str
    ttr: int = 300
    attempts: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: event name → handler references ("module:Qualname"), called in order.
    on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    behaviors: tuple[str, ...] = ()
    max_payload_bytes: int = 1024 * 1024
    failed_limit: int = DEFAULT_FAILED_LIMIT
    #: Extra seconds past a reservation's TTR before another worker may reclaim it (without isolate,
    #: nothing kills a job at its TTR, so this is how long an overrunning job may still finish).
    grace: float = 10.0
    #: Seconds a failed attempt's afterError handlers may run before another worker runs them again.
    settle_within: float = 60.0
    description: str = ""
    #: Seconds between a worker's registry beats; it shows as lost after three missed (spec §7.2).
    heartbeat: float = 2.0
    #: Jobs a worker of this queue runs at once unless ``--concurrency`` says otherwise (spec §7.11).
    concurrency: int = 1
    #: Per-key concurrency and rate limits of the queue's jobs (a job class's own ``limits`` win).
    limits: Limits | None = None
    #: Redis only: replicas that must confirm push/ack/fail/settle (WAIT), or None.
    durability: Durability | None = None
    #: Redis only: sub-queues ``{channel#0}`` … ``{channel#N-1}`` the queue spreads over (1: none).
    shards: int = 1
    #: With shards: the job argument whose value picks the shard (jobs of one value keep their order).
    shard_key: str | None = None


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    file: str | None = None
    format: str = "text"  # text | json


@dataclass(frozen=True)
class Config:
    path: Path | None
    base_dir: Path
    redis: str | None
    database: str
    queue_database: str
    jobs: tuple[str, ...]
    queues: Mapping[str, QueueConfig]
    publishing: Mapping[str, Any]
    log: LogConfig = field(default_factory=LogConfig)
    #: Seconds a one-shot command retries an unreachable backend (one budget for the command).
    give_up_after: float = DEFAULT_GIVE_UP_AFTER
    #: ``schedules:``: periodic pushes by name (:mod:`pubq.schedules`).
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    #: The ``dashboard:`` section as written; ``pubq.dashboard.settings`` checks it when the
    #: dashboard starts (the core never reads it).
    dashboard: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "<default config>"


@dataclass(frozen=True)
class Preset:
    """What an application built on pubq brings to every config: job modules that are always
    registered, the queues used when there is no config file, and names queues may not take
    (its own commands). The core knows presets only through this shape."""

    #: Job modules registered in addition to the config's ``jobs:``.
    jobs: tuple[str, ...] = ()
    #: The ``queues:`` mapping used when no config file is found.
    queues: Mapping[str, Any] = field(default_factory=dict)
    #: Names that are commands and so cannot be queue names.
    reserved: frozenset[str] = frozenset()


# -- loading ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read the ``on:`` key as True."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("PUBQ_CONFIG"):
        return Path(env["PUBQ_CONFIG"])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.exists() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    check_handlers: bool = True,
    preset: Preset | None = None,
) -> Config:
    """Find, read and validate the configuration (``--config``, ``$PUBQ_CONFIG``, ``./pubq.yaml``).

    The folder holding the config file goes first on the import path, as a script's folder does,
    before any ``jobs:`` module or handler is imported: users keep their code beside the config
    (``jobs: [myapp.jobs]`` with ``myapp/jobs.py`` next to ``pubq.yaml``). Without a file, the
    preset's queues run on ``sqlite:///pubq.db`` in the current folder.
    """
    env = os.environ if env is None else env
    found = find_config_path(os.fspath(path) if path else None, env)
    if found is None:
        if preset is None or not preset.queues:
            raise ConfigError(f"no config file: give --config FILE, set $PUBQ_CONFIG or create ./{DEFAULT_CONFIG_NAME}")
        raw: Any = {"database": DEFAULT_DATABASE, "queues": dict(preset.queues)}
        return parse_config(raw, None, Path.cwd(), env=env, check_handlers=check_handlers, preset=preset)
    label = str(found)
    try:
        text = found.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: config file is not UTF-8 text") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{label}: invalid YAML{where}: {problem}") from None
    add_import_path(found.resolve().parent)
    return parse_config(raw, found, found.resolve().parent, env=env, check_handlers=check_handlers,
                        preset=preset)


def add_import_path(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path`` (once), so modules beside the config file import."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


class _Checker:
    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.label}: {key}: {msg}" if key else f"{self.label}: {msg}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping (got {_show(value)})")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings (got {_show(k)})")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                where = f"{key}.{unknown[0]}" if key else unknown[0]
                raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def bounded(self, value: Any, key: str, bound: Bound) -> Any:
        problem = bound.problem(value)
        if problem is not None:
            raise self.fail(key, problem)
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false (got {_show(value)})")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string (got {_show(value)})")
        return value

    def url(self, value: Any, key: str, schemes: tuple[str, ...]) -> str:
        text = self.string(value, key)
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme not in schemes:
            raise self.fail(key, f"must be a URL starting with {' or '.join(s + '://' for s in schemes)} (got {_show(value)})")
        return text


def _show(value: Any) -> str:
    text = redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


REDIS_SCHEMES = REDIS_URL_SCHEMES
def _redis_url(c: _Checker, value: Any, key: str) -> str:
    """A ``redis:`` URL or Sentinel/Cluster mapping → the URL, checked; passwords never shown."""
    if isinstance(value, dict):
        try:
            return url_from_mapping(value)
        except ValueError as exc:
            sub, sep, rest = str(exc).partition(": ")
            if sep and " " not in sub:
                raise c.fail(f"{key}.{sub}" if key else sub, rest) from None
            raise c.fail(key, str(exc)) from None
    text = c.url(value, key, REDIS_SCHEMES)
    try:
        parse_redis_url(text)
    except ValueError as exc:
        raise c.fail(key, str(exc)) from None
    return text


DB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def parse_config(
    raw: Any,
    path: Path | None,
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    check_handlers: bool = True,
    preset: Preset | None = None,
) -> Config:
    env = {} if env is None else env
    preset = preset or Preset()
    c = _Checker(str(path) if path else "<default config>")
    if raw is None:
        raw = {}
    top = c.mapping(raw, "", _TOP_KEYS)

    redis_url = top.get("redis")
    if redis_url is not None:
        redis_url = _redis_url(c, redis_url, "redis")
    if env.get("PUBQ_REDIS_URL"):
        redis_url = _redis_url(_Checker("$PUBQ_REDIS_URL"), env["PUBQ_REDIS_URL"], "")
    database = c.url(top.get("database", DEFAULT_DATABASE), "database", DB_SCHEMES)
    if env.get("PUBQ_DATABASE_URL"):
        database = _Checker("$PUBQ_DATABASE_URL").url(env["PUBQ_DATABASE_URL"], "", DB_SCHEMES)
    queue_database = top.get("queue_database")
    queue_database = c.url(queue_database, "queue_database", DB_SCHEMES) if queue_database is not None else database
    if env.get("PUBQ_QUEUE_DATABASE_URL"):
        queue_database = _Checker("$PUBQ_QUEUE_DATABASE_URL").url(env["PUBQ_QUEUE_DATABASE_URL"], "", DB_SCHEMES)
    database = resolve_sqlite(database, base_dir)
    queue_database = resolve_sqlite(queue_database, base_dir)

    jobs_raw = top.get("jobs") or []
    if not isinstance(jobs_raw, list):
        raise c.fail("jobs", f"must be a list of module names (got {_show(jobs_raw)})")
    jobs: list[str] = list(preset.jobs)
    for i, mod in enumerate(jobs_raw):
        name = c.string(mod, f"jobs[{i}]")
        if check_handlers:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any import failure is a config error
                raise c.fail(f"jobs[{i}]", f"cannot import module {name!r}: {type(exc).__name__}: {exc}") from None
        if name not in jobs:
            jobs.append(name)

    queues_raw = c.mapping(top.get("queues"), "queues")
    if not queues_raw:
        raise c.fail("queues", "at least one queue must be configured")
    queues: dict[str, QueueConfig] = {}
    channels: dict[tuple[str, str], str] = {}
    for qname, qraw in queues_raw.items():
        q = _parse_queue(c, qname, qraw, redis_url, queue_database, check_handlers, preset.reserved)
        owner = channels.get((q.url, q.channel))
        if owner is not None:
            raise c.fail(f"queues.{qname}.channel", f"channel {q.channel!r} is already used by queue {owner!r}")
        channels[(q.url, q.channel)] = qname
        queues[qname] = q

    if "log" in top:
        # Setting ``log:`` is enough for the system log to get every job's lines and tracebacks.
        queues = {name: _with_log_behavior(q) for name, q in queues.items()}

    publishing = c.mapping(top.get("publishing"), "publishing")
    dashboard = c.mapping(top.get("dashboard"), "dashboard")
    log_raw = c.mapping(top.get("log"), "log", _LOG_KEYS)
    level = str(log_raw.get("level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise c.fail("log.level", f"must be one of DEBUG, INFO, WARNING, ERROR (got {_show(log_raw.get('level'))})")
    fmt = log_raw.get("format", "text")
    if fmt not in ("text", "json"):
        raise c.fail("log.format", f"must be text or json (got {_show(fmt)})")
    log_file = log_raw.get("file")
    if log_file is not None:
        log_file = str(base_dir / c.string(log_file, "log.file"))
    give_up_after = float(c.bounded(top.get("give_up_after", DEFAULT_GIVE_UP_AFTER), "give_up_after",
                                    bounds.GIVE_UP_AFTER))
    schedules = _parse_schedules(c, top.get("schedules"), set(queues), tuple(jobs) if check_handlers else None)
    return Config(
        path=path,
        base_dir=base_dir,
        redis=redis_url,
        database=database,
        queue_database=queue_database,
        jobs=tuple(jobs),
        queues=queues,
        publishing=publishing,
        log=LogConfig(level=level, file=log_file, format=fmt),
        give_up_after=give_up_after,
        schedules=schedules,
        dashboard=dashboard,
    )


def _parse_schedules(c: _Checker, raw: Any, queues: set[str], jobs: tuple[str, ...] | None) -> dict[str, Schedule]:
    """Every schedule checked at load: its keys, cron or every, time zone, queue, and (when job
    modules are checked) its job and arguments."""
    out: dict[str, Schedule] = {}
    registry = None
    for name, sraw in c.mapping(raw, "schedules").items():
        schedule, key, problem = parse_schedule(name, sraw, queues)
        where = f"schedules.{name}" + (f".{key}" if key else "")
        if schedule is None:
            raise c.fail(where, problem)
        if jobs is not None:
            registry = registry or JobRegistry.from_modules(jobs)
            try:
                registry.build(schedule.job, schedule.args)
            except PubqError as exc:
                key = "job" if schedule.job not in registry else "args"
                raise c.fail(f"schedules.{name}.{key}", str(exc)) from None
        out[str(name)] = schedule
    return out


def _parse_queue(
    c: _Checker, qname: Any, qraw: Any, redis_url: str | None, queue_database: str, check_handlers: bool,
    reserved: frozenset[str],
) -> QueueConfig:
    if not isinstance(qname, str) or not _QUEUE_NAME.match(qname):
        raise c.fail(f"queues.{qname}", "queue names are lower-case letters, digits, '-' and '_', starting with a letter")
    if qname in reserved or qname == "help":
        raise c.fail(f"queues.{qname}", f"{qname!r} is a pubq command and cannot be a queue name")
    k = f"queues.{qname}"
    q = c.mapping(qraw, k, _QUEUE_KEYS)
    driver = q.get("driver", "redis" if redis_url else "db")
    if driver not in DRIVERS:
        raise c.fail(f"{k}.driver", f"must be one of {', '.join(DRIVERS)} (got {_show(driver)})")
    if driver == "redis" and not redis_url:
        raise c.fail(f"{k}.driver", "driver redis needs a top-level 'redis: redis://…' URL (or $PUBQ_REDIS_URL)")
    url = redis_url if driver == "redis" else (queue_database if driver == "db" else "memory://")
    channel = c.string(q.get("channel", qname), f"{k}.channel")
    ttr = c.bounded(q.get("ttr", 300), f"{k}.ttr", bounds.TTR)
    attempts = c.bounded(q.get("attempts", 1), f"{k}.attempts", bounds.ATTEMPTS)
    retry_raw = c.mapping(q.get("retry"), f"{k}.retry", _RETRY_KEYS)
    backoff = retry_raw.get("backoff", "exponential")
    if backoff not in ("fixed", "exponential"):
        raise c.fail(f"{k}.retry.backoff", f"must be fixed or exponential (got {_show(backoff)})")
    retry = RetryPolicy(
        backoff=backoff,
        delay=float(c.bounded(retry_raw.get("delay", 5), f"{k}.retry.delay", bounds.BACKOFF)),
        max_delay=float(c.bounded(retry_raw.get("max_delay", 600), f"{k}.retry.max_delay", bounds.BACKOFF)),
        jitter=c.boolean(retry_raw.get("jitter", True), f"{k}.retry.jitter"),
    )
    on_raw = c.mapping(q.get("on"), f"{k}.on", set(EVENT_NAMES))
    on: dict[str, tuple[str, ...]] = {}
    for event, refs in on_raw.items():
        items = refs if isinstance(refs, list) else [refs]
        checked = []
        for i, ref in enumerate(items):
            key = f"{k}.on.{event}" + (f"[{i}]" if isinstance(refs, list) else "")
            ref = c.string(ref, key)
            if check_handlers:
                try:
                    resolve_reference(ref)
                except (ImportError, AttributeError, ValueError) as exc:
                    raise c.fail(key, f"cannot import handler {ref!r}: {exc}") from None
            checked.append(ref)
        on[event] = tuple(checked)
    behaviors_raw = q.get("behaviors") or []
    if not isinstance(behaviors_raw, list):
        raise c.fail(f"{k}.behaviors", f"must be a list (got {_show(behaviors_raw)})")
    behaviors = []
    for i, b in enumerate(behaviors_raw):
        ref = BEHAVIOR_ALIASES.get(b, b) if isinstance(b, str) else b
        ref = c.string(ref, f"{k}.behaviors[{i}]")
        if check_handlers:
            try:
                resolve_reference(ref)
            except (ImportError, AttributeError, ValueError) as exc:
                raise c.fail(f"{k}.behaviors[{i}]", f"cannot import behavior {ref!r}: {exc}") from None
        behaviors.append(ref)
    return QueueConfig(
        name=qname,
        driver=driver,
        channel=channel,
        url=url,
        ttr=ttr,
        attempts=attempts,
        retry=retry,
        on=on,
        behaviors=tuple(behaviors),
        max_payload_bytes=c.bounded(q.get("max_payload_bytes", 1024 * 1024), f"{k}.max_payload_bytes",
                                    bounds.PAYLOAD_BYTES),
        failed_limit=c.bounded(q.get("failed_limit", DEFAULT_FAILED_LIMIT), f"{k}.failed_limit", bounds.FAILED_LIMIT),
        grace=float(c.bounded(q.get("grace", 10), f"{k}.grace", bounds.GRACE)),
        settle_within=float(c.bounded(q.get("settle_within", 60), f"{k}.settle_within", bounds.SETTLE_WITHIN)),
        description=str(q.get("description", "")),
        heartbeat=float(c.bounded(q.get("heartbeat", 2), f"{k}.heartbeat", bounds.HEARTBEAT)),
        concurrency=int(c.bounded(q.get("concurrency", 1), f"{k}.concurrency", bounds.CONCURRENCY)),
        limits=parse_limits(q.get("limits"), f"{c.label}: {k}.limits"),
        **_scale_options(c, k, q, driver),
    )


def _scale_options(c: _Checker, k: str, q: dict[str, Any], driver: str) -> dict[str, Any]:
    """``durability``, ``shards`` and ``shard_key``: Redis queues only."""
    out: dict[str, Any] = {}
    for key in ("durability", "shards", "shard_key"):
        if key in q and driver != "redis":
            raise c.fail(f"{k}.{key}", f"only a redis queue takes {key} (this queue's driver is {driver})")
    if "durability" in q:
        raw = c.mapping(q["durability"], f"{k}.durability", _DURABILITY_KEYS)
        replicas, timeout = raw.get("replicas", 1), raw.get("timeout_ms", 200)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 100:
            raise c.fail(f"{k}.durability.replicas", f"must be an integer from 1 to 100 (got {_show(replicas)})")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 60_000:
            raise c.fail(f"{k}.durability.timeout_ms",
                         f"must be an integer from 1 to 60000 (got {_show(timeout)})")
        out["durability"] = Durability(replicas=replicas, timeout_ms=timeout)
    if "shards" in q:
        shards = q["shards"]
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
            raise c.fail(f"{k}.shards", f"must be an integer from 1 to {MAX_SHARDS} (got {_show(shards)})")
        out["shards"] = shards
    if "shard_key" in q:
        if out.get("shards", 1) < 2:
            raise c.fail(f"{k}.shard_key", "needs shards: 2 or more")
        out["shard_key"] = c.string(q["shard_key"], f"{k}.shard_key")
    return out


def _with_log_behavior(q: QueueConfig) -> QueueConfig:
    """``q`` with the ``log`` behaviour attached (once, wherever the user listed it)."""
    ref = BEHAVIOR_ALIASES["log"]
    if ref in q.behaviors:
        return q
    return replace(q, behaviors=(*q.behaviors, ref))


def resolve_sqlite(url: str, base_dir: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against the config file's folder."""
    return resolve_url(url, base_dir)


def resolve_reference(ref: str) -> Any:
    """``package.module:Qualname`` (or a dotted path, longest importable module) → object."""
    if ":" in ref:
        module_name, _, qual = ref.partition(":")
        if not module_name or not qual:
            raise ValueError("expected 'package.module:Name'")
        module = importlib.import_module(module_name)
    else:
        parts = ref.split(".")
        module = None
        for cut in range(len(parts) - 1, 0, -1):
            try:
                module = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            qual = ".".join(parts[cut:])
            break
        if module is None:
            raise ImportError(f"no importable module in {ref!r}")
    obj: Any = module
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def make_callable(ref: str, instances: dict[type, Any]) -> Callable[..., Any]:
    """A handler reference → callable. Methods get one instance of their class per process."""
    if ":" in ref:
        module_name, _, qual = ref.partition(":")
        parts = qual.split(".")
        if len(parts) >= 2:
            owner = resolve_reference(f"{module_name}:{'.'.join(parts[:-1])}")
            if isinstance(owner, type):
                inst = instances.get(owner)
                if inst is None:
                    inst = instances[owner] = owner()
                return getattr(inst, parts[-1])
    obj = resolve_reference(ref)
    if isinstance(obj, type):
        inst = instances.get(obj)
        if inst is None:
            inst = instances[obj] = obj()
        if not callable(inst):
            raise ValueError(f"{ref}: class instances are not callable; name a method")
        return inst
    if not callable(obj):
        raise ValueError(f"{ref} is not callable")
    return obj


__all__ = [
    "Config", "Durability", "QueueConfig", "RetryPolicy", "LogConfig", "Preset", "load_config", "parse_config",
    "resolve_reference", "make_callable", "DEFAULT_PRIORITY",
]
