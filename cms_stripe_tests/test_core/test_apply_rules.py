"""The rules `cms-stripe apply` follows before writing a reviewed plan (pure: no Stripe, no Dagster).

A plan is refused whole when made for another account or mode, in another format version, or longer
ago than the limit; an operation is refused when its CMS row or Stripe product moved since the plan,
and recognised as already applied when Stripe holds its target."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cms_stripe.core.apply import (
    AlreadyApplied,
    PlanRefused,
    Proceed,
    Refusal,
    check_operation,
    check_plan,
    load_plan,
)
from cms_stripe.core.catalog import CmsProduct, content_hash
from cms_stripe.core.mapping import META_PREV_PRICE, target_for
from cms_stripe.core.plan import Operation, Plan, build_plan
from cms_stripe.core.state import ProductState
from cms_stripe_tests.test_core.conftest import row
from cms_stripe_tests.test_core.test_plan import stripe_state

MADE = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ACCOUNT = "acct_1ReviewedHere000"


def synced(p: CmsProduct) -> CmsProduct:
    """The row as a sync of its current content leaves it."""
    return dataclasses.replace(
        p,
        stripe_product_id=f"prod_cms_{p.id}",
        stripe_price_id="price_1",
        sync_status="synced",
        sync_hash=content_hash(p),
    )


def reviewed_update() -> tuple[Plan, CmsProduct, ProductState]:
    """A synced row renamed in the CMS: the plan updates the product's name."""
    before = synced(row("a"))
    state = stripe_state(target_for(before))
    renamed = dataclasses.replace(before, title="Renamed")
    plan = build_plan([renamed], {renamed.id: state}, now=MADE)
    plan.account_id, plan.mode = ACCOUNT, "test"
    assert [op.kind for op in plan.operations] == ["update"]
    return plan, renamed, state


def round_trip(plan: Plan) -> Plan:
    return load_plan(plan.to_json(indent=2))


# -- the whole plan -------------------------------------------------------------------------------


def refusal_of(plan: Plan, **kw: Any) -> str | None:
    args: dict[str, Any] = {
        "account_id": ACCOUNT,
        "mode": "test",
        "now": MADE + timedelta(hours=1),
        "max_age_hours": 24,
    }
    args.update(kw)
    try:
        check_plan(plan, **args)
    except PlanRefused as exc:
        return exc.reason
    return None


def test_a_fresh_plan_for_this_account_and_mode_is_accepted() -> None:
    plan, _, _ = reviewed_update()
    assert refusal_of(round_trip(plan)) is None


def test_a_plan_for_another_account_is_refused() -> None:
    plan, _, _ = reviewed_update()
    assert refusal_of(plan, account_id="acct_1SomeoneElse0000") == "account"


def test_a_plan_naming_no_account_is_refused() -> None:
    plan, _, _ = reviewed_update()
    plan.account_id = None
    assert refusal_of(plan) == "account"


def test_a_test_mode_plan_is_refused_with_a_live_key() -> None:
    plan, _, _ = reviewed_update()
    assert refusal_of(plan, mode="live") == "mode"


def test_a_plan_older_than_the_limit_is_refused() -> None:
    plan, _, _ = reviewed_update()
    assert refusal_of(plan, now=MADE + timedelta(hours=24, seconds=1)) == "too-old"
    assert refusal_of(plan, now=MADE + timedelta(hours=24)) is None
    assert refusal_of(plan, now=MADE + timedelta(hours=3), max_age_hours=2) == "too-old"


def test_a_plan_dated_after_the_clock_is_refused() -> None:
    plan, _, _ = reviewed_update()
    assert refusal_of(plan, now=MADE - timedelta(hours=1)) == "clock"
    assert refusal_of(plan, now=MADE - timedelta(minutes=1)) is None


@settings(max_examples=200, deadline=None)
@given(age_s=st.integers(min_value=0, max_value=100 * 3600), limit_h=st.integers(min_value=1, max_value=72))
def test_age_refusal_is_exactly_age_over_limit(age_s: int, limit_h: int) -> None:
    plan, _, _ = reviewed_update()
    got = refusal_of(plan, now=MADE + timedelta(seconds=age_s), max_age_hours=limit_h)
    assert got == ("too-old" if age_s > limit_h * 3600 else None)


@pytest.mark.parametrize("version", [1, 3, None, "2"])
def test_other_format_versions_are_refused(version: Any) -> None:
    plan, _, _ = reviewed_update()
    data = json.loads(plan.to_json())
    data["version"] = version
    with pytest.raises(PlanRefused) as info:
        load_plan(json.dumps(data))
    assert info.value.reason == "version"


def test_an_operation_without_its_basis_makes_the_plan_unreadable() -> None:
    plan, _, _ = reviewed_update()
    data = json.loads(plan.to_json())
    data["operations"][0]["basis"] = {}
    with pytest.raises(PlanRefused) as info:
        load_plan(json.dumps(data))
    assert info.value.reason == "unreadable"
    with pytest.raises(PlanRefused) as info:
        load_plan("{not json")
    assert info.value.reason == "unreadable"


# -- one operation --------------------------------------------------------------------------------


def test_unchanged_inputs_apply_the_plans_own_operation() -> None:
    plan, renamed, state = reviewed_update()
    op = round_trip(plan).operations[0]
    verdict = check_operation(op, renamed, copy.deepcopy(state))
    assert verdict == Proceed(op)
    assert op.product_params == {"name": "Renamed", "metadata": {"cms_hash": content_hash(renamed)}}


def reason(verdict: Any) -> str:
    assert isinstance(verdict, Refusal), verdict
    return verdict.reason


def test_a_deleted_cms_row_is_gone() -> None:
    plan, _, state = reviewed_update()
    assert reason(check_operation(plan.operations[0], None, state)) == "gone"


def test_a_deleted_stripe_product_is_gone() -> None:
    plan, renamed, _ = reviewed_update()
    assert reason(check_operation(plan.operations[0], renamed, ProductState("prod_cms_a"))) == "gone"


def test_cms_content_edited_again_is_cms_changed() -> None:
    plan, renamed, state = reviewed_update()
    edited = dataclasses.replace(renamed, price=Decimal("25.00"))
    assert reason(check_operation(plan.operations[0], edited, state)) == "cms-changed"


def test_cms_row_relinked_by_an_editor_is_cms_changed() -> None:
    plan, renamed, state = reviewed_update()
    relinked = dataclasses.replace(renamed, stripe_product_id=None, stripe_price_id=None)
    assert reason(check_operation(plan.operations[0], relinked, state)) == "cms-changed"


def test_the_rows_own_write_back_is_not_a_cms_change() -> None:
    plan, renamed, state = reviewed_update()
    written_back = dataclasses.replace(renamed, sync_hash=content_hash(renamed), synced_at=MADE)
    assert check_operation(plan.operations[0], written_back, state) == Proceed(plan.operations[0])


def test_a_dashboard_edit_is_stripe_changed() -> None:
    plan, renamed, state = reviewed_update()
    edited = copy.deepcopy(state)
    assert edited.product is not None
    edited.product["description"] = "edited in the Dashboard"
    edited.product["updated"] += 60
    verdict = check_operation(plan.operations[0], renamed, edited)
    assert reason(verdict) == "stripe-changed"
    assert isinstance(verdict, Refusal) and "description" in verdict.detail


def test_a_new_default_price_is_stripe_changed() -> None:
    plan, renamed, state = reviewed_update()
    other = copy.deepcopy(state)
    assert other.product is not None and other.default_price is not None
    other.default_price["id"] = "price_2"
    assert reason(check_operation(plan.operations[0], renamed, other)) == "stripe-changed"


def test_stripe_at_the_target_is_already_applied() -> None:
    plan, renamed, _ = reviewed_update()
    after = stripe_state(target_for(renamed))
    assert after.product is not None
    after.product["updated"] = 1700000600
    assert check_operation(plan.operations[0], renamed, after) == AlreadyApplied("price_1")


def test_a_crashed_apply_finishes_its_own_reprice() -> None:
    """An apply stopped after switching the default price (the marker still names the old price):
    re-applying finishes the archive instead of refusing its own work."""
    before = synced(row("r"))
    old_state = stripe_state(target_for(before), price=None)
    repriced = dataclasses.replace(before, price=Decimal("29.99"))
    plan = build_plan([repriced], {repriced.id: old_state}, now=MADE)
    op = plan.operations[0]
    assert op.kind == "reprice" and op.new_price and op.old_price_id == "price_1"
    target = target_for(repriced)
    assert target.price is not None
    new_price = {
        "id": "price_new",
        "object": "price",
        "active": True,
        "product": target.product_id,
        "tax_behavior": "unspecified",
        "recurring": None,
        "lookup_key": None,
        "metadata": target.price_metadata(),
        **target.price.params(),
    }
    halfway = stripe_state(target, price=new_price, meta={META_PREV_PRICE: "price_1"})
    verdict = check_operation(op, repriced, halfway)
    assert isinstance(verdict, Proceed)
    finish: Operation = verdict.operation
    assert (finish.kind, finish.stale_price_ids, finish.new_price, finish.product_params) == (
        "reprice",
        ("price_1",),
        False,
        {},
    )


MANAGED_TEXT = ("name", "description", "url", "unit_label")


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(MANAGED_TEXT), value=st.text(min_size=1, max_size=30), bump=st.booleans())
def test_any_edit_that_leaves_the_target_unreached_is_refused(field: str, value: str, bump: bool) -> None:
    """The plan renames the product; any other edit to it (with or without `updated` moving) leaves the
    name unreached, so the operation is refused rather than applied to a state nobody reviewed."""
    plan, renamed, state = reviewed_update()
    edited = copy.deepcopy(state)
    assert edited.product is not None
    if edited.product.get(field) == value:
        return
    edited.product[field] = value
    if bump:
        edited.product["updated"] += 1
    # Even a name typed exactly as the CMS has it leaves the content-hash metadata to write.
    assert reason(check_operation(plan.operations[0], renamed, edited)) == "stripe-changed"


@settings(max_examples=50, deadline=None)
@given(
    titles=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz ÄÉß0123456789-", min_size=1, max_size=40).filter(str.strip),
        min_size=1,
        max_size=5,
    ),
    cents=st.integers(min_value=50, max_value=10_000_00),
)
def test_a_plan_read_back_from_its_file_checks_clean_against_the_state_it_was_made_from(
    titles: list[str], cents: int
) -> None:
    rows = [synced(row(f"r{i}")) for i in range(len(titles))]
    states = {r.id: stripe_state(target_for(r)) for r in rows}
    edited = [
        dataclasses.replace(r, title=t.strip(), price=Decimal(cents) / 100) for r, t in zip(rows, titles, strict=True)
    ]
    plan = build_plan(edited, states, now=MADE)
    plan.account_id, plan.mode = ACCOUNT, "test"
    loaded = round_trip(plan)
    assert len(loaded.operations) == len(edited)
    by_id = {r.id: r for r in edited}
    for op in loaded.operations:
        assert check_operation(op, by_id[op.cms_id], copy.deepcopy(states[op.cms_id])) == Proceed(op)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("target", "price", "unit_amount"), 1, "price"),
        (("target", "fields", "name"), "Not what the CMS says", "fields"),
        (("target", "metadata", "cms_hash"), "0" * 16, "metadata"),
    ],
)
def test_a_plan_edited_by_hand_is_plan_altered(path: tuple[str, ...], value: Any, named: str) -> None:
    plan, renamed, state = reviewed_update()
    data = json.loads(plan.to_json(indent=2))
    node = data["operations"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    op = load_plan(json.dumps(data)).operations[0]
    verdict = check_operation(op, renamed, copy.deepcopy(state))
    assert isinstance(verdict, Refusal), verdict
    assert verdict.reason == "plan-altered"
    assert verdict.detail == f"the plan's target differs from the CMS row's in {named}"
