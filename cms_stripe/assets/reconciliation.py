"""Reconciliation: CMS against Stripe, per partition and for the whole catalog (orphans too)."""

import pathlib
from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    RETRY_POLICY,
    log_run_metadata,
    partition_keys,
    partition_metadata_result,
)
from cms_stripe.checks import (
    CATALOG_RECONCILIATION,
    RECONCILIATION_REPORT,
    STRIPE_PRODUCTS,
    reconciliation_checks,
    reconciliation_results,
)
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    DRIFT,
    DUPLICATES,
    EDITED_IN_STRIPE,
    GROUP,
    MATCHED,
    MISSING,
    ORPHANS,
    QUARANTINED,
    REPORT_PATH,
    REPORT_TABLE,
    ROWS,
    STRIPE_POOL,
    STRIPE_PRODUCT_COUNT,
)
from cms_stripe.core import reconcile as rc
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.frames import frame_to_products
from cms_stripe.partitions import current_span, daily_partitions
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource


def write_report(report: rc.ReconciliationReport, reports_dir: str, name: str) -> str:
    root = pathlib.Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.json"
    path.write_text(report.to_json())
    return str(path)


def report_metadata(report: rc.ReconciliationReport, path: str) -> dict[str, dg.MetadataValue]:
    return {
        **partition_counts(report),
        REPORT_PATH: dg.MetadataValue.path(path),
        REPORT_TABLE: dg.MetadataValue.md(report.to_markdown()),
    }


def partition_counts(report: rc.ReconciliationReport) -> dict[str, dg.MetadataValue]:
    counts = report.counts()
    return {
        ORPHANS: dg.MetadataValue.int(counts[rc.ORPHAN]),
        ROWS: dg.MetadataValue.int(len(report.rows)),
        MATCHED: dg.MetadataValue.int(counts[rc.MATCHED]),
        MISSING: dg.MetadataValue.int(counts[rc.MISSING]),
        DRIFT: dg.MetadataValue.int(counts[rc.DRIFT]),
        DUPLICATES: dg.MetadataValue.int(counts[rc.DUPLICATE]),
        EDITED_IN_STRIPE: dg.MetadataValue.int(report.edited_in_stripe()),
        QUARANTINED: dg.MetadataValue.int(counts[rc.QUARANTINED]),
    }


def reconcile_ids(
    catalog: CatalogSource, stripe: StripeResource, cms_ids: Sequence[str], scope: str
) -> tuple[rc.ReconciliationReport, list[CmsProduct]]:
    """Re-read the rows (the run's write-back changed them) and the Stripe products behind them."""
    products = catalog.read_ids(list(cms_ids))
    listed = stripe.list_products(rc.candidate_product_ids(products))
    return rc.reconcile(products, listed, scope=scope), products


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"stripe", "json"},
    # Reads Stripe: it shares the account-wide budget with the writer, so it queues in the same pool.
    pool=STRIPE_POOL,
    retry_policy=RETRY_POLICY,
    deps=[STRIPE_PRODUCTS],
    check_specs=reconciliation_checks(RECONCILIATION_REPORT),
)
def reconciliation_report(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    catalog: dg.ResourceParam[CatalogSource],
    stripe: StripeResource,
    raw_cms_products: pd.DataFrame,
) -> dg.MaterializeResult:
    """Each CMS row of the partition against its Stripe product: matched, missing, drifted or duplicated.

    The rows are those the run read (their `updated_at` may have moved since: Supabase's trigger fires
    on our write-back), re-read by id."""
    keys = partition_keys(context) or [context.partition_key]
    label = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    ids = [str(i) for i in raw_cms_products["id"].tolist()]
    report, _ = reconcile_ids(catalog, stripe, ids, scope=f"partition {label}")
    span = current_span()
    day_of_id = {p.id: span.key_for(p.updated_at) for p in frame_to_products(raw_cms_products)}
    per_day = {pk: rc.ReconciliationReport(scope=f"partition {pk}") for pk in keys}
    for row in report.rows:
        # A row whose day is not one of the run's (midnight passed mid-run) counts on its last day.
        per_day.get(day_of_id.get(row.cms_id or "", ""), per_day[keys[-1]]).rows.append(row)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_report(report, settings.reports_dir, f"reconciliation-{label}-{stamp}")
    # Each partition: its own rows' counts and table, and the link to the run's file (all its days).
    own = partition_metadata_result(
        context,
        {
            day: {
                **partition_counts(r),
                REPORT_PATH: dg.MetadataValue.path(path),
                REPORT_TABLE: dg.MetadataValue.md(r.to_markdown()),
            }
            for day, r in per_day.items()
        },
        {},
    )
    if len(keys) > 1:
        log_run_metadata(
            context,
            RECONCILIATION_REPORT,
            {REPORT_PATH: dg.MetadataValue.path(path), REPORT_TABLE: dg.MetadataValue.md(report.to_markdown())},
            "reconciliation",
        )
    counts = report.counts()
    context.log.info(f"reconciliation {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return dg.MaterializeResult(
        metadata=own,
        check_results=reconciliation_results(
            RECONCILIATION_REPORT,
            drift=counts[rc.DRIFT] + counts[rc.MISSING],
            duplicates=counts[rc.DUPLICATE],
            edited_in_stripe=report.edited_in_stripe(),
        ),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"stripe", "json"},
    pool=STRIPE_POOL,
    retry_policy=RETRY_POLICY,
    check_specs=reconciliation_checks(CATALOG_RECONCILIATION),
)
def catalog_reconciliation_report(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    catalog: dg.ResourceParam[CatalogSource],
    stripe: StripeResource,
) -> dg.MaterializeResult:
    """The whole CMS against every Stripe product of the account (List, 100 per page): also finds
    orphans, Stripe products whose `cms_id` the CMS no longer has."""
    products = list(catalog.read_all())
    listed = list(stripe.iter_all_products())
    report = rc.reconcile(products, listed, scope="catalog", orphans=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_report(report, settings.reports_dir, f"reconciliation-catalog-{stamp}")
    counts = report.counts()
    context.log.info("catalog reconciliation: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return dg.MaterializeResult(
        metadata={**report_metadata(report, path), STRIPE_PRODUCT_COUNT: dg.MetadataValue.int(len(listed))},
        check_results=reconciliation_results(
            CATALOG_RECONCILIATION,
            drift=counts[rc.DRIFT] + counts[rc.MISSING],
            duplicates=counts[rc.DUPLICATE],
            orphans=counts[rc.ORPHAN],
            edited_in_stripe=report.edited_in_stripe(),
        ),
    )
