"""The CMS product as the rest of the project sees it, and the content hash that decides "changed"."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

STATUS_PUBLISHED = "published"
STATUS_DRAFT = "draft"
STATUS_ARCHIVED = "archived"

# sync_status values written back to the CMS.
SYNC_PENDING = "pending"
SYNC_SYNCED = "synced"
SYNC_FAILED = "failed"
SYNC_QUARANTINED = "quarantined"
SYNC_ARCHIVED = "archived"

# Columns the sync writes back; nothing else in the CMS row is ever touched.
SYNC_COLUMNS = (
    "stripe_product_id",
    "stripe_price_id",
    "sync_status",
    "sync_error",
    "synced_at",
    "sync_hash",
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """A stored value that could not be read as its field's type (the row is quarantined, not dropped)."""

    code: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class CmsProduct:
    """One row of the CMS `products` table, normalised (UTC datetimes, Decimal price, lower-case currency)."""

    id: str
    title: str | None = None
    description: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    recurring_interval: str | None = None
    recurring_interval_count: int | None = None
    images: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: str | None = STATUS_PUBLISHED
    tax_code: str | None = None
    unit_label: str | None = None
    statement_descriptor: str | None = None
    url: str | None = None
    shippable: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    stripe_product_id: str | None = None
    stripe_price_id: str | None = None
    sync_status: str | None = SYNC_PENDING
    sync_error: str | None = None
    synced_at: datetime | None = None
    sync_hash: str | None = None
    # Values the reader could not convert (the field itself is then left empty): quarantine reasons.
    read_errors: tuple[FieldError, ...] = ()

    @property
    def should_be_active(self) -> bool:
        """Only published, not soft-deleted rows are live products in Stripe."""
        return self.status == STATUS_PUBLISHED and self.deleted_at is None


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """What the sync writes back to one CMS row (the SYNC_COLUMNS, nothing else)."""

    id: str
    sync_status: str
    stripe_product_id: str | None = None
    stripe_price_id: str | None = None
    sync_error: str | None = None
    synced_at: datetime | None = None
    sync_hash: str | None = None
    # Compare-and-set: the row's link columns as the run read them. The write-back changes the row
    # only while it still holds these (or already holds what we write), so an editor who cleared
    # `stripe_product_id` mid-run wins. None writes unconditionally (rollback, tools).
    expected: SyncLink | None = None

    @property
    def link(self) -> SyncLink:
        return SyncLink(self.stripe_product_id, self.stripe_price_id, self.sync_hash)


@dataclass(frozen=True, slots=True)
class SyncLink:
    """The sync columns that tie a CMS row to Stripe, as compared by the compare-and-set write-back."""

    stripe_product_id: str | None
    stripe_price_id: str | None
    sync_hash: str | None

    @classmethod
    def of(cls, product: CmsProduct) -> SyncLink:
        return cls(product.stripe_product_id, product.stripe_price_id, product.sync_hash)


@dataclass(frozen=True)
class WriteBackResult:
    """What a write-back did: rows written, rows left alone because an editor changed their sync
    columns since the run read them, and rows no longer in the CMS (deleted mid-run; never recreated)."""

    written: int = 0
    conflicts: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def __add__(self, other: WriteBackResult) -> WriteBackResult:
        return WriteBackResult(
            self.written + other.written, self.conflicts + other.conflicts, self.missing + other.missing
        )


def _canonical_decimal(value: Decimal | None) -> str | None:
    if value is None:
        return None
    # normalize() makes 19.9900 and 19.99 hash alike; "f" avoids exponent notation (1E+2).
    return format(value.normalize(), "f")


def synced_content(product: CmsProduct) -> dict[str, Any]:
    """Every CMS field whose value reaches Stripe; the content hash is taken over exactly this."""
    return {
        "title": product.title,
        "description": product.description,
        "price": _canonical_decimal(product.price),
        "currency": product.currency.lower() if product.currency else None,
        "recurring_interval": product.recurring_interval,
        "recurring_interval_count": product.recurring_interval_count,
        "images": list(product.images),
        "metadata": {str(k): product.metadata[k] for k in sorted(product.metadata, key=str)},
        "active": product.should_be_active,
        "tax_code": product.tax_code,
        "unit_label": product.unit_label,
        "statement_descriptor": product.statement_descriptor,
        "url": product.url,
        "shippable": product.shippable,
    }


def hashed_content(product: CmsProduct) -> dict[str, Any]:
    """What the content hash covers: the synced fields, plus any unreadable stored value (so an edit
    from one bad value to another is still a change). Rows without read errors hash as they always did."""
    content = synced_content(product)
    if product.read_errors:
        content["read_errors"] = [[e.code, e.field, e.message] for e in product.read_errors]
    return content


def content_hash(product: CmsProduct) -> str:
    """Deterministic hash of the synced content.

    The Supabase `updated_at` trigger fires on our own write-back, so "changed since synced" is
    decided by comparing this hash with the row's `sync_hash`, never by `updated_at` alone.
    """
    payload = json.dumps(hashed_content(product), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def quarantine_hash(product: CmsProduct) -> str:
    """What a quarantine stores as `sync_hash`: the content hash plus the row's Stripe links, so an
    editor who fixes a row by clearing its link (not its content) is seen as a change."""
    basis = f"{content_hash(product)}|{product.stripe_product_id or ''}|{product.stripe_price_id or ''}"
    return "q" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:31]


def is_handled(product: CmsProduct) -> bool:
    """The row's current content (and, for a quarantine, link) was already synced or quarantined."""
    return product.sync_hash is not None and product.sync_hash in (content_hash(product), quarantine_hash(product))
