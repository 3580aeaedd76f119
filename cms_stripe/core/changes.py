"""The CMS-change sensor's decision, as a pure function of the cursor and what the CMS reports."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime


@dataclass(frozen=True)
class ChangeDecision:
    partition_keys: list[str] = field(default_factory=list)
    run_keys: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    skip_reason: str | None = None


def parse_cursor(cursor: str | None) -> datetime | None:
    if not cursor:
        return None
    parsed = datetime.fromisoformat(cursor)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def decide_changed_partitions(
    cursor: str | None,
    changed_days: Sequence[date],
    max_updated_at: datetime | None,
    valid_partition_keys: Collection[str],
    *,
    changed_rows: int = 0,
    scanned_rows: int = 0,
    day_newest: Mapping[date, datetime] | None = None,
) -> ChangeDecision:
    """One run per changed day; the cursor only moves forward.

    The run key names the day and the newest changed `updated_at` of that day (`day_newest`; the
    newest `updated_at` seen when not given), so the same change can never be requested twice — even
    when the lookback sees it again while its run waits — and a later edit of the day gets a new run.
    """
    old = parse_cursor(cursor)
    newest = max((t for t in (old, max_updated_at) if t is not None), default=None)
    new_cursor = newest.astimezone(UTC).isoformat() if newest else cursor

    keys = sorted({d.isoformat() for d in changed_days})
    outside = [k for k in keys if k not in valid_partition_keys]
    keys = [k for k in keys if k in valid_partition_keys]
    if not keys:
        if scanned_rows and not changed_rows:
            reason = (
                f"{scanned_rows} CMS rows were updated since {cursor or 'the start'}, but none changed content "
                "(sync write-backs); cursor moved on"
            )
        elif outside:
            reason = f"changes only on days outside the partitions ({', '.join(outside[:5])}); nothing to run"
        else:
            reason = f"no CMS row changed since {cursor or 'the start'}"
        return ChangeDecision(cursor=new_cursor, skip_reason=reason)
    stamps = {d.isoformat(): t.astimezone(UTC).isoformat() for d, t in (day_newest or {}).items()}
    fallback = new_cursor or "start"
    return ChangeDecision(
        partition_keys=keys,
        run_keys={k: f"cms-change:{k}:{stamps.get(k, fallback)}" for k in keys},
        cursor=new_cursor,
    )
