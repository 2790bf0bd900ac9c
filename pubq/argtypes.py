"""A job's arguments checked against its dataclass field annotations, at push and at decode.

A job declares its arguments as dataclass fields of JSON types (spec §5.3). Without a check, a
``{"task_id": "abc"}`` for ``task_id: int`` was stored, ran, and failed three times deep in SQL
(issue 11). Each field's annotation is compiled once per class into a small check (cached on the
class: the check runs for every push and every decode, so it must cost little):

* ``str``, ``int``, ``float``, ``bool``, ``None``; a bool is not an int, an int is a float; floats
  are finite (JSON has no NaN or Infinity);
* ``list[X]``, ``dict[str, X]`` (and bare ``list``/``dict``), ``Literal[...]`` of JSON scalars;
* unions of these (``X | None``, ``Optional[X]``, ``Union[...]``);
* ``Any``, ``object`` and anything else (a nested dataclass, a TypeVar, a name that cannot be
  resolved) accept any JSON value: such a field is checked by the generic JSON walk only.

A problem reads ``args.<field>[i]… must be <what> (got <value>)``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: value → whether it fits (the hot path: no message, no path built).
Ok = Callable[[Any], bool]
#: (value, path) → why the value does not fit (asked only when it does not).
Explain = Callable[[Any, str], str]


@dataclass(frozen=True)
class _Type:
    """One compiled annotation."""

    ok: Ok
    explain: Explain
    #: Checked all the way down (no Any inside).
    closed: bool
    #: "an integer", "a list of strings"…
    what: str
    #: The exact types every value of which fits (str, int, bool, None), for the containers' fast
    #: path: ``set(map(type, items)) <= exact`` runs in C.
    exact: frozenset[type] = frozenset()


@dataclass(frozen=True)
class ArgSpec:
    """What a job class takes: its init fields, the required ones, and one check per field."""

    names: frozenset[str]
    required: frozenset[str]
    checks: tuple[tuple[str, Ok, Explain], ...]
    #: Every field's type is checked all the way down: arguments that pass are plain JSON of a
    #: bounded depth, and need no generic JSON walk.
    closed: bool

    def problem(self, args: Mapping[str, Any]) -> str | None:
        """Why ``args`` do not fit the annotations (the first problem found), None when they do."""
        for name, ok, explain in self.checks:
            if name in args and not ok(args[name]):
                return "args." + explain(args[name], name)
        return None


def arg_spec(cls: type) -> ArgSpec:
    """The compiled spec of ``cls``, built on first use and kept on the class itself."""
    spec = cls.__dict__.get("_pubq_arg_spec")
    if spec is None:
        spec = _build_spec(cls)
        cls._pubq_arg_spec = spec  # type: ignore[attr-defined]
    return spec


def _build_spec(cls: type) -> ArgSpec:
    if not dataclasses.is_dataclass(cls):
        return ArgSpec(frozenset(), frozenset(), (), True)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    hints = _hints(cls, fields)
    compiled = [(f.name, _compile(hints.get(f.name, Any))) for f in fields]
    required = frozenset(
        f.name for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    )
    return ArgSpec(frozenset(f.name for f in fields), required,
                   tuple((name, t.ok, t.explain) for name, t in compiled), all(t.closed for _, t in compiled))


def _hints(cls: type, fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    """Resolved annotations of the fields; a field whose annotation cannot be resolved is Any."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - e.g. a name imported under TYPE_CHECKING only: field by field
        module = vars(sys.modules.get(cls.__module__, types.ModuleType("?")))
        out = {}
        for f in fields:
            tp = f.type
            if isinstance(tp, str):
                try:  # the class's own source text, from a module pubq imported: not input
                    tp = eval(tp, dict(module), dict(vars(cls)))  # noqa: S307
                except Exception:  # noqa: BLE001
                    tp = Any
            out[f.name] = tp
        return out


# -- compiling one annotation ------------------------------------------------------------------------


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(what: str) -> Explain:
    def fail(value: Any, path: str) -> str:
        return f"{path} must be {what} (got {_show(value)})"

    return fail


def _compile(tp: Any) -> _Type:
    if tp is type(None) or tp is None:
        return _scalar(lambda v: v is None, "null", type(None))
    if tp is str:
        return _scalar(lambda v: type(v) is str or isinstance(v, str), "a string", str)
    if tp is bool:
        return _scalar(lambda v: v is True or v is False, "true or false", bool)
    if tp is int:
        return _scalar(lambda v: type(v) is int or (isinstance(v, int) and not isinstance(v, bool)), "an integer",
                       int)
    if tp is float:
        return _scalar(_is_number, "a number")
    origin, params = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _union([_compile(p) for p in params])
    if origin is typing.Literal and all(isinstance(p, (str, int, float, bool, type(None))) for p in params):
        allowed = frozenset((type(p), p) for p in params)
        return _scalar(lambda v: (type(v), v) in allowed, "one of " + ", ".join(_show(p) for p in params))
    if tp is list or origin is list:
        return _list(_compile(params[0]) if params else _ANY)
    if tp is dict or origin is dict:
        if params and params[0] is not str and params[0] is not Any:
            return _ANY  # JSON object keys are strings: any other key type is not ours to check
        return _dict(_compile(params[1]) if len(params) == 2 else _ANY)
    return _ANY


def _is_number(v: Any) -> bool:
    """An int (never a bool; any size: an int is finite) or a finite float."""
    if type(v) is float or (isinstance(v, float) and not isinstance(v, bool)):
        return v - v == 0.0  # finite: inf - inf and nan - nan are nan
    return type(v) is int or (isinstance(v, int) and not isinstance(v, bool))


def _scalar(ok: Ok, what: str, *exact: type) -> _Type:
    return _Type(ok, _fail(what), True, what, frozenset(exact))


_ANY = _Type(lambda v: True, lambda v, path: "", False, "any JSON value")


def _union(parts: list[_Type]) -> _Type:
    if any(p is _ANY for p in parts):
        return _ANY
    oks = tuple(p.ok for p in parts)
    what = " or ".join(dict.fromkeys(p.what for p in parts))
    if len(oks) == 2:
        first, second = oks
        ok: Ok = lambda v: first(v) or second(v)  # noqa: E731 - the common X | None, unrolled
    else:
        ok = lambda v: any(one(v) for one in oks)  # noqa: E731
    exact = frozenset().union(*(p.exact for p in parts))
    return _Type(ok, _fail(what), all(p.closed for p in parts), what, exact)


def _list(item: _Type) -> _Type:
    item_ok, item_explain = item.ok, item.explain
    what = "a list" if item is _ANY else f"a list of {_plural(item.what)}"
    fail = _fail(what)

    exact = item.exact
    if item is _ANY:
        def ok(value: Any) -> bool:
            return type(value) is list or isinstance(value, list)
    else:
        def ok(value: Any) -> bool:
            if type(value) is not list and not isinstance(value, list):
                return False
            return (exact and set(map(type, value)) <= exact) or all(map(item_ok, value))

    def explain(value: Any, path: str) -> str:
        if not isinstance(value, list):
            return fail(value, path)
        i = next(i for i, element in enumerate(value) if not item_ok(element))
        return item_explain(value[i], f"{path}[{i}]")

    return _Type(ok, explain, item.closed, what)


def _dict(item: _Type) -> _Type:
    item_ok, item_explain = item.ok, item.explain
    what = "an object" if item is _ANY else f"an object of {_plural(item.what)}"
    fail = _fail(what)

    any_item, exact, keys = item is _ANY, item.exact, frozenset({str})

    def ok(value: Any) -> bool:
        if type(value) is not dict and not isinstance(value, dict):
            return False
        if not (set(map(type, value)) <= keys or all(isinstance(k, str) for k in value)):
            return False
        if any_item:
            return True
        values = value.values()
        return (exact and set(map(type, values)) <= exact) or all(map(item_ok, values))

    def explain(value: Any, path: str) -> str:
        if not isinstance(value, dict):
            return fail(value, path)
        for key, element in value.items():
            if not isinstance(key, str):
                return f"{path} keys must be strings (got {_show(key)})"
            if not item_ok(element):
                return item_explain(element, f"{path}.{key}")
        return fail(value, path)  # pragma: no cover - explain is asked only when ok said no

    return _Type(ok, explain, item.closed, what)


def _plural(what: str) -> str:
    """'an integer' → 'integers', 'a list of strings' → 'lists of strings', else 'values that are …'."""
    simple = {"a string": "strings", "an integer": "integers", "a number": "numbers", "true or false": "booleans",
              "null": "nulls"}
    if what in simple:
        return simple[what]
    for article in ("a ", "an "):
        if what.startswith(article) and " or " not in what:
            head, _, rest = what[len(article):].partition(" ")
            return f"{head}s {rest}".rstrip()
    return f"values that are {what}"
