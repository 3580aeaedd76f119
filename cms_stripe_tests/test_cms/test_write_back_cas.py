"""Write-back that real tables accept, on SQLite, PostgreSQL and Supabase REST alike.

Pins down: an update by id never creates a row (a row deleted mid-run stays deleted); compare-and-set
on the link columns (an editor who cleared `stripe_product_id` after the run read the row wins, and a
retried write of the same values still lands); rollback restores only rows that still hold what the
run wrote; on PostgreSQL, timestamps psycopg cannot load ('infinity', BC, year 10000) are read as
undated rows with a reason instead of ending the page loop; and a schema-qualified table works.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import CmsProduct, SyncLink, SyncUpdate
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cms.conftest import fresh_table

KEY = "service-role-test-key"
T = datetime(2026, 2, 1, 12, tzinfo=UTC)
ROWS = [
    CmsProduct(id=f"r{i}", title=f"Row {i}", price=Decimal("5.00"), currency="usd", updated_at=T + timedelta(minutes=i))
    for i in range(6)
]
LINKED = {"r0": "prod_old_0", "r1": "prod_old_1"}


def _seed(engine: sa.engine.Engine, table: str = "products") -> None:
    fresh_table(engine, ROWS, table)
    with engine.begin() as conn:
        for cms_id, product_id in LINKED.items():
            conn.execute(
                sa.text(f"UPDATE {table} SET stripe_product_id = :p, sync_hash = 'h0' WHERE id = :i"),
                {"p": product_id, "i": cms_id},
            )


def _links(engine: sa.engine.Engine, table: str = "products") -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, stripe_product_id, sync_status, sync_hash FROM {table} ORDER BY id"))
        return {r.id: (r.stripe_product_id, r.sync_status, r.sync_hash) for r in rows}


@pytest.fixture(params=["sqlite", "postgres", "rest"])
def target(request, tmp_path) -> Iterator[tuple[str, sa.engine.Engine, object]]:
    """(kind, engine on the underlying table, source) with ROWS loaded and r0/r1 linked."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'cms.sqlite'}")
    else:
        engine = sa.create_engine(request.getfixturevalue("pg_database"))
    _seed(engine)
    if request.param == "rest":
        server = PostgrestTestServer(request.getfixturevalue("pg_database"), KEY).start()
        source: object = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "b", retry_wait=0.01)
    else:
        server = None
        source = SqlCatalogSource(engine)
    try:
        yield request.param, engine, source
    finally:
        source.close()  # type: ignore[attr-defined]
        if server is not None:
            server.stop()
        engine.dispose()


def _update(cms_id: str, product_id: str, expected: SyncLink | None) -> SyncUpdate:
    return SyncUpdate(id=cms_id, sync_status="synced", stripe_product_id=product_id, sync_hash="h1", expected=expected)


def test_compare_and_set_update_by_id(target):
    _, engine, source = target
    read = {p.id: p for p in source.read_all()}
    # An editor clears r0's link after the run read it; r5 is deleted mid-run.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET stripe_product_id = NULL WHERE id = 'r0'"))
        conn.execute(sa.text("DELETE FROM products WHERE id = 'r5'"))
    updates = [_update(i, f"prod_new_{i}", SyncLink.of(read[i])) for i in ("r0", "r1", "r2", "r5")]
    result = source.write_back(updates, run_id="run-a")
    assert (result.written, result.conflicts, result.missing) == (2, ("r0",), ("r5",))
    after = _links(engine)
    assert after["r0"] == (None, "pending", "h0"), "the editor's change wins"
    assert after["r1"] == ("prod_new_r1", "synced", "h1")
    assert after["r2"] == ("prod_new_r2", "synced", "h1")
    assert "r5" not in after, "an update never recreates a deleted row"
    assert len(after) == 5

    # The same write again (a retry after a lost answer): the rows already hold it, so it lands.
    again = source.write_back([_update("r1", "prod_new_r1", SyncLink.of(read["r1"]))], run_id="run-a")
    assert (again.written, again.conflicts) == (1, ())


def test_rollback_restores_only_rows_that_still_hold_what_the_run_wrote(target):
    _, engine, source = target
    read = {p.id: p for p in source.read_all()}
    updates = [_update(i, f"prod_new_{i}", SyncLink.of(read[i])) for i in ("r1", "r2", "r3")]
    assert source.write_back(updates, run_id="run-b").written == 3
    with engine.begin() as conn:  # after the run an editor re-links r3 by hand
        conn.execute(sa.text("UPDATE products SET stripe_product_id = 'prod_by_hand' WHERE id = 'r3'"))
    restored = source.restore_backup("run-b")
    assert (restored.written, restored.conflicts) == (2, ("r3",))
    after = _links(engine)
    assert after["r1"] == ("prod_old_1", "pending", "h0")
    assert after["r2"] == (None, "pending", None)
    assert after["r3"][0] == "prod_by_hand"
    # Rolling back twice restores the same values and still leaves r3 alone.
    twice = source.restore_backup("run-b")
    assert (twice.written, twice.conflicts) == (2, ("r3",))
    assert _links(engine) == after


def test_postgres_timestamps_psycopg_cannot_load_are_undated_rows(pg_database):
    engine = sa.create_engine(pg_database)
    _seed(engine)
    with engine.begin() as conn:
        # Without the trigger, which would stamp now() over the values this test stores.
        conn.exec_driver_sql("ALTER TABLE products DISABLE TRIGGER USER")
        conn.execute(sa.text("UPDATE products SET updated_at = :t WHERE id IN ('r0', 'r3', 'r5')"), {"t": T})
        conn.execute(sa.text("UPDATE products SET updated_at = 'infinity' WHERE id = 'r1'"))
        conn.execute(sa.text("UPDATE products SET updated_at = '0044-03-15 00:00:00+00 BC' WHERE id = 'r2'"))
        conn.execute(sa.text("UPDATE products SET created_at = '12000-01-01 00:00:00+00' WHERE id = 'r3'"))
        conn.execute(sa.text("UPDATE products SET updated_at = NULL WHERE id = 'r4'"))
    source = SqlCatalogSource(engine)
    try:
        dated = list(source.read_window(None, None))
        assert [p.id for p in dated] == ["r0", "r3", "r5"]
        r3 = next(p for p in dated if p.id == "r3")
        assert [(e.code, e.field) for e in r3.read_errors] == [("invalid_timestamp", "created_at")]
        everything = {p.id: p for p in source.read_window(None, None, include_undated=True)}
        assert sorted(everything) == ["r0", "r1", "r2", "r3", "r4", "r5"]
        assert [(e.code, e.field) for e in everything["r1"].read_errors] == [("invalid_timestamp", "updated_at")]
        assert [(e.code, e.field) for e in everything["r2"].read_errors] == [("invalid_timestamp", "updated_at")]
        assert everything["r4"].read_errors == () and everything["r4"].updated_at is None
        # A bounded window (an inner partition) holds none of them.
        inner = list(source.read_window(T, T + timedelta(days=1)))
        assert [p.id for p in inner] == ["r0", "r3", "r5"]
        assert source.changed_days_since(None).scanned_rows == 3
    finally:
        source.close()
        engine.dispose()


def test_schema_qualified_table_on_postgres(pg_database):
    engine = sa.create_engine(pg_database)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS cms")
        conn.exec_driver_sql("DROP TABLE IF EXISTS cms.cms_stripe_backups")
    _seed(engine, "cms.products")
    source = SqlCatalogSource(engine, mapping=ColumnMapping.from_dict({"table": "cms.products"}))
    try:
        source.check()
        assert sorted(p.id for p in source.read_window(None, None, include_undated=True)) == [p.id for p in ROWS]
        read = {p.id: p for p in source.read_all()}
        assert source.write_back([_update("r2", "prod_q", SyncLink.of(read["r2"]))], run_id="q").written == 1
        assert _links(engine, "cms.products")["r2"] == ("prod_q", "synced", "h1")
        with engine.connect() as conn:
            backed_up = conn.execute(sa.text("SELECT product_id FROM cms.cms_stripe_backups")).scalars().all()
        assert backed_up == ["r2"]
    finally:
        source.close()
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA cms CASCADE")
        engine.dispose()


def test_rows_sharing_a_stripe_product_are_found_across_the_table(target):
    _, engine, source = target
    with engine.begin() as conn:  # an editor duplicated r1 (now r4 names its product too)
        conn.execute(sa.text("UPDATE products SET stripe_product_id = 'prod_old_1' WHERE id = 'r4'"))
    found = {p.id for p in source.read_by_stripe_product_ids(["prod_old_1", "prod_old_0", "prod_none"])}
    assert {"r1", "r4"} <= found <= {"r0", "r1", "r4"}
    assert source.read_by_stripe_product_ids([]) == []
    # The rows a caller already holds are left out (a full run holds every row), the others are not.
    rest = {p.id for p in source.read_by_stripe_product_ids(["prod_old_1", "prod_old_0"], exclude_ids={"r1", "r0"})}
    assert rest == {"r4"}
