"""pubq against RQ, Dramatiq, Huey, arq and raw redis-py: same harness, same machine, same run.

    python bench/compare.py                      # full: 3 runs, ~10-15 min
    python bench/compare.py --quick              # 1 run, fewer jobs, ~2 min
    python bench/compare.py --systems pubq,rq --runs 3 --n 3000
    python bench/compare.py --scale              # the whole suite: also bench/scale/run.py (~35 min)

Creates (once) the bench's own venv ``bench/.venv-peers`` with pinned peers and pubq from this repo,
and re-executes itself inside it, so every system uses the same redis-py. One private redis-server
is pinned to CPU 0; this process and every worker to CPU 1. Writes bench/results/latest.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv-peers"
PEERS = ["rq==3.0.0", "dramatiq[redis]==2.2.1", "huey==3.5.4", "arq==0.28.0", "saq==0.26.4", "redis==5.3.1", "hiredis",
         "psycopg2-binary"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def ensure_venv() -> None:
    """Create bench/.venv-peers once and re-exec this script in it (peers never enter pubq's deps)."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    stamp = VENV / ".peers-installed"
    if not stamp.exists() or stamp.read_text() != "\n".join(PEERS):
        print(f"creating {VENV} with {' '.join(PEERS)} and pubq (editable)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *PEERS], check=True, timeout=900)
        subprocess.run([*pip, "-e", str(ROOT)], check=True, timeout=900)
        stamp.write_text("\n".join(PEERS))
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="runs per measure (median reported); default 3")
    ap.add_argument("--n", type=int, default=None, help="jobs per push / drain run; default 3000")
    ap.add_argument("--n-fork", type=int, default=None, help="jobs per fork-per-job drain; default 300")
    ap.add_argument("--n-count", type=int, default=None, help="jobs of the round-trip counting run; default 300")
    ap.add_argument("--systems", default="all", help="comma list: pubq,pubq-redis,pubq-sqlite,pubq-pg,rq,"
                    "dramatiq,huey,arq,raw (default all)")
    ap.add_argument("--quick", action="store_true", help="1 run and fewer jobs (~2 min), for a smoke check")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for latest.md/json")
    ap.add_argument("--scale", action="store_true",
                    help="then run bench/scale/run.py too (worker scaling, RSS over 100k jobs, info at 1M waiting)")
    args = ap.parse_args()
    q = args.quick
    args.runs = args.runs or (1 if q else 3)
    args.n = args.n or (1000 if q else 3000)
    args.n_fork = args.n_fork or (100 if q else 300)
    args.n_count = args.n_count or (100 if q else 300)
    args.rates = [(25.0, 2.0), (200.0, 1.0)] if q else [(25.0, 4.0), (200.0, 2.0)]
    return args


def select_rows(spec: str) -> list[str]:
    from bench.peers import GROUPS, ROWS

    if spec == "all":
        return list(ROWS)
    wanted: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        for row in GROUPS.get(name, [name]):
            if row not in ROWS:
                sys.exit(f"unknown system {row!r}; known: {', '.join([*GROUPS, *ROWS])}")
            wanted.append(row)
    return [r for r in ROWS if r in wanted]


def measure_row(row: str, r: Any, cfg: Any, args: argparse.Namespace) -> tuple[dict[str, float], list[str]]:
    """One run of every measure of one row; a failing measure is recorded, the others still run."""
    from bench.peers import adapter_class
    from bench.peers.harness import drain, latency, reset, timed_push

    values: dict[str, float] = {}
    errors: list[str] = []
    cls = adapter_class(row)
    adapter = cls(cfg)
    drain_timeout = 60 + args.n / 20

    def attempt(name: str, fn: Any) -> None:
        try:
            values.update({k: v for k, v in fn().items() if v is not None})
        except Exception as exc:  # noqa: BLE001 - reported in the table, never silently dropped
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    try:
        def single() -> dict[str, Any]:
            reset(r, adapter)
            return {"push_single": timed_push(adapter, args.n, bulk=False)}

        def drain_prefilled() -> dict[str, Any]:
            d = drain(r, cfg, "drain", args.n, drain_timeout)
            return {("drain" if k == "jobs_per_s" else k): v for k, v in d.items()}

        attempt("push single", single)
        if "push_single" in values:
            attempt("drain", drain_prefilled)
        if cls.bulk:
            def bulk() -> dict[str, Any]:
                reset(r, adapter)
                rate = timed_push(adapter, args.n, bulk=True)
                reset(r, adapter)
                return {"push_bulk": rate}

            attempt("push_bulk", bulk)
        if cls.fork:
            def fork() -> dict[str, Any]:
                reset(r, adapter)
                timed_push(adapter, args.n_fork, bulk=cls.bulk)
                d = drain(r, cfg, "fork", args.n_fork, 60 + args.n_fork / 5)
                return {"fork": d["jobs_per_s"], "fork_cpu_us_per_job": d["cpu_us_per_job"],
                        "fork_peak_rss_mib": d["peak_rss_mib"]}

            attempt("fork", fork)

        def listen() -> dict[str, Any]:
            reset(r, adapter)
            return latency(r, adapter, cfg, args.rates)

        attempt("latency", listen)
    finally:
        adapter.close()
    return values, errors


def count_round_trips(row: str, r: Any, cfg: Any, redis_port: int, n: int) -> float:
    from bench.peers import adapter_class
    from bench.peers.harness import drain, make_proxy, reset, timed_push

    adapter = adapter_class(row)(cfg)
    proxy, pcfg = make_proxy(cfg, redis_port)
    try:
        reset(r, adapter)
        timed_push(adapter, n, bulk=False)
        return drain(r, pcfg, "drain", n, 60 + n / 5, proxy=proxy)["round_trips_per_job"]
    finally:
        proxy.close()
        adapter.close()


def main() -> None:
    args = parse_args()
    ensure_venv()
    sys.path.insert(0, str(ROOT))
    import redis

    from bench.common import CLIENT_CPU, pin_self, pinned_redis
    from bench.peers import Cfg
    from bench.peers.harness import cleanup_logs
    from bench.peers.report import machine_info, write_reports
    from tests.helpers import fresh_pg_database

    # Started in the background, SIGINT may be ignored: make both signals unwind (drop the PG database,
    # stop the private redis-server and the workers) instead of orphaning them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = select_rows(args.systems)
    all_cpus = os.sched_getaffinity(0)
    command = " ".join(["python bench/compare.py", *(shlex.quote(a) for a in sys.argv[1:])])
    pin_self(CLIENT_CPU)
    started = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, dict[str, Any]] = {row: {"runs": {}, "errors": []} for row in rows}
    drop_pg = None
    with pinned_redis() as server:
        r = redis.Redis.from_url(server.url)
        cfgs: dict[str, Cfg] = {}
        for row in rows:
            db_url = ""
            if row == "pubq-sqlite":
                db_url = f"sqlite:///{server.dir}/bench.db"
            elif row == "pubq-pg":
                try:
                    db_url, drop_pg = fresh_pg_database(PG_ADMIN, "pubq_bench")
                except Exception as exc:  # noqa: BLE001
                    results[row]["errors"].append(f"postgres: {exc}")
                    continue
            cfgs[row] = Cfg(row=row, redis_url=server.url, body_url=server.url, db_url=db_url)
        try:
            for run in range(args.runs):
                for row, cfg in cfgs.items():
                    t = time.monotonic()
                    try:
                        values, errors = measure_row(row, r, cfg, args)
                    except Exception as exc:  # noqa: BLE001 - e.g. the peer failed to import
                        values, errors = {}, [f"setup: {type(exc).__name__}: {exc}"]
                        traceback.print_exc()
                    for k, v in values.items():
                        results[row]["runs"].setdefault(k, []).append(v)
                    results[row]["errors"].extend(f"run {run + 1}: {e}" for e in errors)
                    print(f"run {run + 1}/{args.runs} {row:12s} {time.monotonic() - t:5.1f}s "
                          + " ".join(f"{k}={v:.4g}" for k, v in values.items())
                          + (f" ERRORS {errors}" if errors else ""), flush=True)
            for row, cfg in cfgs.items():
                if row == "pubq-sqlite":
                    continue  # in-process database: no round trips to count
                try:
                    rt = count_round_trips(row, r, cfg, server.port, args.n_count)
                    results[row]["runs"]["round_trips_per_job"] = [rt]
                    print(f"round trips {row:12s} {rt:.2f}/job", flush=True)
                except Exception as exc:  # noqa: BLE001
                    results[row]["errors"].append(f"round trips: {type(exc).__name__}: {exc}")
            redis_version = r.info("server")["redis_version"]
        finally:
            if drop_pg is not None:
                drop_pg()
            cleanup_logs()
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(time.monotonic() - started),
        "machine": machine_info(redis_version),
        # other work on the box shows here: the pinning keeps our processes apart, not everyone else's
        "load_average_start_end": [load_start, [round(x, 2) for x in os.getloadavg()]],
        "settings": {"runs": args.runs, "n": args.n, "n_fork": args.n_fork, "n_count": args.n_count,
                     "latency_rates_and_seconds": args.rates},
    }
    md, js = write_reports(Path(args.out), rows, results, meta)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    if args.scale:
        run_scale(args, Path(args.out), all_cpus)


def run_scale(args: argparse.Namespace, out: Path, cpus: set[int]) -> None:
    """bench/scale/run.py with this run's settings; it pins its own processes, so it starts unpinned."""
    cmd = [sys.executable, str(ROOT / "bench" / "scale" / "run.py"), "--runs", str(args.runs),
           "--json", str(out / "scale-latest.json"), "--markdown", str(out / "scale-latest.md")]
    if args.quick:
        cmd.append("--quick")
    print("running " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, timeout=3600, preexec_fn=lambda: os.sched_setaffinity(0, cpus))


if __name__ == "__main__":
    main()
