"""The real `cms_change_sensor` against a real CMS table: one run over the range of changed days
(a first sync is one run, not one per day) with a run key that cannot repeat the same change, a
SkipReason that says why, our own write-back is not a change, and a cursor that never moves backwards.
(The pure decision is pinned down in test_core/test_changes.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import default_anchor, generate_catalog, write_catalog
from cms_stripe.cms.schema import drop_schema, to_sqlite_timestamp
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import SYNC_SYNCED, SyncUpdate, content_hash
from cms_stripe.core.changes import parse_cursor
from cms_stripe.resources.cms import SqlCatalogResource
from cms_stripe.sensors import cms_change_sensor
from cms_stripe_tests.records import updated_at_of

ANCHOR = default_anchor()  # today 00:00 UTC: the catalog's rows fall on the three days before today
DAYS = 3


def _day(days_ago: int) -> str:
    return (ANCHOR - timedelta(days=days_ago)).strftime("%Y-%m-%d")


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def evaluate_tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> object:
    # The catalog resource sets up and tears down (it owns an engine): open the context as a manager.
    # The URL is read from the environment (never config), as in a deployed code location.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CMS_DATABASE_URL", url)
        resources = {"catalog": SqlCatalogResource()}
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
            return cms_change_sensor(ctx)


def evaluate(instance: dg.DagsterInstance, url: str, cursor: str | None) -> dg.SensorResult:
    """A tick over a readable CMS: always a SensorResult (it carries the cursor even when it skips)."""
    result = evaluate_tick(instance, url, cursor)
    assert isinstance(result, dg.SensorResult)
    return result


def cursor_time(result: dg.SensorResult) -> datetime:
    parsed = parse_cursor(result.cursor)
    assert parsed is not None, "every tick over a readable CMS leaves a cursor"
    return parsed


def skip_message(result: dg.SensorResult) -> str:
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


def requests_of(result: dg.SensorResult) -> dict[tuple[str, str], str | None]:
    """(first, last) partition key of each requested range run → its run key."""
    out: dict[tuple[str, str], str | None] = {}
    for r in result.run_requests or []:
        assert r.partition_key is None, "the sensor requests ranges, like the single-run backfill"
        out[(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])] = r.run_key
    return out


def mark_all_synced(url: str) -> None:
    """What a finished sync leaves behind: every row's sync_hash is its content hash."""
    source = SqlCatalogSource(url)
    try:
        rows = list(source.read_all())
        source.write_back(
            [SyncUpdate(id=p.id, sync_status=SYNC_SYNCED, sync_hash=content_hash(p)) for p in rows], run_id="test-sync"
        )
    finally:
        source.close()


def edit_sqlite(url: str, cms_id: str, title: str, at: datetime) -> None:
    """A CMS edit on SQLite (no trigger): new content and the updated_at the CMS would set."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET title = :t, updated_at = :u WHERE id = :i"),
            {"t": title, "u": to_sqlite_timestamp(at), "i": cms_id},
        )
    engine.dispose()


@pytest.fixture()
def catalog_url(sqlite_url: str):
    """A three-day demo catalog in SQLite; yields (url, products)."""
    products = generate_catalog(40, seed=3, anchor=ANCHOR, days=DAYS).products
    engine = sa.create_engine(sqlite_url)
    write_catalog(engine, products)
    engine.dispose()
    return sqlite_url, products


def test_first_tick_requests_one_run_over_every_changed_day(instance, catalog_url):
    url, products = catalog_url
    result = evaluate(instance, url, None)
    runs = requests_of(result)
    expected_days = {updated_at_of(p).astimezone(UTC).strftime("%Y-%m-%d") for p in products}
    assert expected_days == {_day(1), _day(2), _day(3)}
    assert list(runs) == [(_day(3), _day(1))], "one run over the whole range, not one per day"
    assert all(r.tags["cms_stripe/trigger"] == "cms_change" for r in result.run_requests or [])
    newest = max(updated_at_of(p) for p in products)
    assert cursor_time(result) == newest

    # Re-evaluating the same tick (a daemon restart) asks for exactly the same runs: Dagster drops
    # requests whose run_key it has already seen, so the same change never launches twice.
    again = evaluate(instance, url, None)
    assert requests_of(again) == runs and again.cursor == result.cursor


def test_nothing_changed_is_a_skip_that_says_why(instance, catalog_url):
    url, _ = catalog_url
    first = evaluate(instance, url, None)
    mark_all_synced(url)  # SQLite: no trigger, updated_at untouched
    result = evaluate(instance, url, first.cursor)
    assert not result.run_requests
    # The sync wrote no updated_at (SQLite has no trigger): nothing is newer than the cursor.
    assert skip_message(result) == f"no CMS row was updated since {first.cursor}"
    assert result.cursor == first.cursor


def test_one_edited_day_then_many(instance, catalog_url):
    url, products = catalog_url
    mark_all_synced(url)
    cursor = evaluate(instance, url, None).cursor
    evaluate(instance, url, cursor)

    # One edit, on the newest day: one run for that day, cursor at the edit.
    by_day = {updated_at_of(p).astimezone(UTC).strftime("%Y-%m-%d"): p for p in products}
    edited_at = ANCHOR - timedelta(minutes=1)
    edit_sqlite(url, by_day[_day(1)].id, "Edited title", edited_at)
    one = evaluate(instance, url, cursor)
    runs_one = requests_of(one)
    assert list(runs_one) == [(_day(1), _day(1))]
    assert cursor_time(one) == edited_at

    # A later edit of the same day is a new change: a new run key for the same partition.
    later = ANCHOR - timedelta(seconds=20)
    edit_sqlite(url, by_day[_day(1)].id, "Edited again", later)
    again = requests_of(evaluate(instance, url, one.cursor))
    assert list(again) == [(_day(1), _day(1))] and again[(_day(1), _day(1))] != runs_one[(_day(1), _day(1))]

    # Edits on two other days (each keeping its day: a late import stamps the row's own time), seen
    # from a cursor before those days: one run over those two days, and not the clean day after them.
    mark_all_synced(url)
    for days_ago in (2, 3):
        row = by_day[_day(days_ago)]
        edit_sqlite(url, row.id, f"Edit {days_ago}", updated_at_of(row) + timedelta(seconds=1))
    before_edits = (ANCHOR - timedelta(days=DAYS + 1)).isoformat()
    many = evaluate(instance, url, before_edits)
    runs_many = requests_of(many)
    assert list(runs_many) == [(_day(3), _day(2))]
    assert cursor_time(many) == later, "the cursor is the newest updated_at seen, changed or not"


def test_cursor_never_moves_backwards(instance, catalog_url):
    url, products = catalog_url
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    result = evaluate(instance, url, future)
    assert not result.run_requests
    assert skip_message(result)
    assert result.cursor == future

    # An edit stamped before the cursor does not pull it back.
    first = evaluate(instance, url, None)
    edit_sqlite(url, products[0].id, "Back-dated", cursor_time(first) - timedelta(hours=1))
    after = evaluate(instance, url, first.cursor)
    assert cursor_time(after) >= cursor_time(first)


def test_unreadable_cms_is_a_skip_not_a_crash(instance, sqlite_url):
    """A CMS without the products table (wrong database, say): the tick skips and says why."""
    sa.create_engine(sqlite_url).connect().close()  # an empty database file
    result = evaluate_tick(instance, sqlite_url, None)
    assert isinstance(result, dg.SkipReason)
    assert "could not read the CMS" in (result.skip_message or "")
    assert "products" in (result.skip_message or "")


@pytest.fixture()
def pg_catalog(pg_engine: sa.engine.Engine, pg_database: str):
    products = generate_catalog(30, seed=5, anchor=ANCHOR, days=DAYS).products
    write_catalog(pg_engine, products)
    try:
        yield pg_database, products
    finally:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS cms_stripe_backups")
        drop_schema(pg_engine)


def test_write_back_alone_is_not_a_change_on_postgres(instance, pg_catalog):
    """Supabase's trigger bumps updated_at on our own write-back: the sensor must not chase it."""
    url, products = pg_catalog
    first = evaluate(instance, url, None)
    assert list(requests_of(first)) == [(_day(3), _day(1))]

    before = datetime.now(UTC)
    mark_all_synced(url)  # the trigger moves every row's updated_at to now()
    result = evaluate(instance, url, first.cursor)
    assert not result.run_requests, "a write-back alone must not request a run"
    assert "none with content that differs from what was last synced" in skip_message(result)
    assert cursor_time(result) >= before, "the cursor moves past the write-back"

    # A real edit after that (the trigger stamps it now): one run, for today's partition.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE products SET title = 'Changed on Postgres' WHERE id = :i"), {"i": products[0].id})
    engine.dispose()
    edited = evaluate(instance, url, result.cursor)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert list(requests_of(edited)) == [(today, today)]
    assert cursor_time(edited) > cursor_time(result)
