"""What an operator sees: `cms-stripe migrate` on a 600-row catalog without a terminal prints a few
dozen lines (header, row errors, the old tool's progress line at each checkpoint, a closing table),
not Dagster's event stream; it leaves `logs/migration-YYYY-MM-DD.log` and
`reports/migration-report-*.json` in the working directory, whose counts are what Stripe and the CMS
hold. `report` and `status` read them back."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.records import updated_at_of
from cms_stripe_tests.test_cli import ANCHOR, KEY, cli_env, run_cli

PROGRESS = re.compile(
    r"^Progress: \d{1,3}\.\d% \((\d+)/(\d+)\) \| Success: (\d+) \| Failed: (\d+) \| Rate: \d+\.\d/s"
    r" \| ETA: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|-)$"
)
NOISE = (
    "DEBUG",
    "BetaWarning",
    "Telemetry",
    "Welcome to Dagster",
    "No dagster instance configuration",
    " - dagster - ",
)


def fresh_env(tmp_path, cms_url, api_base, **extra):
    """A fresh working directory: no DAGSTER_HOME, no reports or logs folder set (the defaults)."""
    env = cli_env(tmp_path, cms_url, api_base, **extra)
    for key in ("DAGSTER_HOME", "MIGRATION_REPORTS_DIR", "MIGRATION_LOGS_DIR"):
        env.pop(key)
    return env


def test_migrate_of_600_rows_console_log_and_report(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    catalog = generate_catalog(600, seed=7, anchor=ANCHOR, days=3)
    assert len(catalog.invalid) == 18
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, catalog.products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(tmp_path, cms_url, emulator.url)
        result = run_cli(["migrate"], env, cwd=work)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        stripe_products = emulator.objects()["products"]
        requests = emulator.inspect()["requests"]

        # The console: a few dozen lines, none of Dagster's.
        lines = result.stdout.splitlines()
        assert len(lines) < 60, result.stdout
        for noise in NOISE:
            assert noise not in result.stdout + result.stderr, noise
        assert KEY not in result.stdout + result.stderr
        assert lines[0] == (
            "cms-stripe migrate: incremental sync of partitions 2026-03-01..2026-03-10 in one run (APPLY)"
        )
        progress = [PROGRESS.match(line) for line in lines if line.startswith("Progress:")]
        assert all(progress) and len(progress) == 6, lines
        assert [int(m.group(1)) for m in progress if m] == [100, 200, 300, 400, 500, 582]
        assert {int(m.group(2)) for m in progress if m} == {582}
        quarantine_lines = [line for line in lines if line.startswith("HIGH VALIDATION_ERROR[")]
        assert len(quarantine_lines) == 10  # the first ten; the rest are counted on one line
        assert "… 8 more row errors: see the log file and the report" in lines
        assert any(line.startswith("plan: create 477, noop 105 (saved to ") for line in lines)

        # The report: counts as Stripe and the CMS hold them.
        reports = sorted((work / "reports").glob("migration-report-*.json"))
        assert len(reports) == 1
        report = json.loads(reports[0].read_text())
        with engine.connect() as conn:
            statuses = {
                r[0]: r[1] for r in conn.exec_driver_sql("SELECT sync_status, count(*) FROM products GROUP BY 1").all()
            }
        assert len(stripe_products) == 477
        assert statuses == {"synced": 477, "archived": 105, "quarantined": 18}
        assert report["counts"] == {
            "rows_read": 600,
            "valid": 582,
            "quarantined": 18,
            "created": 477,
            "updated": 0,
            "repriced": 0,
            "archived": 0,
            "reactivated": 0,
            "unchanged": 105,
            "failed": 0,
            "skipped": 0,
            "not_attempted": 0,
            "written_back": 582,
            "attempted": 582,
        }
        assert report["command"] == "migrate" and report["status"] == "success" and report["dry_run"] is False
        assert f"run {report['run_id']}: success" in lines and f"report: {reports[0]}" in lines
        assert report["partitions"] == "2026-03-01..2026-03-10" and report["strategy"] == "incremental"
        assert report["success_rate"] == 1.0
        assert report["stripe_writes"] == sum(v for k, v in requests.items() if k.startswith("POST"))
        assert report["errors_by_severity"] == {"HIGH": 18}
        assert sum(report["errors_by_code"].values()) == 18
        assert all(code.startswith("VALIDATION_ERROR[") for code in report["errors_by_code"])
        assert {e["cms_id"] for e in report["first_errors"]} == set(catalog.invalid)
        assert report["peak_memory_mb"] > 0 and report["cpu_time_s"] > 0

        # The log file: one line per product written to Stripe, one per quarantined row, no secret.
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        log = (work / "logs" / f"migration-{day}.log").read_text()
        assert report["log_path"] == str(work / "logs" / f"migration-{day}.log")
        writes = [line for line in log.splitlines() if re.search(r" run=[0-9a-f]{8} write ", line)]
        assert len(writes) == 477
        assert {re.search(r"created (prod_\S+)", line).group(1) for line in writes} == {  # type: ignore[union-attr]
            p["id"] for p in stripe_products
        }
        rows = [line for line in log.splitlines() if re.search(r" run=[0-9a-f]{8} row ", line)]
        assert len(rows) == 18 and all("VALIDATION_ERROR[" in line for line in rows)
        assert KEY not in log and KEY not in reports[0].read_text()
        assert re.search(r"run=[0-9a-f]{8} run +validated_products: run [0-9a-f-]{36} started; settings: ", log)

        # The UI links the same report from the asset's metadata.
        os.environ["DAGSTER_HOME"] = str(work / ".dagster_home")
        try:
            with dg.DagsterInstance.get() as instance:
                record = instance.fetch_materializations(dg.AssetKey("stripe_products"), limit=1).records[0]
                meta = record.asset_materialization.metadata  # type: ignore[union-attr]
                assert meta["run_report_path"].value == str(reports[0])
                assert meta["errors_by_code"].value == {}
                # Each partition lists its own day's quarantined rows, not the run's.
                by_day: dict[str, set[str]] = {}
                for p in catalog.products:
                    if p.id in catalog.invalid:
                        day_key = max(updated_at_of(p).astimezone(UTC).strftime("%Y-%m-%d"), "2026-03-01")
                        by_day.setdefault(day_key, set()).add(p.id)
                seen_days = {}
                for day_key in [f"2026-03-{d:02d}" for d in range(1, 11)]:
                    (rec,) = instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=dg.AssetKey("validated_products"), asset_partitions=[day_key]),
                        limit=1,
                    ).records
                    assert rec.asset_materialization is not None
                    day_meta = rec.asset_materialization.metadata
                    errors: Any = day_meta["errors"].value
                    seen_days[day_key] = {e["cms_id"] for e in errors}
                    assert day_meta["quarantined_rows"].value == len(by_day.get(day_key, ()))
                assert seen_days == {d: by_day.get(d, set()) for d in seen_days}
        finally:
            os.environ.pop("DAGSTER_HOME")

        # `report` renders it; `status` shows the CMS's sync state and the run.
        shown = run_cli(["report"], env, cwd=work)
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"created\s+477", shown.stdout) and re.search(r"quarantined\s+18", shown.stdout)
        assert report["run_id"] in shown.stdout
        raw = run_cli(["report", "--run-id", report["run_id"], "--json"], env, cwd=work)
        assert json.loads(raw.stdout) == report
        missing = run_cli(["report", "--run-id", "no-such-run"], env, cwd=work)
        assert missing.returncode == 2 and "no report of run no-such-run" in missing.stderr

        status = run_cli(["status"], env, cwd=work)
        assert status.returncode == 0, status.stderr
        assert re.search(r"synced\s+477", status.stdout) and re.search(r"quarantined\s+18", status.stdout)
        assert re.search(r"archived\s+105", status.stdout)
        assert f"last run: {report['run_id']} (cms_stripe_sync)" in status.stdout and ": SUCCESS" in status.stdout
    engine.dispose()
