"""Reading back what a run recorded, typed: Dagster's record and metadata types are wide unions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg

from cms_stripe.core.catalog import CmsProduct


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    """The newest materialization metadata of one partition, as plain values."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset} {partition} not materialized"
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def run_figures(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    """The run's own figures for `asset`: its one observation of the asset without a partition."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION):
        event = entry.dagster_event
        assert event is not None
        obs = event.event_specific_data.asset_observation  # type: ignore[union-attr]
        if obs.asset_key == dg.AssetKey(asset) and obs.partition is None:
            found.append({k: getattr(v, "value", v) for k, v in obs.metadata.items()})
    assert len(found) == 1, f"run {run_id} recorded {len(found)} run-level observations of {asset}"
    return found[0]


def updated_at_of(product: CmsProduct) -> datetime:
    """The `updated_at` of a row the test wrote (the generators always stamp one; a null is a test bug)."""
    assert product.updated_at is not None, f"{product.id} has no updated_at"
    return product.updated_at
