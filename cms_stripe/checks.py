"""Asset checks. They are evaluated inside the asset that produces the numbers (one pass over the
data, and correct for single-run partition ranges), declared here so severities live in one place.

- validation rate: WARN; bad rows are already quarantined with a reason, a human should look.
- failed Stripe writes: ERROR and blocking; reconciliation of a half-written partition is noise.
- reconciliation drift: WARN (someone may have edited Stripe by hand); duplicates: ERROR.
"""

from collections.abc import Sequence

import dagster as dg

from cms_stripe.constants import (
    CHECK_CHECKED,
    CHECK_NO_DRIFT,
    CHECK_NO_DUPLICATES,
    CHECK_NO_FAILED_WRITES,
    CHECK_RATE,
    CHECK_SAMPLE,
    CHECK_THRESHOLD,
    CHECK_VALID,
    CHECK_VALIDATION_RATE,
    DRIFT,
    DUPLICATES,
    EDITED_IN_STRIPE,
    FAILED,
    ORPHANS,
)

VALIDATED_PRODUCTS = dg.AssetKey("validated_products")
STRIPE_PRODUCTS = dg.AssetKey("stripe_products")
RECONCILIATION_REPORT = dg.AssetKey("reconciliation_report")
CATALOG_RECONCILIATION = dg.AssetKey("catalog_reconciliation_report")

validation_rate_check = dg.AssetCheckSpec(
    CHECK_VALIDATION_RATE,
    asset=VALIDATED_PRODUCTS,
    description="Share of live CMS rows that pass validation is at least the configured threshold (95 %).",
)
no_failed_writes_check = dg.AssetCheckSpec(
    CHECK_NO_FAILED_WRITES,
    asset=STRIPE_PRODUCTS,
    blocking=True,
    description="Every planned Stripe operation succeeded; blocks reconciliation otherwise.",
)


def reconciliation_checks(asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(CHECK_NO_DRIFT, asset=asset, description="No CMS row differs from its Stripe product."),
        dg.AssetCheckSpec(
            CHECK_NO_DUPLICATES, asset=asset, description="No CMS row has more than one active Stripe product."
        ),
    ]


def validation_rate_result(valid: int, total: int, threshold: float) -> dg.AssetCheckResult:
    rate = valid / total if total else 1.0
    return dg.AssetCheckResult(
        check_name=CHECK_VALIDATION_RATE,
        asset_key=VALIDATED_PRODUCTS,
        passed=rate >= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            CHECK_RATE: dg.MetadataValue.float(rate),
            CHECK_THRESHOLD: dg.MetadataValue.float(threshold),
            CHECK_VALID: dg.MetadataValue.int(valid),
            CHECK_CHECKED: dg.MetadataValue.int(total),
        },
    )


def failed_writes_result(failures: Sequence[tuple[str, str]]) -> dg.AssetCheckResult:
    """`failures`: (cms id, reason) for every product whose Stripe write did not succeed."""
    sample = "\n".join(f"- `{cms_id}`: {reason}" for cms_id, reason in failures[:20]) or "none"
    return dg.AssetCheckResult(
        check_name=CHECK_NO_FAILED_WRITES,
        asset_key=STRIPE_PRODUCTS,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={FAILED: dg.MetadataValue.int(len(failures)), CHECK_SAMPLE: dg.MetadataValue.md(sample)},
    )


def reconciliation_results(
    asset: dg.AssetKey, drift: int, duplicates: int, orphans: int = 0, edited_in_stripe: int = 0
) -> list[dg.AssetCheckResult]:
    """`edited_in_stripe`: the part of `drift` made in Stripe by hand (kept with STRIPE_DASHBOARD_EDITS=keep,
    undone by the next sync of the row otherwise) — shown so the WARN says who drifted."""
    return [
        dg.AssetCheckResult(
            check_name=CHECK_NO_DRIFT,
            asset_key=asset,
            passed=drift == 0 and orphans == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                DRIFT: dg.MetadataValue.int(drift),
                ORPHANS: dg.MetadataValue.int(orphans),
                EDITED_IN_STRIPE: dg.MetadataValue.int(edited_in_stripe),
            },
        ),
        dg.AssetCheckResult(
            check_name=CHECK_NO_DUPLICATES,
            asset_key=asset,
            passed=duplicates == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={DUPLICATES: dg.MetadataValue.int(duplicates)},
        ),
    ]
