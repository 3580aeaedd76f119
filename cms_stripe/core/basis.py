"""What a planned operation was decided from, recorded in the plan so `apply` can tell whether it still holds.

A reviewed plan is applied later, possibly much later, by someone who trusts that what they read is
what gets written. Each operation therefore carries the inputs of its decision: the CMS row (its
content hash and the sync columns that link it to Stripe) and the Stripe objects the planner read
(the product's `updated`, every field the planner compares, its default price's id and terms). Apply
re-reads the same things and compares them with these snapshots; any difference means the decision
may no longer be right, and the operation is refused rather than written.

Snapshots are plain JSON values, so a plan compares equal to itself after a round trip through a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cms_stripe.core.catalog import CmsProduct, content_hash
from cms_stripe.core.mapping import PRODUCT_FIELDS
from cms_stripe.core.state import ProductState


def product_snapshot(product: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The product fields a plan decision depends on (None: the product did not exist)."""
    if product is None:
        return None
    out: dict[str, Any] = {
        "id": product.get("id"),
        # Stripe bumps `updated` on every change, including fields the sync does not manage: an edit
        # anyone made since the plan was read makes the plan stale for this product.
        "updated": product.get("updated"),
        "active": bool(product.get("active")),
        "metadata": dict(product.get("metadata") or {}),
    }
    for name in PRODUCT_FIELDS:
        value = product.get(name)
        if name == "tax_code" and isinstance(value, Mapping):
            value = value.get("id")
        if name == "images":
            value = list(value or [])
        out[name] = value
    dp = product.get("default_price")
    out["default_price"] = dp.get("id") if isinstance(dp, Mapping) else dp
    return out


def price_snapshot(price: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A price's identity and terms (amount, currency, recurrence and tax behavior are immutable in
    Stripe, but `active` and the lookup key are not)."""
    if price is None:
        return None
    recurring = price.get("recurring")
    return {
        "id": price.get("id"),
        "active": bool(price.get("active")),
        "currency": price.get("currency"),
        "unit_amount": price.get("unit_amount"),
        "recurring": (
            {"interval": recurring.get("interval"), "interval_count": recurring.get("interval_count") or 1}
            if isinstance(recurring, Mapping)
            else None
        ),
        "tax_behavior": price.get("tax_behavior") or "unspecified",
        "lookup_key": price.get("lookup_key"),
    }


def stripe_basis(state: ProductState) -> dict[str, Any]:
    """The Stripe side of a decision, as read for one row."""
    out: dict[str, Any] = {
        "product": product_snapshot(state.product),
        "default_price": price_snapshot(state.default_price),
    }
    if state.lookup_price is not None:
        # The planner chose to reuse this price; it must still be there, live, with these terms.
        out["reuse_price"] = price_snapshot(state.lookup_price)
    return out


def cms_basis(product: CmsProduct, chash: str | None = None) -> dict[str, Any]:
    """The CMS side of a decision: the synced content (by hash) and the row's link to Stripe.
    `chash`: the row's content hash when the caller has it already (it costs a JSON dump)."""
    return {
        "content_hash": content_hash(product) if chash is None else chash,
        "stripe_product_id": product.stripe_product_id,
        "stripe_price_id": product.stripe_price_id,
        "sync_hash": product.sync_hash,
    }


def decision_basis(product: CmsProduct, state: ProductState, chash: str | None = None) -> dict[str, Any]:
    return {"cms": cms_basis(product, chash), "stripe": stripe_basis(state)}
