"""The Markdown table (medians, pubq/peer ratios) and the JSON with every run, the machine and the command."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.peers import adapter_class

#: (key, header, higher is better)
COLUMNS: list[tuple[str, str, bool]] = [
    ("push_single", "push single /s", True),
    ("push_bulk", "push bulk /s", True),
    ("drain", "1 worker drain /s", True),
    ("fork", "fork per job /s", True),
    ("p50_ms@25", "p50 ms @25/s", False),
    ("p99_ms@25", "p99 ms @25/s", False),
    ("p50_ms@200", "p50 ms @200/s", False),
    ("p99_ms@200", "p99 ms @200/s", False),
    ("cpu_us_per_job", "worker CPU µs/job", False),
    ("cmds_per_job", "Redis cmds/job", False),
    ("round_trips_per_job", "round trips/job", False),
    ("peak_rss_mib", "peak RSS MiB", False),
]
PACKAGES = ["pubq", "rq", "dramatiq", "huey", "arq", "redis", "hiredis", "psycopg2-binary", "peewee"]
#: Rows compared with each peer in the ratio table.
PUBQ = "pubq-redis"


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def medians(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {row: {k: statistics.median(v) for k, v in res["runs"].items() if v} for row, res in results.items()}


def label(row: str) -> str:
    try:
        return adapter_class(row).label or row
    except Exception:  # noqa: BLE001 - the peer package may be missing: still a row, marked failed
        return row


def markdown(rows: list[str], results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    med = medians(results)
    m = meta["machine"]
    s = meta["settings"]
    out = [
        "# pubq vs peers (bench/compare.py)",
        "",
        f"{meta['date']} · `{meta['command']}` · {meta['seconds']} s",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, Python {m['python']}, redis-server {m['redis_server']} "
        f"(private, pinned to CPU 0; clients on CPU 1), {m.get('postgres', 'PostgreSQL ?')}. "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + (f". Load average (1/5/15 min) at start {meta['load_average_start_end'][0]}, at end "
           f"{meta['load_average_start_end'][1]}" if "load_average_start_end" in meta else ""),
        "",
        f"Medians of {s['runs']} runs; n = {s['n']} jobs per push/drain, {s['n_fork']} per fork-per-job drain; "
        f"round trips from one counting run of {s['n_count']} jobs through a TCP proxy. Every drain and "
        "latency run verified the shared counter (exactly n: none lost, none run twice). Cmds and round trips "
        "per job include the job body's own INCR; Redis counts commands run inside Lua scripts too. One job "
        "at a time in every worker (arq: its default max_jobs=10 asyncio tasks, the body blocks the loop). "
        "Latency: an idle worker in listen mode (RQ: SimpleWorker), push time → job start.",
        "",
        "| system | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for row in rows:
        values = med.get(row, {})
        failed = " **(failed: see errors)**" if results[row]["errors"] else ""
        out.append(f"| {label(row)}{failed} | " + " | ".join(_fmt(values.get(k)) for k, _, _ in COLUMNS) + " |")
    base = med.get(PUBQ, {})
    peers = [r for r in rows if not r.startswith("pubq")]
    if base and peers:
        out += ["", f"Ratios: {label(PUBQ)} ÷ peer (throughput: > 1 means pubq is faster; latency, CPU, "
                "commands, round trips, RSS: < 1 means pubq uses less).", "",
                "| pubq ÷ | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
                "|---" * (len(COLUMNS) + 1) + "|"]
        for row in peers:
            cells = []
            for key, _, _ in COLUMNS:
                a, b = base.get(key), med.get(row, {}).get(key)
                cells.append("—" if a is None or not b else f"{a / b:.2f}" if a / b >= 0.1 else f"{a / b:.2g}")
            out.append(f"| {label(row)} | " + " | ".join(cells) + " |")
    errors = [(row, e) for row in rows for e in results[row]["errors"]]
    if errors:
        out += ["", "Errors:", ""] + [f"- {label(row)}: {e}" for row, e in errors]
    return "\n".join(out) + "\n"


def machine_info(redis_version: str) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    info: dict[str, Any] = {"cpu_model": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
                            "kernel": platform.release(), "redis_server": redis_version, "packages": packages}
    try:
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version", "test"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            info["postgres"] = "PostgreSQL " + out.stdout.strip().split()[0]
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return info


def write_reports(out_dir: Path, rows: list[str], results: dict[str, dict[str, Any]],
                  meta: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "latest.md"
    js = out_dir / "latest.json"
    md.write_text(markdown(rows, results, meta))
    doc = {**meta, "columns": {k: {"header": h, "higher_is_better": hb} for k, h, hb in COLUMNS},
           "rows": {row: {"label": label(row), "median": medians(results).get(row, {}),
                          "runs": results[row]["runs"], "errors": results[row]["errors"]} for row in rows}}
    js.write_text(json.dumps(doc, indent=2) + "\n")
    return md, js
