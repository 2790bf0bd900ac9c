"""Fuzzing the command line (issue 11), on every queue backend.

Whatever ids, numbers and JSON arguments a careless operator or a script types, ``pubq`` ends with
exit 0, 1 or 2, at most one line on stderr, no traceback and never "unexpected …"; a refusal (exit
2) changes nothing. (The publish request is fuzzed in tests/publishing/test_fuzz_requests.py.)

The CLI runs in this process (``cli_in_process``: the real ``main``), so hundreds of runs stay cheap.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import InProcessCli, in_process_cli

#: PUBQ_FUZZ_EXAMPLES=N explores N random examples instead of the fixed ones.
FUZZ = settings(max_examples=int(os.environ.get("PUBQ_FUZZ_EXAMPLES", 60)), deadline=None,
                derandomize=not os.environ.get("PUBQ_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: Numbers and things that look like numbers.
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=-3, max_value=40).map(str),
    st.floats().map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e300", "1e23", str(10**23), str(2**63), str(2**31), str(2**53),
                     "0x10", "1_000", " 5 ", "", "abc", "１２", "-0", "0.0001", "9" * 5000]),
    st.text(max_size=6),
)

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.just(10**400) | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: --args: JSON of any shape, arguments of the right names with any values, deep nesting, junk.
ARGS = st.one_of(
    JSON_VALUE.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({}, optional={"count": JSON_VALUE, "ratio": JSON_VALUE, "tags": JSON_VALUE,
                                        "what": st.sampled_from(["ok", "KeyError", "RecursionError", "Unprintable"]),
                                        "message": JSON_VALUE, "task_id": JSON_VALUE}).map(json.dumps),
    st.integers(min_value=0, max_value=60_000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=0, max_value=300).map(lambda n: '{"count": 1, "anything": ' + "[" * n + "]" * n + "}"),
    st.text(max_size=12),
)
JOB = st.sampled_from(["tests.Noop", "tests.Fail", "tests.Typed", "tests.Refusing", "pubq.jobs.CopyAssetJob",
                       "tests.Nope", "", "-x"])


def _push(job: str, opts: dict[str, str]) -> list[str]:
    return ["work", "push", job, *(part for pair in opts.items() for part in pair)]


COMMAND = st.one_of(
    st.builds(_push, JOB, st.fixed_dictionaries({}, optional={
        "--ttr": NUMBER, "--delay": NUMBER, "--priority": NUMBER, "--args": ARGS})),
    st.tuples(st.sampled_from([["work", "remove"], ["work", "failed", "show"], ["work", "failed", "retry"],
                               ["task", "show"], ["task", "trace"], ["task", "retry"], ["task", "sync"]]),
              NUMBER).map(lambda t: [*t[0], t[1]]),
    st.tuples(NUMBER, NUMBER).map(lambda t: ["work", "failed", "list", "--offset", t[0], "--limit", t[1], "--json"]),
    NUMBER.map(lambda n: ["work", "listen", n, "--max-seconds", "0.001", "--no-isolate"]),
    st.tuples(NUMBER, NUMBER).map(lambda t: ["work", "run", "--no-isolate", "--max-jobs", t[0], "--memory-limit", t[1]]),
    NUMBER.map(lambda n: ["work", "run", "--no-isolate", "--max-seconds", n]),
    NUMBER.map(lambda n: ["work", "info", "--json", "--interval", n]),
)


def check_one(setup: InProcessCli, args: list[str]) -> None:
    before = setup.counts()
    code, out, err = setup(*args)
    assert code in (0, 1, 2), (args, code, err)
    assert err.count("\n") <= 1 and (not err or err.startswith("Error: ")), (args, err)
    assert "Traceback" not in out + err and "unexpected" not in err, (args, err)
    if code == 2:
        assert setup.counts() == before, (args, err)


@pytest.mark.parametrize("backend", ["redis", "sqlite", "postgres", "mysql"])
def test_no_command_line_ends_in_a_crash_or_a_change_on_refusal(backend, tmp_path, server_urls):
    setup = in_process_cli(tmp_path, backend, server_urls)

    @FUZZ
    @given(args=COMMAND)
    def run(args: list[str]) -> None:
        check_one(setup, args)

    try:
        run()
    finally:
        setup("work", "clear", "--yes")
