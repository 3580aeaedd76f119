"""Stripe products: plan and apply the partition's rows with the engine, checkpointing as it goes."""

import pathlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    RETRY_POLICY,
    add_partition_metadata,
    partition_keys,
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
    STRIPE_WRITES,
    SUCCESS_RATE,
    WRITEBACK_CONFLICTS,
    WRITEBACK_FAILED,
    WRITTEN_BACK,
)
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.frames import frame_to_products
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
from cms_stripe.reporting import plain, step_log, write_run_report
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


def outcome_metadata(outcome: SyncOutcome, dry_run: bool) -> dict[str, dg.MetadataValue]:
    counts = outcome.counts
    attempted = sum(counts.get(k, 0) for k in OUTCOMES if k != SKIPPED)
    meta: dict[str, dg.MetadataValue] = {
        DRY_RUN: dg.MetadataValue.bool(dry_run),
        PLANNED: dg.MetadataValue.int(len(outcome.plan.operations)),
        SKIPPED_EXISTING: dg.MetadataValue.int(outcome.skipped_existing),
        RESUMED: dg.MetadataValue.int(outcome.resumed),
        SUCCESS_RATE: dg.MetadataValue.float(outcome.succeeded / attempted if attempted else 1.0),
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
    for kind, n in outcome.plan.counts().items():
        meta[PLAN_COUNT_PREFIX + kind] = dg.MetadataValue.int(n)
    for name in OUTCOMES:
        meta[name] = dg.MetadataValue.int(counts.get(name, 0))
    if outcome.plan_path:
        meta[PLAN_PATH] = dg.MetadataValue.path(outcome.plan_path)
    for key, value in error_metadata(outcome_errors(outcome)).items():
        meta[key] = dg.MetadataValue.json(value)
    failures = outcome.failures
    if failures:
        meta[FAILURES_TABLE] = dg.MetadataValue.md(
            "| cms id | error |\n|---|---|\n" + "\n".join(f"| {i} | {e} |" for i, e in failures[:100])
        )
    return meta


def per_day_counts(
    outcome: SyncOutcome, products: Sequence[CmsProduct], span: PartitionSpan
) -> dict[str, dict[str, dg.MetadataValue]]:
    day_by_id = {p.id: span.key_for(p.updated_at) for p in products}
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    newest: dict[str, str] = {}
    for p in products:
        d = day_by_id[p.id]
        newest[d] = max(newest.get(d, ""), p.updated_at.isoformat() if p.updated_at else "")
    if outcome.result is not None:
        for r in outcome.result.results:
            day = day_by_id.get(r.cms_id)
            if day:
                per_day[day][r.outcome] += 1
    errors: dict[str, list[ErrorItem]] = defaultdict(list)
    for item in outcome_errors(outcome):
        errors[day_by_id.get(item.cms_id, "")].append(item)
    return {d: day_metadata(per_day[d], newest[d], errors.get(d, [])) for d in newest}


def day_metadata(
    counts: Mapping[str, int], newest: str, errors: Sequence[ErrorItem] = ()
) -> dict[str, dg.MetadataValue]:
    attempted = sum(counts.get(k, 0) for k in OUTCOMES if k != SKIPPED)
    ok = attempted - counts.get(FAILED, 0)
    meta: dict[str, dg.MetadataValue] = {name: dg.MetadataValue.int(counts.get(name, 0)) for name in OUTCOMES}
    meta[SUCCESS_RATE] = dg.MetadataValue.float(ok / attempted if attempted else 1.0)
    meta[MAX_UPDATED_AT] = dg.MetadataValue.text(newest)
    # The day's own errors: in a range run they replace the run's on each partition.
    meta.update({key: dg.MetadataValue.json(value) for key, value in error_metadata(errors).items()})
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
    """This step's materializations as the instance will record them (run-wide values, each
    partition's own numbers over them), so the report is built like the CLI's, from metadata."""
    if len(keys) <= 1:
        return [Materialized(STRIPE_ASSET, keys[0] if keys else None, plain(run_wide))]
    empty = day_metadata({}, "")
    return [Materialized(STRIPE_ASSET, pk, plain({**run_wide, **per_day.get(pk, empty)})) for pk in keys]


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
    per_day = per_day_counts(outcome, products, span)

    def report(status: str) -> None:
        written = write_run_report(
            context.instance,
            context.run,
            status=status,
            extra=_own_records(keys, meta, per_day),
            log_path=str(pathlib.Path(log_path).resolve()),
        )
        meta[RUN_REPORT_PATH] = dg.MetadataValue.path(written.report_path or "")
        meta[LOG_PATH] = dg.MetadataValue.path(str(pathlib.Path(log_path).resolve()))

    if outcome.result is not None and outcome.result.critical:
        # CRITICAL stops the run and is not retried here: the breaker has already waited out the
        # failures. Re-execute (or `cms-stripe resume`) once Stripe answers; the checkpoints above
        # let it skip every product that finished.
        report("failed")
        raise dg.Failure(description=outcome.result.critical, metadata=meta, allow_retries=False)
    if outcome.writeback_failure_message:
        # Stripe is right and the CMS is behind: fail the step so nobody mistakes the run for done.
        report("failed")
        raise dg.Failure(description=outcome.writeback_failure_message, metadata=meta, allow_retries=False)
    add_partition_metadata(context, per_day, day_metadata({}, ""))
    report("success")
    return dg.MaterializeResult(metadata=meta, check_results=[failed_writes_result(outcome.failures)])
