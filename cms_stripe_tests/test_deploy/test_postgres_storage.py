"""The deployment's dagster.yaml: Dagster's run, event-log and schedule storage in PostgreSQL (via
dagster-postgres, URL from DAGSTER_PG_URL), one slot for the stripe_api pool, a bounded run queue; and
a run's materializations with their metadata land in PostgreSQL. Without it, the embedded default
(an empty DAGSTER_HOME) stays SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.reconciliation import reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.constants import STRIPE_POOL
from cms_stripe.emulator import EmulatorServer
from cms_stripe.io_managers import DailyFrameIOManager
from cms_stripe.resources.cms import SqlCatalogResource
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource
from cms_stripe_tests.records import latest_metadata

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-03-08"


def deployment_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def test_deployment_config_uses_postgres_and_limits(tmp_path, dagster_pg_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    with dg.DagsterInstance.from_config(str(deployment_home(tmp_path))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.event_log_storage.supports_global_concurrency_limits
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.run_queue_config is not None
        assert concurrency.run_queue_config.max_concurrent_runs >= 2
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_embedded_default_stays_sqlite(tmp_path):
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"


def test_materializations_and_metadata_stored_in_postgres(
    tmp_path, dagster_pg_url, pg_engine, pg_database, monkeypatch
):
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    anchor = datetime.fromisoformat(DAY).replace(tzinfo=UTC) + timedelta(days=1, minutes=-1)
    products = generate_catalog(30, seed=4, anchor=anchor, days=1).products
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS products")
    write_catalog(pg_engine, products)
    with (
        EmulatorServer() as emu,
        dg.DagsterInstance.from_config(str(deployment_home(tmp_path))) as instance,
    ):
        for name, value in {
            "CMS_DATABASE_URL": pg_database,
            "STRIPE_SECRET_KEY": "sk_test_pg_storage",
            "STRIPE_API_BASE": emu.url,
            "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
            "CMS_STRIPE_FRAMES_DIR": str(tmp_path / "frames"),
        }.items():
            monkeypatch.setenv(name, value)
        result = dg.materialize(
            [raw_cms_products, validated_products, stripe_products, reconciliation_report],
            partition_key=DAY,
            instance=instance,
            resources={
                "catalog": SqlCatalogResource(),
                "stripe": StripeResource(),
                "settings": SyncSettingsResource(dry_run=False),
                "frames_io_manager": DailyFrameIOManager(),
            },
        )
        assert result.success
        meta = latest_metadata(instance, "stripe_products", DAY)
        assert meta["created"] > 0 and meta["failed"] == 0
        # The pool was initialised from dagster.yaml's default when the step first claimed it.
        assert instance.event_log_storage.get_concurrency_info(STRIPE_POOL).slot_count == 1
    engine = sa.create_engine(dagster_pg_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).all()
    engine.dispose()
    assert sorted(rows) == sorted(
        (f'["{k}"]', DAY)
        for k in ("raw_cms_products", "validated_products", "stripe_products", "reconciliation_report")
    )
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS products")
        conn.exec_driver_sql("DROP TABLE IF EXISTS cms_stripe_backups")


def test_pool_limits_set_from_the_cli_as_the_readme_says(tmp_path, dagster_pg_url, monkeypatch):
    """`dagster instance concurrency set <pool> <n>` raises one pool; the Stripe pool keeps one slot."""
    home = deployment_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": dagster_pg_url}
    dagster = str(REPO / ".venv" / "bin" / "dagster")
    for pool, limit in (("cms_database", "4"), (STRIPE_POOL, "1")):
        subprocess.run(
            [dagster, "instance", "concurrency", "set", pool, limit], env=env, check=True, capture_output=True
        )
    shown = subprocess.run(
        [dagster, "instance", "concurrency", "get", "--all"], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "cms_database" in shown and STRIPE_POOL in shown
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_info("cms_database").slot_count == 4
        assert storage.get_concurrency_info(STRIPE_POOL).slot_count == 1
