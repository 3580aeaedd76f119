"""The schedule that keeps today's partition in sync. Off by default (the embedded demo must not write
on its own); a deployment turns it on with CMS_STRIPE_AUTOMATION=on or in the UI."""

import os
from datetime import UTC

import dagster as dg

from cms_stripe.jobs import sync_job

SYNC_CRON = os.environ.get("CMS_STRIPE_SYNC_CRON", "*/30 * * * *")


def automation_status() -> dg.DefaultScheduleStatus:
    on = os.environ.get("CMS_STRIPE_AUTOMATION", "off").strip().lower() in {"1", "on", "true", "yes"}
    return dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED


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
