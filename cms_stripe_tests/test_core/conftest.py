"""Emulator fixtures for the write-engine tests: a live-mode Stripe on localhost and helpers to read it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
import stripe
from requests.structures import CaseInsensitiveDict
from stripe._api_requestor import _APIRequestor

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.executor import ApplyResult, apply_plan
from cms_stripe.core.plan import Plan, build_plan
from cms_stripe.core.state import read_state
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.stripe.gateway import StripeGateway

# Not a real key: the prefix selects Stripe's live-mode budgets (100/s global) in the limit model.
LIVE_KEY = "sk_live_" + "0" * 24


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0, jitter_ms=0)) as emu:
        yield emu


def make_gateway(url: str, **kw: Any) -> StripeGateway:
    # The live budget against the emulator: writes with this fake live key are allowed on purpose.
    return StripeGateway.from_settings(LIVE_KEY, api_base=url, **{"allow_live": True, **kw})


@pytest.fixture()
def gateway(emulator: EmulatorServer) -> StripeGateway:
    return make_gateway(emulator.url)


def row(cms_id: str, **kw: Any) -> CmsProduct:
    base: dict[str, Any] = {
        "title": f"Product {cms_id}",
        "description": f"About {cms_id}",
        "price": Decimal("19.99"),
        "currency": "usd",
        "images": (f"https://cdn.example.com/{cms_id}.png",),
        "url": f"https://shop.example.com/{cms_id}",
        "metadata": {"sku": cms_id.upper(), "weight": 3},
        "shippable": True,
    }
    base.update(kw)
    return CmsProduct(id=cms_id, **base)


# Both settings of STRIPE_PRICE_LOOKUP_KEYS, for the exactly-once tests that must hold under either.
LOOKUP_KEYS = pytest.mark.parametrize("lookup_keys", [False, True], ids=["no-lookup-keys", "lookup-keys"])


def sync(
    gw: StripeGateway, rows: Sequence[CmsProduct], *, lookup_keys: bool = False, **kw: Any
) -> tuple[Plan, ApplyResult]:
    plan = build_plan(rows, read_state(gw, rows, lookup_keys=lookup_keys), lookup_keys=lookup_keys)
    return plan, apply_plan(plan, gw, **kw)


def changed(p: CmsProduct, **kw: Any) -> CmsProduct:
    return dataclasses.replace(p, **kw)


def api_error(
    status: int,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    message: str = "boom",
) -> stripe.StripeError:
    """The exception stripe-python itself builds for this HTTP answer."""
    err: dict[str, Any] = {"type": type_, "message": message}
    if code:
        err["code"] = code
    if param:
        err["param"] = param
    body = {"error": err}
    return _APIRequestor._global_instance().specific_v1_api_error(
        json.dumps(body), status, body, CaseInsensitiveDict(headers or {}), err
    )
