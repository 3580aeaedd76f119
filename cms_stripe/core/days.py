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


@dataclass(frozen=True)
class OldestRow:
    """What the CMS says about its oldest row, so that a `full` run can start at that row's day.

    Exactly one of: `unknown` (why the oldest cannot be relied on: the run must cover every
    partition), `undated` (some row has a null or unreadable `updated_at`: it belongs to the first
    partition), `empty` (no row at all), or `updated_at` (the oldest readable `updated_at`, every row
    having one).
    """

    updated_at: datetime | None = None
    undated: bool = False
    empty: bool = False
    unknown: str | None = None


def full_range(span: PartitionSpan, oldest: OldestRow) -> tuple[str, str, str]:
    """(first key, last key, why) of a `full` run: from the partition of the oldest row to today.

    Dagster records events, frames and metadata for every partition of a range run, so days that hold
    no row cost time for nothing; but nothing may be skipped: when some row is undated, older than the
    first partition, or the oldest cannot be determined, the run starts at the first partition (whose
    open edge holds those rows). An empty table runs today's partition only: no day holds a row, and
    today's is the one a row written now would land in."""
    if oldest.unknown is not None:
        return span.first, span.last, f"the oldest row's day is not known ({oldest.unknown}), so every partition runs"
    if oldest.undated:
        return span.first, span.last, "some rows have no readable updated_at, and the first partition holds them"
    if oldest.empty:
        return span.last, span.last, "the CMS table has no rows, so today's partition only"
    if oldest.updated_at is None:  # not a state a backend returns: run everything rather than guess
        return span.first, span.last, "the oldest row's day is not known, so every partition runs"
    day = utc_day(oldest.updated_at).isoformat()
    if day < span.first:
        return span.first, span.last, f"the oldest row was updated on {day}, before the first partition, which holds it"
    if day > span.last:
        return span.last, span.last, f"the oldest row is stamped {day}, after today, and today's partition holds it"
    return day, span.last, f"the oldest row was updated on {day}; earlier days hold no row"
