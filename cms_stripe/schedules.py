"""The schedule that keeps today's partition in sync. Off by default (the embedded demo must not write
on its own); a deployment turns it on with CMS_STRIPE_AUTOMATION=on or in the UI."""

import os
from datetime import UTC

import dagster as dg

from cms_stripe.core.settings import env_bool
from cms_stripe.jobs import sync_job

SYNC_CRON = os.environ.get("CMS_STRIPE_SYNC_CRON", "*/30 * * * *")


def automation_enabled() -> bool:
    """CMS_STRIPE_AUTOMATION turns on the schedule and the change sensor together (both off by default)."""
    return env_bool(os.environ, "CMS_STRIPE_AUTOMATION", False)


def automation_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if automation_enabled() else dg.DefaultScheduleStatus.STOPPED


def current_day_run_request(scheduled_execution_time) -> dg.RunRequest:
    day = scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%d")
    return dg.RunRequest(partition_key=day, tags={"cms_stripe/trigger": "schedule"})


@dg.schedule(
    job=sync_job,
    cron_schedule=SYNC_CRON,
    execution_timezone="UTC",
    default_status=automation_status(),
    description="Syncs the current UTC day's partition every CMS_STRIPE_SYNC_CRON (default every 30 minutes).",
)
def current_day_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return current_day_run_request(context.scheduled_execution_time)


all_schedules = [current_day_sync_schedule]
