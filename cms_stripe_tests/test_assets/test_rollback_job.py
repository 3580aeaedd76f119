"""The `stripe_rollback` job as the UI runs it (config: run id, dry_run): a live key the environment did
not allow writes nothing; a dry run writes nothing and says what it would undo; the real rollback
archives what the sync run created and restores the CMS rows; a second one writes nothing. The
journal it reads is the sync run's, in the instance's event log."""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa

from cms_stripe.assets.journal import read_journal
from cms_stripe.jobs import all_jobs
from cms_stripe.rollback import ROLLBACK_JOB
from cms_stripe_tests.test_assets.conftest import DAYS, expected_live, make_resources, write_count
from cms_stripe_tests.test_assets.test_live_key_guard import FAKE_LIVE_KEY
from cms_stripe_tests.test_assets.test_sync_graph import GRAPH


def rollback(resources: dict[str, Any], instance: dg.DagsterInstance, run_id: str, dry_run: bool):
    defs = dg.Definitions(jobs=all_jobs, resources=resources)
    return defs.resolve_job_def(ROLLBACK_JOB).execute_in_process(
        instance=instance,
        run_config={"ops": {"stripe_rollback": {"config": {"run_id": run_id, "dry_run": dry_run}}}},
        raise_on_error=False,
    )


def sync_columns(engine: sa.engine.Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, stripe_product_id, sync_status, sync_hash FROM products").all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_rollback_job_undoes_a_sync_run(cms_url, catalog, emulator, instance, tmp_path, pg_engine, resource_env):
    resources = make_resources(cms_url, emulator, tmp_path)
    before = sync_columns(pg_engine)
    sync = dg.materialize(GRAPH, partition_key=DAYS[1], resources=resources, instance=instance)
    assert sync.success
    created = {f"prod_cms_{i}" for i in expected_live(catalog, (DAYS[1],))}
    assert created
    journal = read_journal(instance, sync.run_id)
    assert {e.product_id for e in journal if e.phase == "intent"} == created
    assert {e.product_id for e in journal if e.phase == "done"} == created

    # A live key the environment did not allow: refused by the gateway, nothing written.
    live = make_resources(cms_url, emulator, tmp_path)
    resource_env.setenv("STRIPE_SECRET_KEY", FAKE_LIVE_KEY)
    writes = write_count(emulator)
    refused = rollback(live, instance, sync.run_id, dry_run=False)
    resource_env.setenv("STRIPE_SECRET_KEY", "sk_test_cms_stripe_assets")
    assert not refused.success
    assert "not a test key" in " ".join(
        str(e.event_specific_data.error.to_string()) for e in refused.all_events if e.event_type_value == "STEP_FAILURE"
    )
    assert write_count(emulator) == writes

    dry = rollback(resources, instance, sync.run_id, dry_run=True)
    assert dry.success and write_count(emulator) == writes
    assert dry.output_for_node("stripe_rollback")["to_undo"] == len(created)

    done = rollback(resources, instance, sync.run_id, dry_run=False)
    assert done.success
    summary = done.output_for_node("stripe_rollback")
    assert summary["written"] == len(created) and summary["cms_restored"] > 0
    active = {p["id"] for p in emulator.objects()["products"] if p["active"]}
    assert not (active & created)
    assert sync_columns(pg_engine) == before

    writes = write_count(emulator)
    again = rollback(resources, instance, sync.run_id, dry_run=False)
    assert again.success and again.output_for_node("stripe_rollback")["to_undo"] == 0
    assert write_count(emulator) == writes
