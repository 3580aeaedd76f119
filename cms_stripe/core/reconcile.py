"""CMS against Stripe: which rows match, which are missing, drifted or duplicated, which Stripe
products are orphans. Pure: the caller reads Stripe (List with ids=[…], never Search, which lags)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cms_stripe.core.catalog import SYNC_QUARANTINED, CmsProduct, quarantine_hash
from cms_stripe.core.identity import derived_product_id
from cms_stripe.core.mapping import META_CMS_ID, META_HASH, target_for, validate_product
from cms_stripe.core.plan import edited_in_stripe

MATCHED = "matched"
MISSING = "missing"
DRIFT = "drift"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
ORPHAN = "orphan"
OUTCOMES = (MATCHED, MISSING, DRIFT, DUPLICATE, QUARANTINED, ORPHAN)


@dataclass(frozen=True)
class ReconcileRow:
    cms_id: str | None
    product_id: str | None
    outcome: str
    detail: str = ""
    # Drift made in Stripe (the Dashboard): the product still carries the hash of the CMS content
    # the sync last wrote, so the CMS did not change — someone changed Stripe.
    edited_in_stripe: bool = False


@dataclass
class ReconciliationReport:
    scope: str
    rows: list[ReconcileRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for row in self.rows:
            out[row.outcome] += 1
        return out

    def edited_in_stripe(self) -> int:
        return sum(1 for r in self.rows if r.edited_in_stripe)

    def problems(self) -> list[ReconcileRow]:
        return [r for r in self.rows if r.outcome in (MISSING, DRIFT, DUPLICATE, ORPHAN)]

    def to_json(self) -> str:
        return json.dumps(
            {"scope": self.scope, "counts": self.counts(), "rows": [asdict(r) for r in self.rows]}, indent=2
        )

    def to_markdown(self, limit: int = 50) -> str:
        counts = self.counts()
        lines = [
            f"**Reconciliation ({self.scope})**",
            "",
            "| outcome | count |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in counts.items()],
        ]
        problems = self.problems()
        if problems:
            lines += ["", "| cms id | Stripe product | outcome | detail |", "|---|---|---|---|"]
            lines += [
                f"| {r.cms_id or ''} | {r.product_id or ''} | {r.outcome} | {r.detail} |" for r in problems[:limit]
            ]
            if len(problems) > limit:
                lines.append(f"| … | | | {len(problems) - limit} more in the JSON report |")
        return "\n".join(lines)


def _default_price(product: Mapping[str, Any]) -> Mapping[str, Any] | None:
    price = product.get("default_price")
    return price if isinstance(price, Mapping) else None


def candidate_product_ids(products: Iterable[CmsProduct]) -> list[str]:
    """Every Stripe id a CMS row could be behind: its adopted id and the derived one (to see duplicates)."""
    ids: dict[str, None] = {}
    for p in products:
        if p.stripe_product_id and p.stripe_product_id.strip():
            ids[p.stripe_product_id.strip()] = None
        ids[derived_product_id(p.id)] = None
    return list(ids)


def _compare(p: CmsProduct, stripe_product: Mapping[str, Any] | None) -> tuple[str, str]:
    target = target_for(p)
    if not target.active:
        if stripe_product is not None and stripe_product.get("active"):
            return DRIFT, "should be archived (not published in the CMS) but is active in Stripe"
        return MATCHED, "archived" if stripe_product is not None else "not in Stripe (not published)"
    if stripe_product is None:
        return MISSING, "no Stripe product"
    if not stripe_product.get("active"):
        return DRIFT, "archived in Stripe but published in the CMS"
    differences = []
    metadata = stripe_product.get("metadata") or {}
    if metadata.get(META_HASH) != target.content_hash:
        differences.append("content hash")
    if target.price is not None and not target.price.matches(_default_price(stripe_product)):
        differences.append("default price")
    diff = target.product_diff(stripe_product)
    differences += sorted(k for k in diff if k != "metadata")
    if "metadata" in diff:
        differences.append("metadata")
    if differences:
        return DRIFT, "differs in " + ", ".join(dict.fromkeys(differences))
    return MATCHED, ""


def reconcile(
    products: Sequence[CmsProduct],
    stripe_products: Iterable[Mapping[str, Any]],
    *,
    scope: str,
    orphans: bool = False,
) -> ReconciliationReport:
    """Compare CMS rows with the Stripe products listed for them (by `candidate_product_ids`).

    With `orphans=True` the Stripe list is the whole account, and every active product carrying a
    `cms_id` the CMS does not have is reported (archived ones are already out of sale).
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    by_cms_id: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for sp in stripe_products:
        by_id[sp["id"]] = sp
        cms_id = (sp.get("metadata") or {}).get(META_CMS_ID)
        if cms_id:
            by_cms_id[cms_id].append(sp)

    report = ReconciliationReport(scope=scope)
    cms_ids = set()
    for p in products:
        cms_ids.add(p.id)
        reason = "; ".join(i.message for i in validate_product(p))
        if not reason and p.sync_status == SYNC_QUARANTINED and p.sync_hash == quarantine_hash(p):
            # Quarantined for what only the whole batch shows (a CMS id read twice, two rows naming one
            # Stripe product), and the row is unchanged since: its stored reason stands. Re-read by
            # id alone, it would otherwise look like a valid row whose product is missing.
            reason = p.sync_error or "quarantined by the sync"
        if reason:
            # A quarantined row keeps its Stripe product as it was: list it, so nobody thinks it is gone.
            linked = (p.stripe_product_id or "").strip() or None
            kept = f" (its Stripe product {linked} is left as it is)" if linked else ""
            report.rows.append(ReconcileRow(p.id, linked, QUARANTINED, reason + kept))
            continue
        target = target_for(p)
        live = [sp for sp in by_cms_id.get(p.id, []) if sp.get("active")]
        if len(live) > 1:
            ids = ", ".join(sorted(sp["id"] for sp in live))
            report.rows.append(ReconcileRow(p.id, target.product_id, DUPLICATE, f"{len(live)} active products: {ids}"))
            continue
        behind = by_id.get(target.product_id)
        outcome, detail = _compare(p, behind)
        edited = outcome == DRIFT and behind is not None and target.active and edited_in_stripe(target, behind)
        if edited:
            detail = f"edited in Stripe since the last sync (STRIPE_DASHBOARD_EDITS decides): {detail}"
        if outcome == MISSING and live and not target.adopted:
            # An orphan (made by hand, or by another tool) carries this row's cms_id: core/orphans.py.
            detail = (
                f"no Stripe product at {target.product_id}; {live[0]['id']} carries this row's cms_id "
                "(the next sync adopts it)"
            )
        elif outcome == MISSING and not target.adopted and by_cms_id.get(p.id):
            # Only archived ones carry the cms_id: not adopted (perhaps archived on purpose), a human decides.
            archived = ", ".join(sorted(sp["id"] for sp in by_cms_id[p.id]))
            detail = (
                f"no Stripe product at {target.product_id}; archived {archived} carries this row's cms_id "
                "(not adopted: the next sync creates the row's own product)"
            )
        report.rows.append(ReconcileRow(p.id, target.product_id, outcome, detail, edited))

    if orphans:
        for cms_id, sps in sorted(by_cms_id.items()):
            if cms_id not in cms_ids:
                for sp in sps:
                    if sp.get("active"):
                        report.rows.append(ReconcileRow(cms_id, sp["id"], ORPHAN, "active in Stripe; CMS row is gone"))
    return report
