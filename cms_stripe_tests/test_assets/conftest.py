"""Real resources for the asset tests: the demo catalog in PostgreSQL (with the updated_at trigger),
the Stripe emulator over HTTP, and an ephemeral-on-disk Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import stripe

from cms_stripe.cms.demo import DemoCatalog, generate_catalog, write_catalog
from cms_stripe.cms.schema import drop_schema
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.io_managers import DailyFrameIOManager
from cms_stripe.resources.cms import SqlCatalogResource
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource

# The catalog's rows have updated_at on 2026-03-07, 08 and 09.
ANCHOR = datetime(2026, 3, 10, tzinfo=UTC)
DAYS = ("2026-03-07", "2026-03-08", "2026-03-09")
TEST_KEY = "sk_test_cms_stripe_assets"


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@pytest.fixture()
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    emulator_server.reset()
    return emulator_server


@pytest.fixture()
def stripe_client(emulator: EmulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})


@pytest.fixture()
def catalog(pg_engine: sa.engine.Engine) -> DemoCatalog:
    drop_schema(pg_engine)
    demo = generate_catalog(150, seed=3, anchor=ANCHOR, days=3)
    write_catalog(pg_engine, demo.products)
    return demo


@pytest.fixture()
def cms_url(pg_database: str, catalog: DemoCatalog) -> str:
    return pg_database


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


_env: pytest.MonkeyPatch | None = None


@pytest.fixture(autouse=True)
def resource_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Addresses, keys and folders are read from the environment (never config): make_resources sets
    them through this test's monkeypatch, so they are gone after the test."""
    global _env
    _env = monkeypatch
    yield monkeypatch
    _env = None


def make_resources(cms_url: str, emulator: EmulatorServer, tmp_path: Any, **settings: Any) -> dict[str, Any]:
    assert _env is not None
    for name, value in {
        "CMS_DATABASE_URL": cms_url,
        "STRIPE_SECRET_KEY": TEST_KEY,
        "STRIPE_API_BASE": emulator.url,
        "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
        # The daily log file too, so an asset test leaves nothing in the working directory.
        "MIGRATION_LOGS_DIR": str(tmp_path / "logs"),
        "CMS_STRIPE_FRAMES_DIR": str(tmp_path / "frames"),
    }.items():
        _env.setenv(name, value)
    options: dict[str, Any] = {"dry_run": False, "checkpoint_interval": 20}
    options.update(settings)
    return {
        "catalog": SqlCatalogResource(),
        "stripe": StripeResource(),
        "settings": SyncSettingsResource(**options),
        "frames_io_manager": DailyFrameIOManager(),
    }


def expected_live(demo: DemoCatalog, days: tuple[str, ...] = DAYS) -> dict[str, Any]:
    """CMS rows of `days` that must end up as active Stripe products.

    Invalid rows are the generator's record of the rows it broke (`demo.invalid`), not the validator's
    verdict: a validator that let a broken row through must fail these tests.
    """
    return {
        p.id: p
        for p in demo.products
        if p.updated_at
        and p.updated_at.strftime("%Y-%m-%d") in days
        and p.should_be_active
        and p.id not in demo.invalid
    }


def products_by_cms_id(emulator: EmulatorServer) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for product in emulator.objects()["products"]:
        cms_id = (product.get("metadata") or {}).get("cms_id")
        if cms_id:
            out.setdefault(cms_id, []).append(product)
    return out


def write_count(emulator: EmulatorServer) -> int:
    return sum(1 for r in emulator.requests_log() if r["method"] in ("POST", "DELETE"))


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
