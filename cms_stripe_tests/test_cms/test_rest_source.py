"""The Supabase REST backend end to end: supabase-py over real HTTP to the PostgREST-compatible test
server, which runs the requests as SQL on the real PostgreSQL (with the updated_at trigger).

Pins down the same contract as the SQL backend: exact rows across keyset pages with tie groups,
chunked id reads, a hostile id list, write-back touching only the sync columns, the change check
after a write-back, backups and rollback; plus the REST-specific parts: no phantom rows from the
upsert, retries of gateway errors, the service-role key on every request, and the server's subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from postgrest.exceptions import APIError

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.source import CmsConfigError
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import SYNC_COLUMNS, SyncUpdate, content_hash
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.records import updated_at_of
from cms_stripe_tests.test_cms.conftest import BASE, STEP, TIE_GROUP, fresh_table, make_products
from cms_stripe_tests.test_cms.test_mapping import CUSTOM, _create_items

KEY = "service-role-test-key"
HOSTILE = "x'); drop table products; --"
CATALOG = make_products()
BY_ID = {p.id: p for p in CATALOG}


def sync_values(row) -> tuple:
    return tuple(getattr(row, c) for c in SYNC_COLUMNS)


def ordered(products):
    return sorted(products, key=lambda p: (p.updated_at, p.id))


@pytest.fixture(scope="module")
def db(pg_database) -> Iterator[sa.engine.Engine]:
    engine = sa.create_engine(pg_database)
    fresh_table(engine, CATALOG)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def server(pg_database, db) -> Iterator[PostgrestTestServer]:
    with PostgrestTestServer(pg_database, KEY) as srv:
        yield srv


@pytest.fixture()
def source(server, tmp_path) -> Iterator[RestCatalogSource]:
    src = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "backups", retry_wait=0.01, retry_max_wait=0.05)
    yield src
    src.close()


@pytest.fixture()
def reload_after(db) -> Iterator[None]:
    yield
    fresh_table(db, CATALOG)


def test_check_sends_the_key(source, server):
    before = len(server.requests)
    source.check()
    sent = server.requests[before:]
    assert sent and all(r.headers.get("apikey") == KEY for r in sent)
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in sent)


def test_wrong_key_is_a_config_error(server, tmp_path):
    src = RestCatalogSource(server.url, "wrong", backup_dir=tmp_path)
    with pytest.raises(CmsConfigError, match="rejected"):
        src.check()


def test_read_all(source):
    rows = list(source.read_all())
    assert [p.id for p in rows] == sorted(BY_ID)
    assert all(p == BY_ID[p.id] for p in rows)


def test_read_window_whole_range(source, server):
    got = [p.id for p in source.read_window(BASE, BASE + timedelta(days=30), page_size=1000)]
    assert got == [p.id for p in ordered(CATALOG)]
    # Prices travel as text (never a JSON float) and pages continue with the keyset tie-break filter.
    last = dict(server.requests[-1].params)
    assert "f_price:price::text" in last["select"].split(",")
    assert last["or"].startswith('(updated_at.gt."') and ',and(updated_at.eq."' in last["or"]
    assert last["order"] == "updated_at.asc,id.asc"


@pytest.mark.parametrize("page_size", [1, 7, 25, 26])
def test_read_window_pages_smaller_than_tie_groups(source, page_size):
    start, end = BASE + 40 * STEP, BASE + 43 * STEP
    got = [p.id for p in source.read_window(start, end, page_size=page_size)]
    expected = [p.id for p in ordered(p for p in CATALOG if start <= updated_at_of(p) < end)]
    assert len(expected) == 3 * TIE_GROUP and got == expected


def test_read_window_day_partition(source):
    start = datetime(2026, 1, 3, tzinfo=UTC)
    got = list(source.read_window(start, start + timedelta(days=1), page_size=200))
    expected = ordered(p for p in CATALOG if start <= updated_at_of(p) < start + timedelta(days=1))
    assert [p.id for p in got] == [p.id for p in expected]
    assert all(p == BY_ID[p.id] for p in got)


def test_max_rows_cap_does_not_truncate_reads(source, server):
    # Supabase caps every response at db-max-rows (1,000) whatever limit we ask for.
    server.set_max_rows(100)
    try:
        start, end = datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC)
        got = [p.id for p in source.read_window(start, end, page_size=1000)]
        assert got == [p.id for p in ordered(p for p in CATALOG if start <= updated_at_of(p) < end)]
        assert len(got) > 900
        assert len(list(source.read_all())) == len(CATALOG)
    finally:
        server.set_max_rows(None)


def test_read_ids_chunked(source, server):
    ids = [p.id for p in CATALOG[::4]]  # 2,500 ids: 13 requests of at most 200
    source.check()
    before = len(server.requests)
    got = source.read_ids(["nope", *reversed(ids), ids[3]])
    assert [p.id for p in got] == list(reversed(ids))
    assert len(server.requests) - before == 13


def test_hostile_id_list_reads_nothing_and_harms_nothing(source, db):
    weird = [HOSTILE, "a,b", 'q"uote', "back\\slash", "(paren)", "' OR '1'='1"]
    assert source.read_ids(weird) == []
    assert (
        source.write_back([SyncUpdate(id=HOSTILE, sync_status="failed", sync_error=HOSTILE)], run_id="r").written == 0
    )
    assert source.backup_for_run("r") == []
    with db.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar_one() == len(CATALOG)
        assert conn.execute(sa.text("SELECT count(*) FROM products WHERE id NOT LIKE 'prod_%'")).scalar_one() == 0


def test_changed_days_since(source):
    result = source.changed_days_since(None)
    pending = [p for p in CATALOG if p.sync_hash != content_hash(p)]  # changed since last synced
    assert result.changed_rows == len(pending) and result.scanned_rows == len(CATALOG)
    assert result.days == tuple(sorted({updated_at_of(p).date() for p in pending}))
    assert result.max_updated_at == max(updated_at_of(p) for p in CATALOG)
    cursor = datetime(2026, 1, 8, 12, tzinfo=UTC)
    assert source.changed_days_since(cursor).changed_rows == sum(1 for p in pending if updated_at_of(p) > cursor)
    assert source.changed_days_since(result.max_updated_at).days == ()


def _raw(db) -> dict[str, dict]:
    with db.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM products")).mappings()}


def test_write_back_round_trip(source, db, reload_after, tmp_path):
    before = _raw(db)
    cursor = source.changed_days_since(None).max_updated_at
    now = datetime(2026, 2, 1, 8, 0, 0, 654321, tzinfo=UTC)
    updates = [
        SyncUpdate(
            id=p.id,
            sync_status=("synced", "failed", "quarantined", "archived")[i % 4],
            stripe_product_id=f"prod_{i}",
            stripe_price_id=f"price_{i}",
            sync_error='x, (y) "z"' if i % 4 == 1 else None,
            synced_at=now,
            sync_hash=content_hash(p),
        )
        for i, p in enumerate(CATALOG)
    ]
    assert source.write_back(updates, run_id="run-1").written == len(CATALOG)

    after = {p.id: p for p in source.read_all()}
    assert all(sync_values(after[u.id]) == sync_values(u) for u in updates)
    raw_after = _raw(db)
    untouched = [c for c in before[CATALOG[0].id] if c not in SYNC_COLUMNS and c != "updated_at"]
    assert all(raw_after[i][c] == before[i][c] for i in before for c in untouched)
    assert all(raw_after[i]["updated_at"] > before[i]["updated_at"] for i in before)  # the trigger fired

    check = source.changed_days_since(cursor)
    assert check.days == () and check.changed_rows == 0 and check.scanned_rows == len(CATALOG)

    backup = {b.id: b for b in source.backup_for_run("run-1")}
    assert len(backup) == len(CATALOG)
    assert all(sync_values(backup[p.id]) == sync_values(p) for p in CATALOG)
    assert list((tmp_path / "backups" / "products").glob("*.json"))

    assert source.write_back([replace(updates[0], sync_status="failed")], run_id="run-1").written == 1
    assert {b.id: b for b in source.backup_for_run("run-1")} == backup  # first backup per run wins

    assert source.restore_backup("run-1").written == len(CATALOG)
    restored = {p.id: p for p in source.read_all()}
    assert all(sync_values(restored[p.id]) == sync_values(p) for p in CATALOG)


def test_patch_by_id_and_no_phantom_rows(server, db, reload_after, tmp_path):
    src = RestCatalogSource(server.url, KEY, backup_dir=tmp_path)
    targets = CATALOG[:30]
    updates = [SyncUpdate(id=p.id, sync_status="synced", stripe_product_id=f"prod_P{i}") for i, p in enumerate(targets)]
    ghost = SyncUpdate(id="prod_does_not_exist", sync_status="synced")
    assert src.write_back([*updates, ghost], run_id="patch-run").written == len(targets)
    assert [p.stripe_product_id for p in src.read_ids([p.id for p in targets])] == [
        u.stripe_product_id for u in updates
    ]
    assert src.restore_backup("patch-run").written == len(targets)
    assert [sync_values(p) for p in src.read_ids([p.id for p in targets])] == [sync_values(p) for p in targets]
    assert src.write_back([ghost], run_id="ghost-run").missing == (ghost.id,)
    assert not any(r.method == "POST" for r in server.requests)  # never an upsert
    with db.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar_one() == len(CATALOG)


def test_gateway_errors_are_retried(source, server):
    source.check()
    server.fail_next(2, status=503, code="PGRST001")
    before = len(server.requests)
    assert [p.id for p in source.read_ids([CATALOG[0].id])] == [CATALOG[0].id]
    assert [r.status for r in server.requests[before:]] == [503, 503, 200]


def test_client_errors_are_not_retried(source, server):
    source.check()
    server.fail_next(1, status=400, code="22P02")
    before = len(server.requests)
    with pytest.raises(APIError):
        source.read_ids([CATALOG[0].id])
    assert len(server.requests) - before == 1


def test_server_rejects_what_it_does_not_implement(source, server):
    table = source.client.table("products")
    with pytest.raises(APIError) as err:
        table.select("id").like("title", "Product%").execute()
    assert err.value.code == "PGRST100"
    # PostgREST's null ordering is implemented (a full run asks for the oldest row, nulls first)...
    assert len(table.select("id").order("title", nullsfirst=True).limit(1).execute().data) == 1
    # ... other order modifiers are not.
    with pytest.raises(APIError):
        table.select("id").order("title.sideways").execute()
    with pytest.raises(APIError):
        table.delete().eq("id", CATALOG[0].id).execute()
    with pytest.raises(APIError):
        table.insert({"id": "new"}).execute()  # plain insert: only upserts are in the subset
    with pytest.raises(APIError):
        table.update({"title": "x"}).execute()  # unfiltered PATCH
    assert source.read_ids([CATALOG[0].id])[0] == CATALOG[0]


def test_bad_mapping_message_matches_the_sql_backend(server, db, tmp_path):
    with db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS items")
    mapping = ColumnMapping.from_dict(CUSTOM)
    rest = RestCatalogSource(server.url, KEY, mapping=mapping, backup_dir=tmp_path)
    with pytest.raises(CmsConfigError, match="table 'items' does not exist"):
        rest.check()
    _create_items(db, without={"price_eur", "sku", "sync_hash"})
    try:
        with pytest.raises(CmsConfigError) as rest_err:
            rest.check()
        with pytest.raises(CmsConfigError) as sql_err:
            SqlCatalogSource(db, mapping=mapping).check()
        assert str(rest_err.value) == str(sql_err.value)
        assert "'price_eur', 'sync_hash', 'sku'" in str(rest_err.value)
    finally:
        with db.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS items")


def test_invalid_settings_are_config_errors(tmp_path):
    with pytest.raises(CmsConfigError, match="http"):
        RestCatalogSource("ftp://x", KEY, backup_dir=tmp_path)
    with pytest.raises(CmsConfigError, match="empty"):
        RestCatalogSource("http://127.0.0.1:1", " ", backup_dir=tmp_path)
