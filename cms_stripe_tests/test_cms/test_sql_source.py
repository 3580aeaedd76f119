"""The SQL backend on real PostgreSQL (with the updated_at trigger) and on SQLite, 10,000 rows each.

Pins down: every read mode returns exactly the right rows across page boundaries (tie groups of 25
rows share one updated_at and pages are smaller than a group); write-back touches only the sync
columns, is idempotent, is backed up and restorable; after a write-back the change check reports
nothing although the trigger moved updated_at; a hostile id list reads and harms nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.schema import drop_schema
from cms_stripe.cms.source import CmsConfigError
from cms_stripe.cms.sql import SqlCatalogSource, is_transient_db_error
from cms_stripe.core.catalog import SYNC_COLUMNS, SyncUpdate, content_hash
from cms_stripe_tests.records import updated_at_of
from cms_stripe_tests.test_cms.conftest import BASE, STEP, TIE_GROUP, fresh_table, make_products

HOSTILE = "x'); drop table products; --"
CATALOG = make_products()
BY_ID = {p.id: p for p in CATALOG}


def sync_values(row) -> tuple:
    return tuple(getattr(row, c) for c in SYNC_COLUMNS)


def ordered(products):
    return sorted(products, key=lambda p: (p.updated_at, p.id))


def count_rows(engine: sa.engine.Engine, table: str = "products") -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(kind, url) of a database holding the 10,000-row catalog; read-only tests share it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('cms') / 'cms.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = sa.create_engine(url)
    fresh_table(engine, CATALOG)
    engine.dispose()
    yield request.param, url


@pytest.fixture()
def source(backend) -> Iterator[SqlCatalogSource]:
    src = SqlCatalogSource(backend[1], page_size=1000, write_batch_size=500)
    try:
        yield src
    finally:
        src.close()


@pytest.fixture()
def writable(backend) -> Iterator[SqlCatalogSource]:
    """A source on a freshly loaded table (the write tests mutate it)."""
    src = SqlCatalogSource(backend[1], page_size=1000, write_batch_size=500)
    fresh_table(src.engine, CATALOG)
    try:
        yield src
    finally:
        fresh_table(src.engine, CATALOG)
        src.close()


def test_check_accepts_the_default_schema(source):
    source.check()


def test_read_all_returns_every_row_exactly(source):
    rows = list(source.read_all())
    assert [p.id for p in rows] == sorted(BY_ID)
    assert all(p == BY_ID[p.id] for p in rows)  # values normalised identically on both backends
    assert all(p.updated_at.tzinfo is not None for p in rows)


@pytest.mark.parametrize("page_size", [1000, 333])
def test_read_window_whole_range(source, page_size):
    start, end = BASE, BASE + timedelta(days=30)
    got = [p.id for p in source.read_window(start, end, page_size=page_size)]
    assert got == [p.id for p in ordered(CATALOG)]


@pytest.mark.parametrize("page_size", [1, 7, 24, 25, 26])
def test_read_window_pages_smaller_than_tie_groups(source, page_size):
    # [group 40, group 43): includes group 40 exactly at start, excludes group 43 exactly at end.
    start, end = BASE + 40 * STEP, BASE + 43 * STEP
    got = list(source.read_window(start, end, page_size=page_size))
    expected = ordered(p for p in CATALOG if start <= updated_at_of(p) < end)
    assert len(expected) == 3 * TIE_GROUP
    assert [p.id for p in got] == [p.id for p in expected]
    assert len({p.id for p in got}) == len(got)


def test_read_window_day_partition(source):
    start = datetime(2026, 1, 3, tzinfo=UTC)
    end = start + timedelta(days=1)
    got = [p.id for p in source.read_window(start, end, page_size=97)]
    expected = [p.id for p in ordered(p for p in CATALOG if start <= updated_at_of(p) < end)]
    assert got == expected and 900 < len(got) < 1100


def test_read_window_microsecond_boundary(source):
    t = BASE + 7 * STEP
    just_after = list(source.read_window(t + timedelta(microseconds=1), t + STEP, page_size=10))
    assert just_after == []
    at = list(source.read_window(t, t + timedelta(microseconds=1), page_size=10))
    assert len(at) == TIE_GROUP


def test_read_window_rejects_naive_datetimes(source):
    with pytest.raises(ValueError, match="naive"):
        list(source.read_window(datetime(2026, 1, 1), datetime(2026, 1, 2)))


def test_read_ids_chunked_in_request_order(source):
    ids = [p.id for p in CATALOG[::4]]  # 2,500 ids: three chunks of 1,000
    asked = ["missing-1", *reversed(ids), ids[0], "missing-2"]
    got = source.read_ids(asked)
    assert [p.id for p in got] == list(reversed(ids))
    assert all(p == BY_ID[p.id] for p in got)
    assert source.read_ids([]) == []


def test_hostile_id_list_reads_nothing_and_harms_nothing(backend, source):
    assert source.read_ids([HOSTILE]) == []
    assert source.read_ids([HOSTILE, "' OR '1'='1", 'prod_00001"; --']) == []
    assert (
        source.write_back([SyncUpdate(id=HOSTILE, sync_status="failed", sync_error=HOSTILE)], run_id="r").written == 0
    )
    assert source.backup_for_run("r") == []
    assert count_rows(source.engine) == len(CATALOG)
    assert len(source.read_ids(["prod_00001"])) == 1


def test_changed_days_since_uses_content_hash(source):
    result = source.changed_days_since(None)
    pending = [p for p in CATALOG if p.sync_hash != content_hash(p)]  # changed since last synced
    assert result.changed_rows == len(pending) and result.scanned_rows == len(CATALOG)
    assert result.days == tuple(sorted({updated_at_of(p).date() for p in pending}))
    assert result.max_updated_at == max(updated_at_of(p) for p in CATALOG)

    cursor = datetime(2026, 1, 8, 12, tzinfo=UTC)
    later = source.changed_days_since(cursor)
    assert later.days == (datetime(2026, 1, 8).date(), datetime(2026, 1, 9).date(), datetime(2026, 1, 10).date())
    assert later.changed_rows == sum(1 for p in pending if updated_at_of(p) > cursor)

    assert source.changed_days_since(result.max_updated_at) == replace(
        result, days=(), changed_rows=0, scanned_rows=0, fresh_rows=0
    )


def _updates_for(products, now):
    return [
        SyncUpdate(
            id=p.id,
            sync_status="synced" if i % 10 else "failed",
            stripe_product_id=f"prod_{i:06d}",
            stripe_price_id=f"price_{i:06d}",
            sync_error=None if i % 10 else "card_declined: 'quoted' \"text\"",
            synced_at=now,
            sync_hash=content_hash(p),
        )
        for i, p in enumerate(products)
    ]


def _raw_rows(engine: sa.engine.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM products")).mappings()}


def test_write_back_round_trip_backup_and_restore(backend, writable):
    kind = backend[0]
    src = writable
    before_raw = _raw_rows(src.engine)
    cursor = src.changed_days_since(None).max_updated_at
    now = datetime(2026, 2, 1, 12, 30, 15, 123456, tzinfo=UTC)
    updates = _updates_for(CATALOG, now)

    assert src.write_back(updates, run_id="run-1").written == len(CATALOG)

    after = {p.id: p for p in src.read_all()}
    for u in updates:
        assert sync_values(after[u.id]) == sync_values(u)
    # No column outside the sync columns changed, except updated_at through the Postgres trigger.
    after_raw = _raw_rows(src.engine)
    untouched = [c for c in before_raw[CATALOG[0].id] if c not in SYNC_COLUMNS and c != "updated_at"]
    assert all(after_raw[i][c] == before_raw[i][c] for i in before_raw for c in untouched)
    moved = sum(after_raw[i]["updated_at"] != before_raw[i]["updated_at"] for i in before_raw)
    assert moved == (len(CATALOG) if kind == "postgres" else 0)

    # The trigger moved updated_at past the cursor, yet nothing changed in content.
    check = src.changed_days_since(cursor)
    assert check.days == () and check.changed_rows == 0
    if kind == "postgres":
        assert check.scanned_rows == len(CATALOG) and check.max_updated_at > cursor

    backup = {b.id: b for b in src.backup_for_run("run-1")}
    assert len(backup) == len(CATALOG)
    for p in CATALOG:
        assert sync_values(backup[p.id]) == sync_values(p)

    # Idempotent: the same write again changes nothing and keeps the first backup.
    assert src.write_back(updates[:1200], run_id="run-1").written == 1200
    assert {b.id: b for b in src.backup_for_run("run-1")} == backup
    # A second write in the same run with new values: the backup still holds the pre-run values.
    assert src.write_back([replace(updates[0], sync_status="quarantined")], run_id="run-1").written == 1
    assert backup[updates[0].id] == src.backup_for_run("run-1")[sorted(backup).index(updates[0].id)]

    assert src.restore_backup("run-1").written == len(CATALOG)
    restored = {p.id: p for p in src.read_all()}
    for p in CATALOG:
        assert sync_values(restored[p.id]) == sync_values(p)
    assert src.restore_backup("run-1").written == len(CATALOG)  # rollback is repeatable
    assert src.restore_backup("no-such-run").written == 0


def test_write_back_backups_are_per_run(writable):
    src = writable
    p = CATALOG[1]
    first = SyncUpdate(id=p.id, sync_status="synced", stripe_product_id="prod_A", sync_hash="h1")
    second = SyncUpdate(id=p.id, sync_status="failed", sync_error="boom", stripe_product_id="prod_A")
    assert src.write_back([first], run_id="run-a").written == 1
    assert src.write_back([second], run_id="run-b").written == 1
    (a,) = src.backup_for_run("run-a")
    (b,) = src.backup_for_run("run-b")
    assert (a.sync_status, a.stripe_product_id) == (p.sync_status, p.stripe_product_id)
    assert (b.sync_status, b.stripe_product_id, b.sync_hash) == ("synced", "prod_A", "h1")
    # Rolling back run-b alone returns the row to what run-a left.
    src.restore_backup("run-b")
    (row,) = src.read_ids([p.id])
    assert (row.sync_status, row.stripe_product_id, row.sync_hash) == ("synced", "prod_A", "h1")


def test_write_back_validates_before_writing(writable):
    good = SyncUpdate(id=CATALOG[0].id, sync_status="synced")
    with pytest.raises(ValueError, match="sync_status"):
        writable.write_back([good, SyncUpdate(id=CATALOG[1].id, sync_status="done")], run_id="r")
    with pytest.raises(ValueError, match="naive"):
        writable.write_back([replace(good, synced_at=datetime(2026, 1, 1))], run_id="r")
    with pytest.raises(ValueError, match="run_id"):
        writable.write_back([good], run_id=" ")
    assert writable.read_ids([CATALOG[0].id])[0].sync_status == CATALOG[0].sync_status
    assert writable.backup_for_run("r") == []


def test_dropped_connection_is_retried(pg_database, caplog):
    setup = sa.create_engine(pg_database)
    fresh_table(setup, CATALOG[:10], "retry_products")
    # No pre-ping: the dead pooled connection must be caught by our retry, not by the pool.
    engine = sa.create_engine(
        pg_database, pool_pre_ping=False, pool_size=1, connect_args={"application_name": "cms-retry-test"}
    )
    src = SqlCatalogSource(engine, mapping=ColumnMapping(table="retry_products"), retry_wait=0.01, retry_max_wait=0.05)
    try:
        assert len(src.read_ids([CATALOG[0].id])) == 1
        with setup.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'cms-retry-test'"
                )
            ).scalar_one()
        assert killed == 1
        with caplog.at_level(logging.WARNING, logger="cms_stripe.cms"):
            assert [p.id for p in src.read_ids([CATALOG[0].id])] == [CATALOG[0].id]
        assert any("Retrying" in r.getMessage() for r in caplog.records)
    finally:
        engine.dispose()
        drop_schema(setup, "retry_products")
        setup.dispose()


def test_lock_timeout_is_retried_until_the_lock_is_released(pg_database, caplog):
    setup = sa.create_engine(pg_database)
    fresh_table(setup, CATALOG[:10], "locked_products")
    engine = sa.create_engine(pg_database, connect_args={"options": "-c lock_timeout=100"})
    src = SqlCatalogSource(engine, mapping=ColumnMapping(table="locked_products"), retry_wait=0.1, retry_max_wait=0.2)
    src.check()
    holder = setup.connect()
    tx = holder.begin()
    holder.exec_driver_sql("LOCK TABLE locked_products IN ACCESS EXCLUSIVE MODE")
    timer = threading.Timer(0.6, tx.commit)
    try:
        timer.start()
        with caplog.at_level(logging.WARNING, logger="cms_stripe.cms"):
            assert len(src.read_ids([CATALOG[0].id])) == 1
        assert any("lock timeout" in r.getMessage() for r in caplog.records)
    finally:
        timer.join()
        holder.close()
        engine.dispose()
        drop_schema(setup, "locked_products")
        setup.dispose()


def test_backup_table_has_row_level_security_on_postgres(pg_database):
    engine = sa.create_engine(pg_database)
    fresh_table(engine, CATALOG[:5], "rls_products")
    src = SqlCatalogSource(engine, mapping=ColumnMapping(table="rls_products"), backup_table="rls_backups")
    try:
        assert src.write_back([SyncUpdate(id=CATALOG[0].id, sync_status="synced")], run_id="rls").written == 1
        with engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT relrowsecurity FROM pg_class WHERE relname = 'rls_backups'"
            ).scalar_one()
        assert [b.id for b in src.backup_for_run("rls")] == [CATALOG[0].id]  # the owner still reads it
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS rls_backups")
        drop_schema(engine, "rls_products")
        engine.dispose()


def test_transient_error_classification():
    op = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    prog = sa.exc.ProgrammingError("SELECT 1", {}, Exception("syntax error"))
    dropped = sa.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert is_transient_db_error(op) and is_transient_db_error(dropped)
    assert not is_transient_db_error(prog) and not is_transient_db_error(ValueError())


def test_non_transient_errors_are_not_retried(source, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise sa.exc.ProgrammingError("SELECT", {}, Exception("bad"))

    monkeypatch.setattr(source.engine, "connect", broken)
    with pytest.raises(sa.exc.ProgrammingError):
        source.read_ids(["a"])
    assert len(calls) == 1


def test_unsupported_url_is_a_config_error():
    with pytest.raises(CmsConfigError, match="not supported"):
        SqlCatalogSource("mysql+pymysql://u@h/db")
    with pytest.raises(CmsConfigError, match="not a valid"):
        SqlCatalogSource("not a url")
