"""README's quick start, run as written: from ``pubq init`` in an empty folder to the user's own job
running under ``listen``, in five commands (the first, the install, is what this test runs in)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, subprocess_env, wait_until

BLOCK = re.compile(r"## Quick start: your own job\n\n.*?```bash\n(.*?)```", re.S)


def quick_start() -> str:
    return BLOCK.search((ROOT / "README.md").read_text()).group(1)


def commands(block: str) -> list[str]:
    """The block's commands: one per line, a heredoc's body belongs to the line that opens it."""
    out: list[str] = []
    end = None
    for line in block.splitlines():
        if end is not None:
            out[-1] += "\n" + line
            end = None if line == end else end
            continue
        out.append(line)
        opened = re.search(r"<<'(\w+)'", line)
        end = opened.group(1) if opened else None
    return out


def test_the_quick_start_is_five_numbered_commands_and_the_docs_show_the_same():
    steps = commands(quick_start())
    assert len(steps) == 5
    assert [re.search(r"# (\d)\. ", s.splitlines()[0]).group(1) for s in steps] == ["1", "2", "3", "4", "5"]
    assert steps[0].startswith("pip install -e . ")
    assert "```bash\n" + quick_start() + "```" in (ROOT / "docs" / "index.md").read_text()


def test_the_quick_start_runs_a_custom_job_under_listen(tmp_path: Path):
    _, *setup, listen = commands(quick_start())
    env = subprocess_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH")  # as a user has it: only what pip installed
    done = subprocess.run(["bash", "-e", "-c", "\n".join(setup)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    worker = subprocess.Popen(["bash", "-c", "exec " + listen.split("#")[0]], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        wait_until(lambda: seen.append(worker.stdout.readline()) or "- Done" in seen[-1] or worker.poll() is not None,
                   timeout=60, message="the job's Done line")
        worker.send_signal(signal.SIGINT)
        rest, errors = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = "".join(seen) + rest
    assert "Hello, world!" in text, (text, errors)
    assert re.search(r"\[1\] myapp.Hello \(attempt: 1, pid: \d+\) - Done", text), text
    assert worker.returncode == 0, errors
