"""Plan decisions from the CMS row and Stripe's state, as data (pure: no Stripe, no Dagster)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cms_stripe.core.catalog import STATUS_ARCHIVED, STATUS_DRAFT, CmsProduct
from cms_stripe.core.mapping import META_PREV_PRICE, Target, target_for
from cms_stripe.core.plan import Plan, build_plan
from cms_stripe.core.state import ProductState
from cms_stripe.core.validation import quarantine_updates
from cms_stripe_tests.test_core.conftest import row


def stripe_state(
    t: Target, *, active: bool = True, price: dict[str, Any] | None = None, meta: dict[str, str] | None = None
) -> ProductState:
    """The Stripe state a finished sync of `t` leaves (then tweaked by the caller)."""
    assert t.price is not None
    dp = price or {
        "id": "price_1",
        "object": "price",
        "active": True,
        "product": t.product_id,
        "lookup_key": t.lookup_key,
        "tax_behavior": "unspecified",
        "recurring": None,
        **t.price.params(),
    }
    if t.price.interval and "recurring" not in (price or {}):
        dp["recurring"] = {"interval": t.price.interval, "interval_count": t.price.effective_interval_count}
    product = {
        "id": t.product_id,
        "object": "product",
        "active": active,
        "updated": 1700000000,
        "default_price": dp,
        "metadata": {**t.metadata, **(meta or {})},
        **{k: v for k, v in t.fields.items() if v is not None},
    }
    return ProductState(t.product_id, product, dp)


def plan_one(p: CmsProduct, st: ProductState | None) -> Plan:
    return build_plan([p], {p.id: st} if st else {})


def test_create_when_absent() -> None:
    plan = plan_one(row("a"), None)
    assert plan.counts()["create"] == 1
    assert plan.operations[0].product_id == "prod_cms_a"


def test_noop_when_in_sync() -> None:
    p = row("a", recurring_interval="month")
    plan = plan_one(p, stripe_state(target_for(p)))
    assert [op.kind for op in plan.operations] == ["noop"]
    assert plan.writes == []


def test_update_carries_only_changed_fields() -> None:
    p = row("a")
    st = stripe_state(target_for(p))
    new = dataclasses.replace(p, title="Renamed", metadata={"sku": "A"})
    op = plan_one(new, st).operations[0]
    assert op.kind == "update"
    assert set(op.product_params) == {"name", "metadata"}
    assert op.product_params["name"] == "Renamed"
    # weight removed in the CMS -> cleared in Stripe; the content hash moves too.
    assert op.product_params["metadata"]["weight"] == ""
    assert "cms_hash" in op.product_params["metadata"]


def test_manual_drift_in_stripe_is_undone() -> None:
    p = row("a")
    st = stripe_state(target_for(p))
    assert st.product is not None
    st.product["name"] = "edited in dashboard"
    op = plan_one(p, st).operations[0]
    assert op.kind == "update" and op.product_params == {"name": "Product a"}


def test_reprice_on_amount_change() -> None:
    p = row("a")
    st = stripe_state(target_for(p))
    new = dataclasses.replace(p, price=Decimal("24.99"))
    op = plan_one(new, st).operations[0]
    assert op.kind == "reprice" and op.new_price and op.old_price_id == "price_1"
    assert "19.99 USD → 24.99 USD" in op.reason


def test_reprice_reuses_half_done_new_price() -> None:
    p = row("a")
    st = stripe_state(target_for(p))
    new = dataclasses.replace(p, price=Decimal("24.99"))
    t2 = target_for(new)
    assert t2.price is not None
    lp = {
        "id": "price_2",
        "active": True,
        "product": t2.product_id,
        "lookup_key": t2.lookup_key,
        "tax_behavior": "unspecified",
        "recurring": None,
        **t2.price.params(),
    }
    st2 = ProductState(st.product_id, st.product, st.default_price, lp)
    op = plan_one(new, st2).operations[0]
    assert op.kind == "reprice" and not op.new_price and op.reuse_price_id == "price_2"


def test_marker_finishes_interrupted_reprice() -> None:
    p = row("a")
    op = plan_one(p, stripe_state(target_for(p), meta={META_PREV_PRICE: "price_0"})).operations[0]
    assert op.kind == "reprice" and op.stale_price_ids == ("price_0",) and not op.new_price
    assert "metadata" not in op.product_params  # the marker is cleared only after archiving


def test_missing_lookup_key_is_set_without_new_price() -> None:
    p = row("a")
    t = target_for(p, lookup_keys=True)
    st = stripe_state(t)
    assert st.default_price is not None
    st.default_price["lookup_key"] = None
    op = build_plan([p], {p.id: st}, lookup_keys=True).operations[0]
    assert op.kind == "update" and op.set_lookup_price_id == "price_1" and not op.new_price
    assert op.target.lookup_key == t.lookup_key and (t.lookup_key or "").startswith("cms:a:")


def test_lookup_keys_off_leaves_an_existing_key_alone() -> None:
    """A catalog synced with lookup keys on, then the setting turned off: nothing to write."""
    p = row("a")
    st = stripe_state(target_for(p, lookup_keys=True))
    assert st.default_price is not None and st.default_price["lookup_key"]
    assert build_plan([p], {p.id: st}, lookup_keys=False).operations[0].kind == "noop"
    st.default_price["lookup_key"] = None
    assert build_plan([p], {p.id: st}, lookup_keys=False).operations[0].kind == "noop"


def test_archive_and_noop_for_inactive_rows() -> None:
    for status in (STATUS_DRAFT, STATUS_ARCHIVED):
        p = row("a", status=status)
        live = stripe_state(target_for(row("a")))
        assert plan_one(p, live).operations[0].kind == "archive"
        assert plan_one(p, None).operations[0].kind == "noop"  # never create an inactive product
    deleted = row("a", deleted_at=__import__("datetime").datetime(2026, 1, 1))
    assert plan_one(deleted, stripe_state(target_for(row("a")))).operations[0].kind == "archive"
    archived = stripe_state(target_for(row("a")), active=False)
    assert plan_one(row("a", status=STATUS_DRAFT), archived).operations[0].kind == "noop"


def test_reactivate() -> None:
    p = row("a")
    op = plan_one(p, stripe_state(target_for(p), active=False)).operations[0]
    assert op.kind == "reactivate" and op.product_params == {"active": True}


def test_existing_stripe_product_id() -> None:
    p = row("a", stripe_product_id="prod_Legacy1")
    assert plan_one(p, stripe_state(target_for(p))).operations[0].product_id == "prod_Legacy1"
    # Absent in Stripe: never silently create a second product for the row.
    missing = plan_one(p, None)
    assert missing.operations == [] and missing.quarantined[0].issues[0].code == "stripe_product_missing"


def test_two_rows_one_product_is_quarantined() -> None:
    a, b = row("a", stripe_product_id="prod_X"), row("b", stripe_product_id="prod_X")
    plan = build_plan([a, b], {"a": stripe_state(target_for(a)), "b": stripe_state(target_for(b))})
    assert [op.cms_id for op in plan.operations] == ["a"]
    assert [q.cms_id for q in plan.quarantined] == ["b"]
    assert plan.quarantined[0].issues[0].code == "stripe_product_shared"


def test_quarantined_rows_are_reported_not_planned() -> None:
    plan = build_plan([row("bad", price=Decimal("0.001")), row("good")], {})
    assert [op.cms_id for op in plan.operations] == ["good"]
    assert plan.quarantined[0].cms_id == "bad"
    upd = quarantine_updates(
        [(row("bad", price=Decimal("0.001")), list(plan.quarantined[0].issues))], datetime.now(UTC)
    )
    assert upd[0].sync_status == "quarantined" and "price" in (upd[0].sync_error or "")


def test_json_round_trip_and_summary() -> None:
    p = row("a", recurring_interval="year", currency="jpy", price=Decimal("1200"))
    rows = [p, row("b", price=Decimal("0.001")), row("c")]
    plan = build_plan(rows, {"a": stripe_state(target_for(row("a")))})
    again = Plan.from_json(plan.to_json())
    assert again.to_json() == plan.to_json()
    assert again.operations == plan.operations and again.quarantined == plan.quarantined
    md = plan.summary_markdown()
    assert "| reprice | 1 |" in md and "| create | 1 |" in md and "| b |" in md
    assert plan.counts() == {
        "create": 1,
        "update": 0,
        "reprice": 1,
        "archive": 0,
        "reactivate": 0,
        "noop": 0,
        "quarantined": 1,
    }
