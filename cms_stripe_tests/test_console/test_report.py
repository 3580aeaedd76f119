"""The run report is built from what the run recorded: per-partition counts (and errors) are summed
over the partitions of a range run, run-wide figures (Stripe calls, pace) are taken once from the
run's own record without a partition; the latest materialization of a partition wins (a resumed run)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cms_stripe.core.report import Materialized, RunReport, build_report, find_report, report_path

RUN = Materialized(
    "stripe_products",
    None,
    {
        "stripe_calls": 120,
        "stripe_writes": 100,
        "stripe_429s": 3,
        "products_per_second": 12.5,
        "dry_run": False,
        "plan_path": "/r/plan.json",
    },
)


def _stripe(partition: str, created: int, noop: int, failed: int, skipped: int = 0, resumed: int = 0) -> Materialized:
    # Each partition records its own counts and errors (one failed write per failed product here).
    errors = [
        {"cms_id": f"c{partition[-2:]}-{i}", "code": "STRIPE_INVALID_REQUEST", "severity": "HIGH", "reason": "bad"}
        for i in range(failed)
    ]
    own = {
        "dry_run": False,
        "plan_path": "/r/plan.json",
        "planned": created + noop + failed,
        "created": created,
        "noop": noop,
        "failed": failed,
        "updated": 0,
        "skipped_existing": skipped,
        "resumed_from_checkpoint": resumed,
        "success_rate": 0.5,
        "errors": errors,
        "errors_by_code": {"STRIPE_INVALID_REQUEST": failed} if failed else {},
        "errors_by_severity": {"HIGH": failed} if failed else {},
    }
    return Materialized("stripe_products", partition, own)


def test_a_range_runs_counts_are_summed_and_run_wide_figures_taken_from_the_run():
    records = [
        Materialized("raw_cms_products", "2026-03-01", {"rows": 10}),
        Materialized("raw_cms_products", "2026-03-02", {"rows": 5}),
        Materialized(
            "validated_products",
            "2026-03-01",
            {
                "rows": 10,
                "valid_rows": 9,
                "quarantined_rows": 1,
                "errors": [{"cms_id": "c1", "code": "VALIDATION_ERROR[title_missing]", "severity": "HIGH"}],
                "errors_by_code": {"VALIDATION_ERROR[title_missing]": 1},
                "errors_by_severity": {"HIGH": 1},
            },
        ),
        Materialized("validated_products", "2026-03-02", {"rows": 5, "valid_rows": 5, "quarantined_rows": 0}),
        _stripe("2026-03-01", created=6, noop=2, failed=1, skipped=7),
        _stripe("2026-03-02", created=4, noop=1, failed=0, resumed=2),
        RUN,
    ]
    report = build_report(
        records,
        run_id="r1",
        command="migrate",
        status="success",
        started_at=datetime(2026, 3, 10, 12, 0, tzinfo=UTC),
        ended_at=datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC),
    )
    c = report.counts
    assert (c.rows_read, c.valid, c.quarantined) == (15, 14, 1)
    assert (c.created, c.unchanged, c.failed, c.skipped) == (10, 3, 1, 9)
    assert (report.stripe_calls, report.stripe_writes, report.stripe_429s) == (120, 100, 3)
    assert report.planned == 14
    assert report.success_rate == round(13 / 14, 4)
    assert report.products_per_second == 12.5
    assert report.duration_s == 30.0
    assert report.errors_by_code == {"STRIPE_INVALID_REQUEST": 1, "VALIDATION_ERROR[title_missing]": 1}
    assert report.errors_by_severity == {"HIGH": 2}
    assert [e.cms_id for e in report.first_errors] == ["c1", "c01-0"]
    assert report.dry_run is False and report.plan_path == "/r/plan.json"


def test_the_latest_materialization_of_a_partition_wins():
    first = _stripe("2026-03-01", created=1, noop=0, failed=5)
    resumed = _stripe("2026-03-01", created=6, noop=0, failed=0)
    report = build_report([first, resumed], run_id="r2", command="resume", status="success")
    assert (report.counts.created, report.counts.failed) == (6, 0)


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 50)), min_size=1, max_size=30))
def test_totals_do_not_depend_on_how_the_rows_fall_into_days(days):
    records = [_stripe(f"2026-01-{i + 1:02d}", *counts) for i, counts in enumerate(days)] + [RUN]
    report = build_report(records, run_id="r", command="migrate", status="success")
    assert report.counts.created == sum(d[0] for d in days)
    assert report.counts.unchanged == sum(d[1] for d in days)
    assert report.counts.failed == sum(d[2] for d in days)
    assert report.planned == sum(sum(d) for d in days)
    assert report.stripe_calls == 120


def test_report_file_round_trips_and_is_found_by_run_id(tmp_path):
    at = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
    a = build_report([_stripe("2026-01-01", 3, 1, 0)], run_id="run-a", command="migrate", status="success")
    path_a = a.write(report_path(tmp_path, at))
    b = build_report([], run_id="run-b", command="dry-run", status="success")
    path_b = b.write(report_path(tmp_path, at))
    assert path_a.name == "migration-report-20260115T143000Z.json"
    assert path_b.name == "migration-report-20260115T143000Z-2.json"
    assert find_report(tmp_path, "run-a") == path_a
    data = json.loads(path_a.read_text())
    assert data["counts"]["created"] == 3 and data["report_path"] == str(path_a)
    assert RunReport.from_dict(data) == a


def test_per_partition_errors_are_joined_and_counted_once_each():
    day1 = {
        "errors": [{"cms_id": "a", "code": "VALIDATION_ERROR[title_missing]", "severity": "HIGH", "reason": "r"}],
        "errors_by_code": {"VALIDATION_ERROR[title_missing]": 1},
        "errors_by_severity": {"HIGH": 1},
        "quarantined_rows": 1,
    }
    day2 = {
        "errors": [{"cms_id": "b", "code": "VALIDATION_ERROR[price_negative]", "severity": "HIGH", "reason": "r"}],
        "errors_by_code": {"VALIDATION_ERROR[price_negative]": 1},
        "errors_by_severity": {"HIGH": 1},
        "quarantined_rows": 1,
    }
    records = [
        Materialized("validated_products", "2026-03-01", day1),
        Materialized("validated_products", "2026-03-02", day2),
    ]
    report = build_report(records, run_id="r", command="migrate", status="success")
    assert [e.cms_id for e in report.first_errors] == ["a", "b"]
    assert report.errors_by_code == {"VALIDATION_ERROR[price_negative]": 1, "VALIDATION_ERROR[title_missing]": 1}
    assert report.errors_by_severity == {"HIGH": 2} and report.counts.quarantined == 2
