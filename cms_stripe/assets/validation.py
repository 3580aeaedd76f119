"""Validation: the pandera contract plus every Stripe rule, with a per-row quarantine."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    FRAMES_IO_MANAGER,
    RETRY_POLICY,
    add_partition_metadata,
    group_by_day,
)
from cms_stripe.checks import validation_rate_check, validation_rate_result
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    CMS_POOL,
    DRY_RUN,
    GROUP,
    QUARANTINE_TABLE,
    QUARANTINED_ROWS,
    ROWS,
    VALID_ROWS,
    VALIDATION_RATE,
)
from cms_stripe.core.catalog import SYNC_QUARANTINED, CmsProduct, SyncUpdate, content_hash
from cms_stripe.core.frames import ValidatedProducts, frame_to_products, products_to_frame
from cms_stripe.core.mapping import RowIssue, validate_product
from cms_stripe.partitions import daily_partitions
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource

ValidatedProductsType = pandera_schema_to_dagster_type(ValidatedProducts)


def split_valid(products: list[CmsProduct]) -> tuple[list[CmsProduct], list[tuple[CmsProduct, list[RowIssue]]]]:
    valid: list[CmsProduct] = []
    quarantined: list[tuple[CmsProduct, list[RowIssue]]] = []
    for p in products:
        issues = validate_product(p)
        if issues:
            quarantined.append((p, issues))
        else:
            valid.append(p)
    return valid, quarantined


def quarantine_reason(issues: list[RowIssue]) -> str:
    return "; ".join(f"{i.severity.value} {i.code} ({i.field}): {i.message}" for i in issues)[:2000]


def quarantine_updates(quarantined: list[tuple[CmsProduct, list[RowIssue]]], now: datetime) -> list[SyncUpdate]:
    """The write-back of quarantined rows. Rows already quarantined with the same reason and content
    are left alone, so a rerun writes nothing (and fires no updated_at trigger)."""
    updates = []
    for p, issues in quarantined:
        reason, chash = quarantine_reason(issues), content_hash(p)
        if p.sync_status == SYNC_QUARANTINED and p.sync_error == reason and p.sync_hash == chash:
            continue
        updates.append(
            SyncUpdate(
                id=p.id,
                sync_status=SYNC_QUARANTINED,
                stripe_product_id=p.stripe_product_id,
                stripe_price_id=p.stripe_price_id,
                sync_error=reason,
                synced_at=now,
                # The hash marks this content as handled: the change sensor ignores the write-back,
                # and an edit that fixes the row changes the hash and brings it back.
                sync_hash=chash,
            )
        )
    return updates


def quarantine_markdown(quarantined: list[tuple[CmsProduct, list[RowIssue]]], limit: int = 100) -> str:
    if not quarantined:
        return "No row quarantined."
    lines = ["| cms id | severity | code | field | reason |", "|---|---|---|---|---|"]
    for p, issues in quarantined[:limit]:
        for i in issues:
            message = i.message.replace("|", "\\|")
            lines.append(f"| {p.id} | {i.severity.value} | {i.code} | {i.field} | {message} |")
    if len(quarantined) > limit:
        lines.append(f"| … | | | | {len(quarantined) - limit} more rows |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"pandas", "pandera"},
    pool=CMS_POOL,
    retry_policy=RETRY_POLICY,
    io_manager_key=FRAMES_IO_MANAGER,
    dagster_type=ValidatedProductsType,
    check_specs=[validation_rate_check],
)
def validated_products(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    catalog: dg.ResourceParam[CatalogSource],
    raw_cms_products: pd.DataFrame,
) -> dg.MaterializeResult:
    """CMS rows that Stripe would accept; every other live row is quarantined with a reason and severity
    (visible here and written back as sync_status='quarantined'), never dropped silently."""
    products = frame_to_products(raw_cms_products)
    valid, quarantined = split_valid(products)
    live = sum(1 for p in products if p.should_be_active)
    live_valid = live - len(quarantined)

    written = 0
    if quarantined and not settings.dry_run:
        writer = guarded_writer(catalog, settings.live_allowed)
        written = writer.write_back(quarantine_updates(quarantined, datetime.now(UTC)), run_id=context.run.run_id)
    for p, issues in quarantined[:20]:
        context.log.warning(f"quarantined {p.id}: {quarantine_reason(issues)}")

    by_day = group_by_day(products, lambda p: p.updated_at)
    bad_by_day = Counter(p.updated_at.strftime("%Y-%m-%d") for p, _ in quarantined if p.updated_at)
    per_day = {}
    for day, rows in by_day.items():
        day_live = sum(1 for p in rows if p.should_be_active)
        bad = bad_by_day.get(day, 0)
        per_day[day] = {
            ROWS: dg.MetadataValue.int(len(rows)),
            VALID_ROWS: dg.MetadataValue.int(len(rows) - bad),
            QUARANTINED_ROWS: dg.MetadataValue.int(bad),
            VALIDATION_RATE: dg.MetadataValue.float((day_live - bad) / day_live if day_live else 1.0),
        }
    add_partition_metadata(
        context,
        per_day,
        {
            ROWS: dg.MetadataValue.int(0),
            VALID_ROWS: dg.MetadataValue.int(0),
            QUARANTINED_ROWS: dg.MetadataValue.int(0),
            VALIDATION_RATE: dg.MetadataValue.float(1.0),
        },
    )
    codes = Counter(i.code for _, issues in quarantined for i in issues)
    return dg.MaterializeResult(
        value=products_to_frame(valid),
        metadata={
            ROWS: dg.MetadataValue.int(len(products)),
            VALID_ROWS: dg.MetadataValue.int(len(valid)),
            QUARANTINED_ROWS: dg.MetadataValue.int(len(quarantined)),
            VALIDATION_RATE: dg.MetadataValue.float(live_valid / live if live else 1.0),
            QUARANTINE_TABLE: dg.MetadataValue.md(quarantine_markdown(quarantined)),
            "quarantine_by_code": dg.MetadataValue.json(dict(codes)),
            "quarantine_written_back": dg.MetadataValue.int(written),
            DRY_RUN: dg.MetadataValue.bool(settings.dry_run),
        },
        check_results=[validation_rate_result(live_valid, live, settings.validation_threshold)],
    )
