"""StripeResource: key and API base from the environment only, builds its gateway at execution, plans and
applies (live writes only when allowed explicitly), never shows the key."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import pytest

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.executor import SyncAborted
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.resources.stripe import StripeResource

KEY = "sk_live_" + "9" * 24
ROWS = [
    CmsProduct(id="r1", title="One", price=Decimal("10"), currency="usd"),
    CmsProduct(id="r2", title="Two", price=Decimal("700"), currency="jpy", recurring_interval="month"),
    CmsProduct(id="bad", title="", price=Decimal("1"), currency="usd"),
]


@pytest.fixture()
def emu(monkeypatch):
    with EmulatorServer(EmulatorConfig()) as server:
        monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        yield server


def test_materialize_with_key_from_env(emu) -> None:
    seen: dict = {}

    @dg.asset
    def synced(stripe: StripeResource) -> dg.MaterializeResult:
        plan = stripe.plan(ROWS)
        result = stripe.apply(plan, progress=lambda *a: seen.setdefault("progress", a), allow_live=True)
        seen.update(plan=plan.counts(), result=result.counts(), stats=stripe.call_stats())
        return dg.MaterializeResult(metadata={"created": result.counts().get("created", 0)})

    resource = StripeResource()
    assert dg.materialize([synced], resources={"stripe": resource}).success
    assert seen["plan"]["create"] == 2 and seen["plan"]["quarantined"] == 1
    assert seen["result"] == {"created": 2}
    assert seen["progress"][1] == 2
    assert len(emu.objects()["products"]) == 2


def test_key_is_never_shown(emu) -> None:
    resource = StripeResource()
    assert KEY not in repr(resource) and KEY not in str(resource)
    assert KEY not in repr(resource.gateway)


def test_config_caps_limits(emu, monkeypatch) -> None:
    monkeypatch.setenv("STRIPE_MAX_RPS", "40")
    resource = StripeResource(max_rps=60, endpoint_rps=10, max_concurrency=3)
    limits = resource.gateway.limits
    assert (limits.global_rps, limits.endpoint_rps, limits.max_concurrency, limits.live) == (40, 10, 3, True)
    test_mode = StripeResource().build_gateway(env={"STRIPE_SECRET_KEY": "sk_test_" + "1" * 24})
    assert test_mode.limits.global_rps == 25


def test_critical_stop_raises_with_resume_hint(monkeypatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    with EmulatorServer(EmulatorConfig()) as server:
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        resource = StripeResource()
        plan = resource.plan(ROWS[:2])
    with pytest.raises(SyncAborted) as info:
        resource.apply(plan, allow_live=True)
    assert "re-run" in str(info.value) and info.value.result.stopped
    assert KEY not in str(info.value)


def test_reads_for_reconciliation(emu) -> None:
    resource = StripeResource()
    resource.apply(resource.plan(ROWS[:2]), allow_live=True)
    assert resource.is_live
    listed = resource.list_products(["prod_cms_r1", "prod_cms_r2", "prod_cms_nope"])
    assert sorted(p["id"] for p in listed) == ["prod_cms_r1", "prod_cms_r2"]
    assert all(isinstance(p["default_price"], dict) for p in listed)
    assert sorted(p["id"] for p in resource.iter_all_products()) == ["prod_cms_r1", "prod_cms_r2"]


def test_key_and_api_base_are_no_config(monkeypatch) -> None:
    from cms_stripe.resources.stripe import stripe_resource_from_env

    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    resource = stripe_resource_from_env(env={"STRIPE_API_BASE": "http://127.0.0.1:1"})
    # Only pacing and tax behaviour can be set per run; where the key goes cannot.
    assert set(StripeResource.model_fields) == {"max_rps", "endpoint_rps", "max_concurrency", "tax_behavior"}
    assert KEY not in repr(resource)
