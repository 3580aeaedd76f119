"""MIGRATION_BATCH_SIZE (the old tool's "products per batch") is the CMS page size and the write-back
batch: with 7, reading 20 rows takes 3 pages and writing 20 rows back takes 3 statements; the
specific CMS_PAGE_SIZE / CMS_WRITE_BATCH_SIZE refine one of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.core.catalog import SyncUpdate
from cms_stripe.resources.cms import catalog_resource_from_env
from cms_stripe_tests.test_cli import ANCHOR


@pytest.fixture()
def statements():
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def test_batch_size_pages_reads_and_batches_write_backs(tmp_path, statements, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(url)
    products = generate_catalog(20, seed=2, anchor=ANCHOR, days=3).products
    write_catalog(engine, products)
    engine.dispose()

    # Where the catalog lives is read from the process environment when the backend is built.
    monkeypatch.setenv("CMS_DATABASE_URL", url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_batch")  # a test key: CMS writes need no live allowance
    resource = catalog_resource_from_env({"CMS_DATABASE_URL": url, "MIGRATION_BATCH_SIZE": "7"})
    assert (resource.page_size, resource.write_batch_size) == (7, 7)
    source = resource.source()
    source.check()
    statements.clear()
    assert len(list(source.read_all())) == 20
    pages = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "LIMIT" in s.upper()]
    assert len(pages) == 3

    statements.clear()
    now = datetime(2026, 3, 10, tzinfo=UTC)
    updates = [SyncUpdate(id=p.id, sync_status="failed", sync_error="x", synced_at=now) for p in products]
    assert source.write_back(updates, run_id="batch-test").written == 20
    writes = [s for s in statements if s.lstrip().upper().startswith("UPDATE PRODUCTS ")]
    assert len(writes) == 3
    resource.close()


def test_specific_sizes_refine_the_batch_size():
    env = {"CMS_DATABASE_URL": "sqlite://", "MIGRATION_BATCH_SIZE": "50", "CMS_PAGE_SIZE": "200"}
    resource = catalog_resource_from_env(env)
    assert (resource.page_size, resource.write_batch_size) == (200, 50)
    default = catalog_resource_from_env({"CMS_DATABASE_URL": "sqlite://"})
    assert (default.page_size, default.write_batch_size) == (1000, 500)
