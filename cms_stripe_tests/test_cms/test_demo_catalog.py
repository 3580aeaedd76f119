"""The demo catalog: schema on PostgreSQL (with the updated_at trigger) and SQLite, and the
generator's invariants that `make demo` and the reconciliation tests rely on."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import INVALID_KINDS, generate_catalog, write_catalog
from cms_stripe.cms.schema import create_schema, drop_schema, from_db_timestamp
from cms_stripe.core.catalog import STATUS_ARCHIVED, STATUS_DRAFT, STATUS_PUBLISHED

ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)
N = 10_000


@pytest.fixture(scope="module")
def catalog():
    return generate_catalog(N, seed=11, anchor=ANCHOR)


def test_generator_is_deterministic_for_a_seed(catalog):
    again = generate_catalog(N, seed=11, anchor=ANCHOR)
    assert again.products == catalog.products
    assert again.invalid == catalog.invalid
    other = generate_catalog(N, seed=12, anchor=ANCHOR)
    assert other.products != catalog.products


def test_generator_invariants(catalog):
    products = catalog.products
    assert len(products) == N
    assert len({p.id for p in products}) == N

    statuses = collections.Counter(p.status for p in products)
    assert set(statuses) == {STATUS_PUBLISHED, STATUS_DRAFT, STATUS_ARCHIVED}
    assert statuses[STATUS_PUBLISHED] > 0.75 * N
    assert statuses[STATUS_DRAFT] > 0.05 * N and statuses[STATUS_ARCHIVED] > 0.03 * N
    assert sum(p.deleted_at is not None for p in products) > 0.01 * N

    currencies = collections.Counter(p.currency for p in products if p.id not in catalog.invalid)
    assert {"usd", "eur", "gbp", "jpy", "kwd", "cad"} <= set(currencies)
    assert currencies["jpy"] > 0.05 * N and currencies["kwd"] > 0.02 * N
    # Valid prices are exactly representable in the currency's minor unit.
    for p in products:
        if p.id in catalog.invalid or p.price is None:
            continue
        exponent = {"jpy": 0, "kwd": 3}.get(p.currency or "", 2)
        minor = p.price * (Decimal(10) ** exponent)
        assert minor == minor.to_integral_value(), p
        if p.currency == "kwd":
            assert int(minor) % 10 == 0, p

    assert sum(p.recurring_interval is not None for p in products) > 0.15 * N
    assert any(p.images for p in products) and any(p.metadata for p in products)

    # About 3 % invalid rows, every kind present, each row with the defect it claims.
    assert 0.025 * N <= len(catalog.invalid) <= 0.035 * N
    assert set(catalog.invalid.values()) == set(INVALID_KINDS)
    by_id = {p.id: p for p in products}
    checks = {
        "missing_title": lambda p: not p.title,
        "negative_price": lambda p: p.price is not None and p.price < 0,
        "sub_unit_price": lambda p: p.price in (Decimal("1.5"), Decimal("0.001")),
        "unknown_currency": lambda p: p.currency == "xyz",
        "too_many_metadata_keys": lambda p: len(p.metadata) == 60,
        "too_many_images": lambda p: len(p.images) == 12,
        "bad_url": lambda p: not (p.url or "").startswith(("http://", "https://")),
        "long_statement_descriptor": lambda p: len(p.statement_descriptor or "") > 22,
    }
    for cms_id, kind in catalog.invalid.items():
        assert checks[kind](by_id[cms_id]), (cms_id, kind)
        assert by_id[cms_id].status == STATUS_PUBLISHED and by_id[cms_id].deleted_at is None

    updated = [p.updated_at for p in products if p.updated_at]
    assert min(updated) >= ANCHOR - timedelta(days=90) and max(updated) < ANCHOR + timedelta(days=1)
    assert len({u.date() for u in updated}) >= 85
    # Rows sharing one updated_at exist (bulk edits), so keyset pagination is exercised on ties.
    assert max(collections.Counter(updated).values()) >= 2


def _assert_table_matches(engine: sa.engine.Engine, catalog) -> None:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, price, currency, status, images, metadata, updated_at, sync_status FROM products"
        ).all()
    assert len(rows) == N
    by_id = {p.id: p for p in catalog.products}
    for row in rows[:500]:
        product = by_id[row.id]
        assert Decimal(str(row.price)) == product.price
        assert row.currency == product.currency and row.status == product.status
        images = json.loads(row.images) if isinstance(row.images, str) else row.images
        metadata = json.loads(row.metadata) if isinstance(row.metadata, str) else row.metadata
        assert tuple(images) == product.images and metadata == product.metadata
        assert from_db_timestamp(row.updated_at) == product.updated_at
        assert row.sync_status == "pending"


def test_postgres_schema_and_catalog(pg_engine, catalog):
    drop_schema(pg_engine)
    assert write_catalog(pg_engine, catalog.products) == N
    _assert_table_matches(pg_engine, catalog)
    # The moddatetime-style trigger bumps updated_at on every UPDATE, our own write-back included.
    with pg_engine.begin() as conn:
        before = conn.exec_driver_sql(
            "SELECT updated_at FROM products WHERE id = %(id)s", {"id": "cms-00001"}
        ).scalar_one()
        conn.exec_driver_sql("UPDATE products SET sync_status = 'synced' WHERE id = %(id)s", {"id": "cms-00001"})
    with pg_engine.connect() as conn:
        after = conn.exec_driver_sql(
            "SELECT updated_at FROM products WHERE id = %(id)s", {"id": "cms-00001"}
        ).scalar_one()
    assert after > before
    # create_schema is idempotent (re-running set-up must not fail or lose rows).
    create_schema(pg_engine)
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar_one() == N
    drop_schema(pg_engine)


def test_sqlite_schema_and_catalog(sqlite_url, catalog):
    engine = sa.create_engine(sqlite_url)
    try:
        assert write_catalog(engine, catalog.products) == N
        _assert_table_matches(engine, catalog)
        create_schema(engine)
    finally:
        engine.dispose()
