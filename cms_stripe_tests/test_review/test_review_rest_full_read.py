"""Review of issue 11: on Supabase REST a run over every partition (the `full` strategy: no lower and
no upper bound) reads each row whose updated_at is null twice, once at the tail of the keyset walk
(PostgREST sorts nulls last and nothing filters them out) and once more by the undated read. The
validation then quarantines both copies as `duplicate_cms_id`, so such rows are never migrated."""

from __future__ import annotations

import sqlalchemy as sa

from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.core.validation import split_valid
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cms.conftest import fresh_table
from cms_stripe_tests.test_review.rows import KEY, ROWS


def test_review_rest_full_window_reads_an_undated_row_once(pg_database, tmp_path):
    engine = sa.create_engine(pg_database)
    fresh_table(engine, ROWS)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products DISABLE TRIGGER USER")  # the demo schema stamps updated_at
        conn.exec_driver_sql("UPDATE products SET updated_at = NULL WHERE id = 'r1'")
        conn.exec_driver_sql("ALTER TABLE products ENABLE TRIGGER USER")
    server = PostgrestTestServer(pg_database, KEY).start()
    source = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "b", retry_wait=0.01)
    try:
        # What raw_cms_products asks for when the run covers the first and the last partition.
        rows = list(source.read_window(None, None, include_undated=True))
    finally:
        source.close()
        server.stop()
        engine.dispose()
    _, quarantined = split_valid(rows)
    assert [(p.id, [i.code for i in issues]) for p, issues in quarantined] == []
    assert sorted(p.id for p in rows) == ["r0", "r1", "r2"]
