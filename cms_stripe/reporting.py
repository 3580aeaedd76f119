"""The run report and the log file from inside a run: read a run's materializations back from the
instance into `core.report`, and attach the daily log file to a step. Used by the sync asset (so runs
from the UI, the schedule and the sensor get a report and a log too) and by the CLI (which completes
the report once the whole run, reconciliation included, is over)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from cms_stripe.constants import (
    RAW_ASSET,
    RECONCILIATION_ASSET,
    STRIPE_ASSET,
    STRIPE_CALLS,
    VALIDATED_ASSET,
)
from cms_stripe.core import runlog
from cms_stripe.core.report import Materialized, RunReport, build_report, find_report, report_path
from cms_stripe.core.settings import Settings

STRATEGY_TAG = "cms_stripe/strategy"
COMMAND_TAG = "cms_stripe/command"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
ROOT_RUN_TAG = "dagster/root_run_id"
# Assets whose steps record the run's own figures once, as an observation without a partition.
RUN_FIGURE_ASSETS = frozenset({RAW_ASSET, VALIDATED_ASSET, STRIPE_ASSET, RECONCILIATION_ASSET})


def plain(metadata: Any) -> dict[str, Any]:
    return {str(k): getattr(v, "value", v) for k, v in dict(metadata).items()}


def masked_settings() -> dict[str, str]:
    try:
        return Settings.from_env().describe()
    except Exception as exc:  # a settings error must not stop a run that does not need them
        return {"settings": f"unreadable ({type(exc).__name__})"}


@contextmanager
def step_log(run: dg.DagsterRun, what: str) -> Iterator[pathlib.Path]:
    """The daily log file, attached for one step of `run`."""
    with runlog.log_to_file(Settings.from_env().logs_dir, run.run_id, masked_settings(), what) as path:
        yield path


def run_group(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[dg.DagsterRun]:
    """The run and the runs it re-executes (oldest first): a resumed run's report includes the
    assets its parent materialized before it failed."""
    root = run.root_run_id or run.run_id
    runs = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(tags={ROOT_RUN_TAG: root}))}
    root_run = instance.get_run_by_id(root)
    if root_run is not None:
        runs[root] = root_run
    runs[run.run_id] = run
    chain: list[dg.DagsterRun] = []
    current: dg.DagsterRun | None = run
    # Follow the parent chain so a sibling re-execution of the same root is left out.
    while current is not None:
        chain.append(current)
        current = runs.get(current.parent_run_id) if current.parent_run_id else None
    return list(reversed(chain))


def run_materializations(instance: dg.DagsterInstance, runs: Sequence[dg.DagsterRun]) -> list[Materialized]:
    """What the runs recorded per partition (materializations) and once per run (observations of the
    same assets without a partition: constants.RUN_WIDE_KEYS), in order."""
    out = []
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION}
    for run in runs:
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                mat = event.event_specific_data.materialization  # type: ignore[union-attr]
                out.append(Materialized(mat.asset_key.to_user_string(), mat.partition, plain(mat.metadata)))
                continue
            obs = event.event_specific_data.asset_observation  # type: ignore[union-attr]
            # Checkpoints are observations of a partition; the journal's are of its own asset.
            if obs.partition is None and obs.asset_key.to_user_string() in RUN_FIGURE_ASSETS:
                out.append(Materialized(obs.asset_key.to_user_string(), None, plain(obs.metadata)))
    return out


def failed_sync_records(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Materialized]:
    """A sync step that stopped (CRITICAL, CMS write-back failure) materializes nothing; its figures
    are the metadata of its failure, recorded by the step as it would have materialized them."""
    out = []
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event is not None else None
        user = getattr(data, "user_failure_data", None)
        metadata = plain(getattr(user, "metadata", None) or {})
        if STRIPE_CALLS in metadata:
            out.append(Materialized(STRIPE_ASSET, None, metadata))
    return out


def run_scope(run: dg.DagsterRun) -> tuple[str | None, str | None, list[str]]:
    """(strategy, partition range, selected ids) as the run's tags and config say."""
    tags = run.tags
    if RANGE_START_TAG in tags:
        start, end = tags[RANGE_START_TAG], tags.get(RANGE_END_TAG, tags[RANGE_START_TAG])
        partitions: str | None = start if start == end else f"{start}..{end}"
    else:
        partitions = tags.get(PARTITION_TAG)
    config: dict[str, Any] = dict(run.run_config or {})
    op_config = ((config.get("ops") or {}).get("sync_selected_products") or {}).get("config") or {}
    ids = [str(i) for i in op_config.get("product_ids") or []]
    return tags.get(STRATEGY_TAG), partitions, ids


def _failures_unless_materialized(
    instance: dg.DagsterInstance, run: dg.DagsterRun, own: Sequence[Materialized]
) -> list[Materialized]:
    # Only this run's own failure (a resumed run's report must not add its parent's figures), and
    # only when the sync did not materialize in this run (`own`: what this run recorded; its
    # materializations are those of a partition, the run-wide observation has none).
    if any(r.asset == STRIPE_ASSET and r.partition is not None for r in own):
        return []
    return failed_sync_records(instance, run)


def report_file_for(run_id: str) -> pathlib.Path:
    """The run's report file: the one already written for it, else a new timestamped one."""
    reports_dir = Settings.from_env().reports_dir
    return find_report(reports_dir, run_id) or report_path(reports_dir, datetime.now(UTC))


def write_run_report(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    *,
    status: str,
    extra: Sequence[Materialized] = (),
    log_path: str | None = None,
    command: str | None = None,
) -> RunReport:
    """Build the report of `run` from what the instance recorded (plus `extra`, the materializations
    a step is about to record) and write it to its file."""
    strategy, partitions, ids = run_scope(run)
    group = run_group(instance, run)
    stats = instance.get_run_stats(run.run_id)
    started = datetime.fromtimestamp(stats.start_time, UTC) if stats.start_time else None
    ended = datetime.fromtimestamp(stats.end_time, UTC) if stats.end_time else datetime.now(UTC)
    # Read once per run: a range run has one materialization per asset and partition.
    by_run = {r.run_id: run_materializations(instance, [r]) for r in group}
    records = [m for r in group for m in by_run[r.run_id]]
    report = build_report(
        [*records, *_failures_unless_materialized(instance, run, by_run.get(run.run_id, [])), *extra],
        run_id=run.run_id,
        command=command or run.tags.get(COMMAND_TAG) or run.job_name,
        status=status,
        strategy=strategy,
        partitions=partitions,
        product_ids=ids,
        started_at=started,
        ended_at=ended,
        log_path=log_path or str(runlog.log_file_path(Settings.from_env().logs_dir, ended).resolve()),
    )
    report.write(report_file_for(run.run_id).resolve())
    return report
