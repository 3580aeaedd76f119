"""REVIEW 13 (failing tests that demonstrate defects found in review of the per-partition metadata and
CLI-origin/log-file changes). Each test states the defect it shows; they fail on main as merged."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _python(code: str, env: dict[str, str], cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_instance_handler_does_not_fail_runs_of_a_code_location_without_cms_stripe():
    """dagster.yaml (the shared deployment's instance) names `cms_stripe.loggers.MigrationLogHandler`
    instance-wide: every run of every code location on that instance builds it. In an environment
    where cms_stripe is not installed (another team's code location, a run worker image), Dagster's
    dictConfig raises `ValueError: Unable to configure handler 'migration_log'` and the run never
    starts. A log-file feature must never stop a run, let alone another project's."""
    done = _python(
        """
        import sys, pathlib, yaml
        sys.modules["cms_stripe"] = None  # this environment has no cms_stripe package
        import dagster as dg
        shipped = yaml.safe_load(pathlib.Path("dagster.yaml").read_text()).get("python_logs")

        @dg.op
        def hello(context):
            context.log.info("hello")

        @dg.job
        def other_teams_job():
            hello()

        with dg.instance_for_test(overrides={"python_logs": shipped} if shipped else {}) as instance:
            result = other_teams_job.execute_in_process(instance=instance, raise_on_error=False)
            print("SUCCESS" if result.success else "FAILED")
        """,
        _env(),
    )
    assert "SUCCESS" in done.stdout, done.stderr[-1500:]


def test_an_unwritable_log_folder_is_not_a_traceback_per_event():
    """MIGRATION_LOGS_DIR unwritable (here: a file where the folder should be). The run succeeds, but
    both the job logger and the instance handler call `handleError` on every record: a full traceback
    (~60 lines) on stderr per Dagster event, i.e. tens of thousands of lines on a range run's console
    or run-worker log (issue 13 wants a few dozen lines). Expected: one warning, then silence."""
    done = _python(
        """
        import os, pathlib, tempfile, yaml
        import dagster as dg
        from cms_stripe.loggers import all_loggers, with_log_file

        tmp = pathlib.Path(tempfile.mkdtemp())
        (tmp / "logs").write_text("a file, not a folder")
        os.environ["MIGRATION_LOGS_DIR"] = str(tmp / "logs")
        shipped = yaml.safe_load(pathlib.Path("dagster.yaml").read_text()).get("python_logs")

        @dg.op
        def rows(context):
            for i in range(10):
                context.log.info(f"row {i}")

        @dg.job(logger_defs=all_loggers)
        def job():
            rows()

        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        with dg.instance_for_test(overrides={"python_logs": shipped} if shipped else {}) as instance:
            result = job.execute_in_process(instance=instance, run_config=with_log_file(quiet), raise_on_error=False)
            print("SUCCESS" if result.success else "FAILED")
        """,
        _env(),
    )
    assert "SUCCESS" in done.stdout, done.stderr[-1500:]
    errors = done.stderr.count("--- Logging error ---")
    assert errors <= 1, f"{errors} tracebacks, {len(done.stderr.splitlines())} stderr lines for a 10-message run"


SNAPSHOT = """
    import dagster as dg
    from cms_stripe.launch import workspace_location
    with dg.instance_for_test() as instance, workspace_location(instance) as where:
        print("SNAPSHOT", where.remote_job("cms_stripe_sync").computed_job_snapshot_id)
"""


def _snapshot(env: dict[str, str]) -> str:
    done = _python(SNAPSHOT, env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SNAPSHOT ")]
    assert lines, done.stderr[-1500:]
    return lines[0].split()[1]


def test_a_cli_apply_run_has_the_snapshot_the_ui_code_location_has():
    """`cms-stripe migrate` only writes with MIGRATION_DRY_RUN=false in its environment (and sets
    MIGRATION_ALLOW_LIVE=true itself for --confirm-live). SyncSettingsResource.from_env() bakes those
    values into the resource's config defaults, so the job snapshot the CLI stamps on its run differs
    from the one of the webserver's code location, whose environment keeps the safe defaults: the UI
    shows "may be a different version" on re-execution of every applying CLI run — the warning
    launch.py was written to remove."""
    ui = _snapshot(_env())
    assert _snapshot(_env(MIGRATION_DRY_RUN="false")) == ui
    assert _snapshot(_env(MIGRATION_DRY_RUN="false", MIGRATION_ALLOW_LIVE="true")) == ui


UI_PARTITION_RUN = """
    import dagster as dg
    from cms_stripe.definitions import defs
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("cms_stripe_sync").execute_in_process(
            partition_key="2026-03-03",
            instance=instance,
            raise_on_error=False,
            run_config={"resources": {"settings": {"config": {"dry_run": False}}}},
        )
        print("RUN", result.run_id, result.success)
"""


def test_resume_of_a_single_partition_run_keeps_its_partition(tmp_path):
    """A run of one partition (the schedule's, a UI "Materialize" of one day, each run of a multi-run
    backfill) carries `dagster/partition`; `cms-stripe resume --run-id` copies only the
    `dagster/asset_partition*` and `cms_stripe/` tags, so the re-execution has no partition and fails
    at once ("Cannot access partition_key for a non-partitioned run"), then tells the operator to run
    `cms-stripe resume` again, which fails the same way. The UI's "Re-execute from failure" keeps the
    parent's tags (Dagster's `instance.create_reexecuted_run(..., use_parent_run_tags=True)`)."""
    import dagster as dg
    import sqlalchemy as sa

    from cms_stripe.cms.demo import write_catalog
    from cms_stripe.emulator import EmulatorConfig, EmulatorServer
    from cms_stripe_tests.test_cli import cli_env, run_cli, valid_live_catalog

    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, valid_live_catalog(30, seed=3)[:12])
    engine.dispose()
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url, PYTHONPATH=str(ROOT))
        # The run fails while the CMS is unreachable, then the operator resumes it.
        down = dict(env, CMS_DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/cms.sqlite")
        first = _python(UI_PARTITION_RUN, down)
        (line,) = [line for line in first.stdout.splitlines() if line.startswith("RUN ")]
        parent_id, succeeded = line.split()[1:]
        assert succeeded == "False"
        resumed = run_cli(["resume", "--run-id", parent_id], env)
        assert "non-partitioned run" not in resumed.stdout + resumed.stderr
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            (child,) = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": parent_id}))
            assert child.tags.get("dagster/partition") == "2026-03-03"
            assert child.status == dg.DagsterRunStatus.SUCCESS
        assert resumed.returncode == 0, resumed.stdout[-2000:]


# What cms-stripe wrote into an empty DAGSTER_HOME before this change (commit 3012ab3), verbatim.
PREVIOUS_EMBEDDED_YAML = """\
# Written by cms-stripe for the embedded default: SQLite storage in this directory (no storage block).
# Stripe's rate limits are account-wide, so the Stripe-calling steps (pool "stripe_api") run one at a
# time across all runs, as in the shared deployment's dagster.yaml. Edit freely: cms-stripe only
# writes this file when it is missing or empty.
concurrency:
  pools:
    default_limit: 1
# A command-line tool handling a business's catalog sends no usage statistics unless asked to.
telemetry:
  enabled: false
"""


def test_an_existing_embedded_home_gets_the_log_handler(tmp_path, monkeypatch):
    """Every `.dagster_home` made by an earlier cms-stripe holds the file above; `_embedded_home`
    leaves a non-empty dagster.yaml alone, so after upgrading, runs launched from the UI on the
    embedded instance (`make dev`, backfills) never reach the log file, silently. Expected: the file
    cms-stripe itself wrote is recognised and upgraded (or the handler is not only instance-wide).

    (Adapted: the handler is no longer instance configuration at all, so what matters is asserted
    directly: a run launched as the UI launches it, on an OLD embedded home, run config naming no
    logger, executed by the job's own multiprocess executor as a run worker does, still writes its
    events to the log file.)"""
    import re
    from datetime import UTC, datetime

    import dagster as dg
    import sqlalchemy as sa

    from cms_stripe.cli import _embedded_home, embedded_dagster_yaml
    from cms_stripe.cms.demo import write_catalog
    from cms_stripe_tests.test_cli import valid_live_catalog

    home = tmp_path / ".dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(PREVIOUS_EMBEDDED_YAML)
    for key in list(os.environ):
        if key.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _embedded_home(home)
    # A file exactly as an earlier cms-stripe wrote it was never edited: it becomes the current one.
    assert (home / "dagster.yaml").read_text() == embedded_dagster_yaml(home)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, valid_live_catalog(30, seed=3)[:12])
    engine.dispose()
    logs = tmp_path / "logs"
    monkeypatch.setenv("CMS_DATABASE_URL", cms_url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_cms_stripe_old_home")
    monkeypatch.setenv("MIGRATION_LOGS_DIR", str(logs))
    monkeypatch.setenv("MIGRATION_REPORTS_DIR", str(tmp_path / "reports"))
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        dg.execute_job(
            dg.reconstructable(_sync_job),
            instance=instance,
            tags={"dagster/partition": "2026-03-03"},
            asset_selection=[dg.AssetKey("raw_cms_products")],
        ) as result,
    ):
        assert result.success
        run_id = result.run_id
    assert instance.get_python_log_dagster_handler_config() == {}  # nothing instance-wide
    lines = [
        line
        for line in (logs / f"migration-{datetime.now(UTC):%Y-%m-%d}.log").read_text().splitlines()
        if f" run={run_id[:8]} dagster " in line
    ]
    assert len([line for line in lines if re.search(r" STEP_START raw_cms_products: ", line)]) == 1, lines
    assert len([line for line in lines if re.search(r" STEP_SUCCESS raw_cms_products: ", line)]) == 1, lines
    (done,) = [line for line in lines if " ASSET_MATERIALIZATION raw_cms_products: " in line]
    assert "partition=2026-03-03" in done, done


def _sync_job():  # type: ignore[no-untyped-def]
    from cms_stripe.definitions import defs

    return defs.resolve_job_def("cms_stripe_sync")


def test_materialization_and_observation_lines_name_their_partition(tmp_path, monkeypatch):
    """A range run's log file gets one `ASSET_MATERIALIZATION <step>: Materialized value <asset>.` line
    per partition, all identical (no partition key, no figure), and each checkpoint as
    `ASSET_OBSERVATION <step>: DagsterEventType.ASSET_OBSERVATION for step <step>`: 700 lines an
    operator cannot tell apart. Expected: the partition key on each line (and, ideally, its counts)."""
    import re
    from datetime import UTC, datetime

    import dagster as dg

    from cms_stripe.loggers import all_loggers, with_log_file

    monkeypatch.setenv("MIGRATION_LOGS_DIR", str(tmp_path / "logs"))
    days = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-03-04")

    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context):  # type: ignore[no-untyped-def]
        for key in context.partition_keys:
            context.log_event(dg.AssetObservation("daily", partition=key, metadata={"checkpoint": key}))
        return dg.MaterializeResult(metadata={"rows": 1})

    job = dg.define_asset_job("daily_job", selection=[daily], partitions_def=days)
    defs = dg.Definitions(assets=[daily], jobs=[job], loggers=all_loggers)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("daily_job").execute_in_process(
            instance=instance,
            run_config=with_log_file(),
            tags={
                "dagster/asset_partition_range_start": "2026-03-01",
                "dagster/asset_partition_range_end": "2026-03-03",
            },
        )
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = (tmp_path / "logs" / f"migration-{day}.log").read_text().splitlines()
    mine = [line for line in lines if f" run={result.run_id[:8]} " in line]
    for event in ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION"):
        found = [line for line in mine if re.search(rf" {event} daily: ", line)]
        assert len(found) == 3, found
        assert all(any(k in line for k in ("2026-03-01", "2026-03-02", "2026-03-03")) for line in found), found
