"""The one partitions definition: days of `updated_at`, in UTC, today included, with open edges
(the first partition also holds older and undated rows, the last future-stamped ones: see
`core.days.PartitionSpan`)."""

from __future__ import annotations

import os

import dagster as dg

from cms_stripe.constants import DEFAULT_PARTITION_START
from cms_stripe.core.days import PartitionSpan

# Read at import so the UI and every run agree; change it in the environment of the code location.
PARTITION_START = os.environ.get("MIGRATION_PARTITION_START", DEFAULT_PARTITION_START)

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC", end_offset=1)


def current_span() -> PartitionSpan:
    """The partition span now (the last partition is today, UTC)."""
    first = daily_partitions.get_first_partition_key()
    last = daily_partitions.get_last_partition_key()
    assert first is not None and last is not None  # a daily definition that starts in the past
    return PartitionSpan(first, last)
