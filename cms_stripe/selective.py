"""Selective strategy: sync a list of CMS ids whatever their `updated_at`, as an unpartitioned op job
built from the same core as the assets (MIGRATION_PRODUCT_IDS, or the op config)."""

from datetime import UTC, datetime

import dagster as dg

from cms_stripe.assets.common import link_holders
from cms_stripe.assets.journal import InstanceJournal
from cms_stripe.assets.stripe_sync import outcome_metadata, plan_stamp
from cms_stripe.checks import failed_writes_result
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    DRY_RUN,
    PLAN_PATH,
    QUARANTINED_ROWS,
    RAW_ASSET,
    REPORT_TABLE,
    ROWS,
    STRIPE_ASSET,
    STRIPE_POOL,
    VALID_ROWS,
    VALIDATED_ASSET,
)
from cms_stripe.core import reconcile as rc
from cms_stripe.core import runlog
from cms_stripe.core.report import Materialized, error_metadata, quarantine_errors
from cms_stripe.core.settings import Settings
from cms_stripe.core.sync import SyncOptions
from cms_stripe.core.validation import quarantine_reason, quarantine_updates, split_valid
from cms_stripe.reporting import plain, step_log, write_run_report
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource


class SelectiveConfig(dg.Config):
    # Read once, when the code location loads, as the Launchpad's default.
    product_ids: list[str] = list(Settings.from_env().product_ids)


@dg.op(pool=STRIPE_POOL, tags={"kind": "stripe"})
def sync_selected_products(
    context: dg.OpExecutionContext,
    config: SelectiveConfig,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: dg.ResourceParam[CatalogSource],
) -> list[str]:
    """Read the listed rows, validate, plan and (unless dry-run) apply them."""
    with step_log(context.run, "sync_selected_products"):
        return _sync_selected(context, config, settings, stripe, catalog)


def _sync_selected(
    context: dg.OpExecutionContext,
    config: SelectiveConfig,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: CatalogSource,
) -> list[str]:
    if not config.product_ids:
        raise dg.Failure("no product ids: set MIGRATION_PRODUCT_IDS or the op config product_ids")
    if not settings.dry_run:
        stripe.check_writes_allowed(settings.live_allowed)
    products = catalog.read_ids(config.product_ids)
    missing = sorted(set(config.product_ids) - {p.id for p in products})
    if missing:
        context.log.warning(f"{len(missing)} ids are not in the CMS: {', '.join(missing[:20])}")
    # The same row-by-row validation as the validated_products asset, shared Stripe ids included.
    valid, quarantined = split_valid(products, link_holders=link_holders(catalog, products))
    quarantine = quarantine_errors([(p.id, issues) for p, issues in quarantined])
    for p, issues in quarantined:
        context.log.warning(f"quarantined {p.id!r}: {quarantine_reason(issues)}")
    for item in quarantine:
        runlog.row_error(item.cms_id, item.code, item.severity, item.reason)
    writer = guarded_writer(catalog, settings.live_allowed)
    if quarantined and not settings.dry_run:
        writer.write_back(quarantine_updates(quarantined, datetime.now(UTC)), run_id=context.run.run_id)
    account_id, mode = plan_stamp(context.log, stripe) if settings.dry_run else (None, None)
    outcome = stripe.sync(
        valid,
        writer,
        SyncOptions(
            run_id=context.run.run_id,
            label="selective",
            dry_run=settings.dry_run,
            skip_existing=settings.skip_existing,
            checkpoint_interval=settings.checkpoint_interval,
            reports_dir=settings.reports_dir,
            account_id=account_id,
            mode=mode,
            root_run_id=context.run.root_run_id or context.run.run_id,
        ),
        allow_live=settings.live_allowed,
        log=context.log.info,
        journal=InstanceJournal(context.instance, context.run.root_run_id or context.run.run_id),
    )
    if outcome.plan_path:
        context.add_output_metadata({PLAN_PATH: dg.MetadataValue.path(outcome.plan_path)})
    # An op job materializes no asset: the report is built from the same figures the assets record.
    records = [
        Materialized(RAW_ASSET, None, {ROWS: len(products)}),
        Materialized(
            VALIDATED_ASSET,
            None,
            {
                ROWS: len(products),
                VALID_ROWS: len(valid),
                QUARANTINED_ROWS: len(quarantined),
                DRY_RUN: settings.dry_run,
                **error_metadata(quarantine),
            },
        ),
        Materialized(STRIPE_ASSET, None, plain(outcome_metadata(outcome, settings.dry_run))),
    ]
    check = failed_writes_result(outcome.failures)
    failed = bool(outcome.result is not None and outcome.result.critical) or not check.passed
    write_run_report(
        context.instance,
        context.run,
        status="failed" if failed or outcome.writeback_failure_message else "success",
        extra=records,
    )
    if outcome.result is not None and outcome.result.critical:
        raise dg.Failure(description=outcome.result.critical)
    if not check.passed:
        raise dg.Failure(description=f"{len(outcome.failures)} Stripe writes failed", metadata=check.metadata)
    if outcome.writeback_failure_message:
        raise dg.Failure(description=outcome.writeback_failure_message, allow_retries=False)
    return [p.id for p in products]


@dg.op(tags={"kind": "stripe"})
def reconcile_selected_products(
    context: dg.OpExecutionContext,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: dg.ResourceParam[CatalogSource],
    cms_ids: list[str],
) -> None:
    products = catalog.read_ids(cms_ids)
    report = rc.reconcile(products, stripe.list_products(rc.candidate_product_ids(products)), scope="selective")
    counts = report.counts()
    context.log.info("reconciliation (selective): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not settings.dry_run and (counts[rc.DUPLICATE] or counts[rc.MISSING] or counts[rc.DRIFT]):
        raise dg.Failure(description="reconciliation found problems", metadata={REPORT_TABLE: report.to_markdown()})


@dg.graph
def selective_sync_graph() -> None:
    reconcile_selected_products(sync_selected_products())
