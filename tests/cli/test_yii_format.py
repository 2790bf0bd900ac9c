"""What a yii2-queue user's eyes and scripts rely on: the verbose and system-log lines (golden files,
the same with and without isolate), pubq's documented additions to them, and the command spelling."""

from __future__ import annotations

import json
import re
import signal

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


def test_failed_show_indents_multi_line_text_omits_empty_fields_and_keeps_every_attempts_traceback(tmp_path):
    cli = Cli.create(tmp_path, "sqlite", attempts=2)
    cli("work", "push", "tests.Fail", "--args", '{"message": "disk full\\nsecond line"}')
    assert cli("work", "run", "--isolate=0").returncode == 0
    out = cli("work", "failed", "show", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("  File ") >= 2  # both attempts' tracebacks, indented under their attempt ...
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "DATE", out.stdout)
    assert "".join(line for line in text.splitlines(keepends=True) if not line.startswith("    ")) == golden(
        "failed_show.txt")  # ... and the rest, line by line (no empty code: line)
    data = json.loads(cli("work", "failed", "show", "1", "--json").stdout)
    assert [(h["attempt"], h["error_class"]) for h in data["history"]] == [(1, "RuntimeError"), (2, "RuntimeError")]
    assert all("Traceback (most recent call last)" in h["traceback"] for h in data["history"])


def test_help_shows_every_summary_whole_and_says_how_to_use_each_command(tmp_path):
    cli = Cli.create(tmp_path, "sqlite")
    cli.env["COLUMNS"] = "80"
    for args in ([], ["work"], ["work", "failed"], ["db"]):
        out = cli(*args, "--help")
        assert out.returncode == 0, out.stderr
        commands = out.stdout.split("Commands:", 1)[1]
        assert not [line for line in commands.splitlines() if line.endswith("...")], out.stdout  # cut summaries
    assert "Usage: pubq work failed retry [OPTIONS] ID|--all\n" in cli("work", "failed", "retry", "--help").stdout
    assert "List the failed registry, newest first." in cli("work", "failed", "list", "--help").stdout
    purge = cli("work", "failed", "purge", "--help").stdout
    assert "--interactive=0 answers yes" in purge


def test_info_watch_json_prints_one_compact_snapshot_per_line(cli: Cli):
    cli("work", "push", "tests.Noop")
    proc = cli.popen("work", "info", "--watch", "--json", "--interval", "0.1")
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    snapshots = [json.loads(line) for line in lines]
    assert [(s["queue"], s["waiting"]) for s in snapshots] == [("work", 1), ("work", 1)]
    assert all(line.startswith('{"queue":"work",') and line.endswith("}\n") for line in lines)


def test_info_watch_on_a_terminal_redraws_in_place(cli: Cli):
    import os
    import pty
    import subprocess

    from tests.helpers import PUBQ, ROOT

    leader, follower = pty.openpty()
    proc = subprocess.Popen([*PUBQ, "--config", str(cli.path), "work", "info", "--watch", "--interval", "0.1",
                             "--color=0"], stdin=follower, stdout=follower, stderr=follower, env=cli.env, cwd=ROOT)
    os.close(follower)
    seen = b""
    try:
        while seen.count(b"Jobs") < 3:
            seen += os.read(leader, 4096)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert b"\x1b[2J" not in seen  # no clear-screen flicker ...
    assert b"\x1b[1A" in seen or b"\x1b[A" in seen  # ... rich.live moves the cursor up and redraws
    assert b"\x1b[32m" not in seen and b"\x1b[33m" not in seen  # --color=0: no colours
