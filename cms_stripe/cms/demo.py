"""A deterministic demo catalog: realistic rows plus about 3 % invalid ones of known kinds.

The same seed and anchor always give the same rows, so tests can state exact invariants and
`make demo` rehearses the same catalog every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cms_stripe.cms.schema import DEFAULT_TABLE, create_schema
from cms_stripe.cms.sql import insert_products
from cms_stripe.core.catalog import (
    STATUS_ARCHIVED,
    STATUS_DRAFT,
    STATUS_PUBLISHED,
    CmsProduct,
)

# Weighted on purpose: JPY (zero-decimal) and KWD (three-decimal) are rare in real catalogs but
# exactly where minor-unit conversion goes wrong, so the demo always has plenty of both.
CURRENCY_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("usd", 45),
    ("eur", 20),
    ("gbp", 10),
    ("jpy", 10),
    ("kwd", 5),
    ("cad", 10),
)
STATUS_WEIGHTS: tuple[tuple[str, int], ...] = ((STATUS_PUBLISHED, 85), (STATUS_DRAFT, 9), (STATUS_ARCHIVED, 6))
SOFT_DELETED_SHARE = 0.03
RECURRING_SHARE = 0.25
INVALID_SHARE = 0.03

INVALID_KINDS: tuple[str, ...] = (
    "missing_title",
    "negative_price",
    "sub_unit_price",
    "unknown_currency",
    "too_many_metadata_keys",
    "too_many_images",
    "bad_url",
    "long_statement_descriptor",
)

_ADJECTIVES = ("Classic", "Organic", "Smart", "Compact", "Premium", "Vintage", "Eco", "Deluxe", "Ultra", "Mini")
_NOUNS = ("Backpack", "Lamp", "Notebook", "Mug", "Headphones", "Plan", "Course", "Chair", "Kit", "Bottle")
_CATEGORIES = ("home", "office", "outdoor", "digital", "kitchen", "audio")


@dataclass(frozen=True)
class DemoCatalog:
    products: list[CmsProduct]
    # cms id -> the invalid kind planted in that row; the validator must find exactly these.
    invalid: dict[str, str] = field(default_factory=dict)


def _pick(rng: random.Random, weights: Sequence[tuple[str, int]]) -> str:
    return rng.choices([w[0] for w in weights], weights=[w[1] for w in weights], k=1)[0]


def _price_for(rng: random.Random, currency: str) -> Decimal:
    if currency == "jpy":
        return Decimal(rng.randrange(300, 50_000, 10))
    if currency == "kwd":
        # Three-decimal currency: Stripe requires the last minor digit to be 0.
        return Decimal(rng.randrange(500, 90_000, 10)) / Decimal(1000)
    return Decimal(rng.randrange(99, 99_999)) / Decimal(100)


def default_anchor() -> datetime:
    """Midnight UTC of today: the demo's newest day is today's partition."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def generate_catalog(
    n: int, seed: int = 7, *, anchor: datetime | None = None, days: int = 90, id_prefix: str = "cms-"
) -> DemoCatalog:
    """n products with `updated_at` spread over the `days` days before `anchor` (and the anchor day)."""
    products: list[CmsProduct] = []
    invalid: dict[str, str] = {}
    for product, kind in _generate(n, seed, anchor=anchor, days=days, id_prefix=id_prefix):
        if kind is not None:
            invalid[product.id] = kind
        products.append(product)
    return DemoCatalog(products=products, invalid=invalid)


def iter_catalog(
    n: int, seed: int = 7, *, anchor: datetime | None = None, days: int = 90, id_prefix: str = "cms-"
) -> Iterator[CmsProduct]:
    """The rows of `generate_catalog(...)`, one at a time (a catalog too big to hold, for the benchmark)."""
    for product, _kind in _generate(n, seed, anchor=anchor, days=days, id_prefix=id_prefix):
        yield product


def _generate(
    n: int, seed: int, *, anchor: datetime | None, days: int, id_prefix: str
) -> Iterator[tuple[CmsProduct, str | None]]:
    rng = random.Random(seed)
    anchor = anchor or default_anchor()
    n_invalid = round(n * INVALID_SHARE)
    # Spread the invalid rows evenly and cycle the kinds so every kind appears once n is large enough.
    invalid_at = {int(i * n / n_invalid): INVALID_KINDS[i % len(INVALID_KINDS)] for i in range(n_invalid)}
    width = max(5, len(str(n)))
    for i in range(n):
        cms_id = f"{id_prefix}{i:0{width}d}"
        currency = _pick(rng, CURRENCY_WEIGHTS)
        status = _pick(rng, STATUS_WEIGHTS)
        created = anchor - timedelta(days=days + 30, seconds=rng.randrange(0, 86_400 * 30))
        # Seconds resolution on purpose: many rows share one updated_at, as bulk CMS edits do.
        updated = anchor - timedelta(days=rng.randrange(0, days), seconds=rng.randrange(0, 86_400, 60))
        recurring = rng.random() < RECURRING_SHARE
        interval = rng.choice(("month", "month", "year", "week")) if recurring else None
        interval_count = (3 if interval == "month" and rng.random() < 0.2 else 1) if recurring else None
        adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
        metadata: dict[str, Any] = {"category": rng.choice(_CATEGORIES), "sku": f"SKU-{i:06d}"}
        if rng.random() < 0.3:
            metadata["featured"] = "true"
        images = tuple(f"https://cdn.example.com/img/{cms_id}/{k}.jpg" for k in range(rng.randrange(0, 4)))
        fields: dict[str, Any] = {
            "id": cms_id,
            "title": f"{adjective} {noun} {i}",
            "description": f"The {adjective.lower()} {noun.lower()} (item {i}).",
            "price": _price_for(rng, currency),
            "currency": currency,
            "recurring_interval": interval,
            "recurring_interval_count": interval_count,
            "images": images,
            "metadata": metadata,
            "status": status,
            "tax_code": "txcd_99999999" if rng.random() < 0.5 else None,
            "unit_label": "seat" if recurring and rng.random() < 0.3 else None,
            "statement_descriptor": f"DEMO {noun.upper()}"[:22] if rng.random() < 0.3 else None,
            "url": f"https://shop.example.com/p/{cms_id}" if rng.random() < 0.7 else None,
            "shippable": None if recurring else rng.random() < 0.6,
            "created_at": created,
            "updated_at": updated,
            "deleted_at": updated if rng.random() < SOFT_DELETED_SHARE else None,
        }
        kind = invalid_at.get(i)
        if kind is not None:
            fields = _make_invalid(fields, kind)
        yield CmsProduct(**fields), kind


def _make_invalid(fields: dict[str, Any], kind: str) -> dict[str, Any]:
    """Plant one defect; the row stays published and live so validation, not status, must catch it."""
    f = dict(fields, status=STATUS_PUBLISHED, deleted_at=None)
    if kind == "missing_title":
        f["title"] = None
    elif kind == "negative_price":
        f["price"] = Decimal("-5.00")
    elif kind == "sub_unit_price":
        f["price"] = Decimal("1.5") if f["currency"] == "jpy" else Decimal("0.001")
    elif kind == "unknown_currency":
        f["currency"] = "xyz"
    elif kind == "too_many_metadata_keys":
        f["metadata"] = {f"attr_{k:02d}": str(k) for k in range(60)}
    elif kind == "too_many_images":
        f["images"] = tuple(f"https://cdn.example.com/img/{f['id']}/x{k}.jpg" for k in range(12))
    elif kind == "bad_url":
        f["url"] = "htp:/not a url"
    elif kind == "long_statement_descriptor":
        f["statement_descriptor"] = "THIS DESCRIPTOR IS FAR TOO LONG"
    else:  # pragma: no cover - INVALID_KINDS is closed
        raise ValueError(kind)
    return f


def write_catalog(engine: sa.engine.Engine, products: Sequence[CmsProduct], table: str = DEFAULT_TABLE) -> int:
    """Create the schema (with the trigger on PostgreSQL) and insert the products."""
    create_schema(engine, table)
    return insert_products(engine, products, table)
