"""The CMS-change sensor: one run per day whose rows changed content since the cursor."""

import os
from datetime import timedelta

import dagster as dg

from cms_stripe.cms.source import CatalogSource
from cms_stripe.core.changes import decide_changed_partitions, parse_cursor
from cms_stripe.jobs import sync_job
from cms_stripe.partitions import daily_partitions
from cms_stripe.schedules import automation_enabled

# Rows committed a little after a newer row (long transactions) carry an older updated_at; looking
# back a bit catches them. Repeats are harmless: unchanged content is no change.
LOOKBACK = timedelta(seconds=int(os.environ.get("CMS_STRIPE_SENSOR_LOOKBACK_S", "120")))


def _sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_enabled() else dg.DefaultSensorStatus.STOPPED


@dg.sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=_sensor_status(),
    description="Requests a sync of each day whose CMS rows changed content (our own write-backs are not changes).",
)
def cms_change_sensor(
    context: dg.SensorEvaluationContext, catalog: dg.ResourceParam[CatalogSource]
) -> dg.SensorResult | dg.SkipReason:
    try:
        changed = catalog.changed_days_since(parse_cursor(context.cursor), lookback=LOOKBACK)
    except Exception as exc:  # the CMS being unreachable is a reason to skip, not to crash the daemon
        return dg.SkipReason(f"could not read the CMS: {type(exc).__name__}: {exc}")
    decision = decide_changed_partitions(
        context.cursor,
        changed.days,
        changed.max_updated_at,
        set(daily_partitions.get_partition_keys()),
        changed_rows=changed.changed_rows,
        scanned_rows=changed.scanned_rows,
        day_newest=changed.day_newest,
    )
    if decision.skip_reason:
        return dg.SensorResult(skip_reason=decision.skip_reason, cursor=decision.cursor)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=pk, run_key=decision.run_keys[pk], tags={"cms_stripe/trigger": "cms_change"})
            for pk in decision.partition_keys
        ],
        cursor=decision.cursor,
    )


all_sensors = [cms_change_sensor]
