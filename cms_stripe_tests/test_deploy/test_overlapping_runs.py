"""One Stripe writer at a time: two sync runs started together (think a backfill and a sensor run) on an
instance whose pool limit is 1 never write to Stripe at the same time. The emulator's request log is
the witness: the write intervals of the two runs must not overlap. A control run without the limit
shows the same two runs do overlap, so the test measures the pool and not luck."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.reconciliation import reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.constants import CMS_POOL, STRIPE_POOL
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.io_managers import DailyFrameIOManager
from cms_stripe.resources.cms import SqlCatalogResource
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource

pytestmark = pytest.mark.timing

DAY_A, DAY_B = "2026-03-07", "2026-03-08"
N_PER_DAY = 15
ASSETS = [raw_cms_products, validated_products, stripe_products, reconciliation_report]


def write_two_days(url: str) -> None:
    """Day A's rows are cms ids a-*, day B's b-*: each Stripe write names its product, hence its run."""
    engine = sa.create_engine(url)
    products = []
    for prefix, day in (("a-", DAY_A), ("b-", DAY_B)):
        # The demo spreads rows over (anchor - 1 day, anchor]: end the window at 23:59 so all stay on `day`.
        anchor = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1, minutes=-1)
        products += generate_catalog(N_PER_DAY, seed=11, anchor=anchor, days=1, id_prefix=prefix).products
    write_catalog(engine, products)
    engine.dispose()


def materialize_in_child(home: str, url: str, emu_url: str, tmp: str, day: str, go) -> bool:
    """One run in its own process, as the daemon would launch it, on the shared instance in `home`."""
    os.environ["DAGSTER_HOME"] = home
    # Addresses, keys and folders come from the (child process's) environment, as in a deployment.
    os.environ.update(
        {
            "CMS_DATABASE_URL": url,
            "STRIPE_SECRET_KEY": "sk_test_overlap",
            "STRIPE_API_BASE": emu_url,
            "MIGRATION_REPORTS_DIR": f"{tmp}/reports",
            "CMS_STRIPE_FRAMES_DIR": f"{tmp}/frames",
        }
    )
    resources = {
        "catalog": SqlCatalogResource(),
        "stripe": StripeResource(),
        "settings": SyncSettingsResource(dry_run=False),
        "frames_io_manager": DailyFrameIOManager(),
    }
    with dg.DagsterInstance.get() as instance:
        go.wait(60)
        return dg.materialize(ASSETS, partition_key=day, resources=resources, instance=instance).success


def run_both(home: str, url: str, emu: EmulatorServer, tmp_path) -> list[bool]:
    """Both runs start at the same moment, in two processes (Dagster's in-process execution is not
    thread-safe: two runs in threads of one process deadlock in logging setup)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(2, mp_context=ctx) as pool:
        go = manager.Event()
        futures = [
            pool.submit(materialize_in_child, home, url, emu.url, str(tmp_path), day, go) for day in (DAY_A, DAY_B)
        ]
        time.sleep(1.0)
        go.set()
        return [f.result(timeout=180) for f in futures]


def write_intervals(emu: EmulatorServer) -> dict[str, tuple[float, float, int]]:
    """prefix → (first write start, last write end, number of writes) from the emulator's log."""
    out: dict[str, tuple[float, float, int]] = {}
    for prefix in ("a-", "b-"):
        writes = [
            e
            for e in emu.requests_log()
            if e["method"] == "POST" and e["applied"] and f"prod_cms_{prefix}" in f"{e['path']} {e['idempotency_key']}"
        ]
        assert writes, f"no Stripe write for the {prefix} run"
        out[prefix] = (min(e["start"] for e in writes), max(e["end"] for e in writes), len(writes))
    return out


def all_writes_attributed(emu: EmulatorServer) -> bool:
    posts = [e for e in emu.requests_log() if e["method"] == "POST" and e["applied"]]
    return all(
        "prod_cms_a-" in f"{e['path']} {e['idempotency_key']}" or "prod_cms_b-" in f"{e['path']} {e['idempotency_key']}"
        for e in posts
    )


@pytest.mark.parametrize("pool_limit", [1, None], ids=["pool-limit-1", "control-no-limit"])
def test_two_runs_never_write_to_stripe_at_the_same_time(tmp_path, dagster_pg_url, pool_limit):
    url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    write_two_days(url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = {"storage": {"postgres": {"postgres_url": dagster_pg_url}}, "telemetry": {"enabled": False}}
    if pool_limit:
        config["concurrency"] = {"pools": {"default_limit": pool_limit}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    if pool_limit:
        # As a deployment does once (`dagster instance concurrency set`): two runs starting on a fresh
        # instance at the same instant would both insert the pools' default rows, and Dagster fails
        # one of them on the unique key.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for pool in (STRIPE_POOL, CMS_POOL):
                instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
    # 30 ms per request: each run's writes take a good fraction of a second, so they would overlap.
    with EmulatorServer(EmulatorConfig(latency_ms=30)) as emu:
        assert run_both(str(home), url, emu, tmp_path) == [True, True]
        spans = write_intervals(emu)
        assert all_writes_attributed(emu)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        info = instance.event_log_storage.get_concurrency_info(STRIPE_POOL)
        assert info.slot_count == (1 if pool_limit else 0)
    (a_start, a_end, a_n), (b_start, b_end, b_n) = spans["a-"], spans["b-"]
    print(
        f"pool_limit={pool_limit}: a-writes {a_n} in [{a_start:.3f}, {a_end:.3f}], "
        f"b-writes {b_n} in [{b_start:.3f}, {b_end:.3f}]"
    )
    overlap = min(a_end, b_end) - max(a_start, b_start)
    if pool_limit:
        assert overlap < 0, f"the two runs' Stripe writes overlapped by {overlap:.3f}s"
    else:
        assert overlap > 0, "control: without the pool limit the two runs' writes should interleave"
