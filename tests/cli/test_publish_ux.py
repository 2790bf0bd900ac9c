"""The publishing side as a new user meets it, through the real CLI: ``pubq init`` writes a
``publishing:`` section the first ``pubq publish`` works with, ``publish --example`` gives a working
request, ``publish`` says what to run next, ``publish --wait`` follows every account to the end,
and ``task sync`` says how review results arrive."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pubq.commands.publishing_init import ACCOUNTS, CHANNEL_TYPE
from tests.helpers import PUBQ, Cli, check_golden, run_in_terminal, subprocess_env, wait_until

PIPELINE = ("copy-asset", "upload-asset", "pub-article")


def init(tmp_path: Path, *, driver: str | None = None) -> Cli:
    """``pubq init`` in an empty folder, as a user runs it; ``driver`` replaces every queue's driver."""
    out = subprocess.run([*PUBQ, "init"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "pubq.yaml"
    if driver is not None:
        data = yaml.safe_load(path.read_text())
        for queue in data["queues"].values():
            queue["driver"] = driver
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Cli(path=path, env=subprocess_env(), channel="", events=tmp_path / "events", driver="sqlite")


def example(cli: Cli, tmp_path: Path) -> Path:
    out = cli("publish", "--example")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    path = tmp_path / "request.json"
    path.write_text(out.stdout)
    return path


def normalize(text: str, cli: Cli) -> str:
    text = text.replace(str(cli.path), "CONFIG")
    return re.sub(r"^\d\d:\d\d:\d\d ", "HH:MM:SS ", text, flags=re.M)


def run_workers(cli: Cli) -> None:
    for queue in PIPELINE:
        out = cli(queue, "run", "--isolate=0")
        assert out.returncode == 0, out.stderr


def test_init_writes_a_publishing_section_the_first_publish_works_with(tmp_path: Path):
    out = subprocess.run([*PUBQ, "init"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pubq publish --example > request.json" in out.stdout
    text = (tmp_path / "pubq.yaml").read_text()
    assert "\npublishing:\n" in text and "# The publishing pipeline." in text
    assert (tmp_path / "sources" / "example.png").is_file()
    cli = Cli(path=tmp_path / "pubq.yaml", env=subprocess_env(), channel="", events=tmp_path, driver="sqlite")

    request = json.loads(example(cli, tmp_path).read_text())
    assert request["channel_type"] == CHANNEL_TYPE and request["accounts"] == list(ACCOUNTS)
    assert request["assets"] == [{"type": "image", "url": "example.png", "enabled": True}]
    published = cli("publish", str(tmp_path / "request.json"), "--json")
    assert published.returncode == 0, published.stderr
    task_id = json.loads(published.stdout)["task_id"]
    run_workers(cli)
    shown = json.loads(cli("task", "show", str(task_id), "--json").stdout)
    assert [(a["account"], a["status_name"]) for a in shown["accounts"]] == [
        (a, "under review") for a in ACCOUNTS]


def test_publish_without_wait_prints_what_to_run_next(tmp_path: Path):
    cli = init(tmp_path)
    out = cli("publish", str(example(cli, tmp_path)))
    assert out.returncode == 0, out.stderr
    check_golden("publish_next_steps.txt", normalize(out.stdout, cli))
    # The commands it names are the ones that finish the task.
    run_workers(cli)
    assert "2 accounts: 2 under review." in cli("task", "show", "1").stdout


def test_publish_wait_follows_every_account_while_workers_run(tmp_path: Path):
    cli = init(tmp_path)
    request = example(cli, tmp_path)
    watcher = cli.popen("publish", str(request), "--wait", "--timeout", "60")
    try:
        wait_until(lambda: cli("task", "show", "1", "--json").returncode == 0, message="the task to exist")
        run_workers(cli)
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, stderr
    lines = normalize(stdout, cli).splitlines()
    for account in ACCOUNTS:
        assert f"HH:MM:SS {account}: pending" in lines
        # releasing is seen between the upload and the create, unless both ran between two looks
        assert ({f"HH:MM:SS {account}: pending → releasing", f"HH:MM:SS {account}: releasing → under review"}
                <= set(lines) or f"HH:MM:SS {account}: pending → under review" in lines)
    assert "2 accounts: 2 under review." in lines


def test_publish_wait_with_sync_queues_is_final_at_once(tmp_path: Path):
    cli = init(tmp_path, driver="sync")
    out = cli("publish", str(example(cli, tmp_path)), "--wait")
    assert out.returncode == 0, out.stderr
    text = re.sub(r"demo-(\d)-[0-9a-f]{16}", r"demo-\1-ITEMIDITEMIDITEM", normalize(out.stdout, cli))
    check_golden("publish_wait_sync.txt", text)


def test_publish_wait_on_a_terminal_draws_a_live_table_and_a_progress_bar(tmp_path: Path):
    cli = init(tmp_path)
    request = example(cli, tmp_path)
    code, out = run_in_terminal([*PUBQ, "--config", str(cli.path), "publish", str(request), "--wait",
                                 "--timeout", "0.5"], cli.env, columns=100)
    assert code == 1, out
    assert "─" * 30 + " 0 of 2 accounts done" in out
    assert "Waiting for workers: keep `pubq --config" in out and "copy-asset, upload-asset, pub-article" in out
    assert "Error: gave up waiting after 0.5 s: 2 accounts: 2 pending; the task goes on" in out

    (tmp_path / "sync").mkdir()
    sync = init(tmp_path / "sync", driver="sync")
    code, out = run_in_terminal([*PUBQ, "--config", str(sync.path), "publish", str(example(sync, tmp_path / "sync")),
                                 "--wait"], sync.env, columns=100)
    assert code == 0, out
    assert "━" * 30 + " 2 of 2 accounts done" in out
    assert "Waiting for workers" not in out and "2 accounts: 2 under review." in out


def test_publish_wait_gives_up_after_its_timeout_and_names_the_task(tmp_path: Path):
    cli = init(tmp_path)
    out = cli("publish", str(example(cli, tmp_path)), "--wait", "--timeout", "0.3")
    assert out.returncode == 1
    assert out.stderr == (f"Error: gave up waiting after 0.3 s: 2 accounts: 2 pending; the task goes on "
                          f"(pubq --config {cli.path} task show 1)\n")


def test_task_sync_says_how_review_results_arrive(tmp_path: Path):
    cli = init(tmp_path, driver="sync")
    assert cli("publish", str(example(cli, tmp_path))).returncode == 0
    out = cli("task", "sync", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (f"2 accounts of task 1 still under review: the platform has not decided yet. Results "
                          f"arrive when `pubq --config {cli.path} task sync` asks again (run it from cron to keep "
                          "statuses current).\n")
    # The filesystem platform decides through its item file.
    item = next((tmp_path / "platform" / "demo-1" / "items").glob("*.json"))
    item.write_text(item.read_text().replace('"review": "review"', '"review": "published"'))
    out = cli("task", "sync", "1")
    assert out.stdout.splitlines()[0] == "demo-1 (channel app task 1): under review → published"
    assert out.stdout.splitlines()[1].startswith("1 account of task 1 still under review")
    item = next((tmp_path / "platform" / "demo-2" / "items").glob("*.json"))
    item.write_text(item.read_text().replace('"review": "review"', '"review": "rejected"'))
    assert cli("task", "sync").stdout == "demo-2 (channel app task 2): under review → rejected\n"
    assert cli("task", "sync").stdout == "No account is under review: there is nothing to ask the platform.\n"


@pytest.mark.parametrize("args, message", [
    ((), "Error: give the request FILE (start from `pubq publish --example`)"),
    (("--example", "x.json"), "Error: --schema and --example print a document; they take no FILE and no --wait"),
    (("x.json", "--channel-type", "demo"), "Error: --channel-type goes with --example"),
])
def test_publish_usage_errors_say_what_to_do(tmp_path: Path, args, message):
    cli = init(tmp_path)
    out = cli("publish", *args)
    assert (out.returncode, out.stderr.strip()) == (2, message)


def test_publish_example_notes_what_is_missing_on_stderr(tmp_path: Path):
    cli = init(tmp_path)
    (tmp_path / "sources" / "example.png").unlink()
    out = cli("publish", "--example", "--channel-type", "nope")
    assert out.returncode == 0
    assert json.loads(out.stdout)["channel_type"] == "nope"
    assert out.stderr.splitlines() == [
        "Note: channel type 'nope' is not configured (known: demo)",
        f"Note: no image or video file under the source root {tmp_path / 'sources'}: put one at "
        f"{tmp_path / 'sources' / 'example.png'}",
    ]
