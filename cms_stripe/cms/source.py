"""The one catalog-source interface the pipeline codes against, and which backend the settings name.

Two backends implement it: `SqlCatalogSource` (SQLAlchemy: Supabase Postgres direct or pooled, SQLite
for the demo) and `RestCatalogSource` (Supabase REST through supabase-py). `CMS_DATABASE_URL` wins
when both are configured because it is the fast path for big catalogs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.core.catalog import (
    SYNC_ARCHIVED,
    SYNC_FAILED,
    SYNC_PENDING,
    SYNC_QUARANTINED,
    SYNC_SYNCED,
    CmsProduct,
    SyncLink,
    SyncUpdate,
    WriteBackResult,
)
from cms_stripe.core.changes import ChangedDays
from cms_stripe.core.days import OldestRow
from cms_stripe.core.settings import Settings
from cms_stripe.core.status import SyncState

__all__ = [
    "LINK_COLUMNS",
    "WRITABLE_SYNC_STATUSES",
    "BackupRow",
    "CatalogSource",
    "ChangedDays",
    "CmsConfigError",
    "OldestRow",
    "backend_for",
    "validate_updates",
]

ENV_DATABASE_URL = "CMS_DATABASE_URL"
ENV_SUPABASE_URL = "SUPABASE_URL"
ENV_SUPABASE_KEY = "SUPABASE_SERVICE_ROLE_KEY"

DEFAULT_PAGE_SIZE = 1000
DEFAULT_WRITE_BATCH_SIZE = 500

# The sync columns the compare-and-set write-back compares (the row's tie to Stripe).
LINK_COLUMNS = ("stripe_product_id", "stripe_price_id", "sync_hash")

# pending is accepted besides the four outcomes so an operator can re-queue a row through the same path.
WRITABLE_SYNC_STATUSES = frozenset({SYNC_SYNCED, SYNC_FAILED, SYNC_QUARANTINED, SYNC_ARCHIVED, SYNC_PENDING})


@dataclass(frozen=True)
class BackupRow:
    """The sync columns of one CMS row as they were before a run first wrote to it."""

    run_id: str
    id: str
    stripe_product_id: str | None
    stripe_price_id: str | None
    sync_status: str | None
    sync_error: str | None
    synced_at: datetime | None
    sync_hash: str | None
    # What the run last wrote to the row's link columns: rollback restores only rows still holding it.
    written: SyncLink | None = None


def link_json(link: SyncLink) -> str:
    return json.dumps([link.stripe_product_id, link.stripe_price_id, link.sync_hash])


def parse_link_json(text: str | None) -> SyncLink | None:
    if not text:
        return None
    values = json.loads(text)
    return SyncLink(*values)


def partition_updates(
    updates: Sequence[SyncUpdate], current: Mapping[str, SyncLink]
) -> tuple[list[SyncUpdate], tuple[str, ...], tuple[str, ...]]:
    """Compare-and-set: (to write, conflicts, missing). A row is written when it exists and its link
    columns still hold what the run read (`expected`) or already hold what we write (a retried write)."""
    write: list[SyncUpdate] = []
    conflicts: list[str] = []
    missing: list[str] = []
    for u in updates:
        have = current.get(u.id)
        if have is None:
            missing.append(u.id)
        elif u.expected is not None and have != u.expected and have != u.link:
            conflicts.append(u.id)
        else:
            write.append(u)
    return write, tuple(conflicts), tuple(missing)


def restore_updates(rows: Sequence[BackupRow]) -> list[SyncUpdate]:
    """Rollback as compare-and-set updates: the backed-up values, expected where the run left the row."""
    return [
        SyncUpdate(
            id=r.id,
            sync_status=r.sync_status or SYNC_PENDING,
            stripe_product_id=r.stripe_product_id,
            stripe_price_id=r.stripe_price_id,
            sync_error=r.sync_error,
            synced_at=r.synced_at,
            sync_hash=r.sync_hash,
            expected=r.written,
        )
        for r in rows
    ]


@runtime_checkable
class CatalogSource(Protocol):
    """Reads CMS products and writes the sync columns back; every backend behaves the same."""

    def check(self) -> None:
        """Verify the table and every mapped column exist; raise one CmsConfigError naming all that is missing."""
        ...

    def read_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        include_undated: bool = False,
        page_size: int | None = None,
    ) -> Iterator[CmsProduct]:
        """Rows with start <= updated_at < end (None: unbounded), ordered by (updated_at, id), keyset-
        paginated; with `include_undated`, then the rows whose updated_at is null (or a value the
        driver cannot load), ordered by id."""
        ...

    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        """Rows with these ids (chunked), in the order first asked for; unknown ids are skipped."""
        ...

    def read_all(self) -> Iterator[CmsProduct]:
        """Every row, ordered by id (rows without updated_at included)."""
        ...

    def sync_summary(self) -> SyncState:
        """Rows counted by sync_status (null or empty: pending) and the oldest pending row's
        updated_at, without reading the catalog's rows into memory (`cms-stripe status`)."""
        ...

    def oldest_row(self) -> OldestRow:
        """Where the oldest row lies, by the rule the readers use (undated: null, or a value the
        driver cannot load), from the database's own order and without reading the rows; `unknown`
        names why it cannot be relied on (e.g. `updated_at` is not a timestamp column, so the database
        orders it as text). A `full` run starts at its day (`core.days.full_range`)."""
        ...

    def read_by_stripe_product_ids(
        self, stripe_product_ids: Sequence[str], *, exclude_ids: Collection[str] = ()
    ) -> list[CmsProduct]:
        """Rows naming one of these Stripe products: at least every row that shares one with another row
        (to find an editor's copy of a row, which copied its Stripe ids too). Rows whose id is in
        `exclude_ids` (the caller holds them already) may be left out."""
        ...

    def changed_days_since(self, cursor: datetime | None, *, lookback: timedelta = ...) -> ChangedDays:
        """Days with rows updated after cursor (minus lookback) whose content hash differs from sync_hash."""
        ...

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        """Update the sync columns of existing rows by id (never insert), compare-and-set on `expected`,
        backing up each row's previous values first."""
        ...

    def backup_for_run(self, run_id: str) -> list[BackupRow]:
        """The previous sync-column values of every row the run wrote, ordered by id."""
        ...

    def restore_backup(self, run_id: str) -> WriteBackResult:
        """Put the backed-up values back (rollback) on rows that still hold what the run wrote."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def validate_updates(updates: Sequence[SyncUpdate]) -> list[SyncUpdate]:
    """Reject bad statuses before anything is written; the last update of an id in one call wins."""
    by_id: dict[str, SyncUpdate] = {}
    for update in updates:
        if not isinstance(update.id, str) or not update.id:
            raise ValueError(f"write-back needs a non-empty string id, got {update.id!r}")
        if update.sync_status not in WRITABLE_SYNC_STATUSES:
            raise ValueError(
                f"invalid sync_status {update.sync_status!r} for {update.id!r}; "
                f"expected one of {sorted(WRITABLE_SYNC_STATUSES)}"
            )
        if update.synced_at is not None and update.synced_at.tzinfo is None:
            raise ValueError(f"synced_at for {update.id!r} is naive; CMS timestamps must carry a timezone")
        by_id.pop(update.id, None)
        by_id[update.id] = update
    return list(by_id.values())


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id.strip() or len(run_id) > 255:
        raise ValueError(f"run_id must be a non-empty string of at most 255 characters, got {run_id!r}")
    return run_id


def require_aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} is naive; pass a timezone-aware datetime (UTC)")
    return value


def backend_for(settings: Settings) -> str:
    """'sql' or 'rest'; a clear CmsConfigError when neither is (fully) configured."""
    if settings.cms_database_url:
        return "sql"
    url, key = settings.supabase_url, settings.supabase_service_role_key
    if url and key:
        return "rest"
    if url or key:
        missing = ENV_SUPABASE_KEY if url else ENV_SUPABASE_URL
        raise CmsConfigError(
            f"CMS source misconfigured: {missing} is not set (the Supabase REST backend needs both "
            f"{ENV_SUPABASE_URL} and {ENV_SUPABASE_KEY}), and {ENV_DATABASE_URL} is not set either"
        )
    raise CmsConfigError(
        f"no CMS source configured: set {ENV_DATABASE_URL} (postgresql+psycopg://... or sqlite:///...) "
        f"or both {ENV_SUPABASE_URL} and {ENV_SUPABASE_KEY}"
    )
