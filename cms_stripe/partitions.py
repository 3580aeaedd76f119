"""The one partitions definition: days of `updated_at`, in UTC, today included."""

from __future__ import annotations

import os

import dagster as dg

from cms_stripe.constants import DEFAULT_PARTITION_START

# Read at import so the UI and every run agree; change it in the environment of the code location.
PARTITION_START = os.environ.get("MIGRATION_PARTITION_START", DEFAULT_PARTITION_START)

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC", end_offset=1)
