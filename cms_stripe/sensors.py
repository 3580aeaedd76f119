"""The CMS-change sensor: one run over the range of days whose rows changed content since the cursor."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import RANGE_END_TAG, RANGE_START_TAG, TRIGGER_TAG
from cms_stripe.core.changes import decide_changed_partitions, parse_cursor
from cms_stripe.core.settings import Settings, scrub
from cms_stripe.jobs import sync_job
from cms_stripe.loggers import with_log_file
from cms_stripe.partitions import current_span
from cms_stripe.schedules import automation_enabled


def _sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_enabled() else dg.DefaultSensorStatus.STOPPED


@dg.sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=_sensor_status(),
    description=(
        "Requests one sync over the days whose CMS rows changed content (our own write-backs are not "
        "changes); a first sync of a whole catalog is one run, like a backfill."
    ),
)
def cms_change_sensor(
    context: dg.SensorEvaluationContext, catalog: dg.ResourceParam[CatalogSource]
) -> dg.SensorResult | dg.SkipReason:
    # Rows committed a little after a newer row (long transactions) carry an older updated_at; looking
    # back a bit (CMS_STRIPE_SENSOR_LOOKBACK_S) catches them. Repeats are harmless: unchanged content
    # is no change.
    lookback = timedelta(seconds=Settings.from_env().sensor_lookback_s)
    try:
        changed = catalog.changed_days_since(parse_cursor(context.cursor), lookback=lookback)
    except Exception as exc:  # the CMS being unreachable is a reason to skip, not to crash the daemon
        # The cursor stays where it is, so the next tick looks at the same rows again.
        return dg.SkipReason(f"could not read the CMS (will retry next tick): {type(exc).__name__}: {scrub(str(exc))}")
    decision = decide_changed_partitions(context.cursor, changed, current_span(), datetime.now(UTC))
    if decision.partition_range is None:
        return dg.SensorResult(skip_reason=decision.skip_reason, cursor=decision.cursor)
    first, last = decision.partition_range
    context.log.info(
        f"{changed.changed_rows + changed.undated_changes} changed CMS rows in {len(decision.partition_keys)} "
        f"partitions: one run over {first}..{last}"
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=decision.run_key,
                run_config=with_log_file(),
                tags={RANGE_START_TAG: first, RANGE_END_TAG: last, TRIGGER_TAG: "cms_change"},
            )
        ],
        cursor=decision.cursor,
    )


all_sensors = [cms_change_sensor]
