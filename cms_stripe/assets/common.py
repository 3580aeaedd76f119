"""Small helpers shared by the assets: policies, partition windows, per-partition metadata."""

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import dagster as dg

try:  # Dagster's own metadata accumulator: see _add_partitions_metadata (a private module that may move).
    from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator
except ImportError:  # pragma: no cover - the public calls are made instead
    AssetMetadataHandle = OutputMetadataAccumulator = None  # type: ignore[assignment,misc]

from cms_stripe.cms.source import CatalogSource
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.days import PartitionSpan
from cms_stripe.core.validation import holder_queries

T = TypeVar("T")

# Transient CMS/Stripe outages: retry the step a few times, spaced out, with jitter so parallel
# partitions do not retry in lockstep.
RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# A range backfill is one run: one Stripe writer, one state read per 100 products, one progress line.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
FRAMES_IO_MANAGER = "frames_io_manager"


def run_partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    """Every partition key of the run (one, or a range)."""
    if context.has_partition_key_range:
        return list(context.partition_keys)
    return [context.partition_key]


def partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range else []


def group_by_partition(
    items: Iterable[T], key: Callable[[T], datetime | None], span: PartitionSpan
) -> dict[str, list[T]]:
    """Items by the partition their `updated_at` belongs to (open edges included)."""
    out: dict[str, list[T]] = defaultdict(list)
    for item in items:
        out[span.key_for(key(item))].append(item)
    return out


def partition_metadata_result(
    context: dg.AssetExecutionContext,
    per_partition: Mapping[str, Mapping[str, Any]],
    empty: Mapping[str, Any],
) -> dict[str, Any]:
    """Give each partition of the run its own metadata (`empty` overlaid with its own numbers, so every
    key is there, zero on a day without rows) and return what the MaterializeResult carries.

    In a range run that is nothing: Dagster fills any key a partition's own dict lacks from the
    MaterializeResult's metadata, which would stamp run-wide values on every day of the range. In a
    single-partition run the partition's dict is the MaterializeResult's metadata."""
    keys = run_partition_keys(context)
    own = {pk: {**empty, **per_partition.get(pk, {})} for pk in keys}
    if len(keys) == 1:
        return own[keys[0]]
    if not _add_partitions_metadata(context, own):
        for pk in keys:
            context.add_asset_metadata(own[pk], partition_key=pk)
    return {}


def _add_partitions_metadata(context: dg.AssetExecutionContext, own: Mapping[str, Mapping[str, Any]]) -> bool:
    """What `add_asset_metadata(partition_key=...)` once per partition records, in one step.

    Each of those calls rebuilds Dagster's whole metadata accumulator (a checked copy of every entry
    so far) and lists every key of the run's range to check its partition: quadratic in the number of
    partitions (measured: 3,651 partitions took ~2 s per asset, 4 assets a run). The keys here are
    the run's own, so the check is moot. False when this Dagster keeps its accumulator elsewhere:
    the caller then makes the public calls."""
    if OutputMetadataAccumulator is None:
        return False
    try:
        step = context.op_execution_context._step_execution_context
        accumulator = step._metadata_accumulator
        if not isinstance(accumulator, OutputMetadataAccumulator):
            return False
        key = context.assets_def.key
        entries = dict(accumulator.per_output_metadata)
        for pk, metadata in own.items():
            handle = AssetMetadataHandle(asset_key=key, partition_key=pk)
            entries[handle] = {**entries.get(handle, {}), **metadata}
        step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=entries)
    except (AttributeError, TypeError):  # another Dagster: nothing was set, the public calls follow
        return False
    return True


def log_run_metadata(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, metadata: Mapping[str, Any], what: str
) -> None:
    """Figures of the whole run (constants.RUN_WIDE_KEYS, the whole run's tables): one observation of the
    asset without a partition, in the run's event log, so they are neither stamped on nor summed over
    its partitions. The run report reads them back (reporting.run_materializations)."""
    keys = run_partition_keys(context)
    label = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    context.log_event(
        dg.AssetObservation(
            asset_key=asset_key,
            description=f"{what} of run {context.run.run_id} ({label}): the whole run, not one partition",
            metadata=dict(metadata),
        )
    )


def link_holders(catalog: CatalogSource, products: Sequence[CmsProduct]) -> list[CmsProduct]:
    """Other CMS rows that may write to the Stripe products these rows write to: rows naming one of
    their products (stored or derived ids), and the rows whose own derived id one of them names."""
    stripe_ids, cms_ids = holder_queries(products)
    found = catalog.read_by_stripe_product_ids(stripe_ids, exclude_ids={p.id for p in products})
    if cms_ids:
        found += catalog.read_ids(cms_ids)
    return found
