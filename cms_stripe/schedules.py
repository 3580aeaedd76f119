"""The schedule that keeps today's partition in sync. Off by default (the embedded demo must not write
on its own); a deployment turns it on with CMS_STRIPE_AUTOMATION=on or in the UI."""

import dagster as dg

from cms_stripe.constants import TRIGGER_TAG
from cms_stripe.core.days import utc_day
from cms_stripe.core.settings import Settings
from cms_stripe.jobs import sync_job
from cms_stripe.loggers import with_log_file

SYNC_CRON = Settings.from_env().sync_cron


def automation_enabled() -> bool:
    """CMS_STRIPE_AUTOMATION turns on the schedule and the change sensor together (both off by default)."""
    return Settings.from_env().automation


def automation_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if automation_enabled() else dg.DefaultScheduleStatus.STOPPED


def current_day_run_request(scheduled_execution_time) -> dg.RunRequest:
    return dg.RunRequest(
        partition_key=utc_day(scheduled_execution_time).isoformat(),
        run_config=with_log_file(),
        tags={TRIGGER_TAG: "schedule"},
    )


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
