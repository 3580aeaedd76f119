"""The run report the CLI writes is built from the run's events as its own process stored them (not
read back from the event log): it must be exactly the report the instance's records give, and every
partition the sync materialized must link that report file.

A real `cms-stripe migrate` in a subprocess over a small SQLite CMS seeded by hand on four days (two
rows without a title), against the Stripe emulator; then, in this process (which never saw the run's
events), the report rebuilt from the instance the CLI used. Counts are written out from the rows."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.records import rebuilt_from_instance, without_process_fields

# The rows seeded by hand on four days, two without a title: the partition metadata test's.
from cms_stripe_tests.test_assets.test_partition_metadata import ROWS
from cms_stripe_tests.test_cli import cli_env, newest_report, run_cli


def stripe_partition_links(env: dict[str, str], run_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """partition → (run report link, log link) of the stripe_products materializations of `run_id`."""
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    links: dict[str, Any] = {}
    with dg.DagsterInstance.get() as instance:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            event = entry.dagster_event
            assert event is not None
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            if mat.asset_key == dg.AssetKey("stripe_products"):
                meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                links[str(mat.partition)] = (meta.get("run_report_path"), meta.get("log_path"))
    return links


def test_the_cli_report_is_the_one_the_instance_records_give(tmp_path, monkeypatch):
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, ROWS)
    engine.dispose()
    with EmulatorServer(EmulatorConfig()) as emulator:
        # Two rows in eight are invalid: below the default threshold's 95 %, the check would fail the run.
        env = cli_env(tmp_path, cms_url, emulator.url, MIGRATION_VALIDATION_THRESHOLD="0.5")
        result = run_cli(["migrate"], env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        first = newest_report(tmp_path / "reports")
        rerun = run_cli(["migrate"], env)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        second = newest_report(tmp_path / "reports")

    # Written out from ROWS: eight rows on 2026-03-01..10, two without a title.
    counts = first["counts"]
    assert (counts["rows_read"], counts["valid"], counts["quarantined"]) == (8, 6, 2)
    assert (counts["created"], counts["written_back"], counts["failed"], counts["skipped"]) == (6, 6, 0, 0)
    assert first["planned"] == 6 and first["status"] == "success" and first["partitions"] == "2026-03-01..2026-03-10"
    assert sorted(e["cms_id"] for e in first["first_errors"]) == ["d1-bad", "d4-bad"]
    assert first["reconciliation"]["matched"] == 6
    # The rerun finds all six in sync and writes nothing.
    counts = second["counts"]
    assert (counts["rows_read"], counts["valid"], counts["quarantined"]) == (8, 6, 2)
    assert (counts["created"], counts["skipped"], second["stripe_writes"]) == (0, 6, 0)
    assert second["run_id"] != first["run_id"]

    for n, cli_report in enumerate((first, second)):
        assert without_process_fields(cli_report) == rebuilt_from_instance(
            env, cli_report, tmp_path / f"rebuilt-{n}.json", monkeypatch
        )

        # Every partition of the range links the run's report file and the day's log, named before
        # the step wrote either.
        links = stripe_partition_links(env, cli_report["run_id"], monkeypatch)
        assert sorted(links) == [f"2026-03-{d:02d}" for d in range(1, 11)]
        report_file = pathlib.Path(newest_report_path(tmp_path / "reports", cli_report["run_id"]))
        assert set(links.values()) == {(str(report_file), cli_report["log_path"])}
        assert json.loads(report_file.read_text())["run_id"] == cli_report["run_id"]


def newest_report_path(folder: pathlib.Path, run_id: str) -> str:
    found = [p for p in folder.glob("migration-report-*.json") if json.loads(p.read_text())["run_id"] == run_id]
    assert len(found) == 1, found
    return str(found[0].resolve())
