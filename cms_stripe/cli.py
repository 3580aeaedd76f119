"""The `cms-stripe` command: the workflow of the tool it replaces (validate → dry-run → migrate →
resume → rollback) running the same Dagster jobs the UI runs, in this process, on the configured
instance, each run created from the workspace's code location (cms_stripe.launch), so it shows up in
the UI like a run launched there.

Configuration comes from the environment and a `.env` file, with the variable names of the old tool
(SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, STRIPE_SECRET_KEY, MIGRATION_*, STRIPE_MAX_RPS) plus
CMS_DATABASE_URL and STRIPE_API_BASE. Secrets are never printed.

Exit codes: 0 success; 1 a run failed, a check failed, or `apply` refused an operation; 2 configuration
error; 3 refused (live key, or `apply` refused a plan whole).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click
import sqlalchemy as sa

from cms_stripe import __version__

if TYPE_CHECKING:
    import dagster as dg

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
CLI_TAG = "cms_stripe/cli"
DEFAULT_DAGSTER_HOME = ".dagster_home"


def _load_env(env_file: str | None) -> None:
    from dotenv import load_dotenv

    path = env_file or ".env"
    if pathlib.Path(path).exists():
        # The real environment wins over the file, as with the tool we replace.
        load_dotenv(path, override=False)
    if "DAGSTER_HOME" not in os.environ:
        _embedded_home(pathlib.Path(DEFAULT_DAGSTER_HOME).resolve())
    elif not pathlib.Path(os.environ["DAGSTER_HOME"]).is_dir():
        # Dagster would answer with a traceback; a mistyped path is a configuration error to name.
        _fail(
            f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} is not a directory: create it (it holds the Dagster "
            f"instance: runs, checkpoints, the write journal) or unset DAGSTER_HOME to use ./{DEFAULT_DAGSTER_HOME}"
        )


EMBEDDED_DAGSTER_YAML = """\
# Written by cms-stripe for the embedded default: SQLite storage in this directory. Edit freely:
# cms-stripe only writes this file when it is missing, empty, or exactly as an earlier version wrote it.
#
# Dagster's own SQLite storage (same files and layout), except that a batch of asset events (one per
# partition of a range run) is stored in one transaction rather than one each: without it a run over
# hundreds of daily partitions spends minutes storing events. It also sets DAGSTER_EVENT_BATCH_SIZE
# (Dagster's event batching) unless the environment does; `storage: {sqlite: ...}` is the plain one.
storage:
  custom:
    module: cms_stripe.instance_storage
    class: EmbeddedSqliteStorage
    config:
      # This directory, written by cms-stripe (a moved directory gets its own path on the next command).
      base_dir: {base_dir}
# Stripe's rate limits are account-wide, so the Stripe-calling steps (pool "stripe_api") run one at a
# time across all runs, as in the shared deployment's dagster.yaml.
concurrency:
  pools:
    default_limit: 1
# A command-line tool handling a business's catalog sends no usage statistics unless asked to.
telemetry:
  enabled: false
"""


def embedded_dagster_yaml(home: pathlib.Path | str) -> str:
    """The embedded instance's dagster.yaml for the DAGSTER_HOME `home` (absolute, so a script opening
    the instance by its path, without DAGSTER_HOME, finds the same storage)."""
    return EMBEDDED_DAGSTER_YAML.replace("{base_dir}", json.dumps(str(home)))


def _written_by_us(text: str) -> bool:
    """Empty, exactly what an earlier version wrote, or this version's file for some directory."""
    import yaml

    if text.strip() in ("", *(t.strip() for t in EARLIER_EMBEDDED_DAGSTER_YAMLS)):
        return True
    try:
        base_dir = yaml.safe_load(text)["storage"]["custom"]["config"]["base_dir"]
    except (yaml.YAMLError, TypeError, KeyError):
        return False
    return isinstance(base_dir, str) and text == embedded_dagster_yaml(base_dir)


# What earlier versions wrote: a file still exactly like one of these was never edited, so it is
# replaced by the current one (an empty file too).
EARLIER_EMBEDDED_DAGSTER_YAMLS = (
    """\
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
""",
)


def _embedded_home(home: pathlib.Path) -> None:
    """The embedded default: SQLite storage in a local DAGSTER_HOME, one Stripe writer at a time.

    Without a pool limit, runs queued together (a backfill, the change sensor) would each pace
    themselves to the whole account's budget and trip 429s together. A dagster.yaml with content is
    the user's and is left alone, unless cms-stripe wrote it (an empty one, as the first versions
    left, an earlier version's, or this version's for another path) and it is not what `home` needs.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = embedded_dagster_yaml(home)
    current = config.read_text() if config.exists() else ""
    if current != wanted and _written_by_us(current):
        config.write_text(wanted)
    os.environ["DAGSTER_HOME"] = str(home)


def _fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    from cms_stripe.core.settings import scrub

    # Messages can quote exception text from the CMS or Stripe clients: never print a secret.
    click.secho(scrub(message), fg="red", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cms-stripe")
@click.option("--env-file", default=None, help="Read settings from this file (default: ./.env if present).")
@click.option("-v", "--verbose", is_flag=True, help="Also show Dagster's event stream and warnings.")
@click.pass_context
def cli(ctx: click.Context, env_file: str | None, verbose: bool) -> None:
    """Sync a Supabase/Postgres product catalog into Stripe (dry-run unless told otherwise)."""
    from cms_stripe.console import OperatorConsole, quiet_dagster

    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file
    ctx.obj["verbose"] = verbose
    ctx.obj["console"] = OperatorConsole(verbose=verbose)
    if not verbose:
        quiet_dagster()


def _console(ctx: click.Context | None = None) -> Any:
    ctx = ctx or click.get_current_context()
    return ctx.find_root().obj["console"]


def _settings(ctx: click.Context) -> Any:
    from cms_stripe.core.settings import Settings, SettingsError

    _load_env(ctx.obj.get("env_file"))
    try:
        return Settings.from_env()
    except SettingsError as exc:
        _fail(f"configuration error: {exc}")


def _partition_range(settings: Any) -> tuple[str, str, str | None]:
    """(first, last, why) of the run. incremental: MIGRATION_START_DATE..MIGRATION_END_DATE (inclusive
    days); full: from the partition of the oldest CMS row to today (`core.days.full_range`).

    The first partition also holds every older or undated row and the last every future-stamped one,
    so days outside the partitions are reached through those edges."""
    from cms_stripe.partitions import current_span

    span = current_span()
    first, last = span.first, span.last
    if settings.strategy == "full":
        return _full_range(span)
    asked_start = settings.start_date.isoformat() if settings.start_date else first
    asked_end = settings.end_date.isoformat() if settings.end_date else last
    start = min(max(asked_start, first), last)
    end = max(min(asked_end, last), first)
    if (start, end) != (asked_start, asked_end):
        click.echo(
            f"note: {asked_start}..{asked_end} runs as partitions {start}..{end}: rows updated before {first} "
            f"(or without updated_at) are in partition {first}, rows stamped after {last} in partition {last}"
        )
    return start, end, None


def _full_range(span: Any) -> tuple[str, str, str]:
    """Every partition costs Dagster events, frames and metadata even when its day holds no row, so a
    full run starts at the oldest row's day; anything uncertain (undated rows, a text column, an
    error) runs every partition, as the open first edge then holds what the run must read."""
    from cms_stripe.core.days import OldestRow, full_range
    from cms_stripe.core.settings import scrub
    from cms_stripe.resources.cms import catalog_resource_from_env

    try:
        resource = catalog_resource_from_env()
        try:
            oldest = resource.source().oldest_row()
        finally:
            resource.close()
    except Exception as exc:
        oldest = OldestRow(unknown=f"{type(exc).__name__}: {scrub(str(exc))[:200]}")
    return full_range(span, oldest)


def _instance() -> dg.DagsterInstance:
    import dagster as dg

    return dg.DagsterInstance.get()


def _run_config(settings: Any, dry_run: bool) -> dict[str, Any]:
    from cms_stripe.console import logger_config

    # Run config replaces the resource's whole configuration, so every field is passed.
    config = {
        "dry_run": dry_run,
        "allow_live": settings.allow_live,
        "skip_existing": settings.skip_existing,
        "checkpoint_interval": settings.checkpoint_interval,
        "validation_threshold": settings.validation_threshold,
    }
    verbose = click.get_current_context().find_root().obj.get("verbose", False)
    return {"resources": {"settings": {"config": config}}, **logger_config(verbose)}


def _check_live(settings: Any, dry_run: bool, confirm_live: bool) -> None:
    """Refuse early, with a clear message, what the guard in the write path would refuse anyway."""
    from cms_stripe.core.settings import live_write_refusal

    if not dry_run and live_write_refusal("write", settings.live_key, confirm_live or settings.allow_live):
        what = "a live Stripe key" if settings.stripe_secret_key else "no STRIPE_SECRET_KEY (it may be a live one)"
        _fail(
            f"refusing to write with {what}: keys other than sk_test_/rk_test_ count as live; "
            "pass --confirm-live or set MIGRATION_ALLOW_LIVE=true (run `cms-stripe dry-run` first)",
            EXIT_REFUSED,
        )


def _report(result: Any, command: str | None = None) -> int:
    """Complete the run's report (JSON file), print its closing table; the exit code from run
    success and check results."""
    from cms_stripe.reporting import write_run_report

    failed_checks = [
        f"{e.asset_key.to_user_string()}:{e.check_name}" for e in result.get_asset_check_evaluations() if not e.passed
    ]
    instance = _instance()
    run = instance.get_run_by_id(result.run_id)
    console = _console()
    if run is not None:
        status = "success" if result.success else "failed"
        report = _selective_report(run, status) or write_run_report(instance, run, status=status, command=command)
        console.summary(report)
    else:
        console.print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data is not None and event.step_failure_data.error:
                # Dagster's own stream is off: say why the step failed, in the run's words.
                console.print(f"{event.step_key} failed: {event.step_failure_data.error.message.strip()}", "red")
        console.print(f"run {result.run_id} FAILED: `cms-stripe resume` continues it from its checkpoints", "red")
        return EXIT_FAILED
    if failed_checks:
        console.print("failed checks: " + ", ".join(failed_checks), "yellow")
        return EXIT_FAILED
    return EXIT_OK


def _selective_report(run: Any, status: str) -> Any:
    """A selective run is an op job: it materializes nothing, and its op wrote the report from its
    own figures. Complete that report with the run's outcome and end instead of rebuilding it."""
    from datetime import UTC, datetime

    from cms_stripe.core.report import RunReport, find_report, resource_usage
    from cms_stripe.core.settings import Settings
    from cms_stripe.jobs import SELECTIVE_SYNC_JOB

    if run.job_name != SELECTIVE_SYNC_JOB:
        return None
    path = find_report(Settings.from_env().reports_dir, run.run_id)
    if path is None:
        return None
    report = RunReport.from_dict(json.loads(path.read_text()))
    ended = datetime.now(UTC)
    report.status, report.ended_at = status, ended.isoformat()
    if report.started_at:
        report.duration_s = round((ended - datetime.fromisoformat(report.started_at)).total_seconds(), 3)
    report.peak_memory_mb, report.cpu_time_s = resource_usage()
    report.write(path)
    return report


def _execute_sync(
    settings: Any, *, dry_run: bool, assets: list[str] | None = None, extra_tags: Mapping[str, str] = {}
) -> Any:
    import dagster as dg

    from cms_stripe.jobs import SELECTIVE_SYNC_JOB, SYNC_JOB
    from cms_stripe.launch import launch
    from cms_stripe.reporting import COMMAND_TAG, STRATEGY_TAG

    instance = _instance()
    command = click.get_current_context().info_name or "sync"
    tags = {CLI_TAG: "true", STRATEGY_TAG: settings.strategy, COMMAND_TAG: command, **extra_tags}
    run_config = _run_config(settings, dry_run)
    console = _console()
    mode = "(dry run)" if dry_run else "(APPLY)"
    if settings.strategy == "selective":
        run_config["ops"] = {"sync_selected_products": {"config": {"product_ids": list(settings.product_ids)}}}
        console.header(command, settings, f"selective sync of {len(settings.product_ids)} CMS ids {mode}")
        with console.live():
            return launch(instance, SELECTIVE_SYNC_JOB, run_config=run_config, tags=tags)
    start, end, why = _partition_range(settings)
    console.header(command, settings, f"{settings.strategy} sync of partitions {start}..{end} in one run {mode}")
    if why:
        console.print(f"  partitions {start}..{end}: {why}")
    tags.update({"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end})
    if dry_run and not assets:
        # Reconciling against a Stripe that a dry run did not write would only report what is planned.
        assets = ["raw_cms_products", "validated_products", "stripe_products"]
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    with console.live():
        return launch(instance, SYNC_JOB, run_config=run_config, tags=tags, asset_selection=selection)


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check configuration, CMS and Stripe connectivity, schema and mapping; summarise the data's validity."""
    settings = _settings(ctx)
    click.echo("configuration:")
    for key, value in settings.describe().items():
        click.echo(f"  {key} = {value}")
    from cms_stripe.cms.errors import CmsConfigError
    from cms_stripe.core.settings import scrub
    from cms_stripe.resources.cms import catalog_resource_from_env

    try:
        source = catalog_resource_from_env().source()
        source.check()
    except CmsConfigError as exc:
        _fail(f"CMS: {scrub(exc)}")
    except Exception as exc:
        _fail(f"CMS: cannot connect: {type(exc).__name__}: {scrub(exc)}")
    click.echo("CMS: reachable; table and mapped columns present")
    if not settings.stripe_secret_key:
        _fail("Stripe: STRIPE_SECRET_KEY is not set")
    from cms_stripe.stripe.gateway import StripeGateway

    try:
        gateway = StripeGateway.from_settings(settings.stripe_secret_key, settings.stripe_api_base)
        gateway.retrieve_product("prod_cms_stripe_connectivity_check")
    except Exception as exc:
        _fail(f"Stripe: {type(exc).__name__}: {scrub(exc)}")
    mode = "live" if settings.live_key else "test"
    click.echo(f"Stripe: reachable ({mode} mode, limits {gateway.limits.global_rps:g}/s global)")
    result = _execute_sync(settings, dry_run=True, assets=["raw_cms_products", "validated_products"])
    sys.exit(_report(result))


@cli.command("dry-run")
@click.pass_context
def dry_run(ctx: click.Context) -> None:
    """Plan without writing: the plan (JSON and Markdown) is saved under reports/."""
    settings = _settings(ctx)
    result = _execute_sync(settings, dry_run=True, assets=["raw_cms_products", "validated_products", "stripe_products"])
    sys.exit(_report(result))


@cli.command()
@click.option("--confirm-live", is_flag=True, help="Allow writing with a live Stripe key.")
@click.pass_context
def migrate(ctx: click.Context, confirm_live: bool) -> None:
    """Apply: write to Stripe (MIGRATION_DRY_RUN=true still only plans), then reconcile."""
    settings = _settings(ctx)
    dry = settings.dry_run
    _check_live(settings, dry, confirm_live)
    if confirm_live:
        os.environ["MIGRATION_ALLOW_LIVE"] = "true"
        settings = _settings(ctx)
    if dry:
        click.secho(
            "MIGRATION_DRY_RUN is true (the default): planning only; set MIGRATION_DRY_RUN=false to apply", fg="yellow"
        )
    result = _execute_sync(settings, dry_run=dry)
    sys.exit(_report(result))


# Runs that can write to Stripe and the CMS: what rollback, reset and resume act on by default.
def _wrote(run: Any) -> bool:
    """False for a dry run (plan, validate and dry-run are dry runs too): its run config names
    `dry_run`, which the CLI always passes. A run whose config does not say counts as one that may
    have written, so a rollback never skips it for a dry run before it."""
    config = run.run_config.get("resources", {}).get("settings", {}).get("config", {})
    return not (isinstance(config, Mapping) and config.get("dry_run") is True)


def _newest_run_that_wrote(instance: Any, *, cli_only: bool) -> Any:
    """The run record of the newest run that was not a dry run across the sync, selective and apply jobs."""
    import dagster as dg

    from cms_stripe.jobs import APPLY_PLAN_JOB, SELECTIVE_SYNC_JOB, SYNC_JOB

    newest: Any = None
    for job_name in (SYNC_JOB, SELECTIVE_SYNC_JOB, APPLY_PLAN_JOB):
        flt = dg.RunsFilter(job_name=job_name, tags={CLI_TAG: "true"} if cli_only else None)
        cursor: str | None = None
        while True:
            records = instance.get_run_records(flt, limit=50, cursor=cursor)
            found = next((r for r in records if _wrote(r.dagster_run)), None)
            if found is not None or len(records) < 50:
                break
            cursor = records[-1].dagster_run.run_id
        if found is not None and (newest is None or found.create_timestamp > newest.create_timestamp):
            newest = found
    return newest


def _latest_cli_run(instance: Any) -> Any:
    """The newest CLI run that wrote (not a dry run), across the sync, selective and apply jobs; says
    which it chose, so the operator sees what a command without --run-id acts on."""
    newest = _newest_run_that_wrote(instance, cli_only=True)
    if newest is None:
        return None
    run = newest.dagster_run
    click.echo(
        f"using run {run.run_id} ({run.job_name}, started "
        f"{newest.create_timestamp:%Y-%m-%d %H:%M:%S} UTC): the newest cms-stripe run that wrote"
    )
    return run


@cli.command()
@click.option("--run-id", default=None, help="The run to resume (default: the newest CLI run that wrote).")
@click.option("--confirm-live", is_flag=True, help="Allow writing with a live Stripe key.")
@click.pass_context
def resume(ctx: click.Context, run_id: str | None, confirm_live: bool) -> None:
    """Re-execute an interrupted or failed run from where it stopped (its checkpoints are honoured)."""
    import dagster as dg

    settings = _settings(ctx)
    _check_live(settings, False, confirm_live)
    if confirm_live:
        os.environ["MIGRATION_ALLOW_LIVE"] = "true"
    instance = _instance()
    run = instance.get_run_by_id(run_id) if run_id else _latest_cli_run(instance)
    if run is None:
        _fail("nothing to resume: no earlier cms-stripe run on this instance")
    if run.status == dg.DagsterRunStatus.SUCCESS:
        click.echo(f"run {run.run_id} finished successfully: nothing to resume")
        sys.exit(EXIT_OK)
    if run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED):
        # Its process died (a crash or a kill): record that, so it can be re-executed from failure.
        instance.report_run_failed(run, "process ended without finishing; resumed by cms-stripe resume")
        run = instance.get_run_by_id(run.run_id) or run
    from cms_stripe.console import logger_config
    from cms_stripe.launch import resume_from_failure
    from cms_stripe.reporting import COMMAND_TAG

    console = _console(ctx)
    console.header("resume", settings, f"run {run.run_id} from failure (its checkpoints are honoured)")
    run_config = {k: v for k, v in _current_run_config(run.run_config).items() if k not in ("loggers", "execution")}
    run_config.update(logger_config(ctx.obj.get("verbose", False)))
    # The re-execution keeps all the parent's tags (its partition or range, its cms_stripe/* tags),
    # as the UI's "Re-execute from failure" does; these mark it as this command's run.
    tags = {CLI_TAG: "true", COMMAND_TAG: "resume"}
    with console.live():
        result = resume_from_failure(instance, run, run_config=run_config, tags=tags)
    sys.exit(_report(result, "resume"))


def _current_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The parent's run config without settings fields that are no longer config (reports_dir moved
    to the environment), so runs started by an older version can still be resumed."""
    from cms_stripe.resources.settings import SyncSettingsResource

    config = json.loads(json.dumps(dict(run_config)))
    settings = config.get("resources", {}).get("settings", {}).get("config")
    if isinstance(settings, dict):
        for key in [k for k in settings if k not in SyncSettingsResource.model_fields]:
            settings.pop(key)
    return dict(config)


@cli.command()
@click.option("--run-id", default=None, help="The run to undo (default: the latest CLI run).")
@click.option("--stripe", "in_stripe", is_flag=True, help="Also undo the run's Stripe writes, from its journal.")
@click.option("--dry-run", is_flag=True, help="With --stripe: print what would be undone; write nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--confirm-live", is_flag=True, help="Allow the writes when STRIPE_SECRET_KEY is a live key.")
@click.option(
    "--force",
    is_flag=True,
    help="Roll back although a run of the group is not finished: only for a run whose process was killed.",
)
@click.pass_context
def rollback(
    ctx: click.Context,
    run_id: str | None,
    in_stripe: bool,
    dry_run: bool,
    yes: bool,
    confirm_live: bool,
    force: bool,
) -> None:
    """Restore the CMS sync columns a run overwrote, from the backup taken before its first write-back.

    With --stripe, first undo the run's Stripe writes from its journal (the `stripe_rollback` job):
    products it created are archived, products it archived reactivated, reprices and field updates
    reverted; products changed in Stripe since the run are left alone and listed. Safe to repeat.

    Refused while a run of the group is not finished (SUCCESS, FAILURE or CANCELED): a run still
    writing would keep writing after the rollback. A run whose process was killed stays STARTED:
    --force rolls it back anyway (or `cms-stripe resume` marks it failed and finishes it)."""
    settings = _settings(ctx)
    allow_live = confirm_live or settings.allow_live
    _check_live(settings, dry_run, allow_live)
    instance = _instance()
    run = instance.get_run_by_id(run_id) if run_id else _latest_cli_run(instance)
    if run is None:
        _fail("nothing to roll back: no earlier cms-stripe run on this instance")
    from cms_stripe.rollback import run_group_ids, unfinished_message, unfinished_runs

    unfinished = unfinished_runs(instance, run_group_ids(instance, run.run_id)[1])
    if unfinished and not force:
        _fail(unfinished_message(unfinished), EXIT_REFUSED)
    if in_stripe:
        if confirm_live:
            os.environ["MIGRATION_ALLOW_LIVE"] = "true"
        if not yes and not dry_run:
            preview = _stripe_rollback(settings, run.run_id, dry_run=True, allow_live=False, force=force)
            if preview.get("to_undo", 0) or preview.get("steps", 0):
                click.confirm(f"undo these Stripe writes of run {run.run_id}?", abort=True)
        summary = _stripe_rollback(settings, run.run_id, dry_run=dry_run, allow_live=allow_live, force=force)
        if dry_run:
            click.echo("dry run: nothing written to Stripe or the CMS")
            sys.exit(EXIT_OK)
        if summary.get("failed"):
            _fail(f"{summary['failed']} products could not be rolled back; run the rollback again", EXIT_FAILED)
    elif dry_run:
        rows = _catalog_for_rollback(run, allow_live).backup_for_run(run.run_id)
        click.echo(f"dry run: would restore the sync columns of {len(rows)} CMS rows written by run {run.run_id}")
        sys.exit(EXIT_OK)
    if not in_stripe:
        _restore_cms(run, yes=yes, allow_live=allow_live)
        return
    # The Stripe rollback undid the run with its re-executions: so does the CMS restore.
    _root, group, _since, _until = run_group_ids(instance, run.run_id)
    for member in group:
        found = instance.get_run_by_id(member)
        if found is not None:
            _restore_cms(found, yes=True, allow_live=allow_live, exit_when_empty=False)


def _stripe_rollback(
    settings: Any, run_id: str, *, dry_run: bool, allow_live: bool, force: bool = False
) -> dict[str, Any]:
    """Run the rollback job in-process (it shows in the UI) and print what it decided and did."""
    from cms_stripe.launch import launch
    from cms_stripe.rollback import ROLLBACK_JOB

    config = _run_config(settings, dry_run)
    config["resources"]["settings"]["config"]["allow_live"] = allow_live
    config["ops"] = {
        "stripe_rollback": {"config": {"run_id": run_id, "dry_run": dry_run, "cms": False, "force": force}}
    }
    result = launch(_instance(), ROLLBACK_JOB, run_config=config, tags={CLI_TAG: "true"})
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data is not None:
                click.secho(
                    str(event.step_failure_data.error.message if event.step_failure_data.error else ""), fg="red"
                )
        _fail(f"Stripe rollback of run {run_id} failed (run {result.run_id}); run it again", EXIT_FAILED)
    with result:  # outputs are read back through the job's IO manager, as after `execute_job`
        summary: dict[str, Any] = result.output_for_node("stripe_rollback")
    for line in summary.get("lines", []):
        click.echo(line)
    counts = {k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)}
    click.echo(f"Stripe rollback{' (dry run)' if dry_run else ''}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if summary.get("changed"):
        click.secho(
            f"left {len(summary['changed'])} products alone: changed in Stripe since the run ("
            + ", ".join(
                f"{c['product_id']}: changed by run {c['changed_by']}"
                if c.get("changed_by")
                else f"{c['product_id']}: {'/'.join(c['fields'])}"
                for c in summary["changed"][:20]
            )
            + ")",
            fg="yellow",
        )
    return summary


def _catalog_for_rollback(run: Any, allow_live: bool) -> Any:
    from cms_stripe.resources.cms import BACKUP_DIR_TAG, backend_is_rest, catalog_resource_from_env

    if run.tags.get(BACKUP_DIR_TAG) and backend_is_rest():
        # A REST CMS keeps backups as files: read them where the run wrote them, whatever this
        # process's working directory (the run recorded the absolute folder).
        folder = run.tags[BACKUP_DIR_TAG]
        if not pathlib.Path(folder).is_dir():
            _fail(
                f"run {run.run_id} kept its CMS backups in {folder}, which this machine does not have: "
                "run the rollback where that folder is (or copy it here)"
            )
        os.environ["CMS_BACKUP_DIR"] = folder
    # Through the resource, so the restore passes the same live-key guard as every CMS write.
    return catalog_resource_from_env().writer(allow_live)


def _restore_cms(run: Any, *, yes: bool, allow_live: bool, exit_when_empty: bool = True) -> None:
    catalog = _catalog_for_rollback(run, allow_live)
    rows = catalog.backup_for_run(run.run_id)
    if not rows:
        click.echo(f"run {run.run_id} wrote nothing back to the CMS: nothing to roll back")
        if exit_when_empty:
            sys.exit(EXIT_OK)
        return
    if not yes:
        click.confirm(f"restore the sync columns of {len(rows)} CMS rows written by run {run.run_id}?", abort=True)
    restored = catalog.restore_backup(run.run_id)
    click.echo(f"restored {restored.written} CMS rows to their values before run {run.run_id}")
    if restored.conflicts:
        click.secho(
            f"left {len(restored.conflicts)} rows alone: changed since the run wrote them "
            f"({', '.join(restored.conflicts[:20])})",
            fg="yellow",
        )
    if restored.missing:
        click.echo(f"{len(restored.missing)} rows are no longer in the CMS (not recreated)")


@cli.command("report")
@click.option("--run-id", default=None, help="The run whose report to show (default: the newest report).")
@click.option("--json", "as_json", is_flag=True, help="Print the report file as it is.")
@click.pass_context
def report_command(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """Show a run's report (reports/migration-report-*.json) as tables."""
    from cms_stripe.console import render_report
    from cms_stripe.core.report import RunReport, find_report
    from cms_stripe.core.settings import Settings

    _load_env(ctx.obj.get("env_file"))
    reports_dir = Settings.from_env().reports_dir
    path = find_report(reports_dir, run_id)
    if path is None:
        which = f"of run {run_id} " if run_id else ""
        _fail(f"no report {which}in {reports_dir} (MIGRATION_REPORTS_DIR): run `cms-stripe migrate` or `dry-run` first")
    if as_json:
        click.echo(path.read_text().rstrip())
        return
    render_report(RunReport.from_dict(json.loads(path.read_text())), _console(ctx))


@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """The CMS's sync state: rows by sync_status, the oldest pending change, the last sync run that wrote."""
    from cms_stripe.console import render_status
    from cms_stripe.core.report import find_report
    from cms_stripe.core.settings import Settings, scrub
    from cms_stripe.resources.cms import catalog_resource_from_env

    _settings(ctx)
    source = None
    try:
        # Counted in the database: a catalog of any size is never read into memory for this.
        source = catalog_resource_from_env(strict=True).source()
        state = source.sync_summary()
    except Exception as exc:
        _fail(f"CMS: {type(exc).__name__}: {scrub(exc)}")
    finally:
        if source is not None:
            source.close()
    instance = _instance()
    newest = _newest_run_that_wrote(instance, cli_only=False)
    if newest is not None:
        run = newest.dagster_run
        when = newest.create_timestamp.strftime("%Y-%m-%d %H:%M:%SZ")
        report = find_report(Settings.from_env().reports_dir, run.run_id)
        last = f"{run.run_id} ({run.job_name}) started {when}: {run.status.value}"
        if report is not None:
            last += f"; report {report}"
    else:
        last = "none on this instance"
    oldest = state.oldest_pending.isoformat() if state.oldest_pending else None
    render_status(state.counts, oldest, last, _console(ctx))


@cli.command()
@click.option(
    "--run-id", default=None, help="The run whose checkpoints to clear (default: the newest CLI run that wrote)."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, run_id: str | None, yes: bool) -> None:
    """Clear a run's checkpoints for a fresh start: resuming it then re-plans every product.

    Nothing in Stripe or the CMS changes, and nothing is deleted from the instance: the run is
    marked so that its checkpoints recorded until now are ignored. Re-planning is safe (products
    already in Stripe are found and left as they are), it only costs Stripe reads."""
    import time

    import dagster as dg

    from cms_stripe.assets.stripe_sync import read_checkpoints
    from cms_stripe.checks import STRIPE_PRODUCTS
    from cms_stripe.constants import CHECKPOINTS_RESET_TAG
    from cms_stripe.partitions import daily_partitions

    _load_env(ctx.obj.get("env_file"))
    instance = _instance()
    run = instance.get_run_by_id(run_id) if run_id else _latest_cli_run(instance)
    if run is None:
        _fail(f"no run {run_id} on this instance" if run_id else "nothing to reset: no earlier cms-stripe run")
    root = run.root_run_id or run.run_id
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    keys = (
        daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        if start and end
        else [run.tags["dagster/partition"]]
        if "dagster/partition" in run.tags
        else []
    )
    done = read_checkpoints(instance, STRIPE_PRODUCTS, keys, root)
    if not yes:
        click.confirm(
            f"clear the checkpoints of run {root} ({len(done)} products recorded as finished)? "
            "Resuming it will re-plan them",
            abort=True,
        )
    instance.add_run_tags(root, {CHECKPOINTS_RESET_TAG: repr(time.time())})
    click.echo(f"cleared {len(done)} checkpoints of run {root}: `cms-stripe resume` re-plans every product")


@cli.command("demo-data")
@click.option(
    "--url", "url", required=True, help="SQLAlchemy URL of the CMS database (sqlite:///…, postgresql+psycopg://…)."
)
@click.option("--products", "n", default=1000, show_default=True, type=click.IntRange(1), help="How many products.")
@click.option("--seed", default=7, show_default=True, type=int, help="The same seed gives the same catalog.")
@click.option("--table", default="products", show_default=True, help="Table to create and fill.")
@click.option(
    "--replace/--no-replace",
    default=False,
    help="Drop the table first. Only a SQLite table is dropped without --yes-drop-table.",
)
@click.option(
    "--yes-drop-table",
    is_flag=True,
    help="Needed with --replace for any database but SQLite: confirms that the table may be dropped.",
)
def demo_data(url: str, n: int, seed: int, table: str, replace: bool, yes_drop_table: bool) -> None:
    """Create the CMS schema and fill it with a deterministic demo catalog (about 3 % invalid rows).

    --replace drops the table first; on anything but SQLite it also needs --yes-drop-table, so a
    pasted production URL never loses its catalog."""
    from cms_stripe.cms.demo import generate_catalog, write_catalog
    from cms_stripe.cms.schema import drop_schema
    from cms_stripe.core.settings import mask_url

    try:
        backend = sa.engine.make_url(url).get_backend_name()
    except Exception:
        _fail(f"--url is not a SQLAlchemy database URL: {mask_url(url)}")
    if replace and backend != "sqlite" and not yes_drop_table:
        _fail(
            f"refusing to drop table {table!r} in {mask_url(url)}: --replace drops only SQLite tables "
            "unless --yes-drop-table is given as well",
            EXIT_REFUSED,
        )
    engine = sa.create_engine(url)
    try:
        if replace:
            drop_schema(engine, table)
        catalog = generate_catalog(n, seed)
        written = write_catalog(engine, catalog.products, table)
    finally:
        engine.dispose()
    click.echo(f"wrote {written} products ({len(catalog.invalid)} deliberately invalid) to table {table!r}")


@contextmanager
def _demo_environment(root: pathlib.Path, products: int, fresh: bool) -> Iterator[dict[str, str]]:
    from cms_stripe.cms.demo import generate_catalog, write_catalog
    from cms_stripe.cms.schema import drop_schema
    from cms_stripe.emulator import EmulatorConfig, EmulatorServer

    root.mkdir(parents=True, exist_ok=True)
    db = root / "cms.sqlite"
    state = root / "stripe-emulator-state.json"
    if fresh:
        for path in (db, state, root / DEMO_PARTITION_START_FILE):
            path.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        if not sa.inspect(engine).has_table("products"):
            drop_schema(engine)
            catalog = generate_catalog(products)
            write_catalog(engine, catalog.products)
            click.echo(f"demo catalog: {products} products ({len(catalog.invalid)} deliberately invalid) in {db}")
        else:
            click.echo(f"demo catalog: reusing {db} (pass --fresh to rebuild it and the emulator's state)")
    finally:
        engine.dispose()
    config = EmulatorConfig(latency_ms=20.0, jitter_ms=10.0, state_file=str(state))
    with EmulatorServer(config) as emulator:
        env = demo_env(root, emulator.url)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


DEMO_KEY = "sk_test_cms_stripe_demo"
DEMO_PARTITION_START_FILE = "partition-start"


def demo_env(root: pathlib.Path, stripe_api_base: str) -> dict[str, str]:
    """The environment of the demo's runs, and of `cms-stripe dev` on the demo's result."""
    start_file = root / DEMO_PARTITION_START_FILE
    if not start_file.exists():
        # A month of daily partitions (the demo's rows span three): the older rows are synced
        # through the open first partition, and the run stays quick. Kept, so the UI opened days
        # later shows the partitions the demo materialized.
        root.mkdir(parents=True, exist_ok=True)
        start_file.write_text(_demo_partition_start())
    return {
        "CMS_DATABASE_URL": f"sqlite:///{root / 'cms.sqlite'}",
        "STRIPE_API_BASE": stripe_api_base,
        # A test-mode key for the local emulator only; it authenticates nothing anywhere else.
        "STRIPE_SECRET_KEY": DEMO_KEY,
        "MIGRATION_DRY_RUN": "false",
        "MIGRATION_STRATEGY": "full",
        "MIGRATION_PARTITION_START": start_file.read_text().strip(),
        "MIGRATION_REPORTS_DIR": str(root / "reports"),
        "MIGRATION_LOGS_DIR": str(root / "logs"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


@cli.command()
@click.option("--products", "n", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--dir", "workdir", default=".demo", show_default=True, help="Where the demo keeps its files.")
@click.option("--fresh", is_flag=True, help="Start over: new catalog, empty emulator.")
@click.pass_context
def demo(ctx: click.Context, n: int, workdir: str, fresh: bool) -> None:
    """Demo catalog in SQLite → local Stripe emulator → full migration on a SQLite Dagster instance."""
    root = pathlib.Path(workdir).resolve()
    with _demo_environment(root, n, fresh) as env:
        _embedded_home(pathlib.Path(env["DAGSTER_HOME"]))
        settings = _settings(ctx)
        result = _execute_sync(settings, dry_run=False)
        code = _report(result)
        from cms_stripe.console import logger_config
        from cms_stripe.jobs import CATALOG_RECONCILIATION_JOB
        from cms_stripe.launch import launch

        recon = launch(
            _instance(),
            CATALOG_RECONCILIATION_JOB,
            run_config=logger_config(ctx.obj.get("verbose", False)),
            tags={CLI_TAG: "true"},
        )
        summary = _catalog_summary(recon)
        if not recon.success:
            code = max(code, EXIT_FAILED)
    click.echo("catalog reconciliation: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    click.echo(f"Open the Dagster UI on this result: make dev (or cms-stripe dev --dir {workdir})")
    sys.exit(code)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--dir", "workdir", default=".demo", show_default=True, help="The folder `cms-stripe demo` used.")
@click.option("--port", default=3000, show_default=True, type=int, help="The UI's port.")
@click.option(
    "--program",
    default=None,
    hidden=True,
    help="Run this command line instead of `dagster dev` (with the same environment); for tests.",
)
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(workdir: str, port: int, program: str | None, dagster_args: tuple[str, ...]) -> None:
    """Open the Dagster UI on the demo's result: its instance, its CMS, and the emulator serving the
    Stripe state the demo left (no environment variables to type). Extra arguments go to `dagster dev`."""
    import shlex
    import subprocess

    from cms_stripe.emulator import EmulatorConfig, EmulatorServer

    root = pathlib.Path(workdir).resolve()
    if not (root / "dagster_home").is_dir() or not (root / "cms.sqlite").exists():
        _fail(f"no demo in {root}: run `make demo` (or `cms-stripe demo --dir {workdir}`) first")
    state = root / "stripe-emulator-state.json"
    with EmulatorServer(EmulatorConfig(latency_ms=20.0, jitter_ms=10.0, state_file=str(state))) as emulator:
        env = {**os.environ, **demo_env(root, emulator.url)}
        # The repo's dagster.yaml is for shared deployments; the demo's own instance keeps its runs.
        _embedded_home(pathlib.Path(env["DAGSTER_HOME"]))
        if program:
            command = shlex.split(program)
        else:
            command = [sys.executable, "-m", "dagster", "dev", "-m", "cms_stripe.definitions", "-p", str(port)]
            command += list(dagster_args)
            click.echo(f"Dagster UI on http://127.0.0.1:{port} (demo instance {env['DAGSTER_HOME']}); Ctrl-C stops it")
        try:
            # A child, not exec: the emulator serving the demo's Stripe state lives in this process.
            code = subprocess.call(command, env=env)  # noqa: S603 - our dagster dev, or the caller's --program
        except KeyboardInterrupt:
            code = 0
    sys.exit(code)


def _demo_partition_start() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d")


def _catalog_summary(result: Any) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == "catalog_reconciliation_report":
            return {
                k: getattr(v, "value", v)
                for k, v in mat.metadata.items()
                if k
                in ("rows", "matched", "missing", "drift", "duplicates", "orphans", "quarantined", "stripe_products")
            }
    return {}


# -- review: plan → apply ----------------------------------------------------------------------------


def _step_metadata(result: Any) -> list[Mapping[str, Any]]:
    """Metadata of every materialization, output and failure of a run, in order, values unwrapped."""
    out: list[Mapping[str, Any]] = []
    for event in result.all_events:
        data: Any = event.event_specific_data
        meta: Mapping[str, Any] | None = None
        if event.is_step_materialization:
            meta = data.materialization.metadata
        elif event.is_successful_output:
            meta = data.metadata
        elif event.is_step_failure and data.user_failure_data is not None:
            meta = data.user_failure_data.metadata
        if meta:
            out.append({k: getattr(v, "value", v) for k, v in meta.items()})
    return out


def _review_paths(out: str) -> tuple[pathlib.Path, pathlib.Path]:
    target = pathlib.Path(out)
    return target, target.with_suffix(".md") if target.suffix == ".json" else target.with_name(target.name + ".md")


@cli.command("plan")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False), help="Write the plan JSON here.")
@click.pass_context
def plan_command(ctx: click.Context, out: str | None) -> None:
    """Read, validate and plan like dry-run, and write the plan to review (JSON, Markdown beside it).

    The plan names the Stripe account and mode it was read from and, per operation, the CMS row and
    Stripe state it was decided from; `cms-stripe apply FILE` writes exactly it."""
    from cms_stripe.constants import PLAN_PATH
    from cms_stripe.core.plan import Plan

    settings = _settings(ctx)
    result = _execute_sync(settings, dry_run=True, assets=["raw_cms_products", "validated_products", "stripe_products"])
    code = _report(result)
    saved = next((m[PLAN_PATH] for m in reversed(_step_metadata(result)) if PLAN_PATH in m), None)
    if saved is None:
        _fail("no plan was made (see the run above)", EXIT_FAILED)
    plan = Plan.from_json(pathlib.Path(str(saved)).read_text())
    if not plan.account_id:
        _fail("the plan names no Stripe account (GET /v1/account failed): it could not be applied", EXIT_FAILED)
    json_path, md_path = _review_paths(out) if out else (pathlib.Path(str(saved)), None)
    if out:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with json_path.open("w") as fh:
            plan.write_json(fh, indent=2)
        assert md_path is not None
        md_path.write_text(plan.summary_markdown(limit=len(plan.operations) + 1) + "\n")
    writes = len(plan.writes)
    click.echo(
        f"plan: {writes} Stripe writes for {plan.account_id} ({plan.mode} mode), "
        f"made {plan.created_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    click.echo(f"  plan_file: {json_path}" + (f" (summary {md_path})" if md_path else ""))
    click.echo(f"  apply it with: cms-stripe apply {json_path}")
    sys.exit(code)


@cli.command("apply")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--confirm-live", is_flag=True, help="Allow writing with a live Stripe key.")
@click.pass_context
def apply_command(ctx: click.Context, plan_file: str, confirm_live: bool) -> None:
    """Apply exactly a reviewed plan: operations whose CMS row or Stripe objects changed since the plan
    are refused and listed (exit 1); a plan for another account or mode, or too old, is refused whole
    (exit 3). Applying the same plan again writes nothing."""
    from cms_stripe.constants import APPLY_REPORT, PLAN_REFUSED, REPORT_PATH
    from cms_stripe.jobs import APPLY_PLAN_JOB
    from cms_stripe.launch import launch

    settings = _settings(ctx)
    _check_live(settings, False, confirm_live)
    if confirm_live:
        os.environ["MIGRATION_ALLOW_LIVE"] = "true"
        settings = _settings(ctx)
    path = str(pathlib.Path(plan_file).resolve())
    run_config = _run_config(settings, dry_run=False)
    run_config["ops"] = {"apply_plan_file": {"config": {"plan_file": path}}}
    click.echo(f"applying plan {path}")
    result = launch(_instance(), APPLY_PLAN_JOB, run_config=run_config, tags={CLI_TAG: "true"})
    metadata = _step_metadata(result)
    refused_whole = next((m[PLAN_REFUSED] for m in metadata if PLAN_REFUSED in m), None)
    report = next((m for m in metadata if APPLY_REPORT in m), None)
    if report is None:
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            if error is not None:
                click.secho(error.message.strip(), fg="red", err=True)
        click.echo(f"run {result.run_id}: FAILED")
        sys.exit(EXIT_REFUSED if refused_whole else EXIT_FAILED)
    data = report[APPLY_REPORT]
    click.echo("apply: " + ", ".join(f"{k}={v}" for k, v in data["counts"].items()))
    for refusal in data["refused"]:
        click.echo(
            f"refused {refusal['cms_id']} ({refusal['kind']} {refusal['product_id']}): "
            f"{refusal['reason']}: {refusal['detail']}"
        )
    for failure in data["failed"]:
        click.echo(f"failed {failure['cms_id']}: {failure['error']}")
    if data["critical"]:
        click.secho(data["critical"], fg="red")
    click.echo(f"  report_path: {report[REPORT_PATH]}")
    click.echo(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    sys.exit(EXIT_OK if result.success else EXIT_FAILED)


def main() -> None:
    from cms_stripe.launch import StripeSlotBusy

    try:
        cli(standalone_mode=True)
    except StripeSlotBusy as exc:
        _fail(f"refusing to start: {exc}", EXIT_REFUSED)


if __name__ == "__main__":  # pragma: no cover
    main()
