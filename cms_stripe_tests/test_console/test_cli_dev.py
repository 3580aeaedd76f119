"""From the demo to the UI in one command: `cms-stripe dev` (what `make dev` runs) starts the emulator
on the Stripe state the demo left and runs `dagster dev` with the demo's instance, CMS and partitions,
so nobody types environment variables. The test swaps `dagster dev` for a probe program that reports
what it was given and reads Stripe through it; no server is left running."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import dagster as dg

from cms_stripe_tests.test_cli import run_cli

PROBE = textwrap.dedent(
    """
    import json, os, stripe
    client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"], base_addresses={"api": os.environ["STRIPE_API_BASE"]})
    products = client.v1.products.list(params={"limit": 100})
    print(json.dumps({
        "env": {k: os.environ.get(k) for k in (
            "DAGSTER_HOME", "CMS_DATABASE_URL", "MIGRATION_PARTITION_START", "MIGRATION_REPORTS_DIR",
            "MIGRATION_LOGS_DIR", "MIGRATION_STRATEGY")},
        "products": len(products.data),
    }))
    """
)


def test_dev_opens_the_demos_instance_with_its_stripe_state(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "STRIPE_", "CMS_", "DAGSTER_HOME"))}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    demo_dir = tmp_path / "demo"

    nothing = run_cli(["dev", "--dir", str(demo_dir)], env, cwd=tmp_path)
    assert nothing.returncode == 2 and "run `make demo`" in nothing.stderr

    demo = run_cli(["demo", "--products", "30", "--dir", str(demo_dir)], env, cwd=tmp_path)
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    assert f"Open the Dagster UI on this result: make dev (or cms-stripe dev --dir {demo_dir})" in demo.stdout
    (report_file,) = (demo_dir / "reports").glob("migration-report-*.json")
    created = json.loads(report_file.read_text())["counts"]["created"]
    assert created > 0

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    dev = run_cli(["dev", "--dir", str(demo_dir), "--program", f"{sys.executable} {probe}"], env, cwd=tmp_path)
    assert dev.returncode == 0, dev.stdout[-3000:] + dev.stderr[-3000:]
    seen = json.loads(dev.stdout.strip().splitlines()[-1])
    start = (demo_dir / "partition-start").read_text().strip()
    assert seen["env"] == {
        "DAGSTER_HOME": str(demo_dir / "dagster_home"),
        "CMS_DATABASE_URL": f"sqlite:///{demo_dir / 'cms.sqlite'}",
        "MIGRATION_PARTITION_START": start,
        "MIGRATION_REPORTS_DIR": str(demo_dir / "reports"),
        "MIGRATION_LOGS_DIR": str(demo_dir / "logs"),
        "MIGRATION_STRATEGY": "full",
    }
    # The emulator serves what the demo wrote (its state file), not an empty account.
    assert seen["products"] == created

    # The instance the UI opens holds the demo's materializations.
    os.environ["DAGSTER_HOME"] = seen["env"]["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            assert instance.fetch_materializations(dg.AssetKey("stripe_products"), limit=1).records
    finally:
        os.environ.pop("DAGSTER_HOME")
