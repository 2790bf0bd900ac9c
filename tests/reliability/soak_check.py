"""The soak's invariants: read the records and the queue's final state, return the figures.

Kept apart from the chaos harness (``soak.py``) so the rules are readable on their own:

* lost = 0: every pushed id ends in exactly one terminal state, done (acked; its body ran with
  success at least once) or failed (in the failed registry); nothing waits, is reserved or delayed.
* a job whose body succeeded twice is explained only by a SIGKILL of the worker that ran it, after
  that run and before its ack could land (at-least-once delivery).
* final failures: exactly one afterError with retry=false per failed-registry entry, none for any
  other job; the failed registry, its counter and failed_total agree.
* the malformed payloads are all in the failed registry as InvalidJobError with the expected reason.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

#: Substring of the InvalidJobError message each malformed kind must produce.
MALFORMED_REASONS = {
    "bad_json": "not valid JSON",
    "not_object": "JSON object",
    "unknown_job": "unknown job",
    "wrong_args": "argument",
    "too_big": "max_payload_bytes",
}


@dataclass
class Records:
    """Parsed ``records.log`` (see soak_jobs)."""

    #: job id -> [(attempt, ok, pid, ppid, t_start)]
    execs: dict[int, list[tuple[int, bool, int, int, float]]] = field(default_factory=lambda: defaultdict(list))
    #: job id -> [(attempt, worker pid, t)]
    after_exec: dict[int, list[tuple[int, int, float]]] = field(default_factory=lambda: defaultdict(list))
    #: job id -> [(attempt, retry, worker pid, error class, t)]
    after_error: dict[int, list[tuple[int, bool, int, str, float]]] = field(
        default_factory=lambda: defaultdict(list))
    lines: int = 0


def read_records(path: str, offset: int = 0, into: Records | None = None) -> tuple[Records, int]:
    """Parse complete lines from ``offset``; returns the records and the offset after the last one."""
    rec = into or Records()
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return rec, offset
    end = data.rfind(b"\n") + 1
    for raw in data[:end].decode().splitlines():
        parts = raw.split()
        rec.lines += 1
        if parts[0] == "exec":
            rec.execs[int(parts[1])].append(
                (int(parts[2]), parts[3] == "ok", int(parts[4]), int(parts[5]), float(parts[6])))  # t_start
        elif parts[0] == "after_exec":
            rec.after_exec[int(parts[1])].append((int(parts[2]), int(parts[3]), float(parts[4])))
        elif parts[0] == "after_error":
            rec.after_error[int(parts[1])].append(
                (int(parts[2]), parts[3] == "1", int(parts[4]), parts[5], float(parts[6])))
    return rec, offset + end


@dataclass
class Pushed:
    """What the harness pushed: valid ids (and which of them fail on purpose) and malformed ids by kind."""

    ok: list[int] = field(default_factory=list)
    failing: list[int] = field(default_factory=list)
    malformed: dict[int, str] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[int]:
        return sorted([*self.ok, *self.failing, *self.malformed])


def explain_twice(job_id: int, runs: list[tuple[int, bool, int, int, float]], rec: Records,
                  kills: list[tuple[int, float]], refused_acks: set[int], ttr: float) -> str | None:
    """Why a job's body succeeded more than once, or None when nothing explains it.

    Every successful run but the last must belong to a worker (the pid, or the ppid of an
    isolated child) that was SIGKILLed while it held the job: after its afterExec for that
    attempt, or, when it never got to afterExec, no earlier than ``ttr`` before the run started
    (a held job runs within its TTR of the reserve; an isolated child finishes its run even when
    its worker was killed under it). A logged refused ack explains it too.
    """
    killed_at = {pid: t for pid, t in kills}
    reasons = []
    for attempt, _ok, pid, ppid, t in sorted(runs, key=lambda r: r[4])[:-1]:
        why = None
        for worker in (ppid, pid):
            if worker not in killed_at:
                continue
            kill = killed_at[worker]
            seen = [a for a in rec.after_exec.get(job_id, []) if a[0] == attempt and a[1] == worker]
            if seen and seen[0][2] <= kill:
                why = (f"attempt {attempt}: worker {worker} ran afterExec, then was SIGKILLed "
                       f"{kill - seen[0][2]:.3f} s later, before its ack")
            elif not seen and kill >= t - ttr:
                why = (f"attempt {attempt}: worker {worker} was SIGKILLed holding it "
                       f"({kill - t:+.3f} s from the run's start), before afterExec and ack")
            if why:
                break
        if why is None and job_id in refused_acks:
            why = f"attempt {attempt}: late ack refused (logged by the worker)"
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(reasons)


def explain_final_repeat(calls: list[tuple[int, bool, int, str, float]],
                         kills: list[tuple[int, float]], settle_within: float = 60.0) -> str | None:
    """Why a job got more than one final afterError, or None when nothing explains it.

    A final failure is written, then its afterError handlers run, then it is settled. A worker
    SIGKILLed after its handlers ran but before its settle landed leaves the failure unsettled, and
    the worker that reclaims it runs the handlers again (at least once, like afterExec before an
    ack). So every final call but the last must come from a worker killed after that call, within
    the settle window.
    """
    killed_at = {pid: t for pid, t in kills}
    finals = sorted((c for c in calls if not c[1]), key=lambda c: c[4])
    reasons = []
    for _attempt, _retry, pid, _error, t in finals[:-1]:
        kill = killed_at.get(pid)
        if kill is None or not (t <= kill <= t + settle_within):
            return None
        reasons.append(f"worker {pid} ran the final afterError, then was SIGKILLed {kill - t:.3f} s later, "
                       "before its settle; the reclaimer ran the handlers again")
    return "; ".join(reasons)


def check(pushed: Pushed, rec: Records, final: dict[str, Any], kills: list[tuple[int, float]],
          refused_acks: set[int], ttr: float) -> dict[str, Any]:
    """The figures of one soak and the list of broken invariants (empty when all hold).

    ``final`` holds ``counts`` (the driver's Counts as a dict) and ``failed`` (job id ->
    (error_class, message, attempts, unsettled)) read after quiescence.
    """
    failed: dict[int, tuple[str, str, int, bool]] = final["failed"]
    counts: dict[str, int] = final["counts"]
    problems: list[str] = []
    all_ids = pushed.all_ids
    ok_runs = {j: [r for r in runs if r[1]] for j, runs in rec.execs.items()}

    done_ids = [j for j in all_ids if j not in failed and ok_runs.get(j)]
    lost = [j for j in all_ids if j not in failed and not ok_runs.get(j)]
    if lost:
        problems.append(f"{len(lost)} job(s) lost (neither done nor failed): {lost[:20]}")
    for state in ("waiting", "delayed", "reserved"):
        if counts.get(state):
            problems.append(f"{counts[state]} job(s) still {state} at the end")
    if counts.get("done") != len(done_ids):
        problems.append(f"done counter {counts.get('done')} != {len(done_ids)} jobs done (double count?)")
    if counts.get("failed") != len(failed) or counts.get("failed_total") != len(failed):
        problems.append(f"failed counters {counts.get('failed')}/{counts.get('failed_total')} != "
                        f"{len(failed)} registry entries")
    unsettled = [j for j, f in failed.items() if f[3]]
    if unsettled:
        problems.append(f"{len(unsettled)} failed entr(ies) still unsettled: {unsettled[:20]}")

    twice: dict[int, str] = {}
    for j, runs in ok_runs.items():
        if len(runs) > 1:
            why = explain_twice(j, runs, rec, kills, refused_acks, ttr)
            twice[j] = why or "UNEXPLAINED"
            if why is None:
                problems.append(f"job {j} succeeded {len(runs)} times with no kill or refused ack to explain it")

    finals = Counter({j: sum(1 for c in calls if not c[1]) for j, calls in rec.after_error.items()})
    finals = +finals
    repeats = {j: explain_final_repeat(rec.after_error[j], kills) or "UNEXPLAINED"
               for j, n in finals.items() if n > 1}
    wrong_finals = {j: finals.get(j, 0) for j in set(failed) | set(finals)
                    if finals.get(j, 0) != 1 and repeats.get(j, "UNEXPLAINED") == "UNEXPLAINED"}
    if wrong_finals:
        problems.append(f"{len(wrong_finals)} job(s) without exactly one final afterError: "
                        f"{dict(list(wrong_finals.items())[:20])}")
    unexpected_failures = {j: failed[j][:2] for j in failed if j not in pushed.malformed and j not in pushed.failing}
    if unexpected_failures:
        problems.append(f"{len(unexpected_failures)} job(s) failed that should have succeeded: "
                        f"{dict(list(unexpected_failures.items())[:10])}")
    missing_failures = [j for j in pushed.failing if j not in failed]
    if missing_failures:
        problems.append(f"{len(missing_failures)} failing job(s) not in the failed registry: {missing_failures[:20]}")

    malformed_ok: Counter[str] = Counter()
    malformed_bad: dict[int, str] = {}
    for j, kind in pushed.malformed.items():
        entry = failed.get(j)
        if entry and entry[0] == "InvalidJobError" and MALFORMED_REASONS[kind] in entry[1]:
            malformed_ok[kind] += 1
        else:
            malformed_bad[j] = f"{kind}: {entry[:2] if entry else 'not in the failed registry'}"
    if malformed_bad:
        problems.append(f"{len(malformed_bad)} malformed payload(s) not registered with their reason: "
                        f"{dict(list(malformed_bad.items())[:10])}")
    if counts.get("follow_up_failed"):
        problems.append(f"{counts['follow_up_failed']} raising handler(s) recorded (follow-up failures)")

    reasons = Counter(failed[j][1][:60] for j in pushed.malformed if j in failed)
    return {
        "pushed": len(all_ids),
        "pushed_valid": len(pushed.ok) + len(pushed.failing),
        "done": len(done_ids),
        "lost": len(lost),
        "run_twice": len(twice),
        "run_twice_explained": sum(1 for w in twice.values() if w != "UNEXPLAINED"),
        "run_twice_detail": {str(j): w for j, w in sorted(twice.items())},
        "failed": len(failed),
        "failed_on_purpose": len([j for j in pushed.failing if j in failed]),
        "final_after_error_calls": sum(finals.values()),
        # extra final calls, each by a worker killed between its handlers and its settle
        "final_after_error_repeats": sum(finals[j] - 1 for j in repeats),
        "final_after_error_repeats_explained": sum(finals[j] - 1 for j, w in repeats.items() if w != "UNEXPLAINED"),
        "final_after_error_repeat_detail": {str(j): w for j, w in sorted(repeats.items())},
        "after_error_calls": sum(len(c) for c in rec.after_error.values()),
        "malformed": len(pushed.malformed),
        "malformed_registered": sum(malformed_ok.values()),
        "malformed_by_kind": dict(malformed_ok),
        "malformed_reasons": dict(reasons.most_common(8)),
        "counts": counts,
        "problems": problems,
    }


def refused_ack_ids(log_path: str) -> set[int]:
    """Job ids whose late ack a worker logged as refused (pubq.worker's warning line)."""
    out: set[int] = set()
    if not os.path.exists(log_path):
        return out
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if "late ack refused" in line and "[" in line:
                try:
                    out.add(int(line.split("[", 1)[1].split("]", 1)[0]))
                except ValueError:
                    pass
    return out
