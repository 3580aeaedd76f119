"""Validation: the pandera contract plus every Stripe rule, with a per-row quarantine."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from cms_stripe.assets.common import (
    BACKFILL_POLICY,
    FRAMES_IO_MANAGER,
    RETRY_POLICY,
    group_by_partition,
    link_holders,
    log_run_metadata,
    partition_metadata_result,
)
from cms_stripe.checks import validation_rate_check, validation_rate_result
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    CMS_POOL,
    DRY_RUN,
    GROUP,
    QUARANTINE_BY_CODE,
    QUARANTINE_TABLE,
    QUARANTINE_WRITE_BACK_ERROR,
    QUARANTINE_WRITTEN_BACK,
    QUARANTINED_ROWS,
    ROWS,
    VALID_ROWS,
    VALIDATED_ASSET,
    VALIDATION_RATE,
)
from cms_stripe.core import runlog
from cms_stripe.core.catalog import CmsProduct, WriteBackResult
from cms_stripe.core.errors import Severity
from cms_stripe.core.frames import ValidatedProducts, frame_to_products, products_to_frame
from cms_stripe.core.mapping import RowIssue
from cms_stripe.core.report import ErrorItem, error_metadata, quarantine_errors
from cms_stripe.core.settings import LiveKeyRefused, scrub
from cms_stripe.core.validation import Quarantine, md_cell, quarantine_reason, quarantine_updates, split_valid
from cms_stripe.partitions import current_span, daily_partitions
from cms_stripe.reporting import step_log
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource

ValidatedProductsType = pandera_schema_to_dagster_type(ValidatedProducts)
VALIDATED_KEY = dg.AssetKey(VALIDATED_ASSET)


def schema_failures(frame: pd.DataFrame) -> dict[int, list[RowIssue]]:
    """Row positions the pandera contract refuses, with the check and column. Our own rules should
    have caught them all; this keeps a frame-level schema error from ever failing the asset."""
    try:
        ValidatedProducts.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        out: dict[int, list[RowIssue]] = {}
        cases = exc.failure_cases
        whole_frame = False
        for case in cases.itertuples(index=False):
            index = getattr(case, "index", None)
            column = str(getattr(case, "column", None) or "row")
            check = str(getattr(case, "check", "schema"))
            if index is None or pd.isna(index):
                whole_frame = True
                continue
            out.setdefault(int(index), []).append(
                RowIssue("schema_check", column, f"pandera check {check!r} failed on {column}", Severity.HIGH)
            )
        if whole_frame and not out:
            # A failure not tied to a row (a missing column, a dtype): no row can be trusted.
            issue = RowIssue("schema_check", "frame", "the validated frame does not match its schema", Severity.HIGH)
            out = {i: [issue] for i in range(len(frame))}
        return out
    return {}


def quarantine_markdown(quarantined: Quarantine, limit: int = 100) -> str:
    if not quarantined:
        return "No row quarantined."
    lines = ["| cms id | severity | code | field | reason |", "|---|---|---|---|---|"]
    for p, issues in quarantined[:limit]:
        for i in issues:
            lines.append(
                f"| {md_cell(p.id)} | {i.severity.value} | {i.code} | {md_cell(i.field)} | {md_cell(i.message)} |"
            )
    if len(quarantined) > limit:
        lines.append(f"| … | | | | {len(quarantined) - limit} more rows |")
    return "\n".join(lines)


def day_metadata(
    rows: list[CmsProduct], quarantined: Quarantine, errors: list[ErrorItem], dry_run: bool
) -> dict[str, dg.MetadataValue]:
    """One partition's validation: its rows, its quarantine (table, codes, errors), its live rate."""
    live = sum(1 for p in rows if p.should_be_active)
    live_bad = sum(1 for p, _ in quarantined if p.should_be_active)
    codes = Counter(i.code for _, issues in quarantined for i in issues)
    return {
        ROWS: dg.MetadataValue.int(len(rows)),
        VALID_ROWS: dg.MetadataValue.int(len(rows) - len(quarantined)),
        QUARANTINED_ROWS: dg.MetadataValue.int(len(quarantined)),
        VALIDATION_RATE: dg.MetadataValue.float((live - live_bad) / live if live else 1.0),
        QUARANTINE_TABLE: dg.MetadataValue.md(quarantine_markdown(quarantined)),
        QUARANTINE_BY_CODE: dg.MetadataValue.json(dict(sorted(codes.items()))),
        DRY_RUN: dg.MetadataValue.bool(dry_run),
        **{k: dg.MetadataValue.json(v) for k, v in error_metadata(errors).items()},
    }


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
    with step_log(context.run, "validated_products"):
        return _validate(context, settings, catalog, raw_cms_products)


def _validate(
    context: dg.AssetExecutionContext,
    settings: SyncSettingsResource,
    catalog: CatalogSource,
    raw_cms_products: pd.DataFrame,
) -> dg.MaterializeResult:
    products = frame_to_products(raw_cms_products)
    valid, quarantined = split_valid(products, link_holders=link_holders(catalog, products))
    frame = products_to_frame(valid)
    refused = schema_failures(frame)
    if refused:
        quarantined += [(valid[i], issues) for i, issues in sorted(refused.items())]
        valid = [p for i, p in enumerate(valid) if i not in refused]
        frame = products_to_frame(valid)
    live = sum(1 for p in products if p.should_be_active)
    live_valid = live - sum(1 for p, _ in quarantined if p.should_be_active)

    written = WriteBackResult()
    write_failed = ""
    if quarantined and not settings.dry_run:
        writer = guarded_writer(catalog, settings.live_allowed)
        try:
            written = writer.write_back(quarantine_updates(quarantined, datetime.now(UTC)), run_id=context.run.run_id)
        except LiveKeyRefused:
            raise
        except Exception as exc:
            # The valid rows still sync; the quarantine is in this run's metadata and the next run retries it.
            write_failed = f"{type(exc).__name__}: {scrub(str(exc))}"[:500]
            context.log.error(f"[HIGH] writing the quarantine back to the CMS failed: {write_failed}")
    errors = quarantine_errors([(p.id, issues) for p, issues in quarantined])
    for item in errors:
        runlog.row_error(item.cms_id, item.code, item.severity, item.reason)
    for p, issues in quarantined[:20]:
        context.log.warning(f"quarantined {p.id!r}: {quarantine_reason(issues)}")
    if len(quarantined) > 20:
        context.log.warning(f"… and {len(quarantined) - 20} more quarantined rows (see the quarantine table)")

    span = current_span()
    by_partition = group_by_partition(products, lambda p: p.updated_at, span)
    bad_by_partition = group_by_partition(quarantined, lambda q: q[0].updated_at, span)
    errors_by_day: dict[str, list[ErrorItem]] = {}
    day_of = {p.id: span.key_for(p.updated_at) for p, _ in quarantined}
    for item in errors:
        errors_by_day.setdefault(day_of.get(item.cms_id, ""), []).append(item)
    per_day = {
        day: day_metadata(rows, bad_by_partition.get(day, []), errors_by_day.get(day, []), settings.dry_run)
        for day, rows in by_partition.items()
    }
    own = partition_metadata_result(context, per_day, day_metadata([], [], [], settings.dry_run))
    log_run_metadata(
        context,
        VALIDATED_KEY,
        {
            QUARANTINE_WRITTEN_BACK: dg.MetadataValue.int(written.written),
            QUARANTINE_WRITE_BACK_ERROR: dg.MetadataValue.text(write_failed),
            DRY_RUN: dg.MetadataValue.bool(settings.dry_run),
            QUARANTINE_TABLE: dg.MetadataValue.md(quarantine_markdown(quarantined)),
        },
        "quarantine write-back",
    )
    return dg.MaterializeResult(
        value=frame,
        metadata=own,
        check_results=[validation_rate_result(live_valid, live, settings.validation_threshold)],
    )
