"""A CMS write-back that fails after its Stripe writes: the step goes on writing to Stripe, then fails
with a HIGH message naming the rows; Stripe holds every product once; the next run repairs the CMS from
Stripe's state without writing to Stripe again."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe_tests.test_assets.conftest import DAYS, expected_live, make_resources, products_by_cms_id, write_count

GRAPH = [raw_cms_products, validated_products, stripe_products]
DAY = DAYS[1]

# Refuses exactly the write-back of finished products (quarantine write-backs still pass), as a CMS
# that went read-only mid-run would: not a timeout, so no retry can cure it.
READ_ONLY = """
CREATE OR REPLACE FUNCTION refuse_synced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sync_status IN ('synced', 'archived') THEN
        RAISE EXCEPTION 'cms is read-only for maintenance';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refuse_synced BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION refuse_synced();
"""


def _synced(engine: sa.engine.Engine, ids: set[str]) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, sync_status, stripe_product_id FROM products WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
        return {r.id: (r.sync_status, r.stripe_product_id) for r in rows}


def test_failed_write_back_fails_the_step_and_the_next_run_repairs_it(
    catalog, cms_url, emulator, instance, tmp_path, pg_engine
):
    live = expected_live(catalog, (DAY,))
    assert live
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(READ_ONLY)
    resources = make_resources(cms_url, emulator, tmp_path)
    first = dg.materialize(GRAPH, partition_key=DAY, resources=resources, instance=instance, raise_on_error=False)
    assert not first.success
    failure = next(e for e in first.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    assert error is not None
    message = error.message
    # Every valid row of the day gets a write-back (synced, or archived for drafts): all refused.
    planted_valid = [p.id for p in catalog.products if p.updated_at.strftime("%Y-%m-%d") == DAY]
    planted_valid = [i for i in planted_valid if i not in catalog.invalid]
    assert f"[HIGH] CMS write-back failed for {len(planted_valid)} rows after their Stripe writes" in message
    assert "the next run repairs these rows from it" in message
    assert "read-only for maintenance" in message
    # Stripe went on: every live row has its product, once.
    by_cms = products_by_cms_id(emulator)
    assert set(by_cms) == set(live) and all(len(v) == 1 for v in by_cms.values())
    assert all(status == "pending" for status, _ in _synced(pg_engine, set(live)).values())

    writes = write_count(emulator)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_synced ON products")
    second = dg.materialize(GRAPH, partition_key=DAY, resources=resources, instance=instance)
    assert second.success
    assert write_count(emulator) == writes, "the repair writes nothing to Stripe"
    assert _synced(pg_engine, set(live)) == {cms_id: ("synced", by_cms[cms_id][0]["id"]) for cms_id in live}
