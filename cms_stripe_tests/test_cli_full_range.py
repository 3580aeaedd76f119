"""`MIGRATION_STRATEGY=full` runs from the partition of the oldest CMS row to today, not from the
first partition: every partition of a range run costs Dagster events and files, and the days before
the oldest row hold nothing. With an undated row the run starts at the first partition, whose open
edge holds it, and that row is synced like the others.

The CLI runs in a subprocess on a real PostgreSQL catalog; the partitions a run covered are read from
the Dagster instance it used (its range tags and the partitions it materialized), and compared with
days computed here from today's date.
"""

from __future__ import annotations

import pathlib
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from cms_stripe.cms.schema import create_schema
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cli import cli_env, newest_report, run_cli

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
PARTITION_START = TODAY - timedelta(days=20)
OLDEST_DAY = PARTITION_START + timedelta(days=8)  # rows start N = 8 days after the partition start

INSERT = sa.text(
    "INSERT INTO products (id, title, price, currency, status, updated_at) "
    "VALUES (:id, :title, CAST(:price AS numeric), 'usd', 'published', :updated_at)"
)


def _rows() -> list[dict[str, object]]:
    # Noon UTC, so a row's day is the same in every time zone the test machine might have.
    days = [OLDEST_DAY, OLDEST_DAY + timedelta(days=3), TODAY - timedelta(days=1)]
    return [
        {"id": f"p{i}", "title": f"Product {i}", "price": "10.00", "updated_at": datetime.combine(d, time(12), UTC)}
        for i, d in enumerate(days)
    ]


def _days(first: date, last: date) -> set[str]:
    return {(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}


def _instance(tmp_path: pathlib.Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))


def _ranges(instance: dg.DagsterInstance) -> list[tuple[str, str, str]]:
    """(command, range start, range end) of each run, oldest first."""
    runs = reversed(instance.get_runs())
    return [
        (
            r.tags.get("cms_stripe/command", ""),
            r.tags["dagster/asset_partition_range_start"],
            r.tags["dagster/asset_partition_range_end"],
        )
        for r in runs
    ]


def _env(tmp_path: pathlib.Path, cms_url: str, api_base: str, dry_run: str) -> dict[str, str]:
    env = cli_env(
        tmp_path,
        cms_url,
        api_base,
        MIGRATION_STRATEGY="full",
        MIGRATION_DRY_RUN=dry_run,
        MIGRATION_PARTITION_START=PARTITION_START.isoformat(),
    )
    for key in ("MIGRATION_START_DATE", "MIGRATION_END_DATE"):
        env.pop(key)
    return env


def test_full_dry_run_and_validate_start_at_the_oldest_rows_day(tmp_path, pg_engine, pg_database):
    create_schema(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(INSERT, _rows())
    start, end = OLDEST_DAY.isoformat(), TODAY.isoformat()
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = _env(tmp_path, pg_database, emulator.url, dry_run="true")
        dry = run_cli(["migrate"], env)
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
        why = f"partitions {start}..{end}: the oldest row was updated on {start}; earlier days hold no row"
        assert why in dry.stdout
        validate = run_cli(["validate"], env)
        assert validate.returncode == 0, (validate.stdout + validate.stderr)[-4000:]
        assert emulator.inspect()["writes_total"] == 0
    instance = _instance(tmp_path)
    try:
        assert _ranges(instance) == [("migrate", start, end), ("validate", start, end)]
        # Exactly the days from the oldest row's to today were materialized, none before.
        assert instance.get_materialized_partitions(dg.AssetKey("raw_cms_products")) == _days(OLDEST_DAY, TODAY)
    finally:
        instance.dispose()
    report = newest_report(tmp_path / "reports")
    assert report["partitions"] == f"{start}..{end}"
    assert report["counts"]["rows_read"] == 3 and report["counts"]["quarantined"] == 0


def test_full_migrate_with_an_undated_row_runs_every_partition_and_syncs_it(tmp_path, pg_engine, pg_database):
    create_schema(pg_engine)
    undated = {"id": "undated", "title": "No date", "price": "3.00", "updated_at": None}
    with pg_engine.begin() as conn:
        conn.execute(INSERT, [*_rows(), undated])
    start, end = PARTITION_START.isoformat(), TODAY.isoformat()
    with EmulatorServer(EmulatorConfig()) as emulator:
        result = run_cli(["migrate"], _env(tmp_path, pg_database, emulator.url, dry_run="false"))
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert (
            f"partitions {start}..{end}: some rows have no readable updated_at, and the first partition holds them"
            in result.stdout
        )
        by_cms_id = {p["metadata"]["cms_id"]: p for p in emulator.objects()["products"]}
    assert sorted(by_cms_id) == ["p0", "p1", "p2", "undated"]
    assert by_cms_id["undated"]["name"] == "No date"
    with pg_engine.connect() as conn:
        status = dict(conn.exec_driver_sql("SELECT id, sync_status FROM products").all())
    assert status == {"p0": "synced", "p1": "synced", "p2": "synced", "undated": "synced"}
    instance = _instance(tmp_path)
    try:
        assert _ranges(instance) == [("migrate", start, end)]
        assert instance.get_materialized_partitions(dg.AssetKey("raw_cms_products")) == _days(PARTITION_START, TODAY)
    finally:
        instance.dispose()
    counts = newest_report(tmp_path / "reports")["counts"]
    assert (counts["rows_read"], counts["created"], counts["quarantined"]) == (4, 4, 0)


def test_full_dry_run_over_supabase_rest_starts_at_the_oldest_rows_day(tmp_path, pg_engine, pg_database):
    create_schema(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(INSERT, _rows())
    start, end = OLDEST_DAY.isoformat(), TODAY.isoformat()
    key = "service-role-full-range-test"
    with EmulatorServer(EmulatorConfig()) as emulator, PostgrestTestServer(pg_database, key) as server:
        env = _env(tmp_path, "", emulator.url, dry_run="true")
        env.pop("CMS_DATABASE_URL")
        env.update({"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key})
        dry = run_cli(["migrate"], env)
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
        assert f"partitions {start}..{end}: the oldest row was updated on {start}" in dry.stdout
        assert any(dict(r.params).get("order") == "updated_at.asc.nullsfirst" for r in server.requests)
    instance = _instance(tmp_path)
    try:
        assert _ranges(instance) == [("migrate", start, end)]
        assert instance.get_materialized_partitions(dg.AssetKey("raw_cms_products")) == _days(OLDEST_DAY, TODAY)
    finally:
        instance.dispose()
    assert newest_report(tmp_path / "reports")["counts"]["rows_read"] == 3
