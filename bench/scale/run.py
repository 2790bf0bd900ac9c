"""Scale measures: worker scaling (1/2/4 processes), worker RSS over 100k jobs, ``info`` at 1M.

    python bench/scale/run.py [--runs 3] [--quick] [--json out.json] [--backends redis,sqlite,postgres,mariadb]

Method (``../shared/docs/benchmarks.md``): a private redis-server pinned to CPU 0, the workers and
every other client pinned to CPU 1; medians of ``--runs`` runs; every run verified by a counter.

* Scaling: k real CLI workers (``pubq work run --no-isolate``) drain one pre-filled queue of
  ``scale.Count`` jobs. Each job INCRs a counter on the private Redis and SADDs its id, so a run must
  end with runs == distinct ids == N, no duplicates, nothing waiting or reserved. A workerStart gate
  starts the k workers together; the rate is N / (first job start → last job end). CPU use of the
  workers, of the server and of each CPU is sampled from /proc over that window: it shows the ceiling.
* RSS: GNU ``/usr/bin/time -f %M`` on one CLI worker draining 10k vs 100k no-op jobs, plus VmRSS from
  /proc at 5 %, 50 % and the end of the drain (verified by the driver's done counter).
* info: the real ``pubq work info`` and ``info --json`` process wall time and the in-process
  ``driver.counts()`` at 1k and 1M waiting (plus 10 % delayed, some reserved and failed).

Other programs may load the machine while this runs: compare within one run (speed-up, 1k vs 1M).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.common import CLIENT_CPU, pin_self, pinned_redis  # noqa: E402
from bench.scale.env import (  # noqa: E402
    Backend,
    CpuSampler,
    child_pid,
    machine_info,
    open_backend,
    open_queue,
    pubq_cmd,
    rss_mib_of,
    wait_all,
    write_config,
)
from bench.scale.jobs import CountJob, NoopJob  # noqa: E402
from bench.scale.report import render_markdown  # noqa: E402
from pubq.drivers.base import FailureInfo  # noqa: E402
from tests.helpers import subprocess_env  # noqa: E402

WORKER_COUNTS = (1, 2, 4)
SCALING_N = {"redis": 6_000, "sqlite": 6_000, "postgres": 3_000, "mariadb": 1_000}
RSS_SIZES = (10_000, 100_000)
INFO_SIZES = (1_000, 1_000_000)
BATCH = 10_000
UNPINNED_DEFAULT = "redis,postgres"


def fill(queue: Any, job: Any, n: int, *, delay: float = 0) -> None:
    """Push ``n`` copies of ``job`` with push_many in big batches (the fast path: no push handlers)."""
    for start in range(0, n, BATCH):
        queue.push_many([job] * min(BATCH, n - start), delay=delay)


#: Every CPU this process may use, read before ``pin_self`` narrows it (children inherit affinity).
ALL_CPUS = sorted(os.sched_getaffinity(0))


def worker_cmd(config: Path, *, pinned: bool = True) -> list[str]:
    """The real CLI worker; pinned to the client CPU, or explicitly allowed on every CPU."""
    cmd = pubq_cmd(config, "work", "run", "--no-isolate", cpu=CLIENT_CPU if pinned else None)
    if not pinned and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(map(str, ALL_CPUS)), *cmd]
    return cmd


# -- 1. scaling ------------------------------------------------------------------------------------


def scaling_run(backend: Backend, workers: int, n: int, tmp: Path, counter: redis.Redis,
                pinned: bool = True) -> dict[str, Any]:
    """k CLI workers drain N counting jobs; returns the rate, the verification and the CPU picture."""
    channel = f"scale:{uuid.uuid4().hex[:10]}"
    config = write_config(tmp, backend, channel, gate=True)
    queue = open_queue(config)
    fill(queue, CountJob(), n)
    key = f"scale:{uuid.uuid4().hex[:10]}"
    env = subprocess_env(PUBQ_SCALE_COUNTER=_url(counter), PUBQ_SCALE_KEY=key, PUBQ_SCALE_TOTAL=str(n))
    sampler = CpuSampler(backend.server_pids).start()
    log = open(tmp / f"workers-{channel.replace(':', '-')}.log", "wb")  # noqa: SIM115 - closed below
    t_launch = time.time()
    procs = [subprocess.Popen(worker_cmd(config, pinned=pinned), stdout=log, stderr=log, env=env, cwd=ROOT)
             for _ in range(workers)]
    sampler.worker_pids = [p.pid for p in procs]
    try:
        deadline = time.monotonic() + 60
        while int(counter.get(f"{key}:ready") or 0) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} workers did not all start; see {log.name}")
            time.sleep(0.005)
        counter.set(f"{key}:go", 1)
        codes = wait_all(procs, timeout=120 + n / 50)
    finally:
        sampler.stop()
    t_exit = time.time()
    counts = queue.driver.counts()
    left_waiting = counts.waiting
    if left_waiting:  # a worker exits when it sees nothing due; drain what it left, then verify all
        subprocess.run(worker_cmd(config), stdout=log, stderr=log, env=env, cwd=ROOT, timeout=300)
        counts = queue.driver.counts()
    log.close()
    runs, distinct = int(counter.get(f"{key}:runs") or 0), counter.scard(f"{key}:ids")
    dups = int(counter.get(f"{key}:dups") or 0)
    first, last = float(counter.get(f"{key}:first") or 0), float(counter.get(f"{key}:last") or 0)
    ok = (runs == distinct == n and dups == 0 and counts.waiting == counts.reserved == counts.delayed == 0
          and counts.failed == 0 and counts.done == n and codes == [0] * workers)
    counter.delete(*(f"{key}:{s}" for s in ("ready", "go", "runs", "ids", "dups", "first", "last")))
    queue.driver.clear()
    queue.close()
    seconds = last - first
    cpu = sampler.window(first, last)
    if cpu and seconds > 0:
        cpu["worker_cpu_ms_per_job"] = round(cpu["workers_cpus"] * seconds / n * 1000, 3)
        cpu["server_cpu_ms_per_job"] = round(cpu["server_cpus"] * seconds / n * 1000, 3)
    return {
        "workers": workers, "n": n, "pinned": pinned,
        "jobs_per_s": round(n / seconds) if ok and seconds > 0 else None,
        "drain_s": round(seconds, 3), "wall_s_with_startup": round(t_exit - t_launch, 2),
        "verified": ok, "runs": runs, "distinct": distinct, "dups": dups, "exit_codes": codes,
        "left_waiting_by_workers": left_waiting, "final_counts": counts.as_dict(),
        "cpu": cpu,
    }


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def measure_scaling(backends: dict[str, Backend], runs: int, scale: float, tmp: Path,
                    counter: redis.Redis, unpinned: list[str]) -> dict[str, Any]:
    """Runs interleave backends and worker counts, so a burst of outside load hits all of them alike.

    Series ``NAME`` pin the workers to CPU 1 (the method); ``NAME unpinned`` let them use every CPU,
    as a user's workers would, which shows what the pinning itself costs on 2 CPUs.
    """
    series = [(name, name, True) for name in backends]
    series += [(f"{name} unpinned", name, False) for name in unpinned if name in backends]
    out: dict[str, Any] = {label: {"n": max(200, int(SCALING_N[name] * scale)), "pinned": pinned, "runs": []}
                           for label, name, pinned in series}
    for run in range(runs):
        for label, name, pinned in series:
            backend = backends[name]
            n = out[label]["n"]
            per_run = {}
            for k in WORKER_COUNTS:
                r = scaling_run(backend, k, n, tmp, counter, pinned)
                per_run[k] = r
                print(f"  scaling run {run + 1} {label:<17} {k} worker(s): {r['jobs_per_s']} jobs/s "
                      f"verified={r['verified']} left={r['left_waiting_by_workers']} cpu={r['cpu']}", flush=True)
            base = per_run[1]["jobs_per_s"]
            for r in per_run.values():
                r["speedup"] = round(r["jobs_per_s"] / base, 2) if base and r["jobs_per_s"] else None
            out[label]["runs"].append(per_run)
    for entry in out.values():
        summary = {}
        for k in WORKER_COUNTS:
            rs = [run[k] for run in entry["runs"]]
            summary[k] = {
                "jobs_per_s": _median([r["jobs_per_s"] for r in rs]),
                "speedup": _median([r["speedup"] for r in rs]),
                "all_verified": all(r["verified"] for r in rs),
                "left_waiting_by_workers": [r["left_waiting_by_workers"] for r in rs],
                "cpu": {m: _median([r["cpu"].get(m) for r in rs]) for m in rs[0]["cpu"]},
            }
        entry["median"] = summary
    return out


# -- 2. RSS ----------------------------------------------------------------------------------------


def rss_run(backend: Backend, n: int, tmp: Path) -> dict[str, Any]:
    """One CLI worker under GNU time drains n no-op jobs; VmRSS is sampled against the done counter."""
    channel = f"rss:{uuid.uuid4().hex[:10]}"
    config = write_config(tmp, backend, channel)
    queue = open_queue(config)
    fill(queue, NoopJob(), n)
    done0 = queue.driver.counts().done
    out_file = tmp / f"time-{channel.replace(':', '-')}.txt"
    cmd = ["/usr/bin/time", "-f", "%M %e %U %S", "-o", str(out_file), *worker_cmd(config)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(), cwd=ROOT)
    pid = child_pid(proc.pid)
    samples: list[tuple[float, float, int]] = []  # (t, rss MiB, jobs done)
    deadline = time.monotonic() + 120 + n / 100
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"RSS worker did not finish {n} jobs in time")
        rss = rss_mib_of(pid) if pid else None
        if rss is not None:
            samples.append((time.time() - t0, rss, queue.driver.counts().done - done0))
        time.sleep(0.25)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    peak_kib, wall, user, system = out_file.read_text().split()[-4:]
    counts = queue.driver.counts()
    ok = (proc.returncode == 0 and counts.done - done0 == n and counts.waiting == counts.reserved == 0
          and counts.failed == 0)
    queue.driver.clear()
    queue.close()

    def at(frac: float) -> float | None:
        hit = [s[1] for s in samples if s[2] >= frac * n]
        return round(hit[0], 1) if hit else None

    end = round(samples[-1][1], 1) if samples else None
    start = at(0.05)
    return {
        "n": n, "peak_rss_mib": round(int(peak_kib) / 1024, 1), "wall_s": float(wall),
        "cpu_s": round(float(user) + float(system), 2), "jobs_per_s_with_startup": round(n / float(wall)),
        "rss_mib_at_5pct": start, "rss_mib_at_50pct": at(0.5), "rss_mib_at_end": end,
        "growth_mib": round(end - start, 1) if end is not None and start is not None else None,
        "samples": len(samples), "verified": ok, "exit_code": proc.returncode,
        "stderr_tail": stderr[-300:] if not ok else "",
    }


def measure_rss(backends: dict[str, Backend], runs: int, sizes: tuple[int, ...], tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = [b for b in ("redis", "sqlite") if b in backends]
    for run in range(runs):
        for name in names:
            for n in sizes:
                r = rss_run(backends[name], n, tmp)
                out.setdefault(name, {}).setdefault(str(n), {"runs": []})["runs"].append(r)
                print(f"  rss run {run + 1} {name:<8} {n:>7} jobs: peak {r['peak_rss_mib']} MiB, "
                      f"5%/50%/end {r['rss_mib_at_5pct']}/{r['rss_mib_at_50pct']}/{r['rss_mib_at_end']} "
                      f"verified={r['verified']}", flush=True)
    for per_size in out.values():
        for entry in per_size.values():
            rs = entry["runs"]
            entry["median"] = {m: _median([r[m] for r in rs]) for m in (
                "peak_rss_mib", "rss_mib_at_5pct", "rss_mib_at_50pct", "rss_mib_at_end", "growth_mib",
                "jobs_per_s_with_startup")}
            entry["median"]["all_verified"] = all(r["verified"] for r in rs)
    return out


# -- 3. info ---------------------------------------------------------------------------------------


def _stock(queue: Any, size: int) -> dict[str, int]:
    """The shape of a busy queue: size waiting, 10 % delayed, 1 % (≤ 200) reserved and as many failed.

    Reserved and failed stay small: each is one transaction, and 1000s of them would dominate the fill.
    """
    side = max(1, min(200, size // 100))
    return {"waiting": size, "delayed": size // 10, "reserved": side, "failed": side}


def grow_to(queue: Any, have: dict[str, int], want: dict[str, int]) -> None:
    """Add jobs until the queue holds ``want``: reserve/fail come from extra pushes taken off the head."""
    extra_r, extra_f = want["reserved"] - have["reserved"], want["failed"] - have["failed"]
    fill(queue, NoopJob(), want["delayed"] - have["delayed"], delay=86_400)
    fill(queue, NoopJob(), want["waiting"] - have["waiting"] + extra_r + extra_f)
    info = FailureInfo("bench.Error", "failed on purpose by bench/scale/run.py")
    for i in range(extra_r + extra_f):
        r = queue.driver.reserve(0)
        assert r is not None
        if i < extra_f:
            assert queue.driver.fail(r, info)
            queue.driver.settle(r)


def time_cli(config: Path, args: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(pubq_cmd(config, "work", *args), capture_output=True, text=True, env=subprocess_env(),
                       cwd=ROOT, timeout=120)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"pubq work {' '.join(args)} exited {p.returncode}: {p.stderr[-500:]}")
    return seconds, p.stdout


def info_at(queue: Any, config: Path, want: dict[str, int], runs: int, analyze: bool) -> dict[str, Any]:
    """Time ``info``, ``info --json`` (process) and ``counts()`` (in process); check what they report."""
    counts = queue.driver.counts()
    inproc = []
    for _ in range(max(30, runs)):
        t = time.perf_counter()
        queue.driver.counts()
        inproc.append((time.perf_counter() - t) * 1000)
    plain, as_json, reported = [], [], {}
    for _ in range(runs):
        s, _out = time_cli(config, ["info"])
        plain.append(s * 1000)
        s, out = time_cli(config, ["info", "--json"])
        as_json.append(s * 1000)
        reported = json.loads(out)
    ok = all(reported.get(k) == v for k, v in want.items()) and counts.as_dict() == {
        k: reported.get(k) for k in counts.as_dict()}
    analyzed = None
    inner = getattr(queue.driver, "inner", queue.driver)  # the DbDriver inside pubq's ResilientDriver
    # PostgreSQL's plan for counts() depends on table statistics: time it as found (autovacuum may or
    # may not have analysed the table yet), then once more after an explicit ANALYZE (last size only,
    # so the smaller sizes' figures are not helped by statistics this script gathered).
    if analyze and getattr(inner, "kind", "") == "postgres":
        inner.db.execute_sql(f'ANALYZE "{inner.table_prefix}jobs"')
        queue.driver.counts()
        analyzed = round(statistics.median(_timed(queue.driver.counts) for _ in range(30)), 3)
    return {
        "stock": want, "reported": reported, "verified": ok,
        "info_ms": _median(plain), "info_json_ms": _median(as_json), "counts_ms": round(statistics.median(inproc), 3),
        "counts_ms_after_analyze": analyzed,
        "runs": {"info_ms": [round(v, 1) for v in plain], "info_json_ms": [round(v, 1) for v in as_json],
                 "counts_ms_p90": round(sorted(inproc)[int(len(inproc) * 0.9)], 3)},
    }


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def measure_info(names: list[str], runs: int, sizes: tuple[int, ...], tmp: Path) -> dict[str, Any]:
    """One queue per backend grown from the small size to the big one; its own Redis, dropped after."""
    out: dict[str, Any] = {}
    for name in names:
        with pinned_redis() as private:
            backend = open_backend(name, tmp, private)
            try:
                config = write_config(tmp, backend, f"info:{uuid.uuid4().hex[:10]}")
                queue = open_queue(config)
                have = {"waiting": 0, "delayed": 0, "reserved": 0, "failed": 0}
                out[name] = {}
                for size in sizes:
                    want = _stock(queue, size)
                    t = time.perf_counter()
                    grow_to(queue, have, want)
                    fill_s = time.perf_counter() - t
                    have = want
                    r = info_at(queue, config, want, runs, analyze=size == sizes[-1])
                    r["fill_s"] = round(fill_s, 1)
                    out[name][str(size)] = r
                    print(f"  info {name:<8} {size:>9} waiting: info {r['info_ms']} ms, --json {r['info_json_ms']} ms,"
                          f" counts() {r['counts_ms']} ms, verified={r['verified']} (fill {fill_s:.0f} s)",
                          flush=True)
                queue.close()
            finally:
                backend.cleanup()
    return out


# -- main ------------------------------------------------------------------------------------------


def _median(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median reported; default 3)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test (≤ 2 min)")
    ap.add_argument("--json", type=Path, help="write every run value here")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown report here")
    ap.add_argument("--backends", default="redis,sqlite,postgres,mariadb")
    ap.add_argument("--only", default="scaling,rss,info", help="which measures (comma-separated)")
    ap.add_argument("--unpinned", default=UNPINNED_DEFAULT,
                    help="backends whose scaling is also measured with workers free on every CPU")
    args = ap.parse_args()
    names = [b for b in args.backends.split(",") if b]
    only = set(args.only.split(","))
    runs = 1 if args.quick else args.runs
    scale = 0.1 if args.quick else 1.0
    rss_sizes = (2_000, 10_000) if args.quick else RSS_SIZES
    info_sizes = (1_000, 50_000) if args.quick else INFO_SIZES
    if args.quick and args.unpinned == UNPINNED_DEFAULT:
        args.unpinned = ""
    pin_self(CLIENT_CPU)
    report: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "runs": runs, "quick": args.quick,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pubq-scale-") as tmp_name, pinned_redis() as private:
        tmp = Path(tmp_name)
        counter = redis.Redis.from_url(private.url)
        backends: dict[str, Backend] = {}
        try:
            for name in names:
                backends[name] = open_backend(name, tmp, private)
            if "scaling" in only:
                print("worker scaling", flush=True)
                report["scaling"] = measure_scaling(backends, runs, scale, tmp, counter,
                                                    [b for b in args.unpinned.split(",") if b])
            if "rss" in only:
                print("worker RSS", flush=True)
                report["rss"] = measure_rss(backends, runs, rss_sizes, tmp)
        finally:
            for backend in backends.values():
                backend.cleanup()
        if "info" in only:
            print("info", flush=True)
            report["info"] = measure_info([n for n in names if n != "mariadb"], runs, info_sizes, tmp)
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["elapsed_s"] = round(time.monotonic() - started)
    text = render_markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
