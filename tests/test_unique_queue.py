"""Unique jobs at the producer: a job class's ``unique`` template, and the options checked once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pubq import Job
from pubq.errors import ConfigError, UsageError
from pubq.job import JobRegistry
from tests.drivers.backends import open_driver
from tests.helpers import make_queue


@dataclass
class Report(Job):
    name = "tests.Report"
    unique = "{task_id}"
    task_id: int
    note: str = ""

    def execute(self, ctx):
        return None


def test_a_job_class_template_makes_its_pushes_unique_per_field(tmp_path):
    driver, cleanup = open_driver("memory", tmp_path)
    try:
        q = make_queue(driver)
        q.registry.register(Report)
        first = q.submit(Report(7))
        assert first.duplicate is False and first.unique_key == "tests.Report:7"
        again = q.submit(Report(7, note="other"))
        assert again.duplicate is True and again.job_id == first.job_id
        assert q.push(Report(8)) != first.job_id
        assert q.push_many([Report(7), Report(9)])[0] == first.job_id
        assert driver.counts().waiting == 3
        assert q.submit(Report(7), unique_key="own").duplicate is False  # an explicit key wins
    finally:
        cleanup()


def test_bad_unique_options_are_usage_errors(tmp_path):
    driver, cleanup = open_driver("memory", tmp_path)
    try:
        q = make_queue(driver)
        with pytest.raises(UsageError, match="unique_until must be one of"):
            q.push(Report(1), unique_key="k", unique_until="never")
        with pytest.raises(UsageError, match="unique_for must be"):
            q.push(Report(1), unique_key="k", unique_for=-1)
        with pytest.raises(UsageError, match="unique key must be"):
            q.push(Report(1), unique_key="x" * 256)
    finally:
        cleanup()


def test_a_template_naming_no_field_is_refused_at_registration():
    @dataclass
    class Broken(Job):
        name = "tests.Broken"
        unique = "{account}"
        task_id: int = 0

    with pytest.raises(ConfigError, match=r"unique: \{account\} is not a field"):
        JobRegistry([Broken])
