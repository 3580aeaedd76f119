"""Issue 13: in a range run, each partition's materialization metadata describes that day only.

A small SQLite CMS seeded by hand on four days, one of them empty; one single run over the range on
real Dagster and the Stripe emulator; then, for every partition and each of the four assets, the
newest materialization read back from the instance. The expected numbers are written out from the
seeded rows. Run-wide figures (Stripe calls, pace, duration, write-back totals) are on no partition:
they are recorded once, as the run's observation, and the run report reads them from there."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.reconciliation import reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.cms.demo import write_catalog
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.reporting import write_run_report
from cms_stripe_tests.records import latest_metadata, run_figures
from cms_stripe_tests.test_assets.conftest import make_resources, range_tags

GRAPH = [raw_cms_products, validated_products, stripe_products, reconciliation_report]
ASSETS = ("raw_cms_products", "validated_products", "stripe_products", "reconciliation_report")
D1, D2, D3, D4 = "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"
# Figures of the whole run, spelled here (not imported) so a renamed key cannot slip onto a partition.
RUN_WIDE = {
    "stripe_calls",
    "stripe_writes",
    "stripe_429s",
    "products_per_second",
    "duration_s",
    "written_back",
    "writeback_conflicts",
    "writeback_failed",
    "quarantine_written_back",
    "quarantine_write_back_error",
}


def _row(cms_id: str, day: str, hour: int, title: str | None = "A product") -> CmsProduct:
    at = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
    return CmsProduct(id=cms_id, title=title, price=Decimal("12.50"), currency="usd", created_at=at, updated_at=at)


# D1: three rows, one without a title; D2: none; D3: one; D4: four, one without a title.
ROWS = [
    _row("d1-a", D1, 8),
    _row("d1-b", D1, 9),
    _row("d1-bad", D1, 10, title=None),
    _row("d3-a", D3, 12),
    _row("d4-a", D4, 1),
    _row("d4-b", D4, 2),
    _row("d4-c", D4, 3),
    _row("d4-bad", D4, 4, title=None),
]


def sync_range(sqlite_url, emulator, instance, tmp_path) -> tuple[dg.ExecuteInProcessResult, dict[str, Any]]:
    """ROWS seeded, then one range run of the three sync assets over D1..D4 (without the CLI)."""
    engine = sa.create_engine(sqlite_url)
    write_catalog(engine, ROWS)
    engine.dispose()
    resources = make_resources(sqlite_url, emulator, tmp_path)
    result = dg.materialize(
        GRAPH, selection=ASSETS[:3], resources=resources, instance=instance, tags=range_tags(D1, D4)
    )
    return result, resources


def test_range_run_gives_each_partition_its_own_numbers(sqlite_url, emulator, instance, tmp_path):
    result, resources = sync_range(sqlite_url, emulator, instance, tmp_path)
    assert result.success
    sync_requests = emulator.requests_log()
    posts = sum(1 for r in sync_requests if r["method"] == "POST")
    assert posts > 0
    recon_run = dg.materialize(
        GRAPH, selection=ASSETS[3:], resources=resources, instance=instance, tags=range_tags(D1, D4)
    )
    assert recon_run.success

    meta = {(asset, pk): latest_metadata(instance, asset, pk) for asset in ASSETS for pk in (D1, D2, D3, D4)}

    raw = {pk: meta["raw_cms_products", pk]["rows"] for pk in (D1, D2, D3, D4)}
    assert raw == {D1: 3, D2: 0, D3: 1, D4: 4}
    assert meta["raw_cms_products", D2]["max_updated_at"] == ""
    assert meta["raw_cms_products", D3]["max_updated_at"] == "2026-03-04T12:00:00+00:00"

    def validated(pk: str) -> tuple[int, int, int, float]:
        m = meta["validated_products", pk]
        return m["rows"], m["valid_rows"], m["quarantined_rows"], m["validation_success_rate"]

    assert validated(D1) == (3, 2, 1, 2 / 3)
    assert validated(D2) == (0, 0, 0, 1.0)
    assert validated(D3) == (1, 1, 0, 1.0)
    assert validated(D4) == (4, 3, 1, 3 / 4)
    # Each day's quarantine table and errors name its own bad row only.
    assert "d1-bad" in meta["validated_products", D1]["quarantine"]
    assert "d4-bad" not in meta["validated_products", D1]["quarantine"]
    assert meta["validated_products", D2]["quarantine"] == "No row quarantined."
    assert [e["cms_id"] for e in meta["validated_products", D4]["errors"]] == ["d4-bad"]
    assert meta["validated_products", D2]["errors"] == [] and meta["validated_products", D2]["errors_by_code"] == {}

    def synced(pk: str) -> tuple[Any, ...]:
        m = meta["stripe_products", pk]
        keys = ("planned", "plan_create", "plan_noop", "created", "updated", "noop", "failed", "success_rate")
        return tuple(m[k] for k in keys)

    # planned, plan_create, plan_noop, created, updated, noop, failed, success_rate
    assert synced(D1) == (2, 2, 0, 2, 0, 0, 0, 1.0)
    assert synced(D2) == (0, 0, 0, 0, 0, 0, 0, 1.0)
    assert synced(D3) == (1, 1, 0, 1, 0, 0, 0, 1.0)
    assert synced(D4) == (3, 3, 0, 3, 0, 0, 0, 1.0)
    # The plan lines of a day are its own rows'.
    assert "d1-a" in meta["stripe_products", D1]["plan_summary"]
    assert "d4-a" not in meta["stripe_products", D1]["plan_summary"]
    assert "d1-a" not in meta["stripe_products", D2]["plan_summary"]
    # Stripe writes attributed to each day's products: the same per created product, none on D2,
    # and together every POST the emulator received.
    attempts = {pk: meta["stripe_products", pk]["stripe_write_attempts"] for pk in (D1, D2, D3, D4)}
    per_product = posts // 6
    assert attempts == {D1: 2 * per_product, D2: 0, D3: per_product, D4: 3 * per_product}
    assert sum(attempts.values()) == posts

    def recon(pk: str) -> tuple[int, int, int, int, int]:
        m = meta["reconciliation_report", pk]
        return m["rows"], m["matched"], m["quarantined"], m["missing"], m["drift"]

    assert recon(D1) == (3, 2, 1, 0, 0)
    assert recon(D2) == (0, 0, 0, 0, 0)
    assert recon(D3) == (1, 1, 0, 0, 0)
    assert recon(D4) == (4, 3, 1, 0, 0)
    assert "**Reconciliation (partition 2026-03-03)**" in meta["reconciliation_report", D2]["report"]
    assert f"{D1}..{D4}" not in meta["reconciliation_report", D3]["report"]

    # No partition carries a figure of the whole run.
    for (asset, pk), m in meta.items():
        assert not RUN_WIDE & set(m), f"{asset} {pk} carries run-wide {sorted(RUN_WIDE & set(m))}"

    # They are the run's, recorded once: all the sync's requests are the ones the emulator answered.
    run_wide = run_figures(instance, result.run_id, "stripe_products")
    assert run_wide["stripe_calls"] == len(sync_requests)
    assert run_wide["stripe_writes"] == posts
    assert run_wide["written_back"] == 6
    quarantine_figures = run_figures(instance, result.run_id, "validated_products")
    assert quarantine_figures["quarantine_written_back"] == 2

    # The run report still adds the partitions up and takes the run's figures from its observation,
    # in the step (the report file) and after the run (as the CLI completes it).
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    for report in (
        json.loads(next((tmp_path / "reports").glob("migration-report-*.json")).read_text()),
        write_run_report(instance, run, status="success").to_dict(),
    ):
        assert report["planned"] == 6 and report["stripe_calls"] == len(sync_requests)
        assert report["stripe_writes"] == posts
        counts = report["counts"]
        assert (counts["rows_read"], counts["valid"], counts["quarantined"]) == (8, 6, 2)
        assert (counts["created"], counts["written_back"], counts["failed"]) == (6, 6, 0)
        assert sorted(e["cms_id"] for e in report["first_errors"]) == ["d1-bad", "d4-bad"]


def test_single_partition_run_has_no_run_wide_figures_either(sqlite_url, emulator, instance, tmp_path):
    engine = sa.create_engine(sqlite_url)
    write_catalog(engine, ROWS)
    engine.dispose()
    result = dg.materialize(
        GRAPH, partition_key=D4, resources=make_resources(sqlite_url, emulator, tmp_path), instance=instance
    )
    assert result.success
    for asset in ASSETS:
        m = latest_metadata(instance, asset, D4)
        assert m["rows"] == 4 if "rows" in m else asset == "stripe_products"
        assert not RUN_WIDE & set(m), f"{asset} carries run-wide {sorted(RUN_WIDE & set(m))}"
    assert latest_metadata(instance, "stripe_products", D4)["created"] == 3
    run_wide = run_figures(instance, result.run_id, "stripe_products")
    assert run_wide["stripe_calls"] > 0 and run_wide["written_back"] == 3
