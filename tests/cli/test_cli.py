"""The CLI as users run it: a subprocess per command, exact output and exit codes."""

from __future__ import annotations

import json
import signal

import pytest

from tests.helpers import Cli, golden, normalize, wait_until
from tests.sample_jobs import read_lines


def info_lines(counts: dict[str, int]) -> str:
    return "Jobs\n" + "".join(f"- {k}: {counts[k]}\n" for k in ("waiting", "delayed", "reserved", "done", "failed"))


def test_info_counts_pushed_jobs_in_the_yii_shape(cli: Cli):
    assert cli("work", "push", "tests.Noop").stdout.strip().isdigit()
    assert cli("work", "push", "tests.Noop").returncode == 0
    assert cli("work", "push", "tests.Noop", "--delay", "300").returncode == 0
    out = cli("work", "info")
    assert out.returncode == 0, out.stderr
    assert out.stdout == info_lines({"waiting": 2, "delayed": 1, "reserved": 0, "done": 0, "failed": 0})
    assert cli("work").stdout == out.stdout  # info is the default action


def test_info_json_has_the_totals_machines_need(cli: Cli):
    cli("work", "push", "tests.Fail")
    cli("work", "run", "--isolate=0")
    data = json.loads(cli("work", "info", "--json").stdout)
    assert data["queue"] == "work" and data["failed"] == 1 and data["done"] == 0
    assert data["failed_total"] == 1 and data["follow_up_failed"] == 0


@pytest.mark.parametrize("isolate", ["--isolate=1", "--isolate=0"])
def test_run_drains_the_queue_and_prints_yii_verbose_lines(cli: Cli, isolate):
    for _ in range(2):
        cli("work", "push", "tests.Noop")
    out = cli("work", "run", "--verbose=1", isolate, "--color=0")
    assert out.returncode == 0, out.stderr
    assert normalize(out.stdout) == golden("run_two_noop.txt")
    assert "\x1b[" not in out.stdout
    assert cli("work", "info").stdout == info_lines(
        {"waiting": 0, "delayed": 0, "reserved": 0, "done": 2, "failed": 0})


@pytest.mark.parametrize("isolate", ["--isolate=1", "--isolate=0"])
def test_a_failing_job_prints_yiis_error_lines_and_keeps_the_traceback_in_the_system_log(cli: Cli, tmp_path,
                                                                                       isolate):
    cli("work", "push", "tests.Fail", "--args", '{"message": "disk full\\nsecond line"}')
    out = cli("work", "run", "-v", isolate, "--color=0")
    assert out.returncode == 0, out.stderr
    assert normalize(out.stdout) == golden("run_one_error.txt")  # the same lines with and without isolate
    assert "Traceback" not in out.stdout + out.stderr
    system_log = (tmp_path / "system.log").read_text()
    assert "Traceback" in system_log and "RuntimeError: disk full" in system_log
    assert read_lines(str(cli.events)) == [f"afterError {_only_id(cli)} 1 retry=0 RuntimeError"]


def _only_id(cli: Cli) -> int:
    return json.loads(cli("work", "failed", "list", "--json").stdout)[0]["id"]


def test_colour_is_forced_by_color_1(cli: Cli):
    cli("work", "push", "tests.Noop")
    out = cli("work", "run", "--verbose", "--color=1", "--no-isolate")
    assert "\x1b[32mDone" in out.stdout


def test_listen_picks_up_a_job_pushed_while_it_waits_and_stops_on_term(cli: Cli, tmp_path):
    proc = cli.popen("work", "listen", "5", "--verbose", "--color=0", "--isolate=0")
    try:
        lines: list[str] = []
        wait_until(lambda: _read_line(proc, lines, "Worker is started"), message="worker start")
        cli("work", "push", "tests.Record", "--args", json.dumps({"path": str(tmp_path / "ran")}))
        wait_until(lambda: _read_line(proc, lines, "- Done"), message="the pushed job to be done")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Worker is stopped" in out
    assert len(read_lines(str(tmp_path / "ran"))) == 1


def _read_line(proc, lines: list[str], needle: str) -> bool:
    line = proc.stdout.readline()
    if line:
        lines.append(line)
    return any(needle in seen for seen in lines)


def test_clear_asks_first_and_no_keeps_the_jobs(cli: Cli):
    cli("work", "push", "tests.Noop")
    out = cli("work", "clear", input="no\n")
    assert out.returncode == 0 and out.stdout.startswith("Are you sure? (yes|no) [no]:")
    assert "- waiting: 1" in cli("work", "info").stdout
    out = cli("work", "clear", input="maybe\nYES\n")
    assert out.returncode == 0 and out.stdout.count("Are you sure?") == 2
    assert "- waiting: 0" in cli("work", "info").stdout


def test_clear_with_interactive_0_does_not_ask(cli: Cli):
    cli("work", "push", "tests.Noop")
    out = cli("work", "clear", "--interactive=0")
    assert out.returncode == 0 and "Are you sure" not in out.stdout
    assert out.stdout.strip() == "Removed 1 job."


def test_remove_deletes_a_job_and_says_when_it_is_not_found(cli: Cli):
    job_id = cli("work", "push", "tests.Noop").stdout.strip()
    assert cli("work", "remove", job_id).returncode == 0
    out = cli("work", "remove", job_id)
    assert (out.returncode, out.stderr, out.stdout) == (1, "Error: The job is not found.\n", "")


def test_listen_refuses_a_bad_timeout_with_yiis_words_as_a_usage_error(cli: Cli):
    for bad, message in (("0", "greater than zero"), ("-3", "greater than zero"), ("abc", "numeric"),
                         ("1.5", "numeric"), ("-1.5", "numeric")):
        out = cli("work", "listen", bad)
        assert (out.returncode, out.stderr) == (2, f"Error: Timeout must be {message}.\n"), bad


def test_an_unknown_option_is_one_line_and_exit_2(cli: Cli):
    out = cli("work", "run", "--bogus")
    assert out.returncode == 2
    assert out.stderr.startswith("Error: No such option '--bogus'") and out.stderr.count("\n") == 1


def test_yii_booleans_are_strict(cli: Cli):
    out = cli("work", "run", "--isolate=maybe")
    assert out.returncode == 2
    assert out.stderr.startswith("Error: Invalid value for --isolate: 'maybe'")
    assert cli("work", "run", "--isolate=false").returncode == 0


def test_push_of_an_unknown_job_or_bad_args_is_a_usage_error(cli: Cli):
    out = cli("work", "push", "tests.Nope")
    assert out.returncode == 2 and out.stderr.startswith("Error: unknown job 'tests.Nope'; did you mean 'tests.")
    out = cli("work", "push", "tests.Record", "--args", "{")
    assert out.returncode == 2 and out.stderr.startswith("Error: --args is not valid JSON")
    out = cli("work", "push", "tests.Record", "--args", "{}")
    assert (out.returncode, out.stderr) == (2, "Error: tests.Record: missing argument(s): path\n")


def test_failed_list_show_retry_and_purge(cli: Cli):
    cli("work", "push", "tests.Fail", "--args", '{"message": "nope"}')
    cli("work", "push", "tests.Fail", "--args", '{"message": "again"}')
    cli("work", "run", "--isolate=0")
    listed = json.loads(cli("work", "failed", "list", "--json").stdout)
    assert [e["message"] for e in listed] == ["again", "nope"]  # newest first
    first = str(listed[1]["id"])
    shown = json.loads(cli("work", "failed", "show", first, "--json").stdout)
    assert shown["error_class"] == "RuntimeError" and "Traceback" in shown["traceback"]
    assert cli("work", "failed", "retry", first).returncode == 0
    assert "- waiting: 1" in cli("work", "info").stdout
    out = cli("work", "failed", "retry", first)
    assert (out.returncode, out.stderr) == (1, f"Error: Job {first} is not in the failed registry (it is waiting).\n")
    out = cli("work", "failed", "retry", "999999")
    assert (out.returncode, out.stderr) == (1, "Error: Job 999999 is not in the failed registry.\n")
    assert cli("work", "failed", "purge", "--yes").stdout.strip() == "Purged 1 failed job."
    assert "No failed jobs." in cli("work", "failed", "list").stdout


def test_version_is_printed():
    import subprocess

    from tests.helpers import PUBQ, subprocess_env
    out = subprocess.run([*PUBQ, "--version"], capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 0 and out.stdout.startswith("pubq, version ")
