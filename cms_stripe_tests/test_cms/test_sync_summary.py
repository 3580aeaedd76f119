"""`cms-stripe status` counts the catalog in the database: rows by sync_status (null or empty:
pending) and the oldest pending row's updated_at, on SQLite, PostgreSQL and the REST backend, without
reading the rows (two aggregate statements on SQL; three columns per page on REST)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.status import SyncState
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cms.conftest import fresh_table, make_products

KEY = "service-role-test-key"

# (sync_status, updated_at) of each row, in id order.
ROWS: list[tuple[str | None, datetime | None]] = [
    ("synced", datetime(2025, 12, 1, tzinfo=UTC)),  # older than every pending row: not the oldest pending
    ("synced", datetime(2026, 1, 4, tzinfo=UTC)),
    ("synced", datetime(2026, 1, 6, tzinfo=UTC)),
    ("pending", datetime(2026, 1, 5, 12, 30, tzinfo=UTC)),
    ("pending", datetime(2026, 1, 3, 8, 15, 1, 250000, tzinfo=UTC)),
    (None, datetime(2026, 1, 7, tzinfo=UTC)),
    ("", datetime(2026, 1, 8, tzinfo=UTC)),
    ("pending", None),
    ("quarantined", datetime(2026, 1, 1, tzinfo=UTC)),
    ("failed", datetime(2026, 1, 2, tzinfo=UTC)),
    ("archived", datetime(2026, 1, 2, tzinfo=UTC)),
]
EXPECTED = SyncState(
    {"pending": 5, "synced": 3, "archived": 1, "quarantined": 1, "failed": 1},
    datetime(2026, 1, 3, 8, 15, 1, 250000, tzinfo=UTC),
)


def _catalog():
    base = make_products(len(ROWS))
    return [
        replace(p, id=f"row-{i:02d}", sync_status=status, updated_at=updated)
        for i, (p, (status, updated)) in enumerate(zip(base, ROWS, strict=True))
    ]


def _summary_counting_statements(source: SqlCatalogSource) -> tuple[SyncState, list[str]]:
    source.check()
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    sa.event.listen(source.engine, "before_cursor_execute", record)
    try:
        return source.sync_summary(), statements
    finally:
        sa.event.remove(source.engine, "before_cursor_execute", record)


def test_sqlite_counts_by_status_in_two_aggregate_statements(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    fresh_table(engine, _catalog())
    state, statements = _summary_counting_statements(SqlCatalogSource(engine))
    assert state == EXPECTED
    assert list(state.counts) == ["pending", "synced", "archived", "quarantined", "failed"]
    assert len(statements) == 2 and "GROUP BY" in statements[0] and "MIN(" in statements[1]
    engine.dispose()


def test_postgresql_counts_by_status_in_two_aggregate_statements(pg_engine):
    fresh_table(pg_engine, _catalog())
    state, statements = _summary_counting_statements(SqlCatalogSource(pg_engine))
    assert state == EXPECTED
    assert len(statements) == 2 and "GROUP BY" in statements[0] and "MIN(" in statements[1]


def test_postgresql_empty_catalog_has_no_counts(pg_engine):
    fresh_table(pg_engine, [])
    assert SqlCatalogSource(pg_engine).sync_summary() == SyncState({}, None)


@pytest.fixture()
def rest_source(pg_database, pg_engine, tmp_path) -> Iterator[tuple[RestCatalogSource, PostgrestTestServer]]:
    fresh_table(pg_engine, _catalog())
    with PostgrestTestServer(pg_database, KEY) as server:
        server.set_max_rows(4)  # pages capped below the asked size: the walk goes on past short pages
        source = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "backups", page_size=5)
        try:
            yield source, server
        finally:
            source.close()


def test_rest_counts_from_three_columns_per_page(rest_source):
    source, server = rest_source
    source.check()
    before = len(server.requests)
    assert source.sync_summary() == EXPECTED
    reads = server.requests[before:]
    # 11 rows in pages of at most 4, then the empty page that ends the walk.
    assert len(reads) == 4
    selects = [dict(r.params)["select"] for r in reads]
    assert selects == ["f_id:id,f_sync_status:sync_status,f_updated_at:updated_at"] * 4
