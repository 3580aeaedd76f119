"""Review of issue 11: extra `metadata_columns` on PostgreSQL are fetched in their native type, so a
value psycopg cannot load ('infinity' in a timestamptz or date column, a common "never expires"
idiom) ends the page loop for the whole window instead of quarantining that one row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import CmsProduct
from cms_stripe_tests.test_cms.conftest import fresh_table

T = datetime(2026, 2, 1, 12, tzinfo=UTC)
ROWS = [
    CmsProduct(id=f"r{i}", title=f"Row {i}", price=Decimal("5.00"), currency="usd", updated_at=T + timedelta(minutes=i))
    for i in range(3)
]


@pytest.mark.parametrize(
    "column_type, value", [("timestamptz", "infinity"), ("date", "infinity"), ("date", "0044-03-15 BC")]
)
def test_review_metadata_column_unloadable_value_does_not_end_the_read(pg_engine, column_type, value):
    fresh_table(pg_engine, ROWS)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE products ADD COLUMN available_until {column_type}")
        conn.exec_driver_sql(f"UPDATE products SET available_until = '{value}' WHERE id = 'r1'")
    source = SqlCatalogSource(pg_engine, mapping=ColumnMapping(metadata_columns=("available_until",)))
    rows = list(source.read_window(None, None, include_undated=True))
    # Every row comes back; r1 carries a reason rather than taking r0 and r2 down with it.
    assert sorted(p.id for p in rows) == ["r0", "r1", "r2"]
    r1 = next(p for p in rows if p.id == "r1")
    assert r1.read_errors or r1.metadata.get("available_until")


def test_review_metadata_column_unloadable_value_does_not_stall_the_sensor_read(pg_engine):
    fresh_table(pg_engine, ROWS)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products ADD COLUMN available_until timestamptz")
        conn.exec_driver_sql("UPDATE products SET available_until = 'infinity' WHERE id = 'r1'")
    source = SqlCatalogSource(pg_engine, mapping=ColumnMapping(metadata_columns=("available_until",)))
    # The sensor turns any exception into "could not read the CMS (will retry next tick)" and keeps
    # its cursor: a stored value that never loads makes it skip on every tick, forever.
    changed = source.changed_days_since(None)
    assert changed.scanned_rows == 3
