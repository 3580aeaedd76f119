"""The CMS's sync state at a glance (`cms-stripe status`), computed from its rows; no Dagster."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cms_stripe.core.catalog import SYNC_PENDING, CmsProduct

# Shown in this order; any other value the CMS holds follows.
STATUS_ORDER = ("pending", "synced", "archived", "quarantined", "failed")


@dataclass(frozen=True)
class SyncState:
    counts: dict[str, int]
    oldest_pending: datetime | None


def status_of(sync_status: str | None) -> str:
    """A row never synced (null or empty sync_status) counts as pending."""
    return sync_status or SYNC_PENDING


def summarize(counts: Mapping[str, int], oldest_pending: datetime | None) -> SyncState:
    """The state from counts by status, in display order (the backends count them in the database)."""
    ordered = {s: counts[s] for s in STATUS_ORDER if counts.get(s)}
    ordered.update({s: n for s, n in sorted(counts.items()) if s not in ordered and n})
    return SyncState(ordered, oldest_pending)


def sync_state(products: Iterable[CmsProduct]) -> SyncState:
    """Rows by `sync_status` and the oldest pending `updated_at`: how long the oldest unsynced change
    has waited."""
    counts: Counter[str] = Counter()
    oldest: datetime | None = None
    for p in products:
        status = status_of(p.sync_status)
        counts[status] += 1
        if status == SYNC_PENDING and p.updated_at is not None and (oldest is None or p.updated_at < oldest):
            oldest = p.updated_at
    return summarize(counts, oldest)
