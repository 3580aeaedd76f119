"""A live Stripe key is refused on every path that can write, with no Stripe write and no CMS write:
the asset job, the selective job, a run the schedule requests, a run the change sensor requests, and
the resources' methods called directly. Before this, `validated_products` wrote quarantine statuses
to the CMS before `stripe_products` refused, and a resource method wrote with no guard at all.

Run config cannot grant what the environment did not (MIGRATION_ALLOW_LIVE): the Launchpad is open
to whoever reaches the UI. The key is a fake live key built at run time; the emulator accepts it."""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import SyncUpdate
from cms_stripe.core.executor import SyncAborted
from cms_stripe.core.settings import LiveKeyRefused
from cms_stripe.definitions import all_assets, build_resources
from cms_stripe.jobs import SELECTIVE_SYNC_JOB, SYNC_JOB, all_jobs
from cms_stripe.resources.cms import SqlCatalogResource, guarded_writer
from cms_stripe.resources.settings import LiveWriteRefused
from cms_stripe.resources.stripe import StripeResource
from cms_stripe.schedules import all_schedules
from cms_stripe.sensors import all_sensors, cms_change_sensor
from cms_stripe.stripe.gateway import LiveWriteRefusedError
from cms_stripe_tests.test_assets.conftest import DAYS, expected_live, make_resources
from cms_stripe_tests.test_assets.test_sync_graph import GRAPH

FAKE_LIVE_KEY = "sk_" + "live_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def cms_rows(engine: sa.engine.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM products ORDER BY id").all()
        backups = sa.inspect(conn).has_table("cms_stripe_backups")
        n_backups = conn.exec_driver_sql("SELECT count(*) FROM cms_stripe_backups").scalar_one() if backups else 0
    assert n_backups == 0
    return [tuple(r) for r in rows]


@pytest.fixture()
def live(cms_url, catalog, emulator, tmp_path, resource_env, pg_engine):
    """Resources from the environment, with a live key (surrounded by whitespace, as pasted)."""
    resources = make_resources(cms_url, emulator, tmp_path)
    resource_env.setenv("STRIPE_SECRET_KEY", f"  {FAKE_LIVE_KEY}\n")
    resource_env.delenv("MIGRATION_ALLOW_LIVE", raising=False)
    before = cms_rows(pg_engine)
    assert catalog.invalid, "the demo catalog must hold rows validation would quarantine (a CMS write)"
    yield resources
    assert emulator.inspect()["writes_total"] == 0, "a Stripe write went through"
    assert cms_rows(pg_engine) == before, "a CMS write went through"


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    return " ".join(error.to_string() for error in errors if error is not None)


def test_asset_job_with_live_key_writes_nothing(live, instance):
    result = dg.materialize(GRAPH, partition_key=DAYS[1], resources=live, instance=instance, raise_on_error=False)
    assert not result.success
    assert "not a test key" in failure_messages(result)


def test_run_config_cannot_grant_live_writes(live, instance):
    # What a Launchpad user could type: dry_run off, allow_live on. The environment did not allow it.
    live["settings"] = live["settings"].model_copy(update={"allow_live": True})
    result = dg.materialize(GRAPH, partition_key=DAYS[1], resources=live, instance=instance, raise_on_error=False)
    assert not result.success


def test_selective_job_with_live_key_writes_nothing(live, instance, catalog):
    ids = [*sorted(expected_live(catalog))[:5], next(iter(catalog.invalid))]
    defs = dg.Definitions(jobs=all_jobs, resources=live)
    result = defs.resolve_job_def(SELECTIVE_SYNC_JOB).execute_in_process(
        instance=instance,
        run_config={"ops": {"sync_selected_products": {"config": {"product_ids": ids}}}},
        raise_on_error=False,
    )
    assert not result.success


def deployed_defs(resource_env: pytest.MonkeyPatch) -> dg.Definitions:
    """The code location's Definitions as definitions.py builds them, from an environment that says
    apply (MIGRATION_DRY_RUN=false) but does not allow live writes."""
    resource_env.setenv("MIGRATION_DRY_RUN", "false")
    resources = build_resources()
    return dg.Definitions(
        assets=all_assets, jobs=all_jobs, schedules=all_schedules, sensors=all_sensors, resources=resources
    )


def test_scheduled_run_with_live_key_writes_nothing(live, instance, resource_env):
    defs = deployed_defs(resource_env)
    tick = datetime.fromisoformat(DAYS[1]).replace(hour=12, tzinfo=UTC)
    schedule = defs.resolve_schedule_def("current_day_sync_schedule")
    data = schedule.evaluate_tick(
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        )
    )
    (request,) = data.run_requests or []
    assert request.partition_key == DAYS[1]
    result = defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
    )
    assert not result.success


def test_sensor_requested_run_with_live_key_writes_nothing(live, instance, resource_env):
    defs = deployed_defs(resource_env)
    with dg.build_sensor_context(instance=instance, resources={"catalog": SqlCatalogResource()}) as ctx:
        evaluated = cms_change_sensor(ctx)
    assert isinstance(evaluated, dg.SensorResult) and evaluated.run_requests
    job = defs.resolve_job_def(SYNC_JOB)
    for request in evaluated.run_requests:
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
        assert not result.success


def test_resource_methods_called_directly_write_nothing(live, catalog, cms_url):
    stripe = StripeResource()
    products = sorted(catalog.products, key=lambda p: p.id)[:3]
    plan = stripe.plan(products)
    assert plan.operations, "the plan must hold writes for the guard to refuse"
    with pytest.raises(SyncAborted) as aborted:
        stripe.apply(plan)
    assert any(r.error_class == "LiveWriteRefusedError" for r in aborted.value.result.failed)
    with pytest.raises(LiveWriteRefusedError):
        stripe.gateway.create_product({"name": "x"}, idempotency_key="guard-test")

    update = SyncUpdate(id=products[0].id, sync_status="synced", synced_at=datetime.now(UTC))
    resource = SqlCatalogResource()
    attempts = [
        lambda: resource.source().write_back([update], run_id="r1"),
        lambda: resource.source().restore_backup("r1"),
        lambda: resource.writer(allow_live=False).write_back([update], run_id="r1"),
    ]
    raw = SqlCatalogSource(cms_url)
    attempts.append(lambda: guarded_writer(raw, False).write_back([update], run_id="r1"))
    for attempt in attempts:
        with pytest.raises(LiveWriteRefused) as refused:
            attempt()
        assert isinstance(refused.value, LiveKeyRefused)
    resource.close()
    raw.close()


def test_allowed_by_environment_and_run_the_same_job_writes(
    cms_url, catalog, emulator, instance, tmp_path, pg_engine, resource_env
):
    """The control: the guard refuses because of the key, not because the path is broken."""
    resources = make_resources(cms_url, emulator, tmp_path, allow_live=True)
    resource_env.setenv("STRIPE_SECRET_KEY", f"  {FAKE_LIVE_KEY}\n")
    resource_env.setenv("MIGRATION_ALLOW_LIVE", " TRUE ")
    result = dg.materialize(GRAPH, partition_key=DAYS[1], resources=resources, instance=instance)
    assert result.success
    assert emulator.inspect()["writes_total"] > 0
