"""The live-key guard sits in the gateway, the one door every Stripe write passes: with a key that is
not clearly a test key (after trimming) every write is refused before any request, reads still go
through, and only a gateway built with `allow_live=True` writes. The refusal is CRITICAL, so the
executor stops instead of trying every product."""

from __future__ import annotations

import pytest

from cms_stripe.core.errors import Severity, classify
from cms_stripe.stripe.gateway import LiveWriteRefusedError
from cms_stripe.stripe.limits import LimitModel
from cms_stripe_tests.test_core.test_gateway import FakeClient, make_gateway

FAKE_LIVE = " sk_" + "live_" + "Z" * 30 + "\n"


def writes(gw) -> list:
    return [
        lambda: gw.create_product({"name": "x"}, "k1"),
        lambda: gw.update_product("prod_1", {"name": "y"}, "k2"),
        lambda: gw.create_price({"unit_amount": 100, "currency": "usd", "product": "prod_1"}, "k3"),
        lambda: gw.update_price("price_1", {"active": False}, "k4"),
        lambda: gw.delete_product("prod_1", "k5"),
    ]


@pytest.mark.parametrize("key", [FAKE_LIVE, "rk_" + "live_" + "Y" * 30, "pk_test_" + "x" * 20, "sk_tes_" + "x" * 20])
def test_every_write_is_refused_before_any_request(key):
    client = FakeClient()
    gw = make_gateway(client, limits=LimitModel.for_key(key))
    for write in writes(gw):
        with pytest.raises(LiveWriteRefusedError) as refused:
            write()
        assert classify(refused.value) is Severity.CRITICAL
    assert client.requests == []
    assert gw.retrieve_product("prod_1") is not None  # reads are not writes
    assert [r["op"] for r in client.requests] == ["products.retrieve"]


def test_allowed_gateway_and_test_keys_write():
    for key, allow in ((FAKE_LIVE, True), ("  sk_test_" + "x" * 20, False)):
        client = FakeClient()
        gw = make_gateway(client, limits=LimitModel.for_key(key), allow_live=allow)
        for write in writes(gw):
            write()
        assert [r["op"] for r in client.requests] == [
            "products.create",
            "products.update",
            "prices.create",
            "prices.update",
            "products.delete",
        ]
