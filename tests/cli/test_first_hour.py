"""A new user's first hour: their own job module beside the config, run through the real CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap

from tests.helpers import PUBQ, ROOT, subprocess_env

MYAPP_JOBS = textwrap.dedent('''
    from dataclasses import dataclass
    from pubq import Job

    @dataclass
    class ResizeJob(Job):
        name = "myapp.Resize"
        path: str
        width: int = 800

        def execute(self, ctx):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"resized {self.width}\\n")
''')


def user_folder(tmp_path):
    """``pubq.yaml`` naming ``myapp.jobs`` and ``myapp/jobs.py`` beside it, as a user lays them out."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "jobs.py").write_text(MYAPP_JOBS)
    config = tmp_path / "pubq.yaml"
    config.write_text(textwrap.dedent(f'''
        database: sqlite:///{tmp_path / "state.db"}
        jobs: [myapp.jobs]
        queues:
          images: {{driver: db, channel: images}}
    '''))
    return config


def pubq(config, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*PUBQ, "--config", str(config), *args], capture_output=True, text=True,
                          env=subprocess_env(), cwd=cwd, timeout=60)


def test_a_jobs_module_beside_the_config_file_is_imported_from_any_working_folder(tmp_path):
    config = user_folder(tmp_path)
    out_file = tmp_path / "out.txt"
    pushed = pubq(config, "images", "push", "myapp.Resize", "--args", json.dumps({"path": str(out_file), "width": 64}))
    assert pushed.returncode == 0, pushed.stderr
    ran = pubq(config, "images", "run")  # isolate mode: the child is a fork, the import path comes along
    assert ran.returncode == 0, ran.stderr
    assert out_file.read_text() == "resized 64\n"


def test_a_handler_beside_the_config_file_is_imported_too(tmp_path):
    config = user_folder(tmp_path)
    (tmp_path / "myapp" / "hooks.py").write_text("def after_exec(event):\n    pass\n")
    config.write_text(config.read_text().replace(
        "images: {driver: db, channel: images}",
        "images: {driver: db, channel: images, on: {afterExec: 'myapp.hooks:after_exec'}}"))
    out = pubq(config, "images", "info")
    assert out.returncode == 0, out.stderr
