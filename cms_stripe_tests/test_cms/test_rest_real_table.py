"""Supabase REST write-back on a table that looks like a real shop's, not like our schema.

The table has NOT NULL columns the tool does not know (`name`, `sku`, no defaults), the
`moddatetime`-style trigger, an audit trigger that records every INSERT, and row level security
with no policy, served by the PostgREST-compatible test server connected as a role with BYPASSRLS
(what Supabase's service role is).

What must hold:
- write-back of the sync columns of existing rows succeeds and changes nothing else (PostgreSQL
  checks NOT NULL on an INSERT's proposed row before ON CONFLICT, so an upsert fails here);
- a row deleted between the read and the write-back is not recreated, whether it is deleted before
  write_back is called or while it runs (between its own read and its write); no INSERT reaches the
  table at all;
- compare-and-set: a row whose sync columns an editor changed after the run read them is left as
  the editor left it, including when the edit lands while write_back runs.

Compare-and-set: each `SyncUpdate.expected` carries the link columns (`stripe_product_id`,
`stripe_price_id`, `sync_hash`) the run read; only rows that still hold them (or already hold what is
written) are changed. `write_back` returns a `WriteBackResult`: rows written, conflicts, missing rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.core.catalog import SyncLink, SyncUpdate
from cms_stripe_tests.postgrest_server import PostgrestTestServer

KEY = "service-role-real-table-test"
TABLE = "shop_products"
SYNC = ("stripe_product_id", "stripe_price_id", "sync_status", "sync_error", "synced_at", "sync_hash")
SYNCED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

DDL = f"""
CREATE TABLE {TABLE} (
    id text PRIMARY KEY,
    name text NOT NULL,
    sku text NOT NULL,
    title text,
    description text,
    price numeric(14,4),
    currency text,
    recurring_interval text,
    recurring_interval_count integer,
    images jsonb,
    metadata jsonb,
    status text,
    tax_code text,
    unit_label text,
    statement_descriptor text,
    url text,
    shippable boolean,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    stripe_product_id text,
    stripe_price_id text,
    sync_status text DEFAULT 'pending',
    sync_error text,
    synced_at timestamptz,
    sync_hash text
);
CREATE TABLE {TABLE}_audit (at timestamptz DEFAULT clock_timestamp(), op text, product_id text);
CREATE FUNCTION {TABLE}_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER {TABLE}_moddatetime BEFORE UPDATE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION {TABLE}_touch();
CREATE FUNCTION {TABLE}_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO {TABLE}_audit (op, product_id) VALUES (TG_OP, NEW.id); RETURN NEW; END $$;
CREATE TRIGGER {TABLE}_audit_insert AFTER INSERT ON {TABLE} FOR EACH ROW EXECUTE FUNCTION {TABLE}_audit_fn();
ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY
"""

ROWS = [
    {"id": "tee-1", "name": "Tee", "sku": "TEE-001", "title": "Tee", "price": "19.99", "currency": "usd"},
    {"id": "mug-2", "name": "Mug", "sku": "MUG-002", "title": "Mug", "price": "9.50", "currency": "eur"},
    {"id": "cap-3", "name": "Cap", "sku": "CAP-003", "title": "Cap", "price": "15.00", "currency": "usd"},
]
LEGACY = {"tee-1": "prod_OldTee", "mug-2": "prod_OldMug", "cap-3": None}


@pytest.fixture(scope="module")
def database(pg_database: str) -> Iterator[tuple[sa.engine.Engine, str]]:
    """The shop table, and the URL of a BYPASSRLS login role (Supabase's service role) for the server."""
    role = f"svc_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(pg_database)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_audit CASCADE")
        conn.exec_driver_sql(DDL)
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN BYPASSRLS")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE}, {TABLE}_audit TO {role}")
    url = sa.engine.make_url(pg_database).set(username=role).render_as_string(hide_password=False)
    try:
        yield engine, url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_audit CASCADE")
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()


@pytest.fixture(scope="module")
def server(database: tuple[sa.engine.Engine, str]) -> Iterator[PostgrestTestServer]:
    with PostgrestTestServer(database[1], KEY) as srv:
        yield srv


@pytest.fixture()
def db(database: tuple[sa.engine.Engine, str], server: PostgrestTestServer) -> sa.engine.Engine:
    """The table holding ROWS afresh (tee and mug linked to an earlier tool's products)."""
    engine = database[0]
    server.set_before_write(None)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM {TABLE}")
        for row in ROWS:
            conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} (id, name, sku, title, price, currency, status, stripe_product_id, "
                    "sync_status, updated_at) VALUES (:id, :name, :sku, :title, CAST(:price AS numeric), "
                    ":currency, 'published', :legacy, :status, '2019-05-01T00:00:00Z')"
                ),
                {**row, "legacy": LEGACY[row["id"]], "status": "synced" if LEGACY[row["id"]] else "pending"},
            )
        conn.exec_driver_sql(f"DELETE FROM {TABLE}_audit")
    return engine


@pytest.fixture()
def source(server: PostgrestTestServer, tmp_path: Any) -> Iterator[Any]:
    src = RestCatalogSource(server.url, KEY, mapping=ColumnMapping(table=TABLE), backup_dir=str(tmp_path / "backups"))
    yield src
    src.close()


def table_rows(engine: sa.engine.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {TABLE}")).mappings()}


def inserts(engine: sa.engine.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql(f"SELECT product_id FROM {TABLE}_audit WHERE op = 'INSERT'")]


def update_for(cms_id: str, n: int = 1) -> SyncUpdate:
    return SyncUpdate(
        id=cms_id,
        sync_status="synced",
        stripe_product_id=f"prod_cms_{cms_id}",
        stripe_price_id=f"price_New{n}{cms_id.replace('-', '')}",
        sync_error=None,
        synced_at=SYNCED_AT,
        sync_hash=f"hash-{cms_id}-{n}",
    )


def expected_sync(update: SyncUpdate) -> dict[str, Any]:
    return {
        "stripe_product_id": update.stripe_product_id,
        "stripe_price_id": update.stripe_price_id,
        "sync_status": update.sync_status,
        "sync_error": update.sync_error,
        "synced_at": update.synced_at,
        "sync_hash": update.sync_hash,
    }


def snapshot(products: list[Any]) -> dict[str, dict[str, Any]]:
    """The sync columns of each row as the run read them."""
    return {p.id: {c: getattr(p, c) for c in SYNC} for p in products}


def cas_write_back(source: Any, updates: list[SyncUpdate], read: dict[str, dict[str, Any]], run_id: str) -> int:
    """Write back with each update expecting the link columns the run read (see the module docstring)."""
    with_expected = [
        replace(
            u,
            expected=SyncLink(read[u.id]["stripe_product_id"], read[u.id]["stripe_price_id"], read[u.id]["sync_hash"]),
        )
        for u in updates
    ]
    return source.write_back(with_expected, run_id=run_id).written


def without(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in columns}


def test_write_back_on_a_table_with_unknown_not_null_columns_changes_only_sync_columns(db, source):
    before = table_rows(db)
    products = source.read_ids([r["id"] for r in ROWS])
    assert sorted(p.id for p in products) == ["cap-3", "mug-2", "tee-1"]
    updates = [update_for(r["id"]) for r in ROWS]

    written = source.write_back(updates, run_id="run-not-null").written

    assert written == 3
    after = table_rows(db)
    assert set(after) == set(before)
    for u in updates:
        assert {c: after[u.id][c] for c in SYNC} == expected_sync(u)
        # Everything but the sync columns is as the editor left it (updated_at is the trigger's).
        assert without(after[u.id], *SYNC, "updated_at") == without(before[u.id], *SYNC, "updated_at")
        assert after[u.id]["name"] and after[u.id]["sku"] == before[u.id]["sku"]
    assert inserts(db) == []


@pytest.mark.parametrize("when", ["before_write_back", "during_write_back"])
def test_a_row_deleted_mid_run_is_not_recreated(db, source, server, when):
    products = source.read_ids([r["id"] for r in ROWS])
    assert len(products) == 3
    updates = [update_for(r["id"]) for r in ROWS]

    def delete_mug(*_: Any) -> None:
        server.set_before_write(None)
        with db.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE id = 'mug-2'")

    if when == "before_write_back":
        delete_mug()
    else:
        # The editor's delete lands after write_back's own reads, just before its first write request.
        server.set_before_write(delete_mug)

    written = source.write_back(updates, run_id=f"run-delete-{when}").written

    after = table_rows(db)
    assert set(after) == {"tee-1", "cap-3"}, "the deleted row came back"
    assert inserts(db) == [], "write-back sent an INSERT"
    assert written == 2
    for u in updates:
        if u.id in after:
            assert {c: after[u.id][c] for c in SYNC} == expected_sync(u)


def test_a_row_deleted_mid_run_is_not_recreated_on_a_nullable_table(database, server, source, db):
    """Same on a table without NOT NULL columns, where an upsert succeeds and would leave a ghost row."""
    engine = database[0]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {TABLE} ALTER COLUMN name DROP NOT NULL, ALTER COLUMN sku DROP NOT NULL")
    try:
        source.read_ids([r["id"] for r in ROWS])
        updates = [update_for(r["id"]) for r in ROWS]

        def delete_mug(*_: Any) -> None:
            server.set_before_write(None)
            with db.begin() as conn:
                conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE id = 'mug-2'")

        server.set_before_write(delete_mug)
        source.write_back(updates, run_id="run-delete-nullable")
        after = table_rows(db)
        assert "mug-2" not in after, f"ghost row: {after.get('mug-2')}"
        assert inserts(db) == []
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE name IS NULL OR sku IS NULL")
            conn.exec_driver_sql(f"ALTER TABLE {TABLE} ALTER COLUMN name SET NOT NULL, ALTER COLUMN sku SET NOT NULL")


@pytest.mark.parametrize("when", ["before_write_back", "during_write_back"])
def test_write_back_is_compare_and_set(db, source, server, when):
    """An editor who clears stripe_product_id after the run read the row wins; the other rows are written."""
    products = source.read_ids([r["id"] for r in ROWS])
    read = snapshot(products)
    assert read["tee-1"]["stripe_product_id"] == "prod_OldTee"
    updates = [update_for(r["id"]) for r in ROWS]

    def editor_unlinks_tee(*_: Any) -> None:
        server.set_before_write(None)
        with db.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE {TABLE} SET stripe_product_id = NULL, sync_status = 'pending' WHERE id = 'tee-1'"
            )

    if when == "before_write_back":
        editor_unlinks_tee()
    else:
        server.set_before_write(editor_unlinks_tee)
    written = cas_write_back(source, updates, read, run_id=f"run-cas-{when}")

    after = table_rows(db)
    edited = {c: after["tee-1"][c] for c in SYNC}
    assert edited == {
        "stripe_product_id": None,
        "stripe_price_id": None,
        "sync_status": "pending",
        "sync_error": None,
        "synced_at": None,
        "sync_hash": None,
    }, "the write-back overwrote the editor's change"
    for u in updates:
        if u.id != "tee-1":
            assert {c: after[u.id][c] for c in SYNC} == expected_sync(u)
    assert written == 2
    assert inserts(db) == []
