"""Reading back what a run recorded, typed: Dagster's record and metadata types are wide unions."""

from __future__ import annotations

import pathlib
from datetime import datetime
from typing import Any

import dagster as dg
import pytest

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.reporting import write_run_report


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


# What depends on the process that wrote a run report, not on the run's records.
PROCESS_FIELDS = ("peak_memory_mb", "cpu_time_s", "report_path")


def without_process_fields(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in PROCESS_FIELDS}


def rebuilt_from_instance(
    env: dict[str, str], cli_report: dict[str, Any], out: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The report of the CLI's run as the instance's records give it (this process has no listener)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(cli_report["run_id"])
        assert run is not None
        report = write_run_report(
            instance,
            run,
            status=cli_report["status"],
            command=cli_report["command"],
            log_path=cli_report["log_path"],
            path=out,
        )
        return without_process_fields(report.to_dict())
