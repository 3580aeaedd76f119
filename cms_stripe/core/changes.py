"""The CMS-change sensor's view of the CMS and its decision, as pure functions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from cms_stripe.core.catalog import CmsProduct, content_hash, is_handled
from cms_stripe.core.days import PartitionSpan, utc_day


@dataclass(frozen=True)
class ChangedDays:
    """What the change sensor needs: the UTC days holding rows whose content changed since the cursor.

    `max_updated_at` is the newest `updated_at` seen among all rows after the cursor, changed or not,
    so the cursor moves past our own write-back (which bumps `updated_at` without changing content).
    It equals the input cursor when nothing newer exists.
    """

    days: tuple[date, ...]
    max_updated_at: datetime | None
    changed_rows: int = 0
    scanned_rows: int = 0
    # Newest updated_at among the changed rows of each day: it names "this change" in the sensor's
    # run key, so a change still waiting for its sync is not requested again when other rows move the cursor.
    day_newest: Mapping[date, datetime] = field(default_factory=dict, compare=False)
    # Rows updated after the cursor itself (not only inside the look-back), so a row the look-back
    # sees again is not reported again every minute.
    fresh_rows: int = 0
    # Changed rows whose updated_at cannot be read: they belong to the first partition; the digest of
    # (id, content) names that change in the run key.
    undated_changes: int = 0
    undated_digest: str = ""

    @property
    def cursor(self) -> datetime | None:
        return self.max_updated_at


def summarize_changes(products: Iterable[CmsProduct], cursor: datetime | None) -> ChangedDays:
    """The change sensor's view of rows read after the cursor: a row changed when its content hash
    differs from its sync_hash (our own write-back moves updated_at but not the hash)."""
    days: set[date] = set()
    day_newest: dict[date, datetime] = {}
    newest = cursor
    changed = scanned = fresh = 0
    undated = hashlib.sha256()
    undated_changes = 0
    for product in products:
        scanned += 1
        updated = product.updated_at
        chash = content_hash(product)
        is_change = not is_handled(product)
        if updated is None:
            if is_change:
                undated_changes += 1
                undated.update(f"{product.id}\0{chash}\0".encode())
            continue
        if cursor is None or updated > cursor:
            fresh += 1
        if newest is None or updated > newest:
            newest = updated
        if is_change:
            changed += 1
            day = utc_day(updated)
            days.add(day)
            if day not in day_newest or updated > day_newest[day]:
                day_newest[day] = updated
    return ChangedDays(
        tuple(sorted(days)),
        newest,
        changed_rows=changed,
        scanned_rows=scanned,
        day_newest=day_newest,
        fresh_rows=fresh,
        undated_changes=undated_changes,
        undated_digest=undated.hexdigest()[:16] if undated_changes else "",
    )


@dataclass(frozen=True)
class ChangeDecision:
    # The changed partitions, and the one range run that covers them (first..last key).
    partition_keys: list[str] = field(default_factory=list)
    partition_range: tuple[str, str] | None = None
    run_key: str | None = None
    cursor: str | None = None
    skip_reason: str | None = None


def parse_cursor(cursor: str | None) -> datetime | None:
    if not cursor:
        return None
    parsed = datetime.fromisoformat(cursor)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def decide_changed_partitions(
    cursor: str | None, changed: ChangedDays, span: PartitionSpan, now: datetime
) -> ChangeDecision:
    """One run over the range of changed partitions (what a backfill of them would run), or why not.

    - Days outside the partitions map to the open edges (older rows to the first, future-stamped ones
      to the last), so no change is left out.
    - The cursor only moves forward, and never past `now`: a row stamped in 2099 must not hide every
      real edit made before then.
    - The run key names the range and the newest change in it (the digest of undated changes too), so
      a change seen again by the look-back while its run waits is not requested twice, and a later
      edit gets a new run.
    """
    old = parse_cursor(cursor)
    newest = max((t for t in (old, changed.max_updated_at) if t is not None), default=None)
    if newest is not None and newest > now:
        newest = max(now, old) if old is not None else now
    new_cursor = newest.astimezone(UTC).isoformat() if newest else cursor

    by_key: dict[str, datetime] = {}
    for day in changed.days:
        stamp = changed.day_newest.get(day) or datetime.combine(day, datetime.min.time(), UTC)
        key = span.key_for(stamp)
        by_key[key] = max(by_key.get(key, stamp), stamp)
    keys = sorted(by_key)
    if changed.undated_changes:
        keys = sorted({*keys, span.first})
    since = cursor or "the start"
    if not keys:
        if changed.fresh_rows:
            reason = (
                f"{changed.fresh_rows} CMS rows were updated since {since}, none with content that differs "
                "from what was last synced (our own write-backs, or edits already synced); cursor moved on"
            )
        else:
            reason = f"no CMS row was updated since {since}"
        return ChangeDecision(cursor=new_cursor, skip_reason=reason)
    name = max(by_key.values()).astimezone(UTC).isoformat() if by_key else "undated"
    if changed.undated_digest:
        name += f"+undated:{changed.undated_digest}"
    return ChangeDecision(
        partition_keys=keys,
        partition_range=(keys[0], keys[-1]),
        run_key=f"cms-change:{keys[0]}..{keys[-1]}:{name}",
        cursor=new_cursor,
    )
