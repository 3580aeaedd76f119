"""A run started without the CLI (the UI, the schedule, the sensor; here `materialize`) still gets its
run report file from the sync step, read from the instance, and every partition the step
materialized links that file and the day's log (named before the step writes the report, so the
partitions' metadata is computed once)."""

from __future__ import annotations

import json
import pathlib

from cms_stripe_tests.records import latest_metadata
from cms_stripe_tests.test_assets.test_partition_metadata import D1, D2, D3, D4, sync_range


def test_a_run_without_the_cli_gets_its_report_and_every_partition_links_it(sqlite_url, emulator, instance, tmp_path):
    result, _ = sync_range(sqlite_url, emulator, instance, tmp_path)
    assert result.success

    (report_file,) = (tmp_path / "reports").glob("migration-report-*.json")
    report = json.loads(report_file.read_text())
    # Written out from ROWS: eight rows over the four days, two without a title, six created.
    assert report["run_id"] == result.run_id and report["status"] == "success"
    counts = report["counts"]
    assert (counts["rows_read"], counts["valid"], counts["quarantined"]) == (8, 6, 2)
    assert (counts["created"], counts["written_back"], counts["failed"]) == (6, 6, 0)
    assert sorted(e["cms_id"] for e in report["first_errors"]) == ["d1-bad", "d4-bad"]
    assert report["report_path"] == str(report_file.resolve())

    for pk in (D1, D2, D3, D4):
        meta = latest_metadata(instance, "stripe_products", pk)
        assert meta["run_report_path"] == str(report_file.resolve()), pk
        assert meta["log_path"] == report["log_path"], pk
    assert pathlib.Path(report["log_path"]).parent == (tmp_path / "logs").resolve()
