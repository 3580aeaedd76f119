"""The one partitions definition: days of `updated_at`, in UTC, today included, with open edges
(the first partition also holds older and undated rows, the last future-stamped ones: see
`core.days.PartitionSpan`)."""

from __future__ import annotations

import dagster as dg

from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.settings import Settings

# Read once, at import, so the UI and every run agree; change MIGRATION_PARTITION_START in the
# environment of the code location.
PARTITION_START = Settings.from_env().partition_start.isoformat()

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC", end_offset=1)


def current_span() -> PartitionSpan:
    """The partition span now (the last partition is today, UTC)."""
    first = daily_partitions.get_first_partition_key()
    last = daily_partitions.get_last_partition_key()
    assert first is not None and last is not None  # a daily definition that starts in the past
    return PartitionSpan(first, last)
