"""Bad numbers, ids and JSON on the command line (issue 11), on every queue backend.

Every case ends in exit 2 with one ``Error:`` line naming the option and its range — the same words
on every driver — and changes nothing. Most run ``pubq`` in this process (``cli_in_process``: the
real ``main``, argument translation and error rendering); a few run it as users do, in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PUBQ, ROOT, InProcessCli, in_process_cli, subprocess_env, write_config

BACKENDS = ("redis", "sqlite", "postgres", "mysql")
HUGE = str(10**23)
JOB_ID = "job id must be an integer from 1 to 9,007,199,254,740,991"
TASK_ID = "task id must be an integer from 1 to 9,007,199,254,740,991"


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest, tmp_path: Path, server_urls: dict[str, str]) -> Iterator[InProcessCli]:
    s = in_process_cli(tmp_path, request.param, server_urls)
    yield s
    s("work", "clear", "--yes")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: (arguments after ``work`` or the root, the exact error line)
REFUSED: list[tuple[list[str], str]] = [
    (["work", "push", "tests.Noop", "--ttr", str(2**63)],
     f"--ttr must be an integer from 1 to 604,800 s (got {2**63})"),
    (["work", "push", "tests.Noop", "--ttr", str(2**31)], f"--ttr must be an integer from 1 to 604,800 s (got {2**31})"),
    (["work", "push", "tests.Noop", "--ttr", HUGE], f"--ttr must be an integer from 1 to 604,800 s (got {HUGE})"),
    (["work", "push", "tests.Noop", "--ttr", "0"], "--ttr must be an integer from 1 to 604,800 s (got 0)"),
    (["work", "push", "tests.Noop", "--delay", "inf"], "--delay must be a number from 0 to 31,622,400 s (got inf)"),
    (["work", "push", "tests.Noop", "--delay", "1e300"], "--delay must be a number from 0 to 31,622,400 s (got 1e+300)"),
    (["work", "push", "tests.Noop", "--delay", "nan"], "--delay must be a number from 0 to 31,622,400 s (got nan)"),
    (["work", "push", "tests.Noop", "--delay", "-1"], "--delay must be a number from 0 to 31,622,400 s (got -1.0)"),
    (["work", "push", "tests.Noop", "--priority", "1000001"],
     "--priority must be an integer from 0 to 1,000,000 (got 1000001)"),
    (["work", "push", "tests.Noop", "--priority", "1.5"], "--priority must be an integer from 0 to 1,000,000 (got '1.5')"),
    (["work", "push", "tests.Record", "--args", nested(50_000)], "--args is nested too deeply"),
    (["work", "push", "tests.Typed", "--args", '{"count": 1, "anything": ' + nested(150) + "}"],
     "tests.Typed: args.anything[0][0]: nested deeper than 100 levels"),
    (["work", "push", "tests.Typed", "--args", '{"count": true}'], "tests.Typed: args.count must be an integer (got True)"),
    (["work", "push", "pubq.jobs.CopyAssetJob", "--args", '{"task_id": "abc"}'],
     "pubq.jobs.CopyAssetJob: args.task_id must be an integer (got 'abc')"),
    (["work", "push", "tests.Record", "--args", '{"path": "\\ud800"}'],
     "tests.Record: arguments hold text that is not valid Unicode (a lone surrogate)"),
    (["work", "remove", HUGE], f"{JOB_ID} (got {HUGE})"),
    (["work", "remove", "0"], f"{JOB_ID} (got 0)"),
    (["work", "remove", "1e3"], f"{JOB_ID} (got '1e3')"),
    (["work", "failed", "show", HUGE], f"{JOB_ID} (got {HUGE})"),
    (["work", "failed", "retry", HUGE], f"{JOB_ID} (got {HUGE})"),
    (["work", "failed", "list", "--offset", HUGE], f"--offset must be an integer from 0 to 2,147,483,647 (got {HUGE})"),
    (["work", "failed", "list", "--limit", "0"], "--limit must be an integer from 1 to 10,000 (got 0)"),
    (["work", "listen", "100000000000"], "TIMEOUT must be an integer from 1 to 86,400 s (got 100000000000)"),
    (["work", "run", "--max-jobs", HUGE], f"--max-jobs must be an integer from 1 to 1,000,000,000 (got {HUGE})"),
    (["work", "run", "--max-seconds", "inf"], "--max-seconds must be a number from 0.001 to 31,622,400 s (got inf)"),
    (["work", "run", "--memory-limit", "-5"], "--memory-limit must be an integer from 1 to 1,048,576 MiB (got -5)"),
    (["work", "info", "--interval", "nan"], "--interval must be a number from 0.1 to 86,400 s (got nan)"),
    (["task", "show", HUGE], f"{TASK_ID} (got {HUGE})"),
    (["task", "trace", "0"], f"{TASK_ID} (got 0)"),
    (["task", "retry", HUGE], f"{TASK_ID} (got {HUGE})"),
    (["task", "sync", "abc"], f"{TASK_ID} (got 'abc')"),
]


def _id(case: tuple[list[str], str]) -> str:
    args = [a if len(a) <= 24 else a[:10] + "…" for a in case[0]]
    return " ".join(args)


@pytest.mark.parametrize("args, message", REFUSED, ids=[_id(c) for c in REFUSED])
def test_a_bad_number_or_id_is_one_line_exit_2_and_the_same_on_every_backend(setup: InProcessCli, args, message):
    setup("work", "push", "tests.Noop")
    before = setup.counts()
    code, out, err = setup(*args)
    assert (code, err) == (2, f"Error: {message}\n"), (setup.backend, out)
    assert out == ""
    assert setup.counts() == before


def test_the_largest_ids_and_offsets_are_answered_not_refused(setup: InProcessCli):
    biggest = str(2**53 - 1)
    assert setup("work", "remove", biggest) == (1, "", "Error: The job is not found.\n")
    for args in (["failed", "show", biggest], ["failed", "retry", biggest]):
        assert setup("work", *args) == (1, "", f"Error: Job {biggest} is not in the failed registry.\n"), args
    assert setup("work", "failed", "list", "--offset", str(2**31 - 1), "--json") == (0, "[]\n", "")
    code, _, err = setup("task", "show", biggest)
    assert code == 1 and err.startswith("Error: task ID 9007199254740991 does not exist")


def test_a_job_whose_code_refuses_its_arguments_is_a_usage_error_at_push(setup: InProcessCli):
    code, _, err = setup("work", "push", "tests.Refusing", "--args", '{"what": "KeyError"}')
    assert (code, err) == (2, "Error: tests.Refusing: the job refused its arguments: KeyError: 'missing'\n")


def test_the_failed_registry_lists_and_shows_a_payload_nested_100000_deep(setup: InProcessCli):
    bad = setup.push_raw(b'{"job": "tests.Noop", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert setup("work", "run", "--isolate=0")[0] == 0
    code, out, err = setup("work", "failed", "list", "--json")
    assert (code, err) == (0, "")
    [entry] = json.loads(out)
    assert (entry["id"], entry["job"], entry["error_class"]) == (bad, "unknown job", "InvalidJobError")
    code, out, err = setup("work", "failed", "show", str(bad))
    assert (code, err) == (0, "") and "nested too deeply" in out
    assert setup("work", "failed", "list")[0] == 0


# -- as users run it ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["push", "tests.Noop", "--ttr", "9223372036854775808"],
     "--ttr must be an integer from 1 to 604,800 s (got 9223372036854775808)"),
    (["remove", HUGE], f"{JOB_ID} (got {HUGE})"),
    (["push", "tests.Record", "--args", nested(50_000)], "--args is nested too deeply"),
], ids=["ttr 2**63", "remove 10**23", "args nested 50,000 deep"])
def test_the_real_cli_refuses_in_one_line_with_exit_2(tmp_path: Path, args: list[str], message: str):
    path, _ = write_config(tmp_path, "sqlite")
    proc = subprocess.run([*PUBQ, "--config", str(path), "work", *args], capture_output=True, text=True,
                          env=subprocess_env(), cwd=ROOT, timeout=60)
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, f"Error: {message}\n", "")
