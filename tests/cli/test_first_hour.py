"""A new user's first hour: their own job module beside the config, run through the real CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

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


def test_read_only_commands_in_an_empty_folder_write_no_database(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*PUBQ, *args], capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path,
                              timeout=60)

    listed = run("queues")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[3:] for line in listed.stdout.splitlines()[1:]] == [["0"] * 5] * 4
    assert run("copy-asset", "info").stdout.startswith("Jobs\n- waiting: 0\n")
    assert run("copy-asset", "failed", "list").stdout == "No failed jobs.\n"
    assert run("copy-asset", "failed", "show", "1").returncode == 1
    assert run("copy-asset", "remove", "1").returncode == 1
    assert run("copy-asset", "clear", "--yes").returncode == 0
    assert list(tmp_path.iterdir()) == []  # "no queue data yet" is not a reason to create pubq.db
    assert run("copy-asset", "push", "pubq.jobs.CopyAssetJob", "--args", '{"task_id": 1}').stdout == "1\n"
    assert (tmp_path / "pubq.db").exists()  # the first write creates it


def test_pubq_jobs_lists_the_registered_names_with_their_arguments(tmp_path):
    config = user_folder(tmp_path)
    out = pubq(config, "jobs")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "path: str, width: int = 800" in rows["myapp.Resize"] and "myapp.jobs:ResizeJob" in rows["myapp.Resize"]
    assert "pubq.jobs.CopyAssetJob" in rows  # pubq's own jobs are registered too
    data = {j["name"]: j for j in json.loads(pubq(config, "jobs", "--json").stdout)}
    assert data["myapp.Resize"]["fields"] == [
        {"name": "path", "type": "str", "required": True},
        {"name": "width", "type": "int", "required": False, "default": "800"},
    ]


def test_an_unknown_job_name_gets_the_close_one_and_push_completes_job_names(tmp_path):
    config = user_folder(tmp_path)
    out = pubq(config, "images", "push", "myapp.Resiz")
    assert (out.returncode, out.stderr) == (
        2, "Error: unknown job 'myapp.Resiz'; did you mean 'myapp.Resize'? (pubq jobs lists every registered job)\n")
    done = subprocess.run([*PUBQ, "--config", str(config), "images", "push", "my"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=subprocess_env(
                              _PUBQ_COMPLETE="bash_complete", COMP_CWORD="5",
                              COMP_WORDS=f"pubq --config {config} images push my"))
    assert done.stdout.splitlines() == ["plain,myapp.Resize"]


def test_pubq_init_walks_a_new_user_to_their_own_job_running_under_listen(tmp_path):
    """README's five commands: install, init, then the three steps init prints, verbatim."""
    import shlex
    import signal

    from tests.helpers import wait_until

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*PUBQ, *argv[1:]], capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path,
                              timeout=60)

    init = run(["pubq", "init"])
    assert init.returncode == 0, init.stderr
    assert init.stdout.startswith(f"Wrote pubq.yaml and {Path('myapp') / 'jobs.py'} (an example job).\nNext steps:\n")
    printed = init.stdout.split("Next steps:\n", 1)[1].split("\nThen write", 1)[0]
    steps = [shlex.split(line.split("   # ")[0]) for line in printed.splitlines() if line.startswith("  pubq ")]
    assert [s[:2] for s in steps] == [["pubq", "jobs"], ["pubq", "default"], ["pubq", "default"]]
    assert "pubq.yaml" in (tmp_path / "pubq.yaml").read_text().splitlines()[0]  # a commented file
    listed = run(steps[0])
    assert listed.returncode == 0 and "myapp.Hello" in listed.stdout, listed.stderr
    pushed = run(steps[1])
    assert (pushed.returncode, pushed.stdout) == (0, "1\n"), pushed.stderr
    assert steps[2][2:] == ["listen", "-v"]
    proc = subprocess.Popen([*PUBQ, *steps[2][1:], "--color=0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env(), cwd=tmp_path)
    lines: list[str] = []
    try:
        wait_until(lambda: lines.append(proc.stdout.readline()) or "- Done (" in lines[-1], message="the job to run")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Hello, world! (job 1, attempt 1)\n" in lines
    again = run(["pubq", "init"])
    assert (again.returncode, again.stderr) == (2, "Error: pubq.yaml already exists (use --force to overwrite)\n")


def test_pubq_init_elsewhere_names_the_config_in_its_steps_and_keeps_an_existing_module(tmp_path):
    (tmp_path / "conf" / "myapp").mkdir(parents=True)
    (tmp_path / "conf" / "myapp" / "jobs.py").write_text(MYAPP_JOBS)
    target = tmp_path / "conf" / "queues.yaml"
    out = subprocess.run([*PUBQ, "init", "--path", str(target), "--redis", "redis://127.0.0.1:6379/0"],
                         capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Wrote {target}.\n")  # the user's module is not overwritten
    assert f"  pubq --config {target} default listen -v " in out.stdout
    assert (tmp_path / "conf" / "myapp" / "jobs.py").read_text() == MYAPP_JOBS
    assert "\nredis: redis://127.0.0.1:6379/0\n" in target.read_text()
    jobs = pubq(target, "jobs")
    assert "myapp.Resize" in jobs.stdout, jobs.stderr
