"""Markdown for ``bench/scale/run.py``'s report: the tables the lead pastes into bench/README.md."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _header(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in m.get("loadavg_start", ()))
    load_end = ", ".join(f"{x:.2f}" for x in m.get("loadavg_end", ()))
    return [
        f"Measured {report['date']} with `{report['command']}` ({report['runs']} run(s), medians; "
        f"{report.get('elapsed_s', '?')} s). pubq {m['pubq_commit']}.",
        "",
        f"Machine: {m['cpus']} vCPU ({m['cpu_model']}), {m['mem_gib']} GiB, Linux {m['kernel']}, Python "
        f"{m['python']}, {m['redis_server'].split(' sha')[0]} (private, memory-only, pinned to CPU 0), "
        f"PostgreSQL {m['postgres']}, MariaDB {m['mariadb']} (shared servers, not pinned). Workers and "
        f"other clients pinned to CPU 1. Load average at start {load}, at end {load_end}: other helpers' "
        "benchmarks and soaks shared the machine, so compare within a run (speed-up, 1k vs 1M).",
        "",
    ]


def _scaling(data: dict[str, Any]) -> list[str]:
    lines = [
        "### Worker scaling (real CLI workers `pubq work run --no-isolate`, one pre-filled queue)",
        "",
        "| backend | jobs | 1 worker | 2 workers | 4 workers | CPU 1 busy % (1/2/4) | CPU 0 busy % (1/2/4) "
        "| workers' CPUs (1/2/4) | worker CPU ms/job (1/2/4) | server CPUs (1/2/4) | verified |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in data.items():
        med = entry["median"]

        def cell(k: int, med: dict = med) -> str:
            rate = _fmt(med[k]["jobs_per_s"], "/s")
            return rate if k == 1 else f"{rate} (×{_fmt(med[k]['speedup'])})"

        def triple(metric: str, med: dict = med) -> str:
            return " / ".join(_fmt(med[k]["cpu"].get(metric)) for k in (1, 2, 4))

        left = sum(sum(med[k]["left_waiting_by_workers"]) for k in (1, 2, 4))
        verified = "yes" if all(med[k]["all_verified"] for k in (1, 2, 4)) else "**NO**"
        if left:
            verified += f" ({left} jobs left waiting by exiting workers, drained after)"
        lines.append(f"| {name} | {entry['n']:,} | {cell(1)} | {cell(2)} | {cell(4)} | {triple('cpu1_busy_pct')} "
                     f"| {triple('cpu0_busy_pct')} | {triple('workers_cpus')} | {triple('worker_cpu_ms_per_job')} "
                     f"| {triple('server_cpus')} | {verified} |")
    lines += [
        "",
        "Rows named after a backend pin every worker to CPU 1 (the method); `unpinned` rows let the workers "
        "run on both CPUs (the private Redis stays on CPU 0). "
        "Rate = N / (first job start → last job end), start-up excluded (a workerStart gate releases the "
        "k workers together). Speed-up = k-worker rate / 1-worker rate of the same run, median over runs. "
        "CPU columns are sampled from /proc over the drain window: busy % of each CPU (everything on it, "
        "other helpers' load included), and CPU-seconds per second used by the workers and by the server "
        "process(es) (for PostgreSQL/MariaDB: every server process, other clients included).",
        "",
    ]
    return lines


def _rss(data: dict[str, Any]) -> list[str]:
    lines = [
        "### Worker RSS (one CLI worker, no-op jobs; peak from GNU `time -f %M`, samples from /proc)",
        "",
        "| backend | jobs | peak RSS | RSS at 5 % / 50 % / end | growth 5 % → end | jobs/s (start-up incl.) "
        "| verified |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, per_size in data.items():
        for size, entry in per_size.items():
            m = entry["median"]
            lines.append(
                f"| {name} | {int(size):,} | {_fmt(m['peak_rss_mib'], ' MiB')} | {_fmt(m['rss_mib_at_5pct'])} / "
                f"{_fmt(m['rss_mib_at_50pct'])} / {_fmt(m['rss_mib_at_end'])} MiB | {_fmt(m['growth_mib'], ' MiB')} "
                f"| {_fmt(m['jobs_per_s_with_startup'], '/s')} | {'yes' if m['all_verified'] else '**NO**'} |")
    return [*lines, ""]


def _info(data: dict[str, Any]) -> list[str]:
    lines = [
        "### `pubq work info` at 1k vs 1M waiting (plus 10 % delayed, 1 % (≤ 200) reserved, as many failed)",
        "",
        "| backend | waiting | `info` (process) | `info --json` (process) | `driver.counts()` in process "
        "| same, PostgreSQL after ANALYZE | fill time | counts right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_size in data.items():
        for size, r in per_size.items():
            lines.append(
                f"| {name} | {int(size):,} | {_fmt(r['info_ms'], ' ms')} | {_fmt(r['info_json_ms'], ' ms')} "
                f"| {r['counts_ms']:.3f} ms | {_fmt(r.get('counts_ms_after_analyze'), ' ms')} | {r['fill_s']} s | {'yes' if r['verified'] else '**NO**'} |")
    lines += ["", "Process times include Python start-up and imports (the part that does not depend on the "
              "queue); `counts()` is the median of 30 in-process calls.", ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["## Scale: `bench/scale/run.py`", "", *_header(report)]
    if "scaling" in report:
        lines += _scaling(report["scaling"])
    if "rss" in report:
        lines += _rss(report["rss"])
    if "info" in report:
        lines += _info(report["info"])
    return "\n".join(lines) + "\n"
