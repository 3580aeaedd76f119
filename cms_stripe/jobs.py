"""Jobs: the partitioned sync (incremental and full strategies), the whole-catalog reconciliation,
and the unpartitioned selective sync."""

from typing import Any

import dagster as dg

from cms_stripe.apply_job import apply_plan_graph
from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.reconciliation import catalog_reconciliation_report, reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.rollback import rollback_job
from cms_stripe.selective import selective_sync_graph

SYNC_JOB = "cms_stripe_sync"
CATALOG_RECONCILIATION_JOB = "catalog_reconciliation"
SELECTIVE_SYNC_JOB = "selective_sync"
APPLY_PLAN_JOB = "apply_plan"

sync_job = dg.define_asset_job(
    SYNC_JOB,
    selection=dg.AssetSelection.assets(raw_cms_products, validated_products, stripe_products, reconciliation_report),
    description="CMS rows of the partition's days → validation → Stripe → reconciliation.",
)

catalog_reconciliation_job = dg.define_asset_job(
    CATALOG_RECONCILIATION_JOB,
    selection=dg.AssetSelection.assets(catalog_reconciliation_report),
    description="The whole CMS against the whole Stripe account, orphans included.",
)

selective_sync_job = selective_sync_graph.to_job(
    name=SELECTIVE_SYNC_JOB,
    description="Sync the CMS ids in MIGRATION_PRODUCT_IDS (or the run config) regardless of updated_at.",
)

apply_plan_job = apply_plan_graph.to_job(
    name=APPLY_PLAN_JOB,
    description="Apply a reviewed plan file (its path in the op config); operations whose inputs changed are refused.",
)

all_jobs: list[Any] = [
    sync_job,
    catalog_reconciliation_job,
    selective_sync_job,
    apply_plan_job,
    rollback_job,
]
