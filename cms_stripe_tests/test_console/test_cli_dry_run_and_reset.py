"""A dry run leaves a report (what it would do, nothing written) and a log in a fresh directory;
`cms-stripe reset` clears a run's checkpoints after a confirmation, so resuming it re-plans every
product: the checkpoint reader ignores what was recorded before the reset."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from cms_stripe.assets.stripe_sync import read_checkpoints
from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, run_cli
from cms_stripe_tests.test_console.test_cli_console import NOISE, fresh_env

DAYS = [f"2026-03-{d:02d}" for d in range(1, 11)]


def test_dry_run_report_then_migrate_then_reset_its_checkpoints(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    catalog = generate_catalog(60, seed=4, anchor=ANCHOR, days=3)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, catalog.products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(tmp_path, cms_url, emulator.url, MIGRATION_CHECKPOINT_INTERVAL="10")

        dry = run_cli(["dry-run"], env, cwd=work)
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        assert emulator.inspect()["writes_total"] == 0
        for noise in NOISE:
            assert noise not in dry.stdout + dry.stderr, noise
        assert "dry run: no Stripe write made (set MIGRATION_DRY_RUN=false to apply)" in dry.stdout
        (report_file,) = (work / "reports").glob("migration-report-*.json")
        report = json.loads(report_file.read_text())
        assert report["command"] == "dry-run" and report["dry_run"] is True
        assert report["counts"]["rows_read"] == 60 and report["counts"]["quarantined"] == len(catalog.invalid) == 2
        assert report["planned"] == 58 and report["counts"]["created"] == 0 and report["stripe_writes"] == 0
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        log = (work / "logs" / f"migration-{day}.log").read_text()
        assert not re.search(r" run=[0-9a-f]{8} write ", log) and "dry run: no Stripe write made" in log

        # -v brings Dagster's event stream back.
        verbose = run_cli(["-v", "dry-run"], env, cwd=work)
        assert verbose.returncode == 0 and " - dagster - DEBUG - " in verbose.stdout + verbose.stderr

        migrate = run_cli(["migrate"], env, cwd=work)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        migrated = json.loads(
            run_cli(["report", "--json"], env, cwd=work).stdout,
        )
        assert migrated["command"] == "migrate" and migrated["counts"]["created"] == len(emulator.objects()["products"])
        run_id = migrated["run_id"]

    os.environ["DAGSTER_HOME"] = str(work / ".dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            before = read_checkpoints(instance, dg.AssetKey("stripe_products"), DAYS, run_id)
        assert len(before) == 58  # every planned product finished and was checkpointed

        declined = run_cli(["reset", "--run-id", run_id], {**env, "PYTHONUNBUFFERED": "1"}, cwd=work, input="n\n")
        assert declined.returncode == 1 and "Aborted" in declined.stderr
        with dg.DagsterInstance.get() as instance:
            assert len(read_checkpoints(instance, dg.AssetKey("stripe_products"), DAYS, run_id)) == 58

        accepted = run_cli(["reset", "--run-id", run_id], env, cwd=work, input="y\n")
        assert accepted.returncode == 0, accepted.stderr
        assert f"clear the checkpoints of run {run_id} (58 products recorded as finished)?" in accepted.stdout
        assert f"cleared 58 checkpoints of run {run_id}" in accepted.stdout
        with dg.DagsterInstance.get() as instance:
            assert read_checkpoints(instance, dg.AssetKey("stripe_products"), DAYS, run_id) == {}
    finally:
        os.environ.pop("DAGSTER_HOME")
    engine.dispose()
