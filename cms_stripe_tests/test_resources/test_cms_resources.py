"""The CMS Dagster resources: the backend chosen from the environment (CMS_DATABASE_URL wins, neither
is one clear error), addresses and secrets read from the environment and never config, and both
resources working as `ResourceParam[CatalogSource]` inside a real
materialization (SQLite for SQL, the PostgREST test server for Supabase).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.source import CatalogSource
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import SyncUpdate, content_hash
from cms_stripe.resources.cms import SqlCatalogResource, SupabaseCatalogResource, catalog_resource_from_env
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.records import updated_at_of
from cms_stripe_tests.test_cms.conftest import BASE, fresh_table, make_products

SMALL = make_products(300)
ALL_ENV = (
    "CMS_DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "CMS_MAPPING_FILE",
    "CMS_TABLE",
    "CMS_BACKUP_DIR",
    "MIGRATION_ALLOW_LIVE",
)
CONFIG_FIELDS = {"page_size", "write_batch_size"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    # Write-backs pass the live-key guard: these tests sync against a test-mode account.
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cms_resources")


def test_database_url_wins_and_is_no_config():
    env = {
        "CMS_DATABASE_URL": "sqlite:///x.db",
        "SUPABASE_URL": "https://p.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "k",
    }
    resource = catalog_resource_from_env(env)
    assert isinstance(resource, SqlCatalogResource)
    # Neither the URL nor anything else that says where the catalog lives can be set per run.
    assert set(SqlCatalogResource.model_fields) == CONFIG_FIELDS


def test_supabase_when_only_it_is_set():
    env = {"SUPABASE_URL": "https://p.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": "k", "CMS_PAGE_SIZE": "250"}
    resource = catalog_resource_from_env(env)
    assert isinstance(resource, SupabaseCatalogResource)
    assert set(SupabaseCatalogResource.model_fields) == CONFIG_FIELDS and resource.page_size == 250


def test_neither_set_is_one_clear_error():
    with pytest.raises(CmsConfigError, match="no CMS source configured: set CMS_DATABASE_URL"):
        catalog_resource_from_env({}, strict=True)
    with pytest.raises(CmsConfigError, match="SUPABASE_SERVICE_ROLE_KEY is not set"):
        catalog_resource_from_env({"SUPABASE_URL": "https://p.supabase.co"}, strict=True)
    # Lenient (how definitions.py loads): the location loads, first use raises the same message.
    lenient = catalog_resource_from_env({})
    with pytest.raises(CmsConfigError, match="no CMS source configured"):
        lenient.source()


def test_source_outside_dagster_resolves_envvars(monkeypatch, tmp_path):
    monkeypatch.setenv("CMS_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    source = catalog_resource_from_env().source()
    assert source.backend_name == "SqlCatalogSource"
    source.close()


def test_bad_mapping_file_fails_at_first_use(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = sa.create_engine(url)
    fresh_table(engine, SMALL)
    engine.dispose()
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"columns": {"title": "name", "price": "price_eur"}, "metadata_columns": ["brand"]}))
    monkeypatch.setenv("CMS_DATABASE_URL", url)
    monkeypatch.setenv("CMS_MAPPING_FILE", str(mapping))
    resource = SqlCatalogResource()
    with pytest.raises(CmsConfigError) as err:
        resource.source().check()
    assert str(err.value) == (
        "CMS schema does not match the mapping: table 'products' has no columns "
        "'name', 'price_eur', 'brand' (mapped to title, price, metadata)"
    )


@dg.asset
def synced_day(context, catalog: dg.ResourceParam[CatalogSource]) -> int:
    rows = list(catalog.read_window(BASE, BASE + timedelta(days=1), page_size=40))
    now = datetime.now(UTC)
    updates = [SyncUpdate(id=p.id, sync_status="synced", synced_at=now, sync_hash=content_hash(p)) for p in rows]
    written = catalog.write_back(updates, run_id=context.run.run_id).written
    assert len(catalog.backup_for_run(context.run.run_id)) == written
    return written


def test_sql_resource_in_a_materialization(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = sa.create_engine(url)
    fresh_table(engine, SMALL)
    engine.dispose()
    monkeypatch.setenv("CMS_DATABASE_URL", url)
    result = dg.materialize([synced_day], resources={"catalog": catalog_resource_from_env()})
    assert result.success
    written = result.output_for_node("synced_day")
    assert written == sum(1 for p in SMALL if updated_at_of(p) < BASE + timedelta(days=1)) and written > 0
    source = SqlCatalogSource(url)
    assert written == len(SMALL)  # 300 rows span 7 hours of the first day
    assert source.changed_days_since(None).days == ()  # the day just synced reports no change
    assert source.restore_backup(result.run_id).written == written
    source.close()


def test_supabase_resource_in_a_materialization(monkeypatch, tmp_path, pg_database):
    engine = sa.create_engine(pg_database)
    fresh_table(engine, SMALL)
    engine.dispose()
    with PostgrestTestServer(pg_database, "svc-key") as server:
        monkeypatch.setenv("SUPABASE_URL", server.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "svc-key")
        monkeypatch.setenv("CMS_BACKUP_DIR", str(tmp_path / "backups"))
        resource = catalog_resource_from_env()
        assert isinstance(resource, SupabaseCatalogResource)
        result = dg.materialize([synced_day], resources={"catalog": resource})
        assert result.success and result.output_for_node("synced_day") > 0
        source = RestCatalogSource(server.url, "svc-key", backup_dir=tmp_path / "backups")
        assert len(source.backup_for_run(result.run_id)) == result.output_for_node("synced_day")
        assert all(r.headers.get("apikey") == "svc-key" for r in server.requests)
        source.close()
