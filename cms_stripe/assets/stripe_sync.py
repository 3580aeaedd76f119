"""Stripe products: plan and apply the partition's rows with the engine, checkpointing as it goes."""

import pathlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg
import pandas as pd

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    RETRY_POLICY,
    log_run_metadata,
    partition_keys,
    partition_metadata_result,
)
from cms_stripe.assets.journal import InstanceJournal
from cms_stripe.checks import STRIPE_PRODUCTS, failed_writes_result, no_failed_writes_check
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    CHECKPOINT,
    CHECKPOINT_DONE,
    CHECKPOINTS_RESET_TAG,
    DRY_RUN,
    DURATION_S,
    FAILED,
    FAILURES_TABLE,
    GROUP,
    LOG_PATH,
    MAX_UPDATED_AT,
    OUTCOMES,
    PLAN_COUNT_PREFIX,
    PLAN_PATH,
    PLAN_SUMMARY,
    PLANNED,
    PRODUCTS_PER_SECOND,
    RATE_LIMITED,
    RESUMED,
    RUN_REPORT_PATH,
    SKIPPED,
    SKIPPED_EXISTING,
    STRIPE_ASSET,
    STRIPE_CALLS,
    STRIPE_POOL,
    STRIPE_WRITE_ATTEMPTS,
    STRIPE_WRITES,
    SUCCESS_RATE,
    WRITEBACK_CONFLICTS,
    WRITEBACK_FAILED,
    WRITTEN_BACK,
)
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.executor import ProductResult
from cms_stripe.core.frames import frame_to_products
from cms_stripe.core.plan import Operation, Plan, Quarantined
from cms_stripe.core.report import (
    ErrorItem,
    Materialized,
    error_metadata,
    failure_error,
    quarantine_errors,
    writeback_errors,
)
from cms_stripe.core.sync import SyncOptions, SyncOutcome
from cms_stripe.partitions import current_span, daily_partitions
from cms_stripe.reporting import plain, report_file_for, step_log, write_run_report
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource


def root_run_id(context: dg.AssetExecutionContext) -> str:
    return context.run.root_run_id or context.run.run_id


def checkpoints_reset_at(instance: dg.DagsterInstance, root: str) -> float:
    """When `cms-stripe reset` cleared the checkpoints of run `root` (0.0: never)."""
    run = instance.get_run_by_id(root)
    try:
        return float((run.tags if run else {}).get(CHECKPOINTS_RESET_TAG, 0.0))
    except ValueError:
        return 0.0


def read_checkpoints(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str], root: str
) -> dict[str, str]:
    """cms id → content hash finished by earlier attempts of this run (re-execution, step retry),
    except those recorded before a `cms-stripe reset` of the run."""
    done: dict[str, str] = {}
    if not keys:
        return done
    reset_at = checkpoints_reset_at(instance, root)
    cursor = None
    while True:
        page = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(keys)), limit=1000, cursor=cursor
        )
        for record in page.records:
            observation = record.asset_observation
            if observation is None or record.timestamp <= reset_at:
                continue
            meta = observation.metadata
            run = meta.get(CHECKPOINT)
            if run is None or getattr(run, "value", None) != root:
                continue
            pairs = getattr(meta.get(CHECKPOINT_DONE), "value", None) or {}
            done.update({str(k): str(v) for k, v in dict(pairs).items()})
        if not page.has_more:
            return done
        cursor = page.cursor


def checkpoint_logger(
    context: dg.AssetExecutionContext, products: Sequence[CmsProduct], span: PartitionSpan, fallback_key: str, root: str
):
    day_by_id = {p.id: span.key_for(p.updated_at) for p in products}

    def record(done: list[tuple[str, str]]) -> None:
        by_day: dict[str, dict[str, str]] = defaultdict(dict)
        for cms_id, chash in done:
            by_day[day_by_id.get(cms_id, fallback_key)][cms_id] = chash
        for day, pairs in by_day.items():
            context.log_event(
                dg.AssetObservation(
                    asset_key=STRIPE_PRODUCTS,
                    partition=day,
                    metadata={CHECKPOINT: dg.MetadataValue.text(root), CHECKPOINT_DONE: dg.MetadataValue.json(pairs)},
                )
            )

    return record


def plan_stamp(log: dg.DagsterLogManager, stripe: StripeResource) -> tuple[str | None, str | None]:
    """The account and mode a dry run's plan is made for, so `cms-stripe apply` can take it; a key
    that may not read its account (a restricted key) still plans, its plan just cannot be applied."""
    try:
        return stripe.account()
    except Exception as exc:
        log.warning(
            f"the plan names no Stripe account (GET /v1/account failed: {type(exc).__name__}); it cannot be applied"
        )
        return None, None


def outcome_errors(outcome: SyncOutcome) -> list[ErrorItem]:
    """Rows the plan refused, products whose writes failed, rows whose write-back failed."""
    errors = quarantine_errors([(q.cms_id, list(q.issues)) for q in outcome.plan.quarantined])
    if outcome.result is not None:
        errors += [
            failure_error(r.cms_id, r.error_code, r.severity.value if r.severity else None, r.error)
            for r in outcome.result.failed
        ]
    return errors + writeback_errors(outcome.writeback_failed)


def failures_markdown(failures: Sequence[tuple[str, str]], limit: int = 100) -> str:
    if not failures:
        return "No failed write."
    return "| cms id | error |\n|---|---|\n" + "\n".join(f"| {i} | {e} |" for i, e in failures[:limit])


def run_metadata(outcome: SyncOutcome, dry_run: bool) -> dict[str, dg.MetadataValue]:
    """Figures of the whole run (constants.RUN_WIDE_KEYS) and its whole plan: recorded once per run,
    never on a partition (Stripe's calls and the run's pace are not any one day's)."""
    counts = outcome.counts
    attempted = sum(counts.get(k, 0) for k in OUTCOMES if k != SKIPPED)
    meta: dict[str, dg.MetadataValue] = {
        DRY_RUN: dg.MetadataValue.bool(dry_run),
        PRODUCTS_PER_SECOND: dg.MetadataValue.float(
            round(attempted / outcome.duration_s, 3) if outcome.duration_s > 0 else 0.0
        ),
        STRIPE_CALLS: dg.MetadataValue.int(outcome.stripe_calls),
        STRIPE_WRITES: dg.MetadataValue.int(outcome.stripe_writes),
        RATE_LIMITED: dg.MetadataValue.int(outcome.rate_limited),
        DURATION_S: dg.MetadataValue.float(round(outcome.duration_s, 3)),
        WRITTEN_BACK: dg.MetadataValue.int(outcome.written_back),
        WRITEBACK_CONFLICTS: dg.MetadataValue.int(len(outcome.writeback_conflicts) + len(outcome.writeback_missing)),
        WRITEBACK_FAILED: dg.MetadataValue.int(len(outcome.writeback_failed)),
        PLAN_SUMMARY: dg.MetadataValue.md(outcome.plan.summary_markdown()),
    }
    if outcome.plan_path:
        meta[PLAN_PATH] = dg.MetadataValue.path(outcome.plan_path)
    if outcome.failures:
        meta[FAILURES_TABLE] = dg.MetadataValue.md(failures_markdown(outcome.failures))
    return meta


def outcome_metadata(outcome: SyncOutcome, dry_run: bool) -> dict[str, dg.MetadataValue]:
    """The whole run in one dict, its totals included: the figures of a run without partitions (the
    selective job) and of a sync step that stopped (its failure's metadata)."""
    counts = outcome.counts
    attempted = sum(counts.get(k, 0) for k in OUTCOMES if k != SKIPPED)
    meta = run_metadata(outcome, dry_run)
    meta.update(
        {
            PLANNED: dg.MetadataValue.int(len(outcome.plan.operations)),
            SKIPPED_EXISTING: dg.MetadataValue.int(outcome.skipped_existing),
            RESUMED: dg.MetadataValue.int(outcome.resumed),
            SUCCESS_RATE: dg.MetadataValue.float(outcome.succeeded / attempted if attempted else 1.0),
        }
    )
    for kind, n in outcome.plan.counts().items():
        meta[PLAN_COUNT_PREFIX + kind] = dg.MetadataValue.int(n)
    for name in OUTCOMES:
        meta[name] = dg.MetadataValue.int(counts.get(name, 0))
    for key, value in error_metadata(outcome_errors(outcome)).items():
        meta[key] = dg.MetadataValue.json(value)
    return meta


@dataclass
class _Day:
    """What one partition of the run holds: its rows' plan lines, results and errors."""

    newest: str = ""
    operations: list[Operation] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    results: list[ProductResult] = field(default_factory=list)
    errors: list[ErrorItem] = field(default_factory=list)
    skipped_existing: int = 0
    resumed: int = 0


def per_day_metadata(
    outcome: SyncOutcome,
    products: Sequence[CmsProduct],
    span: PartitionSpan,
    keys: Sequence[str],
    links: Mapping[str, dg.MetadataValue],
) -> dict[str, dict[str, dg.MetadataValue]]:
    """Each partition of the run (every one of `keys`, empty days too): its own plan lines, outcomes,
    errors, and the Stripe writes issued for its products. A row whose day is not one of the run's
    (the day rolled over mid-run) counts on the run's last partition, so the partitions add up to the run."""
    day_by_id = {p.id: span.key_for(p.updated_at) for p in products}
    days = {pk: _Day() for pk in keys}

    def day(cms_id: str | None) -> _Day:
        return days.get(day_by_id.get(cms_id or "", ""), days[keys[-1]])

    for p in products:
        d = day(p.id)
        d.newest = max(d.newest, p.updated_at.isoformat() if p.updated_at else "")
    for op in outcome.plan.operations:
        day(op.cms_id).operations.append(op)
    for q in outcome.plan.quarantined:
        day(q.cms_id).quarantined.append(q)
    for r in outcome.result.results if outcome.result is not None else []:
        day(r.cms_id).results.append(r)
    for item in outcome_errors(outcome):
        day(item.cms_id).errors.append(item)
    for cms_id in outcome.skipped_ids:
        day(cms_id).skipped_existing += 1
    for cms_id in outcome.resumed_ids:
        day(cms_id).resumed += 1
    return {pk: day_metadata(outcome.plan, d, links) for pk, d in days.items()}


def day_metadata(plan: Plan, day: _Day, links: Mapping[str, dg.MetadataValue]) -> dict[str, dg.MetadataValue]:
    own_plan = replace(plan, operations=day.operations, quarantined=day.quarantined)
    counts: Counter[str] = Counter(r.outcome for r in day.results)
    attempted = sum(counts.get(k, 0) for k in OUTCOMES if k != SKIPPED)
    failed = [r for r in day.results if r.outcome == FAILED]
    meta: dict[str, dg.MetadataValue] = {
        **links,
        PLANNED: dg.MetadataValue.int(len(day.operations)),
        **{PLAN_COUNT_PREFIX + kind: dg.MetadataValue.int(n) for kind, n in own_plan.counts().items()},
        PLAN_SUMMARY: dg.MetadataValue.md(own_plan.summary_markdown()),
        SKIPPED_EXISTING: dg.MetadataValue.int(day.skipped_existing),
        RESUMED: dg.MetadataValue.int(day.resumed),
        **{name: dg.MetadataValue.int(counts.get(name, 0)) for name in OUTCOMES},
        SUCCESS_RATE: dg.MetadataValue.float((attempted - len(failed)) / attempted if attempted else 1.0),
        STRIPE_WRITE_ATTEMPTS: dg.MetadataValue.int(sum(r.attempts for r in day.results)),
        FAILURES_TABLE: dg.MetadataValue.md(
            failures_markdown([(r.cms_id, f"[{r.severity.value if r.severity else '?'}] {r.error}") for r in failed])
        ),
        MAX_UPDATED_AT: dg.MetadataValue.text(day.newest),
    }
    # The day's own errors: each partition lists its rows', the run report joins them.
    meta.update({key: dg.MetadataValue.json(value) for key, value in error_metadata(day.errors).items()})
    return meta


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"stripe", "python"},
    pool=STRIPE_POOL,
    retry_policy=RETRY_POLICY,
    check_specs=[no_failed_writes_check],
)
def stripe_products(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: dg.ResourceParam[CatalogSource],
    validated_products: pd.DataFrame,
) -> dg.MaterializeResult:
    """Creates, updates, reprices, archives and reactivates Stripe products so they match the day's
    valid CMS rows, exactly once; writes the Stripe ids back to the CMS. Dry-run saves the plan only."""
    keys = partition_keys(context) or [context.partition_key]
    label = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    if not settings.dry_run:
        stripe.check_writes_allowed(settings.live_allowed)
    with step_log(context.run, "stripe_products") as log_path:
        return _sync(context, settings, stripe, catalog, validated_products, keys, label, log_path)


def _own_records(
    keys: Sequence[str], run_wide: Mapping[str, dg.MetadataValue], per_day: Mapping[str, Mapping[str, dg.MetadataValue]]
) -> list[Materialized]:
    """This step's records as the instance will hold them (each partition's own metadata, and the run's
    figures once, without a partition), so the report is built like the CLI's, from metadata."""
    return [
        *(Materialized(STRIPE_ASSET, pk, plain(per_day[pk])) for pk in keys),
        Materialized(STRIPE_ASSET, None, plain(run_wide)),
    ]


def _sync(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: CatalogSource,
    validated_products: pd.DataFrame,
    keys: list[str],
    label: str,
    log_path: Any,
) -> dg.MaterializeResult:
    products = frame_to_products(validated_products)
    span = current_span()
    root = root_run_id(context)
    done = read_checkpoints(context.instance, STRIPE_PRODUCTS, keys, root)
    account_id, mode = plan_stamp(context.log, stripe) if settings.dry_run else (None, None)
    outcome = stripe.sync(
        products,
        guarded_writer(catalog, settings.live_allowed),
        SyncOptions(
            run_id=context.run.run_id,
            label=label,
            dry_run=settings.dry_run,
            skip_existing=settings.skip_existing,
            checkpoint_interval=settings.checkpoint_interval,
            reports_dir=settings.reports_dir,
            account_id=account_id,
            mode=mode,
            root_run_id=root,
        ),
        allow_live=settings.live_allowed,
        checkpoint_done=done,
        journal=InstanceJournal(context.instance, root),
        log=context.log.info,
        on_checkpoint=checkpoint_logger(context, products, span, keys[-1], root),
    )
    if outcome.writeback_conflicts or outcome.writeback_missing:
        context.log.warning(
            f"{len(outcome.writeback_conflicts)} rows were re-linked by an editor and {len(outcome.writeback_missing)} "
            "deleted during the run: their sync columns were left alone (the next run plans them again): "
            + ", ".join((outcome.writeback_conflicts + outcome.writeback_missing)[:20])
        )
    meta = outcome_metadata(outcome, settings.dry_run)
    run_wide = run_metadata(outcome, settings.dry_run)
    links: dict[str, dg.MetadataValue] = {DRY_RUN: dg.MetadataValue.bool(settings.dry_run)}
    if outcome.plan_path:
        links[PLAN_PATH] = dg.MetadataValue.path(outcome.plan_path)
    resolved_log = str(pathlib.Path(log_path).resolve())
    # The report's file is named before it is written, so every partition's metadata can link it
    # from the start and is computed once (for the report and for the result).
    report_file = report_file_for(context.run.run_id).resolve()
    links[RUN_REPORT_PATH] = dg.MetadataValue.path(str(report_file))
    links[LOG_PATH] = dg.MetadataValue.path(resolved_log)
    for target in (meta, run_wide):
        target.update({RUN_REPORT_PATH: links[RUN_REPORT_PATH], LOG_PATH: links[LOG_PATH]})

    def report(status: str, records: Sequence[Materialized]) -> None:
        write_run_report(
            context.instance, context.run, status=status, extra=records, log_path=resolved_log, path=report_file
        )

    # A stopped step materializes nothing: its figures are its failure's metadata (`meta`), whole.
    stopped = [Materialized(STRIPE_ASSET, None, plain(meta))]
    if outcome.result is not None and outcome.result.critical:
        # CRITICAL stops the run and is not retried here: the breaker has already waited out the
        # failures. Re-execute (or `cms-stripe resume`) once Stripe answers; the checkpoints above
        # let it skip every product that finished.
        report("failed", stopped)
        raise dg.Failure(description=outcome.result.critical, metadata=meta, allow_retries=False)
    if outcome.writeback_failure_message:
        # Stripe is right and the CMS is behind: fail the step so nobody mistakes the run for done.
        report("failed", stopped)
        raise dg.Failure(description=outcome.writeback_failure_message, metadata=meta, allow_retries=False)
    per_day = per_day_metadata(outcome, products, span, keys, links)
    report("success", _own_records(keys, run_wide, per_day))
    own = partition_metadata_result(context, per_day, {})
    log_run_metadata(context, STRIPE_PRODUCTS, run_wide, "Stripe figures")
    return dg.MaterializeResult(metadata=own, check_results=[failed_writes_result(outcome.failures)])
