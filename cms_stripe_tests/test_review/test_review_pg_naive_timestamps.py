"""Review of issue 11: a years-old table often has `updated_at timestamp` (without time zone). The
reader takes such values as UTC (`from_db_timestamp`), but the window filter binds aware datetimes,
which PostgreSQL compares after converting the column with the session TimeZone. On a database whose
TimeZone is not UTC, a row is then read by a different partition than the one it is assigned to (and
that the change sensor requests), so the sensor's run for the row's day never reads the row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.days import PartitionSpan, day_start
from cms_stripe_tests.test_cms.conftest import fresh_table

LATE = datetime(2026, 2, 1, 23, 30, tzinfo=UTC)


def test_review_naive_updated_at_is_read_by_the_partition_it_is_assigned_to(pg_engine, pg_database):
    row = CmsProduct(id="late", title="Late edit", price=Decimal("5.00"), currency="usd", updated_at=LATE)
    fresh_table(pg_engine, [row])
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE products ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC'"
        )
    engine = sa.create_engine(pg_database, connect_args={"options": "-c timezone=America/New_York"})
    source = SqlCatalogSource(engine)
    try:
        (read,) = list(source.read_window(None, None, include_undated=True))
        span = PartitionSpan("2026-01-01", "2026-03-01")
        key = span.key_for(read.updated_at)
        assert key == "2026-02-01"
        start, end, undated = span.read_bounds(key, key)
        assert start == day_start("2026-02-01")
        ids = [p.id for p in source.read_window(start, end, include_undated=undated)]
        assert ids == ["late"], "the partition the row is assigned to does not read it"
    finally:
        source.close()
        engine.dispose()
