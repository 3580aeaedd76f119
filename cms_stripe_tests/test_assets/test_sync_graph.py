"""The asset graph end to end on real resources: one partition, a three-day range in a single run,
reruns that write nothing, dry-run, the selective job, and each check failing on data built to fail it."""

from __future__ import annotations

import dagster as dg

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.reconciliation import reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.constants import (
    CHECK_NO_DRIFT,
    CHECK_NO_DUPLICATES,
    CHECK_NO_FAILED_WRITES,
    CHECK_VALIDATION_RATE,
)
from cms_stripe.emulator import FaultConfig
from cms_stripe.jobs import SELECTIVE_SYNC_JOB, selective_sync_job
from cms_stripe_tests.expected import minor_units
from cms_stripe_tests.records import latest_metadata, run_figures
from cms_stripe_tests.test_assets.conftest import (
    DAYS,
    expected_live,
    make_resources,
    products_by_cms_id,
    range_tags,
    write_count,
)

GRAPH = [raw_cms_products, validated_products, stripe_products, reconciliation_report]


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _assert_stripe_matches(emulator, demo, days=DAYS) -> None:
    live = expected_live(demo, days)
    by_cms = products_by_cms_id(emulator)
    prices = {p["id"]: p for p in emulator.objects()["prices"]}
    assert set(by_cms) == set(live)
    for cms_id, product in live.items():
        assert len(by_cms[cms_id]) == 1, f"{cms_id} has {len(by_cms[cms_id])} Stripe products"
        sp = by_cms[cms_id][0]
        assert sp["active"] and sp["name"] == product.title
        default = sp["default_price"]
        price = prices[default if isinstance(default, str) else default["id"]]
        assert price["currency"] == product.currency
        assert price["unit_amount"] == minor_units(product.price, product.currency)
        assert (price["recurring"] or {}).get("interval") == product.recurring_interval


def test_one_partition(cms_url, catalog, emulator, instance, tmp_path, pg_engine):
    day = DAYS[1]
    result = dg.materialize(
        GRAPH, partition_key=day, resources=make_resources(cms_url, emulator, tmp_path), instance=instance
    )
    assert result.success
    assert all(_checks(result).values()), _checks(result)
    _assert_stripe_matches(emulator, catalog, (day,))

    raw = latest_metadata(instance, "raw_cms_products", day)
    rows_of_day = [p for p in catalog.products if p.updated_at and p.updated_at.strftime("%Y-%m-%d") == day]
    assert raw["rows"] == len(rows_of_day)
    synced = latest_metadata(instance, "stripe_products", day)
    assert synced["created"] == len(expected_live(catalog, (day,)))
    assert synced["failed"] == 0 and synced["stripe_write_attempts"] > 0
    # The run's own figures are the run's, not the partition's (even when the run is one partition).
    assert "stripe_calls" not in synced and "products_per_second" not in synced
    run_wide = run_figures(instance, result.run_id, "stripe_products")
    assert run_wide["stripe_429s"] == 0
    assert isinstance(run_wide["products_per_second"], float) and run_wide["stripe_calls"] > 0
    recon = latest_metadata(instance, "reconciliation_report", day)
    assert recon["missing"] == 0 and recon["drift"] == 0 and recon["duplicates"] == 0

    # The CMS got the Stripe ids back; invalid live rows carry their quarantine reason.
    with pg_engine.connect() as conn:
        rows = {
            r.id: r for r in conn.exec_driver_sql("SELECT id, sync_status, sync_error, stripe_product_id FROM products")
        }
    for cms_id in expected_live(catalog, (day,)):
        assert rows[cms_id].sync_status == "synced" and rows[cms_id].stripe_product_id
    for cms_id in catalog.invalid:
        product = next(p for p in catalog.products if p.id == cms_id)
        if product.updated_at.strftime("%Y-%m-%d") == day:
            assert rows[cms_id].sync_status == "quarantined" and rows[cms_id].sync_error


def test_three_day_range_in_one_run_then_rerun_writes_nothing(cms_url, catalog, emulator, instance, tmp_path):
    resources = make_resources(cms_url, emulator, tmp_path)
    first = dg.materialize(GRAPH, resources=resources, instance=instance, tags=range_tags(DAYS[0], DAYS[-1]))
    assert first.success and all(_checks(first).values())
    _assert_stripe_matches(emulator, catalog)
    # One run, and a materialization per partition with that day's own numbers.
    for day in DAYS:
        meta = latest_metadata(instance, "stripe_products", day)
        assert meta["created"] == len(expected_live(catalog, (day,)))
        assert meta["success_rate"] == 1.0
    writes = write_count(emulator)
    assert writes > 0

    second = dg.materialize(GRAPH, resources=resources, instance=instance, tags=range_tags(DAYS[0], DAYS[-1]))
    assert second.success
    assert write_count(emulator) == writes, "a rerun of a synced range must not write to Stripe"
    _assert_stripe_matches(emulator, catalog)


def test_dry_run_makes_no_write_and_saves_the_plan(cms_url, catalog, emulator, instance, tmp_path, pg_engine):
    resources = make_resources(cms_url, emulator, tmp_path, dry_run=True)
    result = dg.materialize(
        [raw_cms_products, validated_products, stripe_products],
        partition_key=DAYS[0],
        resources=resources,
        instance=instance,
    )
    assert result.success
    assert write_count(emulator) == 0
    assert emulator.inspect()["writes_total"] == 0
    meta = latest_metadata(instance, "stripe_products", DAYS[0])
    assert meta["dry_run"] is True
    assert meta["plan_create"] == len(expected_live(catalog, (DAYS[0],)))
    plans = list((tmp_path / "reports").glob("plan-*.json"))
    assert len(plans) == 1 and plans[0].with_suffix(".md").exists()
    with pg_engine.connect() as conn:
        statuses = {r[0] for r in conn.exec_driver_sql("SELECT DISTINCT sync_status FROM products")}
    assert statuses == {"pending"}, "dry-run writes nothing back to the CMS either"


def test_selective_job_syncs_only_the_listed_ids(cms_url, catalog, emulator, instance, tmp_path):
    live = sorted(expected_live(catalog))
    chosen = [*live[:5], next(iter(catalog.invalid))]
    defs = dg.Definitions(jobs=[selective_sync_job], resources=make_resources(cms_url, emulator, tmp_path))
    result = defs.resolve_job_def(SELECTIVE_SYNC_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"sync_selected_products": {"config": {"product_ids": chosen}}}}
    )
    assert result.success
    assert set(products_by_cms_id(emulator)) == set(live[:5])


def test_validation_check_fails_on_a_mostly_invalid_day(cms_url, catalog, emulator, instance, tmp_path, pg_engine):
    day = DAYS[2]
    with pg_engine.begin() as conn:
        # A bulk edit that blanks the titles of one day; replica mode keeps the updated_at trigger from
        # moving those rows to today, so the day's partition holds them.
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(
            "UPDATE products SET title = NULL WHERE to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') = %(d)s",
            {"d": day},
        )
    result = dg.materialize(
        [raw_cms_products, validated_products],
        partition_key=day,
        resources=make_resources(cms_url, emulator, tmp_path),
        instance=instance,
    )
    assert result.success, "quarantine never fails the partition"
    assert _checks(result)[CHECK_VALIDATION_RATE] is False
    meta = latest_metadata(instance, "validated_products", day)
    assert meta["validation_success_rate"] == 0.0
    assert meta["quarantined_rows"] == sum(
        1 for p in catalog.products if p.should_be_active and p.updated_at.strftime("%Y-%m-%d") == day
    )
    assert "title_missing" in meta["quarantine"]


def test_failed_writes_check_blocks_reconciliation(cms_url, catalog, emulator, instance, tmp_path):
    # Every write hits an object lock that never clears: each product fails (HIGH), none is created.
    emulator.configure(faults=FaultConfig(lock_timeout_429=1.0, seed=1))
    result = dg.materialize(
        GRAPH,
        partition_key=DAYS[0],
        resources=make_resources(cms_url, emulator, tmp_path),
        instance=instance,
        raise_on_error=False,
    )
    emulator.configure(faults=FaultConfig())
    checks = _checks(result)
    assert checks[CHECK_NO_FAILED_WRITES] is False
    # Blocking ERROR check: the downstream reconciliation did not run.
    assert CHECK_NO_DRIFT not in checks
    assert not any(
        e.asset_key == dg.AssetKey("reconciliation_report") for e in result.get_asset_materialization_events()
    )


def test_reconciliation_checks_fail_on_drift_and_duplicates(
    cms_url, catalog, emulator, instance, tmp_path, stripe_client, pg_engine
):
    day = DAYS[0]
    resources = make_resources(cms_url, emulator, tmp_path)
    assert dg.materialize(GRAPH, partition_key=day, resources=resources, instance=instance).success
    live = sorted(expected_live(catalog, (day,)))
    edited, doubled = live[0], live[1]
    # Someone edits a product in the Dashboard, and an earlier tool's product for another row is live too.
    from cms_stripe.core.identity import derived_product_id

    stripe_client.v1.products.update(derived_product_id(edited), params={"name": "Edited by hand"})
    stripe_client.v1.products.create(
        params={"id": "prod_legacy_tool_1", "name": "Legacy", "metadata": {"cms_id": doubled}}
    )
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE products SET stripe_product_id = 'prod_legacy_tool_1' WHERE id = %(id)s", {"id": doubled}
        )
    result = dg.materialize(
        [raw_cms_products, reconciliation_report],
        partition_key=day,
        resources=resources,
        instance=instance,
        selection=[reconciliation_report],
    )
    checks = _checks(result)
    assert checks[CHECK_NO_DRIFT] is False
    assert checks[CHECK_NO_DUPLICATES] is False
    meta = latest_metadata(instance, "reconciliation_report", day)
    assert meta["drift"] >= 1 and meta["duplicates"] == 1
