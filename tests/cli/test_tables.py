"""Tables as people see them: on an 80-column terminal ids and times are whole, free text wraps
(or a row becomes a block of lines when the ids alone fill the width); piped, one line per row with
no padding at the end. Golden files hold the exact text (times, random paths and channels replaced
by placeholders of the same width, so the alignment is checked too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pubq.publishing.preset import pipeline_queues
from tests.helpers import GOLDEN, Cli, check_golden

UUID = "golden-task-0001"
ACCOUNTS = ["demo-1", "demo-2", "demo-3"]


def normalize(text: str) -> str:
    """Values that change from run to run → placeholders of the same width."""
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", "2026-01-02T03:04:05.000006Z", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "2026-01-02 03:04:05", text)
    text = re.sub(r"/\d{4}/\d\d/\d\d/\d{10}\.\d{4}\.\d{10}\.", "/YYYY/MM/DD/TTTTTTTTTT.NNNN.RRRRRRRRRR.", text)
    return re.sub(r"pubq-test:cli:[0-9a-f]{10}", "pubq-test:cli:0123456789", text)


def assert_no_trailing_blanks(text: str) -> None:
    bad = [line for line in text.splitlines() if line != line.rstrip()]
    assert not bad, f"lines end in blanks: {bad}"


@pytest.fixture
def published(tmp_path: Path) -> Cli:
    """A config with the pipeline on ``sync`` queues (publishing runs it to the end) and one task
    published to three accounts through the filesystem adapter, the third set up to fail."""
    queues = pipeline_queues()
    for name, queue in queues.items():
        queue["driver"] = "sync"
        queue["channel"] = f"golden:{name}"
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "clip.mp4").write_bytes(b"video-bytes" * 100)
    cli = Cli.create(tmp_path, "sqlite", top={
        "queues": queues,
        "publishing": {
            "source_root": "sources", "publish_dir": "publish",
            "channel_types": {"demo": {
                "adapter": "filesystem", "options": {"dir": "platform", "fail_accounts": ["demo-3"]},
                "accounts": [{"id": a} for a in ACCOUNTS]}},
        },
    })
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "uuid": UUID, "source": "cms", "channel_type": "demo", "title": "Golden", "accounts": ACCOUNTS,
        "assets": [{"type": "video", "url": "clip.mp4", "enabled": True}]}))
    out = cli("publish", str(request), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["task_id"] == 1
    return cli


def test_task_show_on_an_80_column_terminal_keeps_ids_whole_and_wraps_messages(published: Cli):
    code, out = published.terminal("task", "show", "1", columns=80)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out
    check_golden("task_show_80.txt", normalize(out))


def test_task_show_piped_has_one_line_per_row_and_no_trailing_blanks(published: Cli):
    out = published("task", "show", "1")
    assert out.returncode == 0, out.stderr
    assert_no_trailing_blanks(out.stdout)
    check_golden("task_show_piped.txt", normalize(out.stdout))


def test_task_trace_too_wide_for_80_columns_prints_each_event_as_a_block(published: Cli):
    code, out = published.terminal("task", "trace", "1", columns=80)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    check_golden("task_trace_80.txt", normalize(out))


def test_task_trace_piped_is_a_table_with_no_trailing_blanks(published: Cli):
    out = published("task", "trace", "1")
    assert out.returncode == 0, out.stderr
    assert_no_trailing_blanks(out.stdout)
    assert len(out.stdout.splitlines()) == len(json.loads(published("task", "trace", "1", "--json").stdout)) + 1
    check_golden("task_trace_piped.txt", normalize(out.stdout))


def test_piped_output_ignores_columns(published: Cli):
    """A ``COLUMNS`` exported by the shell does not narrow piped output."""
    published.env["COLUMNS"] = "40"
    out = published("task", "trace", "1")
    assert normalize(out.stdout) == (GOLDEN / "task_trace_piped.txt").read_text()


def test_queues_at_80_columns_and_piped(published: Cli):
    code, out = published.terminal("queues", columns=80)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    check_golden("queues_80.txt", normalize(out))
    piped = published("queues")
    assert_no_trailing_blanks(piped.stdout)
    check_golden("queues_piped.txt", normalize(piped.stdout))


def test_failed_list_at_80_columns_and_piped(tmp_path: Path):
    cli = Cli.create(tmp_path, "sqlite")
    message = "the upstream server refused the upload because the file is larger than its limit of 2 MiB"
    for _ in range(2):
        assert cli("work", "push", "tests.Fail", "--args", json.dumps({"message": message})).returncode == 0
    assert cli("work", "run", "--isolate=0").returncode == 0
    code, out = cli.terminal("work", "failed", "list", columns=80)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    check_golden("failed_list_80.txt", normalize(out))
    piped = cli("work", "failed", "list")
    assert_no_trailing_blanks(piped.stdout)
    check_golden("failed_list_piped.txt", normalize(piped.stdout))
