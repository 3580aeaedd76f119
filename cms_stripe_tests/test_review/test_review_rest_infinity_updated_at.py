"""Review of issue 11: on Supabase REST a row whose updated_at PostgreSQL holds as 'infinity' is read
without a timestamp, so it is assigned to the first partition, and the change sensor requests that
partition for it. But the REST read of the first partition fetches only `updated_at is null` besides
its window, so the requested run never reads the row (the SQL backend reads such values with the
undated rows). The run key does not change, so the sensor never asks again: the row is never synced
nor quarantined by the automation."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.core.changes import decide_changed_partitions
from cms_stripe.core.days import PartitionSpan
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cms.conftest import fresh_table
from cms_stripe_tests.test_review.rows import KEY, ROWS, T


def test_review_rest_row_with_infinite_updated_at_is_read_by_the_partition_the_sensor_requests(pg_database, tmp_path):
    engine = sa.create_engine(pg_database)
    fresh_table(engine, ROWS)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products DISABLE TRIGGER USER")
        conn.exec_driver_sql("UPDATE products SET updated_at = 'infinity' WHERE id = 'r1'")
        conn.exec_driver_sql("ALTER TABLE products ENABLE TRIGGER USER")
    server = PostgrestTestServer(pg_database, KEY).start()
    source = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "b", retry_wait=0.01)
    span = PartitionSpan("2026-01-01", "2026-03-01")
    try:
        cursor = T + timedelta(hours=1)
        changed = source.changed_days_since(cursor)
        decision = decide_changed_partitions(cursor.isoformat(), changed, span, T + timedelta(hours=2))
        assert decision.partition_range is not None
        first, last = decision.partition_range
        start, end, undated = span.read_bounds(first, last)
        ids = sorted(p.id for p in source.read_window(start, end, include_undated=undated))
    finally:
        source.close()
        server.stop()
        engine.dispose()
    assert "r1" in ids, f"the sensor asks for {first}..{last}, whose read returns {ids}"
