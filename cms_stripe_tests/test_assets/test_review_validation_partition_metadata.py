"""Review of issue 11: in a range run, validated_products computes per-partition numbers but no longer
attaches them (`add_partition_metadata` was dropped), so every day of the range shows the run-level
quarantine count and success rate: the UI cannot say which day (or open edge) holds the bad rows."""

from __future__ import annotations

import dagster as dg

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.validation import validated_products
from cms_stripe_tests.test_assets.conftest import DAYS, make_resources, range_tags


def _meta(instance: dg.DagsterInstance, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("validated_products"), asset_partitions=[partition]), limit=1
    ).records
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_review_range_run_validation_metadata_is_per_partition(
    cms_url, catalog, emulator, instance, tmp_path, pg_engine
):
    bad_day = DAYS[2]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(
            "UPDATE products SET title = NULL WHERE to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') = %(d)s",
            {"d": bad_day},
        )
    result = dg.materialize(
        [raw_cms_products, validated_products],
        resources=make_resources(cms_url, emulator, tmp_path, dry_run=True),
        instance=instance,
        tags=range_tags(DAYS[0], DAYS[-1]),
    )
    assert result.success
    # Every live row of the bad day lost its title: that day's rate is 0 whatever the other days hold.
    assert _meta(instance, bad_day)["validation_success_rate"] == 0.0
