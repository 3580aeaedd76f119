"""Smoke test of the benchmark (issue 7) in a tiny mode: JSON shape and logical invariants only.

No timing is asserted: throughput depends on the machine; the benchmark reports it, tests do not judge it.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from cms_stripe_tests.benchmarks.common import changed_catalog
from cms_stripe_tests.benchmarks.runner import SCENARIO_KEYS
from cms_stripe_tests.benchmarks.table import render_table
from cms_stripe_tests.conftest import PG_ADMIN_URL

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCTS = 60
PLAN_ROWS = 2000


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cms_stripe_tests.benchmarks",
            "--products",
            str(PRODUCTS),
            "--plan-rows",
            str(PLAN_ROWS),
            "--capacity-seconds",
            "0.5",
            "--noop-rows",
            "30",
            "--noop-partition-days",
            "20,45",
            "--pg-admin-url",
            PG_ADMIN_URL,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == last
    assert "scenario" in proc.stderr  # the readable table
    return last


@pytest.mark.slow
def test_every_scenario_reports(report: dict) -> None:
    assert report["error"] is None
    assert set(SCENARIO_KEYS) <= set(report["scenarios"])
    assert report["sizes"]["products"] == PRODUCTS
    assert report["targets"]["old_tool_products_per_s"] == [1.0, 5.0]
    assert isinstance(report["gaps"], list) and all(isinstance(g, str) for g in report["gaps"])
    assert report["scenarios"]["creates_live_e2e"]["phases"]["write_phase_s"] > 0


@pytest.mark.slow
def test_the_sensors_first_sync_is_one_run_that_syncs_everything(report: dict) -> None:
    s = report["scenarios"]["sensor_first_sync"]
    assert s["runs_requested"] == 1
    assert s["run_statuses"] == ["success"]
    assert s["products_created"] == s["products"] == s["cms_rows_synced"] == PRODUCTS
    assert s["migrate_products_created"] == PRODUCTS


@pytest.mark.slow
def test_creates_make_every_product(report: dict) -> None:
    for key in ("creates_live", "creates_test", "creates_live_e2e"):
        c = report["scenarios"][key]
        assert c["products_created"] == c["products"], key
        # One request per new product (lane A) or two (lane B), plus the state reads.
        assert c["calls_per_product"] >= 1, key
        for field in ("products_per_s", "ratio_to_ceiling", "pacing_429s", "peak_rss_mb"):
            assert isinstance(c[field], int | float), (key, field)
    e2e = report["scenarios"]["creates_live_e2e"]
    assert e2e["cms_rows_synced"] == e2e["products"]
    # Test mode: every create is one POST /v1/products (no lane B, no lookup-key update).
    test_requests = report["scenarios"]["creates_test"]["requests"]
    assert test_requests.get("POST /v1/products") == report["scenarios"]["creates_test"]["products"]
    assert "POST /v1/prices/:id" not in test_requests and "POST /v1/prices" not in test_requests


@pytest.mark.slow
def test_naive_baseline_is_measured_in_the_same_run(report: dict) -> None:
    n = report["scenarios"]["naive_sequential"]
    assert n["products_created"] == n["products"] > 0 and n["failed"] == 0
    head = report["headline"]
    assert head["naive_products_per_s"] == n["products_per_s"]
    live = report["scenarios"]["creates_live"]["products_per_s"]
    assert head["creates_live_vs_naive"] == round(live / n["products_per_s"], 2)


@pytest.mark.slow
def test_noop_rerun_writes_nothing(report: dict) -> None:
    n = report["scenarios"]["noop_rerun"]
    assert n["stripe_writes"] == 0
    assert n["stripe_reads"] <= PRODUCTS // 100 + 1
    assert n["plan"]["noop"] == PRODUCTS


@pytest.mark.slow
def test_changed_rows_are_the_only_writes(report: dict) -> None:
    c = report["scenarios"]["changed_1pct"]
    assert c["changed"] == 2 and c["field_edits"] == 1 and c["price_changes"] == 1
    assert c["plan"]["update"] + c["plan"]["reprice"] == c["changed"]
    assert c["plan"]["noop"] == PRODUCTS - c["changed"]
    assert c["stripe_writes"] >= c["changed"]


@pytest.mark.slow
def test_planning_and_capacity(report: dict) -> None:
    p = report["scenarios"]["plan_rows"]
    assert p["rows"] == PLAN_ROWS
    assert sum(p["plan"].values()) == PLAN_ROWS
    assert p["plan"]["quarantined"] == p["invalid_rows"] > 0
    # Streamed: the rows went through in pages of the CMS page size, never all at once.
    assert p["pages"] == -(-PLAN_ROWS // p["page_size"]) > 1
    assert p["peak_rss_mb"] > 0
    assert report["scenarios"]["emulator_capacity"]["requests"] > 0


@pytest.mark.slow
def test_noop_over_partitions_writes_nothing(report: dict) -> None:
    n = report["scenarios"]["noop_partitions"]
    assert n["rows"] == 30 and n["rows_spread_over_days"] == 20
    # 20 and 45 days back to today, both ends included.
    assert [r["partitions"] for r in n["runs"]] == [21, 46]
    # A full run starts at the oldest row's day, at most 20 days back, whatever the partition start.
    ran = [r["partitions_run"] for r in n["runs"]]
    assert ran[0] == ran[1] and 2 <= ran[0] <= 21
    for r in n["runs"]:
        assert r["exit_code"] == 0 and r["stripe_writes"] == 0 and r["wall_s"] > 0
        assert r["target_s"] is None and r["meets_target"] is None  # targets are for 700 and 3,650 days


def test_changed_catalog_alternates_fields_and_prices() -> None:
    from datetime import UTC, datetime

    from cms_stripe_tests.benchmarks.common import bench_catalog

    rows = bench_catalog(1000, seed=3, anchor=datetime(2026, 1, 1, tzinfo=UTC), id_prefix="t-")
    assert len(rows) == 1000 and len({r.id for r in rows}) == 1000
    changed_rows, changed = changed_catalog(rows)
    assert len(changed) == 10
    assert sorted(changed.values()).count("price") == 5
    before = {r.id: r for r in rows}
    for r in changed_rows:
        if changed.get(r.id) == "price":
            assert r.price == (before[r.id].price or 0) + 1
        elif changed.get(r.id) == "field":
            assert r.title != before[r.id].title
        else:
            assert r == before[r.id]


def test_table_renders_a_partial_report() -> None:
    text = render_table({"mode": "quick", "elapsed_s": 1.0, "scenarios": {}, "notes": ["n"], "error": "boom"})
    assert "ERROR: boom" in text and "note: n" in text
