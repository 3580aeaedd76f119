"""The daily log file holds the Dagster events of every run (issue 13), not only the sync's own lines,
and runs that did not come from `cms-stripe` write it too: the job's logger when the run config names
it (the CLI, the schedule, the sensor), else the handler our resources attach when they set up (runs
launched from the UI), in whatever process executes the steps (here a multiprocess run, as a run
worker executes it). Secrets never reach the file, whatever a step logs or raises."""

from __future__ import annotations

import os
import pathlib
import re
from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from cms_stripe.cms.demo import write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.loggers import all_loggers, with_log_file
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe_tests.test_cli import KEY, ROOT, valid_live_catalog

# Of the shape of a real key, so the scrubbing cannot rely on the environment's value alone.
LEAKED = "sk_test_" + "51LeakedKeyValue0123456789abcdefXYZ"


# What the previous version shipped in dagster.yaml and wrote into embedded homes: homes that still
# carry it must not get each line twice.
PREVIOUS_PYTHON_LOGS = yaml.safe_load(
    """
dagster_handler_config:
  handlers:
    migration_log:
      class: cms_stripe.loggers.MigrationLogHandler
      level: DEBUG
"""
)


def test_no_instance_wide_handler_is_shipped() -> None:
    from cms_stripe.cli import EMBEDDED_DAGSTER_YAML

    for shipped in (yaml.safe_load((ROOT / "dagster.yaml").read_text()), yaml.safe_load(EMBEDDED_DAGSTER_YAML)):
        assert "python_logs" not in shipped


def _log_lines(logs_dir: pathlib.Path, run_id: str) -> list[str]:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    text = (logs_dir / f"migration-{day}.log").read_text()
    assert KEY not in text and LEAKED not in text
    return [line for line in text.splitlines() if f" run={run_id[:8]} " in line]


def _dagster(lines: list[str], event: str, step: str = "-") -> list[str]:
    return [line for line in lines if re.search(rf" dagster +{event} {re.escape(step)}: ", line)]


@dg.op
def talkative(context, settings: SyncSettingsResource) -> None:
    context.log.info(f"calling Stripe with {os.environ['STRIPE_SECRET_KEY']} and {LEAKED}")
    raise RuntimeError(f"Stripe refused key {os.environ['STRIPE_SECRET_KEY']}")


@dg.job(logger_defs=all_loggers, resource_defs={"settings": SyncSettingsResource()})
def leaky_job() -> None:
    talkative()


@pytest.mark.parametrize("way", ["job logger", "resource", "resource and an old home's instance handler"])
def test_events_messages_and_failures_are_logged_without_secrets(tmp_path, monkeypatch, way):
    monkeypatch.setenv("MIGRATION_LOGS_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    # The job logger is what runs of the CLI, the schedule and the sensor name in their run config;
    # the resources' handler reaches a run whose config names no logger (a launch from the UI).
    overrides = {"python_logs": PREVIOUS_PYTHON_LOGS} if way.endswith("instance handler") else {}
    run_config = with_log_file() if way == "job logger" else {}
    with dg.instance_for_test(overrides=overrides) as instance:
        result = leaky_job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    assert not result.success
    lines = _log_lines(tmp_path / "logs", result.run_id)
    if way == "job logger":  # the run's own start and end: logged outside any step
        (start,) = _dagster(lines, "RUN_START")
        assert f"STRIPE_SECRET_KEY={KEY[:8]}" in start  # the masked settings: prefix and last four only
        assert len(_dagster(lines, "RUN_FAILURE")) == 1
    assert len(_dagster(lines, "STEP_START", "talkative")) == 1
    (message,) = [line for line in lines if " LOG talkative: calling Stripe with " in line]
    assert " INFO " in message and "sk_test_…fXYZ" in message  # the message's own level; a key masked
    (failure,) = _dagster(lines, "STEP_FAILURE", "talkative")
    assert " ERROR " in failure and "error: RuntimeError: Stripe refused key (hidden)" in failure


def test_runs_of_jobs_without_our_resources_are_not_logged(tmp_path, monkeypatch):
    """Another code location's job (no cms_stripe resource, no logger named) on the same instance."""
    monkeypatch.setenv("MIGRATION_LOGS_DIR", str(tmp_path / "logs"))

    @dg.op
    def payroll(context) -> None:  # type: ignore[no-untyped-def]
        context.log.info("paying 42 employees")

    @dg.job
    def other_teams_job() -> None:
        payroll()

    with dg.instance_for_test() as instance:
        assert other_teams_job.execute_in_process(instance=instance).success
    assert not (tmp_path / "logs").exists()


def sync_job() -> dg.JobDefinition:
    from cms_stripe.definitions import defs

    return defs.resolve_job_def("cms_stripe_sync")


@pytest.mark.slow
def test_a_run_not_started_by_the_cli_writes_its_events_to_the_log_file(tmp_path, monkeypatch):
    products = valid_live_catalog(30, seed=11)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    engine.dispose()
    logs = tmp_path / "logs"
    with (
        EmulatorServer(EmulatorConfig()) as emulator,
        dg.instance_for_test() as instance,
    ):
        for key in list(os.environ):
            if key.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_")):
                monkeypatch.delenv(key)
        for key, value in {
            "CMS_DATABASE_URL": cms_url,
            "STRIPE_SECRET_KEY": KEY,
            "STRIPE_API_BASE": emulator.url,
            "MIGRATION_LOGS_DIR": str(logs),
            "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
            "MIGRATION_CHECKPOINT_INTERVAL": "5",
        }.items():
            monkeypatch.setenv(key, value)
        # The job's default (multiprocess) executor: each step in its own process, as in a run worker;
        # no logger in the run config, as in a run launched from the UI.
        with dg.execute_job(
            dg.reconstructable(sync_job),
            instance=instance,
            run_config={"resources": {"settings": {"config": {"dry_run": True, "checkpoint_interval": 5}}}},
            tags={
                "dagster/asset_partition_range_start": "2026-03-01",
                "dagster/asset_partition_range_end": "2026-03-10",
            },
            asset_selection=[dg.AssetKey(k) for k in ("raw_cms_products", "validated_products", "stripe_products")],
        ) as result:
            assert result.success
            run_id = result.run_id

    lines = _log_lines(logs, run_id)
    for step in ("raw_cms_products", "validated_products", "stripe_products"):
        assert len(_dagster(lines, "STEP_START", step)) == 1, step
        (done,) = _dagster(lines, "STEP_SUCCESS", step)
        assert re.search(r"Finished execution of step .* in \d", done), done  # the step's timing
    # One materialization per partition of the range, each naming its day, and the sync's own lines.
    materialized = _dagster(lines, "ASSET_MATERIALIZATION", "stripe_products")
    partitions = sorted(re.search(r" partition=(\S+)", line).group(1) for line in materialized)  # type: ignore[union-attr]
    assert partitions == [f"2026-03-{d:02d}" for d in range(1, 11)]
    assert any(re.search(rf" run +stripe_products: run {run_id} started; settings: ", line) for line in lines)
    assert len(_dagster(lines, "LOG", "raw_cms_products")) == 1  # a step's `context.log` message
    # The sync tells both the log file and Dagster's log its notes: the file has each once.
    (note,) = [line for line in lines if "dry run: no Stripe write made" in line]
    assert re.search(r" note +dry run: no Stripe write made", note), note
