"""End to end as deployed: `dagster dev` (webserver + daemon) on the repository's own dagster.yaml, i.e.
PostgreSQL instance storage and the stripe_api pool limit, launches a three-day partition backfill of
the whole sync graph through GraphQL, side by side with a backfill of three older days. Afterwards
every valid product of those days is in Stripe exactly once at the right price, the two runs' Stripe
writes did not overlap, the CMS rows say synced, the materializations and their metadata are in
PostgreSQL, and the same three-day backfill launched again makes zero Stripe writes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from cms_stripe.cms.demo import DemoCatalog, generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.conftest import PG_ADMIN_URL
from cms_stripe_tests.expected import minor_units
from cms_stripe_tests.records import latest_metadata, updated_at_of
from cms_stripe_tests.test_deploy.conftest import dagster_storage_url

REPO = Path(__file__).resolve().parents[2]
GRAPH = ("raw_cms_products", "validated_products", "stripe_products", "reconciliation_report")
BACKFILL_TIMEOUT_S = 300
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs { runId status } }
    ... on PythonError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def day(d: datetime) -> str:
    return d.strftime("%Y-%m-%d")


def graphql(base: str, query: str, variables: dict) -> dict:
    response = requests.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def launch_backfill(base: str, start: str, end: str) -> str:
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [key]}, "partitions": {"range": {"start": start, "end": end}}} for key in GRAPH
        ],
        "title": f"e2e {start}..{end}",
    }
    result = graphql(base, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_for_backfill(base: str, backfill_id: str, log: Path) -> dict:
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while time.monotonic() < deadline:
        state = graphql(base, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert state["__typename"] == "PartitionBackfill", state
        if state["status"] in DONE:
            return state
        time.sleep(1.0)
    pytest.fail(f"backfill {backfill_id} did not finish in {BACKFILL_TIMEOUT_S}s; dagster dev log:\n{tail(log)}")


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def stripe_writes(emu: EmulatorServer) -> list[dict]:
    return [e for e in emu.requests_log() if e["method"] in ("POST", "DELETE")]


@pytest.fixture()
def databases(fresh_pg_database) -> Iterator[tuple[str, str]]:
    """(CMS URL for the code location, Dagster storage URL): two fresh PostgreSQL databases."""
    cms = sa.engine.make_url(PG_ADMIN_URL).set(database=fresh_pg_database("cms")).render_as_string(False)
    yield cms, dagster_storage_url(fresh_pg_database("dagster"))


@pytest.fixture()
def window() -> tuple[datetime, list[str], list[str]]:
    """Three days ending today, and the three days before them. Today's partition is in the main range,
    so rows our write-back moved to today (Supabase's trigger stamps them now) are read again by the
    second backfill of that range."""
    now = datetime.now(UTC)
    if now.hour == 23 and now.minute >= 50:
        pytest.skip("too close to midnight UTC: the write-back would land on tomorrow's partition")
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return (
        today,
        [day(today - timedelta(days=k)) for k in (2, 1, 0)],
        [day(today - timedelta(days=k)) for k in (5, 4, 3)],
    )


@pytest.fixture()
def catalog(databases, window) -> DemoCatalog:
    """cms-* rows on the main three days, old-* rows on the three days before."""
    today, _, _ = window
    # The demo spreads rows over (anchor - days, anchor]; anchors at 23:59 keep them on whole days.
    main = generate_catalog(60, seed=8, anchor=today + timedelta(days=1, minutes=-1), days=3)
    older = generate_catalog(40, seed=9, anchor=today - timedelta(days=2, minutes=1), days=3, id_prefix="old-")
    engine = sa.create_engine(databases[0])
    write_catalog(engine, main.products + older.products)
    engine.dispose()
    return DemoCatalog(products=main.products + older.products, invalid={**main.invalid, **older.invalid})


@pytest.fixture()
def dagster_dev(tmp_path, databases, catalog) -> Iterator[tuple[str, EmulatorServer, Path]]:
    """`dagster dev` on a free port, DAGSTER_HOME holding the repository's dagster.yaml; stopped with
    SIGTERM to its process group (it ignores signals when backgrounded from a shell)."""
    cms_url, storage_url = databases
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with EmulatorServer(EmulatorConfig()) as emu:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CMS_", "MIGRATION_", "STRIPE_"))},
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": storage_url,
            "CMS_DATABASE_URL": cms_url,
            "STRIPE_SECRET_KEY": "sk_test_cms_stripe_e2e",
            "STRIPE_API_BASE": emu.url,
            "MIGRATION_DRY_RUN": "false",
            "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
            "MIGRATION_LOGS_DIR": str(tmp_path / "logs"),
            "CMS_STRIPE_AUTOMATION": "off",  # only the backfill may write
        }
        # The deployment's one-time step (README): the pools' rows exist before two runs race to create them.
        for pool in ("stripe_api", "cms_database"):
            subprocess.run(
                [str(REPO / ".venv" / "bin" / "dagster"), "instance", "concurrency", "set", pool, "1"],
                cwd=REPO,
                env=env,
                check=True,
                capture_output=True,
            )
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(REPO / ".venv" / "bin" / "dagster"),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"dagster dev exited:\n{tail(log)}"
                try:
                    if requests.get(f"{base}/server_info", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"dagster dev did not answer:\n{tail(log)}"
                time.sleep(0.5)
            yield base, emu, home
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def expected_live(demo: DemoCatalog, days: list[str]) -> dict:
    return {
        p.id: p
        for p in demo.products
        if day(updated_at_of(p)) in days and p.should_be_active and p.id not in demo.invalid
    }


def test_backfill_through_dagster_dev_then_again_writes_nothing(
    dagster_dev, catalog, window, databases, tmp_path, monkeypatch
):
    base, emu, home = dagster_dev
    _, days, older_days = window
    log = tmp_path / "dagster_dev.log"
    live = expected_live(catalog, days + older_days)
    assert len(expected_live(catalog, days)) > 20 and len(expected_live(catalog, older_days)) > 10

    # The three-day backfill, and a second backfill of three older days launched at the same moment:
    # the daemon runs them side by side, and the stripe_api pool (limit 1) must keep their Stripe
    # writes apart.
    main_id = launch_backfill(base, days[0], days[-1])
    older_id = launch_backfill(base, older_days[0], older_days[-1])
    first = wait_for_backfill(base, main_id, log)
    older = wait_for_backfill(base, older_id, log)
    for state in (first, older):
        assert state["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, f"{state}\n{tail(log)}"
        assert len(state["runs"]) == 1, "single-run backfill policy: three days are one run"
    spans = {}
    for prefix in ("prod_cms_cms-", "prod_cms_old-"):
        writes = [e for e in stripe_writes(emu) if prefix in f"{e['path']} {e['idempotency_key']}"]
        spans[prefix] = (min(e["start"] for e in writes), max(e["end"] for e in writes))
    (a0, a1), (b0, b1) = spans.values()
    print(f"Stripe write intervals: main [{a0:.3f}, {a1:.3f}], older [{b0:.3f}, {b1:.3f}]")
    assert min(a1, b1) < max(a0, b0), f"two runs wrote to Stripe at the same time: {spans}"

    # Runs launched from the UI (the daemon's backfill runs, no logger in their run config) leave their
    # steps' Dagster events in the log file through the handler our resources attach (dagster.yaml
    # configures none), once each, each materialization naming its partition.
    (log_file,) = (tmp_path / "logs").glob("migration-*.log")
    log_text = log_file.read_text()
    assert "sk_test_cms_stripe_e2e" not in log_text
    for state, window_days in ((first, days), (older, older_days)):
        (run,) = state["runs"]
        mine = [line for line in log_text.splitlines() if f" run={run['runId'][:8]} dagster " in line]
        for step in ("raw_cms_products", "validated_products", "stripe_products"):
            assert len([line for line in mine if f" STEP_START {step}: " in line]) == 1, (step, mine[:5])
            assert len([line for line in mine if f" STEP_SUCCESS {step}: " in line]) == 1, step
        materialized = [line for line in mine if " ASSET_MATERIALIZATION stripe_products: " in line]
        assert sorted(line.split(" partition=")[1].split()[0] for line in materialized) == sorted(window_days)
        # The run id and its masked settings, from the sync's own first line.
        assert f"run {run['runId']} started; settings: " in log_text

    # Stripe: every valid live row of those days exactly once, with its price.
    objects = emu.objects()
    by_cms: dict[str, list[dict]] = {}
    for product in objects["products"]:
        by_cms.setdefault(product["metadata"].get("cms_id"), []).append(product)
    assert set(by_cms) == set(live)
    prices = {p["id"]: p for p in objects["prices"]}
    for cms_id, row in live.items():
        assert len(by_cms[cms_id]) == 1, f"{cms_id}: {len(by_cms[cms_id])} Stripe products"
        sp = by_cms[cms_id][0]
        assert sp["active"] and sp["name"] == row.title
        default = sp["default_price"]
        price = prices[default if isinstance(default, str) else default["id"]]
        assert (price["currency"], price["unit_amount"]) == (row.currency, minor_units(row.price, row.currency))
    creates = Counter(
        e["idempotency_key"].split(":")[2]
        for e in stripe_writes(emu)
        if e["applied"] and e["route"] == "/v1/products" and e["idempotency_key"]
    )
    assert all(n == 1 for n in creates.values()), creates
    writes_after_first = len(stripe_writes(emu))
    assert writes_after_first > 0

    # The CMS: synced with the Stripe ids, the planted invalid rows quarantined.
    cms = sa.create_engine(databases[0])
    with cms.connect() as conn:
        rows = {r.id: r for r in conn.exec_driver_sql("SELECT id, sync_status, stripe_product_id FROM products")}
    cms.dispose()
    for cms_id in live:
        assert rows[cms_id].sync_status == "synced"
        assert rows[cms_id].stripe_product_id == by_cms[cms_id][0]["id"]
    for cms_id in catalog.invalid:
        assert rows[cms_id].sync_status == "quarantined"

    # Dagster's own storage is PostgreSQL, and it holds the per-partition materializations with metadata.
    monkeypatch.setenv("DAGSTER_PG_URL", databases[1])  # the copied dagster.yaml reads it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.event_log_storage.get_concurrency_info("stripe_api").slot_count == 1
        for pk in days + older_days:
            n_live = len(expected_live(catalog, [pk]))
            metas = {key: latest_metadata(instance, key, pk) for key in GRAPH}
            assert metas["reconciliation_report"]["missing"] == 0 and metas["reconciliation_report"]["drift"] == 0
            synced = metas["stripe_products"]
            assert synced["created"] == n_live and synced["failed"] == 0
    engine = sa.create_engine(databases[1])
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).scalar_one()
    engine.dispose()
    assert stored == len(GRAPH) * len(days + older_days)

    # The same backfill again: the rows (moved to today by the write-back trigger) are read again and
    # planned, and nothing is written to Stripe.
    second = wait_for_backfill(base, launch_backfill(base, days[0], days[-1]), log)
    assert second["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, f"{second}\n{tail(log)}"
    assert len(stripe_writes(emu)) == writes_after_first, "a rerun of a synced backfill must not write to Stripe"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        rerun = latest_metadata(instance, "raw_cms_products", days[-1])
        assert rerun["rows"] >= len(live), "the rerun read the written-back rows again"
