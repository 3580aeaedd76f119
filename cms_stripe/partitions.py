"""The one partitions definition: days of `updated_at`, in UTC, today included.

The edges are open: the first partition also holds every row updated before it and every row without
a (readable) `updated_at`, and the last one (today) also holds rows stamped in the future (clock skew,
scheduled publishing). So a run over every partition reads every row of the table, and each row has
exactly one partition, whatever its age.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from cms_stripe.constants import DEFAULT_PARTITION_START

# Read at import so the UI and every run agree; change it in the environment of the code location.
PARTITION_START = os.environ.get("MIGRATION_PARTITION_START", DEFAULT_PARTITION_START)

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC", end_offset=1)


def _day_start(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)


@dataclass(frozen=True)
class PartitionSpan:
    """The first and last partition keys at one moment (the last one moves at midnight UTC)."""

    first: str
    last: str

    @classmethod
    def now(cls) -> PartitionSpan:
        first = daily_partitions.get_first_partition_key()
        last = daily_partitions.get_last_partition_key()
        assert first is not None and last is not None  # a daily definition starting in the past
        return cls(first, last)

    def key_for(self, updated_at: datetime | None) -> str:
        """The partition a row belongs to: the UTC day of its `updated_at`, clamped to the open edges."""
        if updated_at is None:
            return self.first
        day = updated_at.astimezone(UTC).strftime("%Y-%m-%d")
        return min(max(day, self.first), self.last)

    def read_bounds(self, first_key: str, last_key: str) -> tuple[datetime | None, datetime | None, bool]:
        """[start, end) of `updated_at` for the partition range, None where the range reaches an open
        edge, and whether the undated rows (null or unreadable `updated_at`) belong to it."""
        at_first = first_key <= self.first
        at_last = last_key >= self.last
        start = None if at_first else _day_start(first_key)
        end = None if at_last else _day_start(last_key) + timedelta(days=1)
        return start, end, at_first
