"""Products edited in the Stripe Dashboard since their last sync: STRIPE_DASHBOARD_EDITS=overwrite (the
default) plans the CMS values back; keep leaves the product until its CMS row changes; the
reconciliation reports such drift as made in Stripe either way, and a CMS change is not reported so."""

from __future__ import annotations

import pytest
import stripe

from cms_stripe.core import reconcile as rc
from cms_stripe.core.plan import build_plan
from cms_stripe.core.settings import Settings, SettingsError, dashboard_edits
from cms_stripe.core.state import read_state
from cms_stripe_tests.test_core.conftest import LIVE_KEY, changed, row, sync


@pytest.fixture()
def synced(emulator, gateway):
    rows = [row("dash-1"), row("dash-2"), row("dash-3")]
    _plan, result = sync(gateway, rows)
    assert all(r.ok for r in result.results)
    client = stripe.StripeClient(LIVE_KEY, base_addresses={"api": emulator.url})
    # By hand in the Dashboard: a new name on dash-1, a new default price on dash-2.
    client.v1.products.update("prod_cms_dash-1", params={"name": "Renamed in the Dashboard"})
    price = client.v1.prices.create(params={"product": "prod_cms_dash-2", "currency": "usd", "unit_amount": 2500})
    client.v1.products.update("prod_cms_dash-2", params={"default_price": price.id})
    return rows


def kinds(plan) -> dict[str, str]:
    return {op.cms_id: op.kind for op in plan.operations}


def test_overwrite_plans_the_cms_values_back(gateway, synced):
    plan = build_plan(synced, read_state(gateway, synced), dashboard="overwrite")
    assert kinds(plan) == {"dash-1": "update", "dash-2": "reprice", "dash-3": "noop"}
    assert plan.operations[0].product_params == {"name": "Product dash-1"}


def test_keep_leaves_edited_products_until_their_cms_row_changes(gateway, synced):
    plan = build_plan(synced, read_state(gateway, synced), dashboard="keep")
    assert kinds(plan) == {"dash-1": "noop", "dash-2": "noop", "dash-3": "noop"}
    assert plan.operations[0].reason.startswith("edited in Stripe since the last sync: kept")

    rows = [changed(synced[0], description="new in the CMS"), *synced[1:]]
    plan = build_plan(rows, read_state(gateway, rows), dashboard="keep")
    # The CMS changed: it wins, the Dashboard name included.
    assert kinds(plan) == {"dash-1": "update", "dash-2": "noop", "dash-3": "noop"}
    assert plan.operations[0].product_params == {
        "name": "Product dash-1",
        "description": "new in the CMS",
        "metadata": {"cms_hash": plan.operations[0].content_hash},
    }


def test_reconciliation_tells_drift_made_in_stripe_from_a_cms_change(gateway, synced):
    rows = [*synced[:2], changed(synced[2], title="Renamed in the CMS")]
    listed = gateway.list_products(rc.candidate_product_ids(rows))
    report = rc.reconcile(rows, listed, scope="test")
    by_id = {r.cms_id: r for r in report.rows}
    assert [by_id[i].outcome for i in ("dash-1", "dash-2", "dash-3")] == ["drift", "drift", "drift"]
    assert [by_id[i].edited_in_stripe for i in ("dash-1", "dash-2", "dash-3")] == [True, True, False]
    assert report.edited_in_stripe() == 2
    assert by_id["dash-1"].detail.startswith("edited in Stripe since the last sync")


def test_the_setting_is_read_once_and_checked():
    assert dashboard_edits({}) == "overwrite"
    assert Settings.from_env({"STRIPE_DASHBOARD_EDITS": " Keep "}).dashboard_edits == "keep"
    with pytest.raises(SettingsError, match="STRIPE_DASHBOARD_EDITS must be one of overwrite, keep"):
        dashboard_edits({"STRIPE_DASHBOARD_EDITS": "merge"})
