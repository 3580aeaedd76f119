"""The CMS rows of a day (or a range of days) of `updated_at`."""

import dagster as dg

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    FRAMES_IO_MANAGER,
    RETRY_POLICY,
    add_partition_metadata,
    group_by_day,
    window,
)
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import CMS_POOL, GROUP, MAX_UPDATED_AT, ROWS
from cms_stripe.core.frames import products_to_frame
from cms_stripe.partitions import daily_partitions


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"supabase", "postgres", "pandas"},
    pool=CMS_POOL,
    retry_policy=RETRY_POLICY,
    io_manager_key=FRAMES_IO_MANAGER,
)
def raw_cms_products(
    context: dg.AssetExecutionContext, catalog: dg.ResourceParam[CatalogSource]
) -> dg.MaterializeResult:
    """CMS `products` rows whose `updated_at` falls in the partition's day(s), read with keyset pagination."""
    start, end = window(context)
    products = list(catalog.read_window(start, end))
    frame = products_to_frame(products)
    by_day = group_by_day(products, lambda p: p.updated_at)
    add_partition_metadata(
        context,
        {
            day: {
                ROWS: dg.MetadataValue.int(len(rows)),
                MAX_UPDATED_AT: max(r.updated_at for r in rows if r.updated_at).isoformat(),
            }
            for day, rows in by_day.items()
        },
        {ROWS: dg.MetadataValue.int(0), MAX_UPDATED_AT: ""},
    )
    newest = max((p.updated_at for p in products if p.updated_at), default=None)
    context.log.info(f"read {len(products)} CMS rows with updated_at in [{start.isoformat()}, {end.isoformat()})")
    return dg.MaterializeResult(
        value=frame,
        metadata={
            ROWS: dg.MetadataValue.int(len(products)),
            MAX_UPDATED_AT: dg.MetadataValue.text(newest.isoformat() if newest else ""),
        },
    )
