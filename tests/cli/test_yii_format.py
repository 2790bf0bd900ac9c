"""What a yii2-queue user's eyes and scripts rely on: the verbose and system-log lines (golden files,
the same with and without isolate), pubq's documented additions to them, and the command spelling."""

from __future__ import annotations

import re

import pytest

from tests.helpers import Cli, golden, normalize


@pytest.fixture
def cli(tmp_path):
    c = Cli.create(tmp_path, "sqlite")
    yield c


@pytest.mark.parametrize("isolate", ["--isolate=1", "--isolate=0"])
def test_a_raising_after_exec_handler_marks_the_done_line_and_info_counts_it(tmp_path, isolate):
    cli = Cli.create(tmp_path, "sqlite", on={"afterExec": "tests.sample_jobs:BrokenFollowUp.after_exec"})
    cli("work", "push", "tests.Noop")
    cli("work", "push", "tests.Noop")
    out = cli("work", "run", "-v", isolate, "--color=0", "--max-jobs", "1")
    assert out.returncode == 0, out.stderr
    assert normalize(out.stdout) == golden("run_follow_up_failed.txt")
    assert cli("work", "info").stdout.splitlines()[-2:] == ["- failed: 0", "- follow-up failed: 1"]


def test_info_has_no_follow_up_line_while_there_are_none(cli: Cli):
    assert "follow-up" not in cli("work", "info").stdout


def test_the_log_behaviour_writes_yiis_system_log_lines_with_the_python_traceback(cli: Cli, tmp_path):
    cli("work", "push", "tests.Fail", "--args", '{"message": "disk full"}')
    assert cli("work", "run").returncode == 0
    text = normalize((tmp_path / "system.log").read_text())
    assert "  File \"FILE\", line LINE, in execute" in text  # the full Python traceback is there ...
    kept = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(" "))
    assert kept == golden("log_one_error.txt")  # ... after Yii's line


def test_setting_log_is_enough_for_the_tracebacks_to_reach_the_system_log(tmp_path):
    cli = Cli.create(tmp_path, "sqlite", behaviors=[])  # no `behaviors: [log]`, only the top-level log:
    cli("work", "push", "tests.Fail", "--args", '{"message": "disk full"}')
    assert cli("work", "run", "--isolate=0").returncode == 0
    text = (tmp_path / "system.log").read_text()
    assert "is finished with error: RuntimeError: disk full in " in text and "Traceback" in text


@pytest.mark.parametrize("args, message", [
    (["wrk", "info"], "Error: Unknown queue or command 'wrk' (queues: work). Did you mean 'work'?\n"),
    (["work/run", "-v"], "Error: Unknown command 'work/run'. Did you mean 'pubq work run -v'?\n"),
    (["wokr/listen", "3"], "Error: Unknown command 'wokr/listen'. Did you mean 'pubq work listen 3'?\n"),
    (["queue/run"], "Error: Unknown command 'queue/run': pubq takes the queue and the action as two words, "
                    "'pubq QUEUE run' (queues: work).\n"),
    (["work", "runn"], "Error: No such command 'runn'. Did you mean 'run'?\n"),
])
def test_a_mistyped_command_gets_a_suggestion_and_exit_2(cli: Cli, args, message):
    out = cli(*args)
    assert (out.returncode, out.stderr) == (2, message)


def test_the_worker_says_why_it_stopped_in_verbose_mode_and_in_the_log(cli: Cli, tmp_path):
    cli("work", "push", "tests.Noop")
    out = cli("work", "listen", "1", "-v", "--isolate=0", "--max-seconds", "0.5")
    assert out.returncode == 0, out.stderr
    assert re.search(r"\[pid: \d+\] - Worker stops: --max-seconds 0.5 reached\n.* - Worker is stopped", out.stdout)
    assert "stops: --max-seconds 0.5 reached" in (tmp_path / "system.log").read_text()
