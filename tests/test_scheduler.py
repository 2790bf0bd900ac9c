"""Schedules: every tick pushed once by several schedulers on every backend, misfires, DST, config.

Time is controlled: each scheduler is given ``now`` (a fake clock), while the backends keep their
own clocks for the tick keys' 24 h lives (which no test comes near)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from pubq.config import parse_config
from pubq.errors import ConfigError
from pubq.scheduler import Scheduler
from pubq.schedules import Schedule, parse_schedule
from tests.drivers.backends import CORE_KINDS, open_driver, unique_channel
from tests.helpers import make_queue

T0 = 1_700_000_003.25  # 2023-11-14 22:13:23 UTC: not on any tick


def sched(name: str = "s", **kw) -> Schedule:
    kw.setdefault("queue", "q")
    kw.setdefault("job", "tests.Noop")
    return Schedule(name=name, **kw)


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_three_schedulers_over_two_minutes_push_every_tick_exactly_once(kind, tmp_path):
    channel = unique_channel("sched")
    opened = [open_driver(kind, tmp_path, channel=channel) for _ in range(3)]
    try:
        schedules = {"fast": sched("fast", every=5.0), "minutely": sched("minutely", cron="* * * * *")}
        schedulers = [Scheduler(schedules, lambda _q, d=d: make_queue(d)) for d, _ in opened]
        rng = random.Random(7)
        steps = [T0]
        while steps[-1] < T0 + 130:
            steps.append(steps[-1] + rng.uniform(0.2, 1.6))
        created: list[tuple[str, int]] = []
        seen: list[tuple[str, int]] = []
        barrier = threading.Barrier(3)
        lock = threading.Lock()

        def run(scheduler: Scheduler, seed: int) -> None:
            mine = random.Random(seed)
            for now in steps:
                barrier.wait(30)
                if mine.random() < 0.25 and now != T0:
                    continue  # this one misses a look (slow, or restarting)
                for p in scheduler.tick(now):
                    with lock:
                        seen.append((p.schedule, p.fire))
                        if p.created:
                            created.append((p.schedule, p.fire))

        threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(schedulers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        end = steps[-1]
        expected = [("fast", f) for f in schedules["fast"].fires_between(T0, end)]
        expected += [("minutely", f) for f in schedules["minutely"].fires_between(T0, end)]
        assert len(expected) >= 27  # 26 every-5s ticks and 2 minutely ones in 130 s
        assert sorted(created) == sorted(expected)  # each tick created once, none missing
        assert len(seen) >= len(created)
        assert opened[0][0].counts().waiting == len(expected)
        assert opened[0][0].mark_get("schedule:fast") == pytest.approx(end)
    finally:
        for _, cleanup in reversed(opened):
            cleanup()


def _memory_scheduler(tmp_path, **schedules: Schedule):
    driver, cleanup = open_driver("memory", tmp_path)
    return Scheduler(schedules, lambda _q: make_queue(driver)), driver, cleanup


def test_misfire_skip_pushes_nothing_for_missed_ticks_and_once_pushes_the_newest(tmp_path):
    skip = sched("skip", every=300.0)
    once = sched("once", every=300.0, misfire="once")
    scheduler, driver, cleanup = _memory_scheduler(tmp_path, skip=skip, once=once)
    try:
        assert scheduler.tick(T0) == []  # first sight: from now on
        later = T0 + 3 * 3600 + 200  # down for three hours; no tick in the last 60 s
        pushed = scheduler.tick(later)
        newest_missed = int((later - 60) // 300 * 300)
        assert [(p.schedule, p.fire, p.catch_up) for p in pushed] == [("once", newest_missed, True)]
        assert scheduler.tick(later + 1) == []
        on_time = newest_missed + 300
        assert {(p.schedule, p.fire) for p in scheduler.tick(on_time + 5)} == {("skip", on_time), ("once", on_time)}
        assert driver.counts().waiting == 3
    finally:
        cleanup()


def test_cron_follows_daylight_saving_as_croniter_documents():
    # autumn, New York: 01:00 happens twice; an hourly schedule fires at both UTC instants
    ny = sched(cron="0 * * * *", timezone="America/New_York")
    start = 1730606400  # 2024-11-03 00:00 EDT
    assert ny.fires_between(start, start + 4 * 3600) == [1730610000, 1730613600, 1730617200, 1730620800]
    # spring, Berlin: 02:30 does not exist on 2024-03-31; the tick comes at 03:00 CEST
    berlin = sched(cron="30 2 * * *", timezone="Europe/Berlin")
    assert berlin.fires_between(1711753200, 1711753200 + 3 * 86400) == [1711762200, 1711846800, 1711931400]
    shanghai = sched(cron="30 2 * * *", timezone="Asia/Shanghai")  # no DST: always 18:30 UTC
    assert all(f % 86400 == 18 * 3600 + 1800 for f in shanghai.next_fires(T0, 3))


def test_a_scheduler_across_the_autumn_change_pushes_each_hour_once(tmp_path):
    ny = sched("ny", cron="0 * * * *", timezone="America/New_York")
    scheduler, driver, cleanup = _memory_scheduler(tmp_path, ny=ny)
    try:
        start = 1730606400 - 30
        scheduler.tick(start)
        fires = [p.fire for now in range(start, start + 5 * 3600, 20) for p in scheduler.tick(now) if p.created]
        assert fires == [1730606400, 1730610000, 1730613600, 1730617200, 1730620800]  # 01:00 EDT and EST
        assert driver.counts().waiting == 5
    finally:
        cleanup()


@pytest.mark.parametrize(("raw", "key", "words"), [
    ({"every": "2x", "queue": "q", "job": "j"}, "every", "a duration like 30s"),
    ({"every": 0.5, "queue": "q", "job": "j"}, "every", "from 1 to"),
    ({"cron": "61 * * * *", "queue": "q", "job": "j"}, "cron", "not a cron expression"),
    ({"cron": "* * * * *", "every": "5s", "queue": "q", "job": "j"}, "", "exactly one of cron or every"),
    ({"cron": "* * * * *", "queue": "nope", "job": "j"}, "queue", "no queue named 'nope'"),
    ({"cron": "* * * * *", "queue": "q", "job": "j", "timezone": "Mars/Base"}, "timezone", "unknown time zone"),
    ({"cron": "* * * * *", "queue": "q", "job": "j", "misfire": "all"}, "misfire", "skip or once"),
    ({"cron": "* * * * *", "queue": "q", "job": "j", "priority": -1}, "priority", "from 0 to"),
    ({"cron": "* * * * *", "queue": "q", "job": "j", "when": 1}, "when", "unknown key"),
])
def test_a_bad_schedule_is_one_line_naming_its_key(raw, key, words):
    schedule, got_key, problem = parse_schedule("s", raw, {"q"})
    assert schedule is None and got_key == key and words in problem


def test_the_config_checks_a_schedules_job_and_args_at_load(tmp_path):
    base = {"jobs": ["tests.sample_jobs"], "queues": {"q": {"driver": "db"}}}
    ok = parse_config({**base, "schedules": {"s": {"every": "30s", "queue": "q", "job": "tests.Noop"}}},
                      Path("pubq.yaml"), tmp_path)
    assert ok.schedules["s"].every == 30.0
    with pytest.raises(ConfigError, match=r"^pubq.yaml: schedules.s.job: unknown job 'tests.Nope'"):
        parse_config({**base, "schedules": {"s": {"every": "30s", "queue": "q", "job": "tests.Nope"}}},
                     Path("pubq.yaml"), tmp_path)
    with pytest.raises(ConfigError, match=r"^pubq.yaml: schedules.s.args: "):
        parse_config({**base, "schedules": {"s": {"every": "1m", "queue": "q", "job": "tests.Noop",
                                                  "args": {"x": 1}}}}, Path("pubq.yaml"), tmp_path)
