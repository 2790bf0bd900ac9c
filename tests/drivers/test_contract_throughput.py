"""Driver contract: per-minute throughput (``record_throughput`` / ``throughput``), on every kind."""

from __future__ import annotations

from pubq.drivers.base import THROUGHPUT_KEEP, ThroughputBucket


def _minute(driver) -> int:
    return int(driver.now() // 60)


def test_adds_into_the_backend_minute_and_reads_back(driver, make_driver):
    other = make_driver(channel=driver.channel)  # a second worker's handle on the same queue
    neighbour = make_driver()
    assert driver.throughput(0) == []
    before = _minute(driver)
    driver.record_throughput(3, 1)
    other.record_throughput(2, 0)
    neighbour.record_throughput(7, 7)
    after = _minute(driver)
    got = driver.throughput(before - 1)
    assert sum(b.done for b in got) == 5 and sum(b.failed for b in got) == 1
    assert all(before <= b.minute <= after for b in got)
    assert [(b.done, b.failed) for b in neighbour.throughput(0)] == [(7, 7)]


def test_explicit_minutes_are_kept_apart_in_order_and_filtered_by_since(driver):
    now = _minute(driver)
    driver.record_throughput(4, 0, minute=now - 5)
    driver.record_throughput(0, 2, minute=now - 30)
    driver.record_throughput(1, 1, minute=now - 5)
    assert driver.throughput(now - 60) == [ThroughputBucket(now - 30, 0, 2), ThroughputBucket(now - 5, 5, 1)]
    assert driver.throughput(now - 10) == [ThroughputBucket(now - 5, 5, 1)]
    assert driver.throughput(now + 1) == []


def test_buckets_older_than_the_window_are_dropped_by_later_writes(driver):
    now = _minute(driver)
    driver.record_throughput(9, 9, minute=now - THROUGHPUT_KEEP - 5)
    driver.record_throughput(1, 0, minute=now - 2)
    driver.record_throughput(1, 0)
    got = driver.throughput(0)
    assert all(b.minute >= now - THROUGHPUT_KEEP for b in got)
    assert sum(b.done for b in got) == 2


def test_zero_counts_and_a_read_write_nothing_visible(driver):
    now = _minute(driver)
    driver.throughput(now - 60)
    assert driver.throughput(0) == []
    driver.record_throughput(0, 0, minute=now)
    assert [(b.done, b.failed) for b in driver.throughput(0)] in ([], [(0, 0)])
