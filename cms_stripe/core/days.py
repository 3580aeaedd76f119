"""Which day-partition a CMS row belongs to: the one rule every reader of `updated_at` uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


def utc_day(moment: datetime) -> date:
    """The UTC day of a timestamp: the one rule that puts a row's `updated_at` in a day partition."""
    return moment.astimezone(UTC).date()


def day_start(key: str) -> datetime:
    """Midnight UTC of a partition key (`2026-01-31`)."""
    return datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)


@dataclass(frozen=True)
class PartitionSpan:
    """The first and last daily partition keys at one moment (the last one moves at midnight UTC).

    The edges are open: the first partition also holds rows updated before it and rows without a
    (readable) `updated_at`; the last (today) also holds rows stamped in the future. So every row has
    exactly one partition, and a run over all of them reads the whole table.
    """

    first: str
    last: str

    def key_for(self, updated_at: datetime | None) -> str:
        """The partition of a row: the UTC day of its `updated_at`, clamped to the open edges."""
        if updated_at is None:
            return self.first
        day = utc_day(updated_at).isoformat()
        return min(max(day, self.first), self.last)

    def read_bounds(self, first_key: str, last_key: str) -> tuple[datetime | None, datetime | None, bool]:
        """[start, end) of `updated_at` for the partition range, None where the range reaches an open
        edge, and whether the undated rows (null or unreadable `updated_at`) belong to it."""
        at_first = first_key <= self.first
        at_last = last_key >= self.last
        start = None if at_first else day_start(first_key)
        end = None if at_last else day_start(last_key) + timedelta(days=1)
        return start, end, at_first
