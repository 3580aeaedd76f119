"""The run report and the log file from inside a run: a run's materializations into `core.report`
(as this process stored them when it executes the run, else read back from the instance), and the
daily log file attached to a step. Used by the sync asset (so runs from the UI, the schedule and the
sensor get a report and a log too) and by the CLI (which completes the report once the whole run,
reconciliation included, is over)."""

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


def _record(event: Any) -> Materialized | None:
    """What the report keeps of one stored event: a materialization (per partition), an observation
    of an asset's run figures (without a partition), a sync step's failure carrying its figures."""
    if event is None:
        return None
    kind = event.event_type
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        mat = event.event_specific_data.materialization
        return Materialized(mat.asset_key.to_user_string(), mat.partition, plain(mat.metadata))
    if kind == dg.DagsterEventType.ASSET_OBSERVATION:
        obs = event.event_specific_data.asset_observation
        # Checkpoints are observations of a partition; the journal's are of its own asset.
        if obs.partition is None and obs.asset_key.to_user_string() in RUN_FIGURE_ASSETS:
            return Materialized(obs.asset_key.to_user_string(), None, plain(obs.metadata))
        return None
    if kind == dg.DagsterEventType.STEP_FAILURE:
        # A sync step that stopped (CRITICAL, CMS write-back failure) materializes nothing; its figures
        # are the metadata of its failure, recorded by the step as it would have materialized them.
        user = getattr(event.event_specific_data, "user_failure_data", None)
        metadata = plain(getattr(user, "metadata", None) or {})
        return Materialized(STRIPE_ASSET, None, metadata) if STRIPE_CALLS in metadata else None
    return None


_RECORDED_KINDS = (
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.STEP_FAILURE,
)


class RunRecords:
    """The report's records of one run, taken from its events as this process's instance stores them.

    Reading a run's events back after the fact deserializes every materialization of every partition
    (seconds for a run over thousands of daily partitions, and again for each report written). A run
    executed in this process (the CLI's, in-process executor) has each stored event handed to the
    instance's listeners right after it is stored: the same entries, in the same order, that reading
    the event log would return. Collected only when listening started before the run did, so nothing
    can have been missed; otherwise the report reads the instance as before."""

    def __init__(self) -> None:
        self.materialized: list[Materialized] = []
        self.failures: list[Materialized] = []

    def __call__(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None or event.event_type not in _RECORDED_KINDS:
            return
        record = _record(event)
        if record is None:
            return
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            self.failures.append(record)
        else:
            self.materialized.append(record)


# Runs executed in this process, listened to from before their start (few: one per command).
_live: dict[str, RunRecords] = {}
_LIVE_KEPT = 16


def listen(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Collect `run`'s records as the instance stores its events; call before executing it here."""
    if run.status != dg.DagsterRunStatus.NOT_STARTED:
        return  # events already stored would be missing: the instance stays the source
    records = RunRecords()
    instance.add_event_listener(run.run_id, records)
    _live[run.run_id] = records
    while len(_live) > _LIVE_KEPT:  # a long-lived process (tests) launching many runs
        _live.pop(next(iter(_live)))


def collected(run_id: str) -> RunRecords | None:
    return _live.get(run_id)


def run_materializations(instance: dg.DagsterInstance, runs: Sequence[dg.DagsterRun]) -> list[Materialized]:
    """What the runs recorded per partition (materializations) and once per run (observations of the
    same assets without a partition: constants.RUN_WIDE_KEYS), in order."""
    out: list[Materialized] = []
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION}
    for run in runs:
        live = collected(run.run_id)
        if live is not None:
            out += live.materialized
            continue
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            record = _record(entry.dagster_event)
            if record is not None:
                out.append(record)
    return out


def failed_sync_records(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Materialized]:
    """A sync step that stopped (CRITICAL, CMS write-back failure) materializes nothing; its figures
    are the metadata of its failure, recorded by the step as it would have materialized them."""
    live = collected(run.run_id)
    if live is not None:
        return list(live.failures)
    out = []
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        record = _record(entry.dagster_event)
        if record is not None:
            out.append(record)
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
    path: pathlib.Path | None = None,
) -> RunReport:
    """Build the report of `run` from what the instance recorded (plus `extra`, the materializations
    a step is about to record) and write it to its file (`path`, else `report_file_for`)."""
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
    report.write((path or report_file_for(run.run_id)).resolve())
    return report
