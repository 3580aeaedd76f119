"""Reconciliation outcomes from CMS rows and Stripe product objects (as List returns them)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from cms_stripe.core import reconcile as rc
from cms_stripe.core.catalog import CmsProduct, quarantine_hash

# Content hashes of product(cms_id) as the sync stamps them: pinned, like the golden catalog's.
CMS_HASH = {
    "a": "308247e3a3e12b54989b81366283d6d6",
    "b": "79110a62c75713001cc9594430ac9892",
    "c": "11530c1e0468b3a4699e96f81f808daf",
    "zz": "f41d030de01666f99210ef4d68134864",
    "yy": "c9e6e98f20406efc749fd94438c5981a",
}
USD_19_99 = "e9b250726ced49b9"  # the price fingerprint of 19.99 USD, one-time


def stripe_object(cms_id: str, product_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """What Stripe holds after a correct sync of product(cms_id), written out (not from the mapping)."""
    obj: dict[str, Any] = {
        "id": product_id or f"prod_cms_{cms_id}",
        "object": "product",
        "active": True,
        "name": f"Item {cms_id}",
        "description": None,
        "images": [],
        "url": None,
        "shippable": None,
        "tax_code": None,
        "unit_label": None,
        "statement_descriptor": None,
        "metadata": {"cms_id": cms_id, "cms_hash": CMS_HASH[cms_id], "cms_price": USD_19_99},
        "default_price": {
            "id": f"price_{cms_id}",
            "object": "price",
            "active": True,
            "currency": "usd",
            "unit_amount": 1999,
            "recurring": None,
            "tax_behavior": "unspecified",
            "lookup_key": None,
        },
    }
    obj.update(overrides)
    return obj


def product(cms_id: str, **fields: Any) -> CmsProduct:
    base: dict[str, Any] = {"title": f"Item {cms_id}", "price": Decimal("19.99"), "currency": "usd"}
    base.update(fields)
    return CmsProduct(id=cms_id, **base)


def test_matched_missing_drift_quarantined():
    ok, gone, edited, bad, draft = (
        product("a"),
        product("b"),
        product("c"),
        product("d", title=None),
        product("e", status="draft"),
    )
    listed = [stripe_object("a"), stripe_object("c", name="Edited in the Dashboard")]
    report = rc.reconcile([ok, gone, edited, bad, draft], listed, scope="test")
    outcome = {r.cms_id: r.outcome for r in report.rows}
    assert outcome == {"a": rc.MATCHED, "b": rc.MISSING, "c": rc.DRIFT, "d": rc.QUARANTINED, "e": rc.MATCHED}
    drift = next(r for r in report.rows if r.cms_id == "c")
    assert "name" in drift.detail
    assert report.counts()[rc.DRIFT] == 1
    assert "| c |" in report.to_markdown()


def test_wrong_price_and_wrong_active_state_are_drift():
    p, archived = product("a", price=Decimal("25.00")), product("b", status="archived")
    listed = [stripe_object("a"), stripe_object("b")]
    report = rc.reconcile([p, archived], listed, scope="test")
    details = {r.cms_id: r.detail for r in report.rows if r.outcome == rc.DRIFT}
    assert "default price" in details["a"] and "content hash" in details["a"]
    assert "should be archived" in details["b"]


def test_duplicate_when_an_earlier_tool_product_and_ours_are_both_live():
    p = product("a", stripe_product_id="prod_legacy123")
    ours = stripe_object("a")  # derived id prod_cms_a
    legacy = stripe_object("a", product_id="prod_legacy123")
    assert {ours["id"], legacy["id"]} == {"prod_cms_a", "prod_legacy123"}
    assert set(rc.candidate_product_ids([p])) == {"prod_cms_a", "prod_legacy123"}
    report = rc.reconcile([p], [ours, legacy], scope="test")
    assert [r.outcome for r in report.rows] == [rc.DUPLICATE]


def test_orphans_only_for_the_whole_catalog_and_only_active():
    kept = product("a")
    orphan_live = stripe_object("zz")
    orphan_archived = stripe_object("yy", active=False)
    listed = [stripe_object("a"), orphan_live, orphan_archived]
    partition = rc.reconcile([kept], listed, scope="partition")
    assert rc.ORPHAN not in {r.outcome for r in partition.rows}
    catalog = rc.reconcile([kept], listed, scope="catalog", orphans=True)
    orphans = [r for r in catalog.rows if r.outcome == rc.ORPHAN]
    assert [(r.cms_id, r.product_id) for r in orphans] == [("zz", "prod_cms_zz")]


def test_a_batch_quarantine_stands_while_the_row_is_unchanged():
    """A row quarantined for what only the batch shows (its CMS id read twice) is valid on its own:
    re-read by id for the report, it is still quarantined with its stored reason, not 'missing'.
    Once edited (the stored hash no longer marks its content) it is judged afresh."""
    reason = "HIGH duplicate_cms_id (id): 2 CMS rows share the id 'a'"
    row = product("a", sync_status="quarantined", sync_error=reason)
    marked = dataclasses.replace(row, sync_hash=quarantine_hash(row))
    report = rc.reconcile([marked], [], scope="test")
    assert [(r.outcome, r.detail) for r in report.rows] == [(rc.QUARANTINED, reason)]

    edited = dataclasses.replace(marked, title="Item a, renamed")
    assert [r.outcome for r in rc.reconcile([edited], [], scope="test").rows] == [rc.MISSING]
