"""The CLI of unique jobs and schedules: what a user sees (one config of its own per test)."""

from __future__ import annotations

import json

from tests.helpers import Cli


def test_push_with_a_unique_key_says_when_the_job_is_already_queued(tmp_path):
    cli = Cli.create(tmp_path, "db")
    first = cli("work", "push", "tests.Noop", "--unique-key", "report:7")
    assert first.returncode == 0 and first.stdout.strip().isdigit()
    again = cli("work", "push", "tests.Noop", "--unique-key", "report:7")
    assert again.returncode == 0
    assert again.stdout == f"Job {first.stdout.strip()} already queued (unique key report:7)\n"
    as_json = json.loads(cli("work", "push", "tests.Noop", "--unique-key", "report:7", "--json").stdout)
    assert as_json == {"queue": "work", "id": int(first.stdout), "duplicate": True, "unique_key": "report:7"}
    other = json.loads(cli("work", "push", "tests.Noop", "--json").stdout)
    assert other["duplicate"] is False and "unique_key" not in other
    bad = cli("work", "push", "tests.Noop", "--unique-until", "ttl", "--unique-key", "x")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: unique_until ttl needs unique_for")
    assert json.loads(cli("work", "info", "--json").stdout)["waiting"] == 2


def test_schedule_tick_and_list(tmp_path):
    cli = Cli.create(tmp_path, "db", top={"schedules": {
        "beat": {"every": "1s", "queue": "work", "job": "tests.Noop"},
        "nightly": {"cron": "30 2 * * *", "timezone": "Asia/Shanghai", "queue": "work", "job": "tests.Noop"},
    }})
    first = cli("schedule", "tick", "--json")
    assert first.returncode == 0 and json.loads(first.stdout) == []  # first sight: due from now on
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["beat", "nightly"]
    assert listed[0]["last_tick"] is not None and len(listed[1]["next"]) == 3
    assert all(t % 86400 == 18 * 3600 + 1800 for t in listed[1]["next"])
    table = cli("schedule", "list")
    assert "every 1s" in table.stdout and "cron 30 2 * * * (Asia/Shanghai)" in table.stdout
    later = cli("schedule", "tick")
    assert later.returncode == 0 and "beat: tick " in later.stdout and "pushed as job" in later.stdout
    unknown = cli("schedule", "tick", "nope")
    assert unknown.returncode == 2 and "no schedule named 'nope'" in unknown.stderr
