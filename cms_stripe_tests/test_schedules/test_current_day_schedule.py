"""The schedule syncs the partition of the tick's UTC day, and stays off unless automation is on."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import dagster as dg
import pytest

from cms_stripe.definitions import defs
from cms_stripe.jobs import SYNC_JOB
from cms_stripe.schedules import automation_status, current_day_run_request


@pytest.mark.parametrize(
    ("tick", "day"),
    [
        (datetime(2026, 3, 9, 12, 30, tzinfo=UTC), "2026-03-09"),
        (datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC), "2026-03-09"),
        # 00:30 in UTC+02:00 is still the previous UTC day: partitions are UTC days.
        (datetime(2026, 3, 10, 0, 30, tzinfo=timezone(timedelta(hours=2))), "2026-03-09"),
    ],
)
def test_tick_requests_that_utc_days_partition(tick, day):
    schedule = defs.resolve_schedule_def("current_day_sync_schedule")
    assert schedule.job_name == SYNC_JOB
    assert schedule.execution_timezone == "UTC"
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(
            dg.build_schedule_context(
                instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
            )
        )
    assert data.skip_message is None
    requests = data.run_requests or []
    assert len(requests) == 1
    request = requests[0]
    assert request.partition_key == day
    assert request.tags["cms_stripe/trigger"] == "schedule"
    assert current_day_run_request(tick).partition_key == day


def test_requested_partition_exists():
    """Today's partition is a real partition (end_offset=1), so the daemon can launch the request."""
    job = defs.resolve_job_def(SYNC_JOB)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert job.partitions_def is not None
    assert today in job.partitions_def.get_partition_keys()


def test_off_by_default_on_with_automation(monkeypatch):
    monkeypatch.delenv("CMS_STRIPE_AUTOMATION", raising=False)
    assert automation_status() == dg.DefaultScheduleStatus.STOPPED
    monkeypatch.setenv("CMS_STRIPE_AUTOMATION", "on")
    assert automation_status() == dg.DefaultScheduleStatus.RUNNING


def test_code_location_default_status_and_interval_from_environment():
    """What a fresh code location loads (the statuses and cron are read at import)."""
    code = (
        "from cms_stripe.definitions import defs\n"
        "s = defs.resolve_schedule_def('current_day_sync_schedule')\n"
        "n = defs.resolve_sensor_def('cms_change_sensor')\n"
        "print(s.default_status.value, n.default_status.value, s.cron_schedule)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"CMS_STRIPE_AUTOMATION", "CMS_STRIPE_SYNC_CRON"}}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.split() == ["STOPPED", "STOPPED", "*/30", "*", "*", "*", "*"]
    env.update(CMS_STRIPE_AUTOMATION="on", CMS_STRIPE_SYNC_CRON="*/10 * * * *")
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert on.stdout.split() == ["RUNNING", "RUNNING", "*/10", "*", "*", "*", "*"]
