"""Review, then apply exactly what was reviewed (issue 14): `cms-stripe plan --out FILE`, then editors
and Stripe users change things, then `cms-stripe apply FILE` writes only the operations whose inputs
still hold, refuses the rest by name and reason, exits 1; applying it again writes nothing; a later
`migrate` brings everything, the refused rows included, to the CMS's state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest
import sqlalchemy as sa
import stripe

from cms_stripe.cms.demo import write_catalog
from cms_stripe.core.currency import to_minor_units
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_assets.conftest import products_by_cms_id
from cms_stripe_tests.test_cli import KEY, ROOT, cli_env, newest_report, run_cli, valid_live_catalog


def refusals(stdout: str) -> set[tuple[str, str]]:
    """(cms id, reason) of every `refused <id> (<kind> <product>): <reason>: <detail>` line."""
    out = set()
    for line in stdout.splitlines():
        if line.startswith("refused "):
            cms_id = line.split(" ", 2)[1]
            reason = line.split("): ", 1)[1].split(":", 1)[0]
            out.add((cms_id, reason))
    return out


def cms_rows(engine: sa.engine.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, stripe_product_id, stripe_price_id, sync_status, sync_hash, sync_error FROM products"
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.slow
def test_apply_refuses_exactly_the_operations_whose_inputs_changed_and_a_reapply_writes_nothing(tmp_path):
    products = valid_live_catalog(60, seed=21)[:10]
    assert len(products) == 10
    ids = [p.id for p in products]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)
        client = stripe.StripeClient(KEY, base_addresses={"api": emulator.url})
        first = run_cli(["migrate"], env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        pid = {p.id: f"prod_cms_{p.id}" for p in products}
        assert {sp["id"] for sp in emulator.objects()["products"]} == set(pid.values())

        # Editors change nine rows: six titles, two prices, one unpublished.
        with engine.begin() as conn:
            for i in range(6):
                conn.exec_driver_sql("UPDATE products SET title = ? WHERE id = ?", (f"Renamed {i}", ids[i]))
            for i in (6, 7):
                new_price = str(products[i].price + Decimal(1))
                conn.exec_driver_sql("UPDATE products SET price = ? WHERE id = ?", (new_price, ids[i]))
            conn.exec_driver_sql("UPDATE products SET status = 'draft' WHERE id = ?", (ids[8],))

        plan_file = tmp_path / "review" / "plan.json"
        planned = run_cli(["plan", "--out", str(plan_file)], env)
        assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
        assert plan_file.with_suffix(".md").read_text().startswith("**Plan**")
        plan = json.loads(plan_file.read_text())
        assert plan["version"] == 2 and plan["mode"] == "test"
        assert plan["account_id"] == client.v1.accounts.retrieve_current().id
        kinds = {op["cms_id"]: op["kind"] for op in plan["operations"]}
        assert kinds == {
            **{ids[i]: "update" for i in range(6)},
            ids[6]: "reprice",
            ids[7]: "reprice",
            ids[8]: "archive",
        }

        # Between review and apply: more CMS edits, and hand edits in Stripe.
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE products SET title = 'Renamed again' WHERE id = ?", (ids[0],))
            conn.exec_driver_sql("DELETE FROM products WHERE id = ?", (ids[1],))
            conn.exec_driver_sql("UPDATE products SET stripe_product_id = NULL WHERE id = ?", (ids[2],))
        client.v1.products.update(pid[ids[3]], params={"name": "Named in the Dashboard"})
        client.v1.products.update(pid[ids[6]], params={"description": "Described in the Dashboard"})
        # Someone archived row 8's product by hand: Stripe already holds what the plan wanted.
        client.v1.products.update(pid[ids[8]], params={"active": False})

        applied = run_cli(["apply", str(plan_file)], env)
        out = applied.stdout + applied.stderr
        assert applied.returncode == 1, out[-4000:]
        assert refusals(applied.stdout) == {
            (ids[0], "cms-changed"),
            (ids[1], "gone"),
            (ids[2], "cms-changed"),
            (ids[3], "stripe-changed"),
            (ids[6], "stripe-changed"),
        }, out[-4000:]
        assert "already_applied=1," in applied.stdout, applied.stdout
        stripe_now = {sp["id"]: sp for sp in emulator.objects()["products"]}
        prices = {pr["id"]: pr for pr in emulator.objects()["prices"]}
        assert stripe_now[pid[ids[4]]]["name"] == "Renamed 4"
        assert stripe_now[pid[ids[5]]]["name"] == "Renamed 5"
        new_amount = to_minor_units(products[7].price + Decimal(1), products[7].currency)
        assert prices[stripe_now[pid[ids[7]]]["default_price"]]["unit_amount"] == new_amount
        # Refused operations wrote nothing.
        assert stripe_now[pid[ids[0]]]["name"] == products[0].title
        assert stripe_now[pid[ids[2]]]["name"] == products[2].title
        assert stripe_now[pid[ids[3]]]["name"] == "Named in the Dashboard"
        old_amount = to_minor_units(products[6].price, products[6].currency)
        assert prices[stripe_now[pid[ids[6]]]["default_price"]]["unit_amount"] == old_amount
        rows = cms_rows(engine)
        assert rows[ids[4]][2] == rows[ids[7]][2] == "synced"
        assert rows[ids[7]][1] == stripe_now[pid[ids[7]]]["default_price"]
        assert rows[ids[8]][2] == "archived"

        # The same plan again: nothing is written to Stripe or the CMS, the same refusals are listed.
        writes_before = emulator.inspect()["writes_total"]
        again = run_cli(["apply", str(plan_file)], env)
        assert again.returncode == 1, (again.stdout + again.stderr)[-4000:]
        assert emulator.inspect()["writes_total"] == writes_before
        assert refusals(again.stdout) == refusals(applied.stdout)
        # Rows 4, 5, 7 (written by the first apply) and 8 (archived by hand before it).
        assert "already_applied=4" in again.stdout, again.stdout
        assert cms_rows(engine) == rows

        # A later migrate converges everything, the refused rows included.
        later = run_cli(["migrate"], env)
        assert later.returncode == 0, (later.stdout + later.stderr)[-4000:]
        recon = newest_report(tmp_path / "reports")["reconciliation"]
        assert recon["drift"] == 0 and recon["missing"] == 0, recon
        stripe_now = {sp["id"]: sp for sp in emulator.objects()["products"]}
        assert stripe_now[pid[ids[0]]]["name"] == "Renamed again"
        assert stripe_now[pid[ids[3]]]["name"] == "Renamed 3"
        assert (stripe_now[pid[ids[6]]].get("description") or None) == (products[6].description or None)
        statuses = {k: v[2] for k, v in cms_rows(engine).items()}
        assert statuses == {**{i: "synced" for i in ids if i not in (ids[1], ids[8])}, ids[8]: "archived"}
    engine.dispose()


def test_apply_refuses_a_plan_made_for_another_account_whole(tmp_path):
    products = valid_live_catalog(20, seed=4)[:3]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    with EmulatorServer(EmulatorConfig(account_id="acct_reviewedhere01")) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)
        plan_file = tmp_path / "plan.json"
        planned = run_cli(["plan", "--out", str(plan_file)], env)
        assert planned.returncode == 0, (planned.stdout + planned.stderr)[-3000:]
        assert json.loads(plan_file.read_text())["account_id"] == "acct_reviewedhere01"
        # The same key now answers for another account (a key swapped in .env, say).
        emulator.configure(account_id="acct_someoneelse001")
        applied = run_cli(["apply", str(plan_file)], env)
        assert applied.returncode == 3, (applied.stdout + applied.stderr)[-3000:]
        assert "acct_reviewedhere01" in applied.stderr and "acct_someoneelse001" in applied.stderr
        assert emulator.inspect()["writes_total"] == 0
    engine.dispose()


@pytest.mark.slow
def test_an_apply_killed_halfway_is_finished_by_applying_the_plan_again(tmp_path):
    """Killed mid-apply, nothing written back yet for the products it made: the second apply
    recognises those as already applied (and writes them back), makes the rest, and duplicates none."""
    products = valid_live_catalog(120, seed=13)[:80]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    with EmulatorServer(EmulatorConfig(latency_ms=5.0)) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)
        plan_file = tmp_path / "plan.json"
        planned = run_cli(["plan", "--out", str(plan_file)], env)
        assert planned.returncode == 0, (planned.stdout + planned.stderr)[-3000:]
        assert Counter(op["kind"] for op in json.loads(plan_file.read_text())["operations"]) == {"create": 80}

        proc = subprocess.Popen(
            [sys.executable, "-m", "cms_stripe", "apply", str(plan_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            # Wait for the emulator to have applied some writes (not for a time), then kill.
            # (the timeout only lets the loop notice a process that ended before its 20th write).
            while emulator.wait_for_writes(20, timeout=1.0) < 20 and proc.poll() is None:
                pass
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        made = emulator.inspect()["writes_total"]
        assert 20 <= made < 80, "killed halfway"

        again = run_cli(["apply", str(plan_file)], env)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
        by_cms = products_by_cms_id(emulator)
        assert set(by_cms) == {p.id for p in products}
        assert all(len(v) == 1 for v in by_cms.values()), "no duplicate product"
        # One write per product: the second apply made only what the first had not.
        assert emulator.inspect()["writes_total"] == 80
        with engine.connect() as conn:
            statuses = Counter(r[0] for r in conn.exec_driver_sql("SELECT sync_status FROM products"))
        assert statuses == {"synced": 80}
    engine.dispose()


def test_a_selective_plan_is_reviewed_and_applied_the_same_way(tmp_path):
    products = valid_live_catalog(20, seed=8)[:5]
    chosen = [products[1].id, products[3].id]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(
            tmp_path, cms_url, emulator.url, MIGRATION_STRATEGY="selective", MIGRATION_PRODUCT_IDS=",".join(chosen)
        )
        plan_file = tmp_path / "selected.plan"
        planned = run_cli(["plan", "--out", str(plan_file)], env)
        assert planned.returncode == 0, (planned.stdout + planned.stderr)[-3000:]
        # A name without .json gets its summary as <name>.md.
        assert (tmp_path / "selected.plan.md").exists()
        plan = json.loads(plan_file.read_text())
        assert sorted(op["cms_id"] for op in plan["operations"]) == sorted(chosen)
        assert emulator.inspect()["writes_total"] == 0
        applied = run_cli(["apply", str(plan_file)], env)
        assert applied.returncode == 0, (applied.stdout + applied.stderr)[-3000:]
        assert sorted(products_by_cms_id(emulator)) == sorted(chosen)
    engine.dispose()
