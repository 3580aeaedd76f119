"""A CLI run killed while it held the Stripe writer's pool slot must not keep every later run waiting.

In a deployment the daemon frees the slots of runs that ended; behind the CLI there is none, and a
killed process never releases its slot. These tests use the storage the CLI creates by default
(pool limit 1) and real processes for "alive" and "gone"."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import dagster as dg
import pytest

from cms_stripe.cli import embedded_dagster_yaml
from cms_stripe.constants import HOST_TAG, PID_TAG, STRIPE_POOL
from cms_stripe.launch import StripeSlotBusy, release_dead_runs_slots


@pytest.fixture()
def instance(tmp_path: pathlib.Path):
    (tmp_path / "dagster.yaml").write_text(embedded_dagster_yaml(tmp_path))
    inst = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert inst.event_log_storage.get_concurrency_info(STRIPE_POOL).limit == 1, "the CLI's pool limit"
        yield inst
    finally:
        inst.dispose()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no process has this id any more (until the system reuses it)
    return proc.pid


def holding_run(instance: dg.DagsterInstance, pid: int, host: str | None = None) -> dg.DagsterRun:
    run = instance.create_run_for_job(
        dg.GraphDefinition(name="g", node_defs=[]).to_job(name="sync_job"),
        tags={HOST_TAG: host or socket.gethostname(), PID_TAG: str(pid)},
    )
    instance.handle_run_event(run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, "sync_job"))
    # As a step does: the pool gets the instance's default limit (1), then the step claims a slot.
    instance.event_log_storage.initialize_concurrency_limit_to_default(STRIPE_POOL)
    status = instance.event_log_storage.claim_concurrency_slot(STRIPE_POOL, run.run_id, "stripe_products")
    assert status.is_claimed
    return instance.get_run_by_id(run.run_id) or run


def claimed(instance: dg.DagsterInstance) -> int:
    return len(instance.event_log_storage.get_concurrency_info(STRIPE_POOL).claimed_slots)


def test_a_run_whose_process_is_gone_is_marked_failed_and_its_slot_freed(instance):
    run = holding_run(instance, dead_pid())
    assert run.status == dg.DagsterRunStatus.STARTED
    assert claimed(instance) == 1

    release_dead_runs_slots(instance)

    after = instance.get_run_by_id(run.run_id)
    assert after is not None and after.status == dg.DagsterRunStatus.FAILURE
    assert claimed(instance) == 0
    assert instance.event_log_storage.get_concurrency_run_ids() == set()


def test_a_finished_run_that_kept_its_slot_gives_it_back(instance):
    run = holding_run(instance, os.getpid())
    instance.report_run_failed(run, "ended elsewhere")
    release_dead_runs_slots(instance)
    assert claimed(instance) == 0


def test_a_run_still_going_is_the_one_writer_the_cli_refuses_to_start_beside(instance):
    # Alive on this host (this very process), and a run of another host whose process cannot be seen.
    alive = holding_run(instance, os.getpid())
    with pytest.raises(StripeSlotBusy, match=alive.run_id):
        release_dead_runs_slots(instance)
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
    assert claimed(instance) == 1

    instance.report_run_failed(alive, "done")
    release_dead_runs_slots(instance)
    assert claimed(instance) == 0
    elsewhere = holding_run(instance, dead_pid(), host="another-host")
    with pytest.raises(StripeSlotBusy, match=elsewhere.run_id):
        release_dead_runs_slots(instance)
    assert instance.get_run_by_id(elsewhere.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
