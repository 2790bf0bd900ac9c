"""Job arguments checked against the job's field annotations (issue 11): refused at push with the
field named, and an invalid job (never retried) when a stored payload carries the wrong type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubq import Job
from pubq import events as ev
from pubq.argtypes import arg_spec
from pubq.errors import UsageError
from pubq.job import JobRegistry
from pubq.worker import Worker
from tests.drivers.backends import kind_params, open_driver
from tests.helpers import make_queue
from tests.sample_jobs import TypedJob


@dataclass
class Shapes(Job):
    name = "tests.Shapes"
    i: int = 0
    f: float = 0.0
    b: bool = False
    s: str = ""
    n: None = None
    opt: Optional[int] = None  # noqa: UP045 - the typing spelling must work too
    union: Union[int, str] = 0  # noqa: UP007
    lit: Literal["a", "b", 3] = "a"
    li: list[int] = field(default_factory=list)
    ds: dict[str, float] = field(default_factory=dict)
    bare_list: list = field(default_factory=list)
    bare_dict: dict = field(default_factory=dict)
    nested: list[dict[str, list[bool]]] = field(default_factory=list)
    anything: Any = None

    def execute(self, ctx: Any) -> None:
        return None


def problem(**args: Any) -> str | None:
    return arg_spec(Shapes).problem(args)


@pytest.mark.parametrize("args", [
    {"i": 3}, {"i": -(2**80)}, {"f": 1}, {"f": 1.5}, {"f": 10**400}, {"b": True}, {"s": "x"}, {"n": None}, {"opt": None},
    {"opt": 4}, {"union": "x"}, {"union": 7}, {"lit": "b"}, {"lit": 3}, {"li": [1, 2]}, {"ds": {"a": 1, "b": 2.5}},
    {"bare_list": [1, "x", None]}, {"bare_dict": {"k": [1]}}, {"nested": [{"k": [True, False]}]},
    {"anything": {"deep": [1, {"x": None}]}},
])
def test_arguments_of_the_annotated_types_pass(args):
    assert problem(**args) is None


@pytest.mark.parametrize("args, message", [
    ({"i": True}, "args.i must be an integer (got True)"),
    ({"i": 1.0}, "args.i must be an integer (got 1.0)"),
    ({"i": "1"}, "args.i must be an integer (got '1')"),
    ({"f": False}, "args.f must be a number (got False)"),
    ({"f": float("inf")}, "args.f must be a number (got inf)"),
    ({"f": float("nan")}, "args.f must be a number (got nan)"),
    ({"b": 1}, "args.b must be true or false (got 1)"),
    ({"s": None}, "args.s must be a string (got None)"),
    ({"n": 0}, "args.n must be null (got 0)"),
    ({"opt": "1"}, "args.opt must be an integer or null (got '1')"),
    ({"union": 1.5}, "args.union must be an integer or a string (got 1.5)"),
    ({"lit": "c"}, "args.lit must be one of 'a', 'b', 3 (got 'c')"),
    ({"lit": True}, "args.lit must be one of 'a', 'b', 3 (got True)"),
    ({"li": [1, "2"]}, "args.li[1] must be an integer (got '2')"),
    ({"li": {"a": 1}}, "args.li must be a list of integers (got {'a': 1})"),
    ({"ds": {"a": "x"}}, "args.ds.a must be a number (got 'x')"),
    ({"ds": [1]}, "args.ds must be an object of numbers (got [1])"),
    ({"bare_list": "abc"}, "args.bare_list must be a list (got 'abc')"),
    ({"bare_dict": []}, "args.bare_dict must be an object (got [])"),
    ({"nested": [{"k": [True, 0]}]}, "args.nested[0].k[1] must be true or false (got 0)"),
])
def test_a_value_of_another_type_is_refused_naming_the_field(args, message):
    assert problem(**args) == message


def test_the_checker_is_compiled_once_per_class_and_kept_on_it():
    spec = arg_spec(Shapes)
    assert arg_spec(Shapes) is spec and Shapes.__dict__["_pubq_arg_spec"] is spec
    assert not spec.closed  # `anything: Any` and the bare containers need the generic JSON walk
    assert arg_spec(TypedJob).names >= {"count", "ratio", "grid"}


def test_an_annotation_that_cannot_be_resolved_accepts_any_json_value():
    @dataclass
    class Unresolvable(Job):
        name = "tests.Unresolvable"
        thing: NotDefinedAnywhere  # type: ignore[name-defined] # noqa: F821

    assert arg_spec(Unresolvable).problem({"thing": [1, {"a": "b"}]}) is None


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(value=JSON)
def test_the_check_of_an_int_field_agrees_with_its_definition(value):
    is_int = isinstance(value, int) and not isinstance(value, bool)
    assert (problem(i=value) is None) == is_int
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    assert (problem(f=value) is None) == is_number
    assert problem(anything=value) is None


# -- at push: refused, the field named --------------------------------------------------------------------


def registry() -> JobRegistry:
    return JobRegistry.from_modules(["tests.sample_jobs", "pubq.jobs"])


@pytest.mark.parametrize("args, message", [
    ({"task_id": "abc"}, "pubq.jobs.CopyAssetJob: args.task_id must be an integer (got 'abc')"),
    ({"task_id": True}, "pubq.jobs.CopyAssetJob: args.task_id must be an integer (got True)"),
    ({"task_id": 1.5}, "pubq.jobs.CopyAssetJob: args.task_id must be an integer (got 1.5)"),
    ({"task_id": {"a": 1}}, "pubq.jobs.CopyAssetJob: args.task_id must be an integer (got {'a': 1})"),
])
def test_push_by_name_refuses_a_wrong_type_naming_the_field(args, message):
    # Issue 11: this pushed (exit 0), then failed three times in SQL with a DataError.
    with pytest.raises(UsageError) as caught:
        registry().build("pubq.jobs.CopyAssetJob", args)
    assert str(caught.value) == message and caught.value.exit_code == 2


def test_push_of_a_job_instance_refuses_a_wrong_type(tmp_path):
    drv, cleanup = open_driver("memory", tmp_path)
    try:
        q = make_queue(drv)
        with pytest.raises(UsageError, match=r"^tests.Typed: args.count must be an integer \(got '3'\)$"):
            q.push(TypedJob(count="3"))  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"args.tags\[0\] must be a string \(got 1\)"):
            q.push_many([TypedJob(count=1), TypedJob(count=2, tags=[1])])  # type: ignore[list-item]
        assert drv.counts().waiting == 0
        assert q.push(TypedJob(count=3, ratio=2, grid=[[1]])) == 1  # an int is a float
    finally:
        cleanup()


# -- at decode: an invalid job, never retried ------------------------------------------------------------


@pytest.fixture(params=kind_params())
def driver(request, tmp_path):
    drv, cleanup = open_driver(request.param, tmp_path, grace=0)
    yield drv
    cleanup()


@pytest.mark.parametrize("args, message", [
    ({"count": "abc"}, "args.count must be an integer (got 'abc')"),
    ({"count": True}, "args.count must be an integer (got True)"),
    ({"count": 1, "grid": [[1, 2.5]]}, "args.grid must be a list of lists of integers or null (got [[1, 2.5]])"),
])
def test_a_stored_argument_of_the_wrong_type_is_an_invalid_job_failed_after_one_attempt(driver, args, message):
    q = make_queue(driver, attempts=3)
    seen: list[tuple[int, bool, str]] = []
    q.bus.on(ev.AFTER_ERROR, lambda e: seen.append((e.attempt, bool(e.retry), type(e.error).__name__)))
    bad = driver.push(json.dumps({"job": "tests.Typed", "args": args}).encode(), ttr=30)
    assert Worker(q, isolate=False, install_signals=False).run() == 0
    entry = driver.failed_get(bad)
    assert entry.error_class == "InvalidJobError" and entry.attempts == 1
    assert entry.message == f"tests.Typed: {message}"
    assert seen == [(1, False, "InvalidJobError")]


@pytest.mark.parametrize("setting, message", [
    ({"ttr": 10**10}, "job tests.Slow: ttr must be an integer from 1 to 604,800 s (got 10000000000)"),
    ({"attempts": 0}, "job tests.Slow: attempts must be an integer from 1 to 1,000 (got 0)"),
])
def test_a_job_class_whose_ttr_or_attempts_is_out_of_range_is_refused_when_registered(setting, message):
    from pubq.errors import ConfigError

    cls = type("Slow", (NoopForClassSettings,), {"name": "tests.Slow", **setting})
    with pytest.raises(ConfigError) as caught:
        JobRegistry([dataclass(cls)])
    assert str(caught.value) == message and caught.value.exit_code == 2


@dataclass
class NoopForClassSettings(Job):
    abstract = True

    def execute(self, ctx: Any) -> None:
        return None
