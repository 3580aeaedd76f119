"""The cms-stripe CLI as users run it (a subprocess reading the environment): migrate against a CMS
whose rows already carry an earlier tool's Stripe ids, and a migration that fails halfway (Stripe goes
away) and is resumed, making Stripe calls only for the products that had not finished."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from cms_stripe.cli import embedded_dagster_yaml
from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.expected import minor_units
from cms_stripe_tests.records import rebuilt_from_instance, without_process_fields
from cms_stripe_tests.test_assets.conftest import products_by_cms_id

ROOT = pathlib.Path(__file__).resolve().parents[1]
ANCHOR = datetime(2026, 3, 10, tzinfo=UTC)
KEY = "sk_test_cms_stripe_cli"


def valid_live_catalog(n: int, seed: int) -> list:
    demo = generate_catalog(n, seed=seed, anchor=ANCHOR, days=3)
    return [p for p in demo.products if p.should_be_active and p.id not in demo.invalid]  # the generator's record


def cli_env(tmp_path: pathlib.Path, cms_url: str, api_base: str, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    # The instance the CLI creates by default (its batching SQLite storage included).
    (home / "dagster.yaml").write_text(embedded_dagster_yaml(home))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_"))}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "CMS_DATABASE_URL": cms_url,
            "STRIPE_SECRET_KEY": KEY,
            "STRIPE_API_BASE": api_base,
            "MIGRATION_DRY_RUN": "false",
            "MIGRATION_STRATEGY": "incremental",
            "MIGRATION_START_DATE": "2026-03-01",
            "MIGRATION_END_DATE": "2026-03-10",
            "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
            "MIGRATION_LOGS_DIR": str(tmp_path / "logs"),
        }
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: pathlib.Path = ROOT, input: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cms_stripe", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_migrate_syncs_into_an_earlier_tools_products_and_creates_none(tmp_path):
    products = valid_live_catalog(40, seed=5)[:20]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    with EmulatorServer(EmulatorConfig()) as emulator:
        client = stripe.StripeClient(KEY, base_addresses={"api": emulator.url})
        adopted = []
        for i, p in enumerate(products):
            # What the tool we replace left behind: its own ids, another name, a stale price, no cms_id.
            legacy_id = f"prod_OldTool{i:04d}"
            client.v1.products.create(
                params={
                    "id": legacy_id,
                    "name": f"old name {i}",
                    "default_price_data": {"currency": p.currency, "unit_amount": 1000 * (i + 1)},
                }
            )
            adopted.append(dataclasses.replace(p, stripe_product_id=legacy_id))
        engine = sa.create_engine(cms_url)
        write_catalog(engine, adopted)
        creates_before = emulator.inspect()["requests"].get("POST /v1/products", 0)

        result = run_cli(["migrate"], cli_env(tmp_path, cms_url, emulator.url))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

        assert emulator.inspect()["requests"].get("POST /v1/products", 0) == creates_before, "no product created"
        stripe_products = {sp["id"]: sp for sp in emulator.objects()["products"]}
        assert len(stripe_products) == len(products)
        prices = {pr["id"]: pr for pr in emulator.objects()["prices"]}
        for p in adopted:
            sp = stripe_products[p.stripe_product_id]
            assert sp["name"] == p.title and sp["metadata"]["cms_id"] == p.id
            assert prices[sp["default_price"]]["unit_amount"] == minor_units(p.price, p.currency)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, stripe_product_id, sync_status FROM products").all()
        assert {r.sync_status for r in rows} == {"synced"}
        assert {r.id: r.stripe_product_id for r in rows} == {p.id: p.stripe_product_id for p in adopted}
        engine.dispose()


def _product_of_write(entry: dict[str, Any]) -> str | None:
    key = entry.get("idempotency_key") or ""
    if key.startswith("cms-stripe:"):
        return key.split(":")[2]
    return None


@pytest.mark.slow
def test_migration_fails_halfway_and_resume_redoes_only_unfinished_work(tmp_path, monkeypatch):
    products = valid_live_catalog(160, seed=9)[:120]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    state = tmp_path / "stripe.json"
    config = EmulatorConfig(latency_ms=5.0, state_file=str(state))
    env = cli_env(tmp_path, cms_url, "", MIGRATION_CHECKPOINT_INTERVAL="10")

    emulator = EmulatorServer(config).start()
    port = emulator.port
    env["STRIPE_API_BASE"] = emulator.url

    def stop_stripe_halfway() -> None:
        # Halfway: a new product is one write (test key: lane A, no price lookup key).
        emulator.wait_for_writes(60, timeout=300)
        emulator.stop()  # Stripe becomes unreachable in the middle of the run

    watcher = threading.Thread(target=stop_stripe_halfway, daemon=True)
    watcher.start()
    first = run_cli(["migrate"], env)
    watcher.join(timeout=60)
    assert first.returncode != 0, "the run must fail when Stripe goes away"
    assert "CRITICAL" in first.stdout + first.stderr
    failed_report = newest_report(tmp_path / "reports")
    assert failed_report["command"] == "migrate" and failed_report["status"] == "failed"
    assert failed_report["errors_by_severity"].get("CRITICAL", 0) >= 1
    # The CLI built it from the run's events as stored (the stopped step's failure among them): the
    # instance's records give the same report.
    failed_rebuilt = rebuilt_from_instance(env, failed_report, tmp_path / "rebuilt-failed.json", monkeypatch)
    assert without_process_fields(failed_report) == failed_rebuilt

    with engine.connect() as conn:
        finished = {r.id for r in conn.exec_driver_sql("SELECT id FROM products WHERE sync_status = 'synced'")}
    assert 0 < len(finished) < len(products)
    finished_pids = {f"prod_cms_{i}" for i in finished}

    # Stripe is back (same account state, same address); resume the failed run.
    emulator = EmulatorServer(config, port=port).start()
    try:
        second = run_cli(["resume"], env)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        # A re-execution of the failed step: its checkpoints (not the CMS) tell it what finished.
        assert f"{len(finished)} finished by an earlier attempt (checkpoint)" in second.stdout + second.stderr
        resumed = newest_report(tmp_path / "reports")
        assert resumed["command"] == "resume" and resumed["status"] == "success"
        assert resumed["run_id"] != failed_report["run_id"]
        assert resumed["counts"]["skipped"] == len(finished)
        assert resumed["counts"]["created"] == len(products) - len(finished)
        # Its parent's records (read from the instance) and its own (as stored): the same report
        # as the instance's records give.
        rebuilt = rebuilt_from_instance(env, resumed, tmp_path / "rebuilt-resumed.json", monkeypatch)
        assert without_process_fields(resumed) == rebuilt
        log = emulator.requests_log()
        writes = [e for e in log if e["method"] == "POST"]
        touched = {_product_of_write(e) for e in writes} | {
            e["path"].split("/")[3] for e in writes if e["route"] == "/v1/products/:id"
        }
        assert not (touched & finished_pids), "the resumed run wrote to products that had finished"
        reads = [e for e in log if e["method"] == "GET"]
        unfinished = len(products) - len(finished)
        assert len(reads) <= math.ceil(unfinished / 100) + 1 + unfinished // 10

        by_cms = products_by_cms_id(emulator)
        assert set(by_cms) == {p.id for p in products}
        assert all(len(v) == 1 for v in by_cms.values()), Counter(len(v) for v in by_cms.values())
        with engine.connect() as conn:
            statuses = Counter(r[0] for r in conn.exec_driver_sql("SELECT sync_status FROM products"))
        assert statuses == {"synced": len(products)}
    finally:
        emulator.stop()
        engine.dispose()


@pytest.mark.slow
def test_demo_end_to_end_then_a_rerun_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "STRIPE_", "CMS_", "DAGSTER_HOME"))}
    first = run_cli(["demo", "--products", "200", "--dir", str(tmp_path / "demo")], env)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    summary = next(line for line in first.stdout.splitlines() if line.startswith("catalog reconciliation: "))
    figures = dict(kv.rsplit(" ", 1) for kv in summary.split(": ", 1)[1].split(", "))
    assert (figures["missing"], figures["drift"], figures["duplicates"]) == ("0", "0", "0")
    assert (figures["orphans"], figures["quarantined"]) == ("0", "6")
    assert "make dev" in first.stdout
    # The demo's rows span 90 days and its partitions one month: the older rows are read (and synced)
    # through the open first partition, none left out.
    first_report = newest_report(tmp_path / "demo" / "reports")
    assert first_report["counts"]["rows_read"] == 200
    os.environ["DAGSTER_HOME"] = str(tmp_path / "demo" / "dagster_home")
    try:
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            records = instance.fetch_materializations(dg.AssetKey("raw_cms_products"), limit=1000).records
            before_start = sum(
                int(getattr(r.asset_materialization.metadata.get("rows_before_start"), "value", 0))
                for r in records
                if r.asset_materialization is not None
            )
        assert before_start > 0
    finally:
        os.environ.pop("DAGSTER_HOME")

    second = run_cli(["demo", "--products", "200", "--dir", str(tmp_path / "demo")], env)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    rerun = newest_report(tmp_path / "demo" / "reports")
    assert rerun["run_id"] != first_report["run_id"]
    assert rerun["stripe_writes"] == 0 and rerun["counts"]["created"] == 0


def newest_report(folder: pathlib.Path) -> dict[str, Any]:
    """The run report of the newest run that wrote one in `folder`."""
    import json

    path = max(folder.glob("migration-report-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(path.read_text())


def test_validate_dry_run_and_live_key_refusal(tmp_path):
    demo = generate_catalog(60, seed=4, anchor=ANCHOR, days=3)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, demo.products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)
        env.pop("MIGRATION_DRY_RUN")  # the default must be a dry run

        validate = run_cli(["validate"], env)
        assert validate.returncode == 0, (validate.stdout + validate.stderr)[-3000:]
        assert "CMS: reachable" in validate.stdout and "Stripe: reachable (test mode" in validate.stdout
        assert KEY not in validate.stdout + validate.stderr, "the key must never be printed"
        validated = newest_report(tmp_path / "reports")
        assert validated["command"] == "validate" and validated["counts"]["quarantined"] == len(demo.invalid)

        dry = run_cli(["migrate"], env)
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
        assert "planning only" in dry.stdout + dry.stderr
        assert emulator.inspect()["writes_total"] == 0
        assert list((tmp_path / "reports").glob("plan-*.json"))

        live_key = "sk_live_" + "x" * 24
        refused = run_cli(["migrate"], {**env, "STRIPE_SECRET_KEY": live_key, "MIGRATION_DRY_RUN": "false"})
        assert refused.returncode == 3
        assert "live Stripe key" in refused.stderr and live_key not in refused.stdout + refused.stderr
        assert emulator.inspect()["writes_total"] == 0

        bad = run_cli(["dry-run"], {**env, "MIGRATION_STRATEGY": "everything"})
        assert bad.returncode == 2 and "MIGRATION_STRATEGY" in bad.stderr
    with engine.connect() as conn:
        assert {r[0] for r in conn.exec_driver_sql("SELECT DISTINCT sync_status FROM products")} == {"pending"}
    engine.dispose()
