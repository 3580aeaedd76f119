"""`cms-stripe rollback --stripe` as users run it (a subprocess): run 1 syncs a catalog, editors reprice,
rename, change images, unpublish, delete and add rows, run 2 syncs that; the rollback of run 2 must
leave Stripe as customers saw it after run 1 and the CMS sync columns as run 1 left them — with a
dry run that writes nothing, a repeat that writes nothing, and a rollback killed halfway that, run
again, ends in the same state without writing anything twice."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, ROOT, cli_env, newest_report, run_cli, valid_live_catalog

SYNC_COLUMNS = "id, stripe_product_id, stripe_price_id, sync_status, sync_error, sync_hash, synced_at"
ROLLBACK_KEY = "cms-stripe:rollback-"


def customer_view(emulator: EmulatorServer) -> dict[str, dict[str, Any]]:
    """Live products as a customer sees them: name, description, images, the default price's terms."""
    objects = emulator.objects()
    prices = {p["id"]: p for p in objects["prices"]}
    out: dict[str, dict[str, Any]] = {}
    for product in objects["products"]:
        if not product["active"]:
            continue
        price = prices[product["default_price"]]
        out[product["id"]] = {
            "name": product["name"],
            "description": product.get("description"),
            "images": list(product.get("images") or []),
            "price": [
                price["unit_amount"],
                price["currency"],
                (price.get("recurring") or {}).get("interval"),
                (price.get("recurring") or {}).get("interval_count"),
                price.get("tax_behavior"),
                price["active"],
            ],
        }
    return out


def sync_columns(engine: sa.Engine) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT {SYNC_COLUMNS} FROM products ORDER BY id").all()
    return {r[0]: list(r[1:]) for r in rows}


def edit_catalog(engine: sa.Engine, ids: list[str], new_rows: list[Any]) -> dict[str, list[str]]:
    """What editors do between the runs. Returns the ids per kind of edit."""
    stamp = (ANCHOR - timedelta(hours=2)).isoformat()
    edits = {
        "repriced": ids[0:3],
        "renamed": ids[3:6],
        "images": ids[6:8],
        "unpublished": ids[8:10],
        "deleted": ids[10:12],
        "hard_deleted": ids[12:13],
    }
    with engine.begin() as conn:
        for i in edits["repriced"]:
            conn.exec_driver_sql(
                "UPDATE products SET price = CAST(CAST(price AS REAL) + 3 AS TEXT), updated_at = ? WHERE id = ?",
                (stamp, i),
            )
        for i in edits["renamed"]:
            conn.exec_driver_sql(
                "UPDATE products SET title = title || ' (new)', updated_at = ? WHERE id = ?", (stamp, i)
            )
        for n, i in enumerate(edits["images"]):
            images = json.dumps([f"https://img.example.com/edited-{n}.png"])
            conn.exec_driver_sql("UPDATE products SET images = ?, updated_at = ? WHERE id = ?", (images, stamp, i))
        for i in edits["unpublished"]:
            conn.exec_driver_sql("UPDATE products SET status = 'draft', updated_at = ? WHERE id = ?", (stamp, i))
        for i in edits["deleted"]:
            conn.exec_driver_sql("UPDATE products SET deleted_at = ?, updated_at = ? WHERE id = ?", (stamp, stamp, i))
        for i in edits["hard_deleted"]:
            conn.exec_driver_sql("DELETE FROM products WHERE id = ?", (i,))
    write_catalog(engine, new_rows)
    return edits


def rollback_writes(emulator: EmulatorServer, since: int = 0) -> list[dict[str, Any]]:
    return [
        e
        for e in emulator.requests_log(since)
        if e["method"] == "POST" and (e.get("idempotency_key") or "").startswith(ROLLBACK_KEY)
    ]


def two_runs(
    tmp_path, emulator: EmulatorServer, kill_run_2_after: int | None = None
) -> tuple[sa.Engine, dict[str, str], dict[str, Any], dict[str, Any]]:
    """Run 1, literal snapshots, the editors' changes, run 2 (SIGKILLed after that many Stripe writes
    when asked). Returns the engine, env and the snapshots."""
    catalog = valid_live_catalog(80, seed=21)
    products, extra = catalog[:20], catalog[20:23]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    env = cli_env(tmp_path, cms_url, emulator.url)

    first = run_cli(["migrate"], env)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    stripe_after_1 = json.loads(json.dumps(customer_view(emulator)))
    cms_after_1 = json.loads(json.dumps(sync_columns(engine)))
    assert len(stripe_after_1) == 20

    ids = sorted(p.id for p in products)
    edits = edit_catalog(engine, ids, [dataclasses.replace(p, updated_at=ANCHOR - timedelta(hours=1)) for p in extra])
    if kill_run_2_after is None:
        second = run_cli(["migrate"], env)
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        counts = newest_report(tmp_path / "reports")["counts"]
        # Run 2 really changed Stripe: 3 creates, 3 reprices, 5 updates, 4 archives.
        assert (counts["created"], counts["repriced"], counts["updated"], counts["archived"]) == (3, 3, 5, 4), counts
    else:
        base = emulator.inspect()["writes_total"]
        rc = kill_when(
            ["migrate"], env, emulator, lambda: emulator.inspect()["writes_total"] - base >= kill_run_2_after
        )
        assert rc == -signal.SIGKILL
    assert customer_view(emulator) != stripe_after_1
    cms_after_1.pop(edits["hard_deleted"][0])
    # Rows added after run 1 go back to what they were before run 2: never synced.
    cms_after_1.update({p.id: [None, None, "pending", None, None, None] for p in extra})
    return engine, env, stripe_after_1, cms_after_1


def test_rollback_stripe_restores_what_run_1_left_and_is_a_no_op_when_repeated(tmp_path):
    with EmulatorServer(EmulatorConfig()) as emulator:
        engine, env, stripe_after_1, cms_after_1 = two_runs(tmp_path, emulator)
        cms_after_2 = sync_columns(engine)

        writes = emulator.inspect()["writes_total"]
        dry = run_cli(["rollback", "--stripe", "--dry-run"], env)
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
        assert emulator.inspect()["writes_total"] == writes, "a dry run writes nothing to Stripe"
        assert sync_columns(engine) == cms_after_2, "a dry run writes nothing to the CMS"
        assert "to_undo=15" in dry.stdout, dry.stdout[-3000:]

        done = run_cli(["rollback", "--stripe", "--yes"], env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert customer_view(emulator) == stripe_after_1
        assert sync_columns(engine) == cms_after_1

        writes = emulator.inspect()["writes_total"]
        again = run_cli(["rollback", "--stripe", "--yes"], env)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert emulator.inspect()["writes_total"] == writes, "a repeated rollback writes nothing"
        assert "to_undo=0" in again.stdout
        assert customer_view(emulator) == stripe_after_1
        assert sync_columns(engine) == cms_after_1
    engine.dispose()


def test_rollback_leaves_products_edited_after_the_run_alone(tmp_path):
    import stripe

    from cms_stripe_tests.test_cli import KEY

    with EmulatorServer(EmulatorConfig()) as emulator:
        engine, env, stripe_after_1, _ = two_runs(tmp_path, emulator)
        client = stripe.StripeClient(KEY, base_addresses={"api": emulator.url})
        renamed = sorted(pid for pid, v in customer_view(emulator).items() if v["name"].endswith(" (new)"))[0]
        client.v1.products.update(renamed, params={"name": "Edited in the Dashboard"})

        done = run_cli(["rollback", "--stripe", "--yes"], env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert "changed_since=1" in done.stdout
        assert f"{renamed}: name" in done.stdout
        view = customer_view(emulator)
        assert view[renamed]["name"] == "Edited in the Dashboard"
        view.pop(renamed)
        assert view == {k: v for k, v in stripe_after_1.items() if k != renamed}
    engine.dispose()


def kill_when(args: list[str], env: dict[str, str], emulator: EmulatorServer, condition: Callable[[], bool]) -> int:
    """Start the CLI with `args` and SIGKILL it as soon as `condition()` holds, checked after each
    write the emulator applies (waiting on the write, not on a clock); its return code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cms_stripe", *args],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    seen = emulator.wait_for_writes(0, timeout=0)  # writes applied so far
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if condition():
                proc.send_signal(signal.SIGKILL)
                break
            # The next write (the timeout only lets the loop notice a process that ended).
            seen = emulator.wait_for_writes(seen + 1, timeout=1.0)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("kill_after", [4, 11])
def test_rollback_killed_halfway_then_run_again_ends_the_same_without_writing_twice(tmp_path, kill_after):
    with EmulatorServer(EmulatorConfig()) as emulator:
        engine, env, stripe_after_1, cms_after_1 = two_runs(tmp_path, emulator)
        since = emulator.requests_log()[-1]["seq"]
        # Slow Stripe down so the kill lands between two writes of the rollback.
        emulator.configure(latency_ms=60.0)
        rc = kill_when(
            ["rollback", "--stripe", "--yes"],
            env,
            emulator,
            lambda: len(rollback_writes(emulator, since)) >= kill_after,
        )
        assert rc == -signal.SIGKILL
        assert customer_view(emulator) != stripe_after_1, "the kill must land before the rollback finished"
        emulator.configure(latency_ms=0.0)

        again = run_cli(["rollback", "--stripe", "--yes"], env)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert customer_view(emulator) == stripe_after_1
        assert sync_columns(engine) == cms_after_1

        applied = [e for e in rollback_writes(emulator, since) if e["applied"] and not e["replayed"]]
        # Each object received each kind of rollback write at most once (a replay is not a write).
        per_object = Counter((e["path"], e["idempotency_key"].split(":")[1]) for e in applied)
        assert max(per_object.values()) == 1, per_object.most_common(3)
    engine.dispose()


def test_a_run_killed_mid_write_is_rolled_back_from_its_write_ahead_journal(tmp_path):
    """The journal's intents are stored before the first Stripe write: the writes of a run killed
    before any result or CMS write-back was recorded are still found and undone."""
    with EmulatorServer(EmulatorConfig(latency_ms=40.0)) as emulator:
        engine, env, stripe_after_1, cms_after_1 = two_runs(tmp_path, emulator, kill_run_2_after=8)
        emulator.configure(latency_ms=0.0)
        assert sync_columns(engine) == cms_after_1, "killed before its first write-back"

        # A killed run stays STARTED: it might still be writing, so the rollback is refused.
        since = emulator.requests_log()[-1]["seq"]
        refused = run_cli(["rollback", "--stripe", "--yes"], env)
        assert refused.returncode == 3, (refused.stdout + refused.stderr)[-3000:]
        assert "refusing to roll back: not finished:" in refused.stderr
        assert "(STARTED)" in refused.stderr and "--force" in refused.stderr
        assert rollback_writes(emulator, since) == []

        done = run_cli(["rollback", "--stripe", "--yes", "--force"], env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert customer_view(emulator) == stripe_after_1
        assert sync_columns(engine) == cms_after_1
    engine.dispose()


def test_a_killed_and_resumed_run_is_rolled_back_with_its_resume(tmp_path):
    """The resume journals under the run it re-executes: one rollback undoes both, CMS rows included."""
    with EmulatorServer(EmulatorConfig(latency_ms=40.0)) as emulator:
        engine, env, stripe_after_1, cms_after_1 = two_runs(tmp_path, emulator, kill_run_2_after=8)
        emulator.configure(latency_ms=0.0)
        resumed = run_cli(["resume"], env)
        assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
        assert sync_columns(engine) != cms_after_1, "the resume wrote its results back"

        done = run_cli(["rollback", "--stripe", "--yes"], env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert customer_view(emulator) == stripe_after_1
        assert sync_columns(engine) == cms_after_1, done.stdout[-4000:]
    engine.dispose()


def migrated(tmp_path, emulator: EmulatorServer, n: int = 5) -> tuple[sa.Engine, dict[str, str], list[str], str]:
    """A small catalog migrated once; the engine, the CLI env, the sorted CMS ids and the run id."""
    products = valid_live_catalog(n, seed=33)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    env = cli_env(tmp_path, cms_url, emulator.url)
    first = run_cli(["migrate"], env)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    return engine, env, sorted(p.id for p in products), run_id_of(first.stdout)


def run_id_of(stdout: str) -> str:
    return next(line.split()[1].rstrip(":") for line in reversed(stdout.splitlines()) if line.startswith("run "))


def test_rollback_of_an_apply_run_undoes_its_stripe_writes(tmp_path):
    with EmulatorServer(EmulatorConfig()) as emulator:
        engine, env, ids, _ = migrated(tmp_path, emulator)
        after_migrate = customer_view(emulator)
        stamp = (ANCHOR - timedelta(hours=2)).isoformat()
        with engine.begin() as conn:
            for i in ids[:2]:
                conn.exec_driver_sql("UPDATE products SET title = 'Retitled', updated_at = ? WHERE id = ?", (stamp, i))
        plan_file = tmp_path / "p.json"
        planned = run_cli(["plan", "--out", str(plan_file)], env)
        assert planned.returncode == 0, (planned.stdout + planned.stderr)[-3000:]
        applied = run_cli(["apply", str(plan_file)], env)
        assert applied.returncode == 0, (applied.stdout + applied.stderr)[-3000:]
        assert "updated=2" in applied.stdout
        apply_run = run_id_of(applied.stdout)

        dry = run_cli(["rollback", "--stripe", "--dry-run", "--run-id", apply_run], env)
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
        assert "journaled=2" in dry.stdout and "to_undo=2" in dry.stdout, dry.stdout[-3000:]

        done = run_cli(["rollback", "--stripe", "--yes", "--run-id", apply_run], env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert customer_view(emulator) == after_migrate
    engine.dispose()


def test_rolling_back_a_run_again_leaves_a_later_runs_writes_alone(tmp_path):
    with EmulatorServer(EmulatorConfig()) as emulator:
        engine, env, _, run_a = migrated(tmp_path, emulator)
        # 4 of the 5 seeded rows go live.
        assert len(customer_view(emulator)) == 4
        undone = run_cli(["rollback", "--stripe", "--yes", "--run-id", run_a], env)
        assert undone.returncode == 0, (undone.stdout + undone.stderr)[-3000:]
        assert customer_view(emulator) == {}
        # Run B syncs the restored (never synced) rows again: their archived products come back.
        again = run_cli(["migrate"], env)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        run_b = run_id_of(again.stdout)
        live = customer_view(emulator)
        assert len(live) == 4

        since = emulator.requests_log()[-1]["seq"]
        repeat = run_cli(["rollback", "--stripe", "--yes", "--run-id", run_a], env)
        assert repeat.returncode == 0, (repeat.stdout + repeat.stderr)[-3000:]
        assert "to_undo=0" in repeat.stdout and "changed_since=4" in repeat.stdout, repeat.stdout[-3000:]
        assert repeat.stdout.count(f"changed by run {run_b}") >= 4
        assert rollback_writes(emulator, since) == []
        assert customer_view(emulator) == live
    engine.dispose()
