"""The CMS rows of a day (or a range of days) of `updated_at`."""

import dagster as dg

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    FRAMES_IO_MANAGER,
    RETRY_POLICY,
    group_by_partition,
    partition_metadata_result,
    run_partition_keys,
)
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    CMS_POOL,
    GROUP,
    MAX_UPDATED_AT,
    ROWS,
    ROWS_BEFORE_START,
    ROWS_IN_FUTURE,
    ROWS_UNDATED,
    UNREADABLE_ROWS,
)
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.days import PartitionSpan, utc_day
from cms_stripe.core.frames import products_to_frame
from cms_stripe.partitions import current_span, daily_partitions


def edge_counts(rows: list[CmsProduct], span: PartitionSpan) -> dict[str, int]:
    """How many rows a partition holds only because its edge is open (so the UI says where they are)."""
    days = [utc_day(p.updated_at).isoformat() for p in rows if p.updated_at is not None]
    before = sum(1 for day in days if day < span.first)
    future = sum(1 for day in days if day > span.last)
    return {
        ROWS_BEFORE_START: before,
        ROWS_UNDATED: sum(1 for p in rows if p.updated_at is None),
        ROWS_IN_FUTURE: future,
        UNREADABLE_ROWS: sum(1 for p in rows if p.read_errors),
    }


def partition_metadata(rows: list[CmsProduct], span: PartitionSpan) -> dict[str, dg.MetadataValue]:
    newest = max((p.updated_at for p in rows if p.updated_at), default=None)
    meta: dict[str, dg.MetadataValue] = {
        ROWS: dg.MetadataValue.int(len(rows)),
        MAX_UPDATED_AT: dg.MetadataValue.text(newest.isoformat() if newest else ""),
    }
    meta.update({k: dg.MetadataValue.int(v) for k, v in edge_counts(rows, span).items()})
    return meta


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
    """CMS `products` rows whose `updated_at` falls in the partition's day(s), read with keyset pagination.

    The first partition also holds rows updated before it and rows without a readable `updated_at`;
    the last (today) also holds rows stamped in the future: every row of the table has one partition.
    """
    keys = run_partition_keys(context)
    span = current_span()
    start, end, undated = span.read_bounds(keys[0], keys[-1])
    products = list(catalog.read_window(start, end, include_undated=undated))
    by_partition = group_by_partition(products, lambda p: p.updated_at, span)
    own = partition_metadata_result(
        context,
        {pk: partition_metadata(rows, span) for pk, rows in by_partition.items()},
        partition_metadata([], span),
    )
    lo = start.isoformat() if start else "the beginning"
    hi = end.isoformat() if end else "the end of time"
    context.log.info(
        f"read {len(products)} CMS rows with updated_at in [{lo}, {hi})" + (", and undated rows" if undated else "")
    )
    return dg.MaterializeResult(value=products_to_frame(products), metadata=own)
