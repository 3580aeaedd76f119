"""Review of issue 11: real Supabase tables key products by `uuid` or `bigint identity`, not text.
The SQL backend binds ids as text in `WHERE id IN (...)` / `WHERE id = :id`; this pins down that
reading by id, the shared-link lookup and the compare-and-set write-back work on such tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import CmsProduct, SyncLink, SyncUpdate
from cms_stripe_tests.test_cms.conftest import fresh_table

T = datetime(2026, 2, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "ids, alter",
    [
        (["1", "2", "10"], "bigint USING id::bigint"),
        (
            ["3f1c2b9e-6d4a-4c1e-9f3a-2b7d8e9a0c11", "7a2e4d10-1b3c-4d5e-8f90-a1b2c3d4e5f6"],
            "uuid USING id::uuid",
        ),
    ],
)
def test_review_typed_id_column_read_and_write_back(pg_engine, ids, alter):
    rows = [
        CmsProduct(id=i, title=f"Row {i}", price=Decimal("5.00"), currency="usd", updated_at=T + timedelta(minutes=n))
        for n, i in enumerate(ids)
    ]
    fresh_table(pg_engine, rows)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE products ALTER COLUMN id TYPE {alter}")
    source = SqlCatalogSource(pg_engine)
    try:
        read = list(source.read_window(None, None, include_undated=True))
        assert [(p.id, p.read_errors) for p in read] == [(i, ()) for i in ids]
        assert sorted(p.id for p in source.read_ids(ids)) == sorted(ids)
        result = source.write_back(
            [
                SyncUpdate(
                    id=ids[0],
                    sync_status="synced",
                    stripe_product_id="prod_x",
                    sync_hash="h",
                    expected=SyncLink(None, None, None),
                )
            ],
            run_id="review-run",
        )
        assert result.written == 1
        assert source.restore_backup("review-run").written == 1
    finally:
        source.close()
