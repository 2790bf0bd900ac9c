"""Reliability soak: real CLI workers under SIGKILL and backend restarts lose no job.

    python tests/reliability/soak.py --backend redis|sqlite|postgres [--jobs 10000] [--workers 3]
        [--kill-every 2] [--redis-restarts 2] [--pg-terminations 2] [--fail-rate 0.01]
        [--malformed 100] [--json out.json]

What it does: pushes ``--jobs`` soak jobs (``soak_jobs.SoakJob``; ``--fail-rate`` of them raise
on every attempt) and ``--malformed`` payloads written straight through the driver, below the queue's
validation (bad JSON, unknown job, wrong arguments, 10 MB bodies); starts ``--workers`` processes of
``python -m pubq --config … soak listen 1`` (isolate mode, as users run them); SIGKILLs a random
worker every ~``--kill-every`` s and starts a new one; restarts the private Redis (append-only on)
or terminates every PostgreSQL session of the soak database at 1/3 and 2/3 of the run; then waits
for quiescence and checks the invariants of ``soak_check``. Exit 0 only when they all hold.

Nothing shared is touched: Redis is a private server on a free port, SQLite a temp file,
PostgreSQL a database ``pubq_soak_<random>`` created here and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: python tests/reliability/soak.py

import yaml  # noqa: E402

from tests.helpers import PrivateRedis, fresh_pg_database  # noqa: E402
from tests.reliability.soak_check import Pushed, check, read_records, refused_ack_ids  # noqa: E402

#: The module of the soak's job and handlers, imported by every worker.
JOBS = "tests.reliability.soak_jobs"
QUEUE = "soak"
#: Bytes of the oversized malformed payloads (the queue accepts 1 MiB).
BIG_BODY = 10 * 1024 * 1024
#: Environment variables that would point a worker at another backend (pubq.config).
_URL_ENV = ("PUBQ_CONFIG", "PUBQ_REDIS_URL", "PUBQ_DATABASE_URL", "PUBQ_QUEUE_DATABASE_URL")
POSTGRES_ADMIN_URL = os.environ.get("PUBQ_SOAK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- backends ------------------------------------------------------------------------------------


class Backend:
    """Where the queue lives, and the outage this backend can be put through."""

    name = ""
    outages = 0

    def queue_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def outage(self) -> str:
        """Inject one outage; returns what was done."""
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def close(self) -> None:
        pass


class RedisBackend(Backend):
    """A private redis-server with appendonly on, restarted with SHUTDOWN (tests.helpers)."""

    name = "redis"

    def __init__(self, restarts: int) -> None:
        self.server = PrivateRedis(appendonly=True).start()
        self.outages = restarts

    def queue_config(self) -> dict[str, Any]:
        return {"top": {"redis": self.server.url}, "driver": "redis"}

    def outage(self) -> str:
        self.server.restart()
        return f"redis-server restarted (port {self.server.port}, appendonly)"

    def version(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return out.split()[2] if out else ""

    def close(self) -> None:
        self.server.cleanup()


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.url = f"sqlite:///{workdir / 'queue.db'}"

    def queue_config(self) -> dict[str, Any]:
        return {"top": {"queue_database": self.url}, "driver": "db"}

    def version(self) -> str:
        import sqlite3

        return sqlite3.sqlite_version


class PostgresBackend(Backend):
    """A database of its own (CREATE DATABASE pubq_soak_<hex>), dropped by close()."""

    name = "postgres"

    def __init__(self, terminations: int) -> None:
        import psycopg2

        self.admin_url = POSTGRES_ADMIN_URL
        try:
            self._admin = psycopg2.connect(self.admin_url, connect_timeout=10)
            self.url, self._drop = fresh_pg_database(self.admin_url, "pubq_soak")
        except psycopg2.Error as exc:
            raise SystemExit(f"PostgreSQL is not reachable at {self.admin_url} "
                             f"(set PUBQ_SOAK_POSTGRES_URL): {str(exc).strip()}") from exc
        self._admin.autocommit = True
        self.dbname = self.url.rpartition("/")[2]
        self.outages = terminations

    def queue_config(self) -> dict[str, Any]:
        return {"top": {"queue_database": self.url}, "driver": "db"}

    def outage(self) -> str:
        with self._admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                        (self.dbname,))
            n = cur.fetchone()[0]
        return f"pg_terminate_backend on {n} session(s) of {self.dbname}"

    def version(self) -> str:
        with self._admin.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])

    def close(self) -> None:
        self._admin.close()
        self._drop()


def open_backend(args: argparse.Namespace, workdir: Path) -> Backend:
    if args.backend == "redis":
        return RedisBackend(args.redis_restarts)
    if args.backend == "sqlite":
        return SqliteBackend(workdir)
    return PostgresBackend(args.pg_terminations)


# -- config, pushing -----------------------------------------------------------------------------


def write_config(workdir: Path, backend: Backend, args: argparse.Namespace) -> Path:
    qc = backend.queue_config()
    data: dict[str, Any] = {
        **qc["top"],
        "database": f"sqlite:///{workdir / 'state.db'}",
        "jobs": [JOBS],
        "queues": {QUEUE: {
            "driver": qc["driver"],
            "channel": f"pubq-soak:{uuid.uuid4().hex[:8]}",
            "ttr": args.ttr,
            "grace": 1,
            "settle_within": args.settle_within,
            "attempts": args.attempts,
            "retry": {"backoff": "fixed", "delay": 0.2, "jitter": False},
            "on": {"afterExec": f"{JOBS}:SoakRecorder.after_exec",
                   "afterError": f"{JOBS}:SoakRecorder.after_error"},
        }},
        "log": {"file": str(workdir / "system.log"), "level": "WARNING"},
    }
    path = workdir / "pubq.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def worker_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _URL_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PUBQ_SOAK_DIR"] = str(workdir)
    env["NO_COLOR"] = "1"
    return env


def malformed_payloads(n: int, big: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """``n`` payloads no worker can run: bad JSON, unknown job, wrong arguments, ``big`` 10 MB bodies."""
    big = min(big, n)
    out: list[tuple[str, bytes]] = []
    for i in range(n - big):
        kind = ("bad_json", "unknown_job", "wrong_args")[i % 3]
        if kind == "bad_json":
            body = b'{"job": "soak.Work", "args": {"key": ' if i % 2 else b"\xff\xfe not utf-8 \x00"
        elif kind == "unknown_job":
            body = json.dumps({"job": f"soak.NoSuchJob{i}", "args": {}}).encode()
        else:
            args = {"key": i, "colour": "red"} if i % 2 else {"fail": False}
            body = json.dumps({"job": "soak.Work", "args": args}).encode()
        out.append((kind, body))
    for i in range(big):
        # Otherwise a valid job: only its size (past max_payload_bytes) makes it malformed.
        body = json.dumps({"job": "soak.Work", "args": {"key": -i, "note": "x" * BIG_BODY}}).encode()
        out.append(("too_big", body))
    rng.shuffle(out)
    return out


def push_all(queue: Any, args: argparse.Namespace, rng: random.Random) -> Pushed:
    """Valid jobs in chunks through the queue; malformed ones through the driver, interleaved."""
    from tests.reliability.soak_jobs import SoakJob

    pushed = Pushed()
    failing = set(rng.sample(range(args.jobs), round(args.jobs * args.fail_rate)))
    bad = malformed_payloads(args.malformed, args.big, rng)
    chunk = 500
    slots = sorted(rng.randrange(max(1, args.jobs // chunk)) for _ in bad)
    for c, start in enumerate(range(0, args.jobs, chunk)):
        keys = range(start, min(args.jobs, start + chunk))
        ids = queue.push_many([SoakJob(key=k, fail=k in failing, sleep_ms=args.sleep_ms) for k in keys])
        for k, job_id in zip(keys, ids, strict=True):
            (pushed.failing if k in failing else pushed.ok).append(job_id)
        while bad and slots and slots[0] == c:
            slots.pop(0)
            kind, body = bad.pop()
            pushed.malformed[queue.driver.push(body, ttr=queue.config.ttr)] = kind
    for kind, body in bad:
        pushed.malformed[queue.driver.push(body, ttr=queue.config.ttr)] = kind
    return pushed


# -- workers ---------------------------------------------------------------------------------------


class Workers:
    """``n`` CLI worker processes; killed ones are replaced, unexpected exits are recorded."""

    def __init__(self, n: int, config: Path, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        # --verbose: "Worker is started" tells stop() the signal handlers are in place.
        self.cmd = [sys.executable, "-m", "pubq", "--config", str(config), QUEUE, "listen", "1",
                    "--verbose", "--color=0", *extra]
        self.env = worker_env(workdir)
        self.logdir = workdir / "workers"
        self.logdir.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.kills: list[tuple[int, float]] = []
        self.unexpected: list[str] = []
        for _ in range(n):
            self.procs.append(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        path = self.logdir / f"worker-{self.started}.log"
        log = open(path, "wb")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    cwd=ROOT, start_new_session=True)
            self.all_procs.append(proc)
            self.logs[proc.pid] = path
            return proc
        finally:
            log.close()

    def kill_random(self, rng: random.Random) -> int:
        i = rng.randrange(len(self.procs))
        proc = self.procs[i]
        t = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.kills.append((proc.pid, t))
        self.procs[i] = self._spawn()
        return proc.pid

    def check(self, replace: bool = True) -> None:
        """Record workers that ended on their own (a crash, or an exit on an outage) and replace them."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.unexpected.append(f"worker {proc.pid} exited with {proc.returncode} "
                                       f"(log {self.logdir}/worker-*.log)")
                if replace:
                    self.procs[i] = self._spawn()

    def leftovers(self) -> int:
        """Kill what is left in the workers' process groups (e.g. isolated children orphaned by a
        SIGKILL) and return how many processes that was. Only groups this harness started."""
        groups = {p.pid for p in self.all_procs}
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getpgid(int(entry)) in groups:
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self, timeout: float = 30) -> list[int | None]:
        """SIGTERM (finish the job, exit 0); SIGKILL what is left after ``timeout``.

        A worker just started by the chaos loop may still be importing, where SIGTERM's default
        action ends any Python program; so first wait until each one says it has started.
        """
        end = time.monotonic() + timeout
        for p in self.procs:
            while p.poll() is None and time.monotonic() < end and b"Worker is started" not in self.logs[
                    p.pid].read_bytes()[:4096]:
                time.sleep(0.05)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=max(0.1, end - time.monotonic())))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes.append(None)
        return codes


# -- the run ---------------------------------------------------------------------------------------


def final_state(driver: Any) -> dict[str, Any] | None:
    """Counts and failed registry once nothing is left to do; None while work remains."""
    counts = driver.counts()
    if counts.waiting or counts.delayed or counts.reserved:
        return None
    entries = driver.failed_list(0, 1_000_000)
    if any(e.unsettled for e in entries):
        return None
    failed = {e.job_id: (e.error_class, e.message, e.attempts, e.unsettled) for e in entries}
    return {"counts": counts.as_dict(), "failed": failed}


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from pubq.app import App
    from pubq.config import load_config

    rng = random.Random(args.seed)
    backend = open_backend(args, workdir)
    workers: Workers | None = None
    app: App | None = None
    try:
        config = write_config(workdir, backend, args)
        app = App(load_config(config, env={}))
        queue = app.queue(QUEUE)
        t_push = time.monotonic()
        pushed = push_all(queue, args, rng)
        push_s = time.monotonic() - t_push
        records_path = str(workdir / "records.log")
        valid = set(pushed.ok) | set(pushed.failing)
        started = time.monotonic()
        extra = ("--concurrency", str(args.concurrency), *(() if args.isolate else ("--no-isolate",)))
        workers = Workers(args.workers, config, workdir, extra)
        outages: list[dict[str, Any]] = []
        thresholds = [(k + 1) / (backend.outages + 1) for k in range(backend.outages)]
        next_kill = started + args.kill_every * rng.uniform(0.75, 1.25)
        rec, offset = read_records(records_path)
        deadline = started + args.deadline
        # Chaos lasts until every valid job ran at least once.
        while time.monotonic() < deadline:
            rec, offset = read_records(records_path, offset, rec)
            progress = len(valid.intersection(rec.execs)) / max(1, len(valid))
            if progress >= 1:
                break
            now = time.monotonic()
            if args.kill_every > 0 and now >= next_kill:
                workers.kill_random(rng)
                next_kill = now + args.kill_every * rng.uniform(0.75, 1.25)
            if thresholds and progress >= thresholds[0]:
                thresholds.pop(0)
                t0 = time.monotonic()
                what = backend.outage()
                outages.append({"at_progress": round(progress, 3), "what": what,
                                "seconds": round(time.monotonic() - t0, 3)})
            workers.check()
            time.sleep(0.05)
        chaos_s = time.monotonic() - started
        final = None
        while time.monotonic() < deadline:
            workers.check()
            final = final_state(queue.driver)
            if final is not None and final["counts"]["done"] + len(final["failed"]) >= len(pushed.all_ids):
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        alive = workers.alive()
        workers.check(replace=False)
        codes = workers.stop()
        leftover = workers.leftovers()
        if final is None:
            final = {"counts": queue.driver.counts().as_dict(),
                     "failed": {e.job_id: (e.error_class, e.message, e.attempts, e.unsettled)
                                for e in queue.driver.failed_list(0, 1_000_000)}}
        rec, offset = read_records(records_path, offset, rec)
        report = check(pushed, rec, final, workers.kills, refused_ack_ids(str(workdir / "system.log")),
                       args.ttr)
        if alive != args.workers:
            report["problems"].append(f"only {alive} of {args.workers} workers alive at the end")
        if workers.unexpected:
            report["problems"].append(f"{len(workers.unexpected)} worker(s) exited on their own: "
                                      f"{workers.unexpected[:5]}")
        if any(c != 0 for c in codes):
            report["problems"].append(f"workers' exit codes on SIGTERM: {codes} (0 expected)")
        if len(outages) < backend.outages:
            report["problems"].append(f"only {len(outages)} of {backend.outages} outages were injected")
        report.update({
            "backend": backend.name,
            "backend_version": backend.version(),
            "workers": args.workers,
            "mode": f"listen, {'isolate' if args.isolate else 'no-isolate'}, concurrency {args.concurrency}",
            "workers_alive_at_end": alive,
            "exit_codes_on_sigterm": codes,
            "leftover_processes": leftover,
            "kills": len(workers.kills),
            "killed": [[pid, round(t, 6)] for pid, t in workers.kills],
            "outages": outages,
            "push_seconds": round(push_s, 2),
            "chaos_seconds": round(chaos_s, 2),
            "wall_seconds": round(wall, 2),
            "jobs_per_second": round(report["pushed"] / wall, 1) if wall else None,
            "log_errors": log_errors(workdir),
            "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                        "platform": platform.platform()},
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "ok": not report["problems"],
        })
        return report
    finally:
        if workers is not None:
            for p in workers.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            workers.leftovers()
        if app is not None:
            app.close()
        backend.close()


def log_errors(workdir: Path, limit: int = 5) -> list[str]:
    """ERROR lines of the system log (no log behaviour is attached, so job failures are not there)."""
    path = workdir / "system.log"
    if not path.exists():
        return []
    lines = [line.rstrip() for line in path.read_text(errors="replace").splitlines() if " ERROR " in line]
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


def summary(r: dict[str, Any]) -> str:
    twice = f"{r['run_twice']} ({r['run_twice_explained']} explained by a kill before ack)"
    lines = [
        f"backend {r['backend']} {r['backend_version']}: {r['pushed']} pushed "
        f"({r['pushed_valid']} valid, {r['malformed']} malformed), {r['workers']} workers ({r.get('mode', 'listen, isolate')})",
        f"  done {r['done']}  lost {r['lost']}  run twice {twice}",
        f"  failed {r['failed']} (on purpose {r['failed_on_purpose']}, malformed {r['malformed_registered']})"
        f"  final afterError calls {r['final_after_error_calls']} ({r['final_after_error_repeats']} repeated by a"
        f" reclaimer after a kill before settle, {r['final_after_error_repeats_explained']} explained)"
        f"  (all afterError calls {r['after_error_calls']})",
        f"  malformed registered {r['malformed_registered']}/{r['malformed']} {r['malformed_by_kind']}",
        f"  kills {r['kills']}  outages {len(r['outages'])}  workers alive {r['workers_alive_at_end']}/"
        f"{r['workers']}  exit codes {r['exit_codes_on_sigterm']}  leftover processes {r['leftover_processes']}",
        f"  wall {r['wall_seconds']} s (chaos {r['chaos_seconds']} s, push {r['push_seconds']} s)",
    ]
    lines += [f"  log: {e}" for e in r["log_errors"]]
    lines += [f"  PROBLEM: {p}" for p in r["problems"]] or ["  all invariants hold"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("redis", "sqlite", "postgres"), required=True)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs (0: none)")
    p.add_argument("--redis-restarts", type=int, default=2)
    p.add_argument("--pg-terminations", type=int, default=2, help="pg_terminate_backend rounds (postgres)")
    p.add_argument("--fail-rate", type=float, default=0.01)
    p.add_argument("--malformed", type=int, default=100)
    p.add_argument("--big", type=int, default=2, help="how many of the malformed payloads are 10 MB bodies")
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--ttr", type=int, default=5)
    p.add_argument("--sleep-ms", type=float, default=0.0, help="time each job sleeps")
    p.add_argument("--settle-within", type=float, default=60.0,
                   help="seconds before an unsettled failure of a killed worker is run again")
    p.add_argument("--concurrency", type=int, default=1, help="jobs in flight per worker (--concurrency)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false", help="workers run jobs in process")
    p.add_argument("--deadline", type=float, default=900.0, help="give up after this many seconds")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (records, logs)")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"pubq-soak-{args.backend}-"))
    try:
        report = soak(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        report["workdir"] = str(workdir)
    print(summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
