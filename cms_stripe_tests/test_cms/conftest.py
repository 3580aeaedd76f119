"""Deterministic CMS catalogs for the backend tests: 10,000 rows in tie groups of 25 on updated_at."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from cms_stripe.cms.schema import create_schema, drop_schema
from cms_stripe.cms.sql import insert_products
from cms_stripe.core.catalog import SYNC_SYNCED, CmsProduct, content_hash

N_ROWS = 10_000
TIE_GROUP = 25
BASE = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=36, microseconds=37)  # 400 groups over 10 days; odd microseconds test precision


def make_products(n: int = N_ROWS, seed: int = 11) -> list[CmsProduct]:
    """Rows whose id order differs from insertion order inside each updated_at tie group; every third synced."""
    rng = random.Random(seed)
    numbers = list(range(n))
    rng.shuffle(numbers)
    products = []
    for i in range(n):
        p = CmsProduct(
            id=f"prod_{numbers[i]:05d}",
            title=f"Product {numbers[i]}" if i % 50 else None,
            description=f"d{i}" if i % 2 else None,
            price=Decimal(rng.randint(100, 99_999)) / 100,
            currency=("EUR", "usd")[i % 2].lower(),
            recurring_interval=("month" if i % 7 == 0 else None),
            recurring_interval_count=(1 if i % 7 == 0 else None),
            images=tuple(f"https://img.example/{numbers[i]}/{k}.png" for k in range(i % 3)),
            metadata={"sku": f"SKU-{numbers[i]}", "n": i % 5} if i % 4 else {},
            status=("published", "draft", "archived")[i % 3],
            shippable=(None, True, False)[i % 3],
            created_at=BASE - timedelta(days=30),
            updated_at=BASE + (i // TIE_GROUP) * STEP,
            sync_status="pending",
        )
        if i % 3 == 0:
            p = replace(p, sync_status=SYNC_SYNCED, stripe_product_id=f"prod_S{i}", sync_hash=content_hash(p))
        products.append(p)
    return products


@pytest.fixture(scope="session")
def catalog() -> list[CmsProduct]:
    return make_products()


def fresh_table(engine: sa.engine.Engine, products: list[CmsProduct], table: str = "products") -> None:
    drop_schema(engine, table)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS cms_stripe_backups")
    create_schema(engine, table)
    insert_products(engine, products, table)


@pytest.fixture()
def sqlite_engine(sqlite_url: str) -> Iterator[sa.engine.Engine]:
    engine = sa.create_engine(sqlite_url)
    try:
        yield engine
    finally:
        engine.dispose()
