"""Products (and prices) search by metadata, eventually consistent with a configurable lag."""

from __future__ import annotations

import stripe
from stripe.params import ProductSearchParams

from .conftest import ManualClock
from .helpers import stripe_error


def _ids(result) -> list[str]:
    return [o.id for o in result.data]


def test_search_by_metadata_and_active(client: stripe.StripeClient) -> None:
    a = client.v1.products.create(params={"name": "a", "metadata": {"cms_id": "1", "shop": "eu"}})
    b = client.v1.products.create(params={"name": "b", "metadata": {"cms_id": "2", "shop": "eu"}, "active": False})
    client.v1.products.create(params={"name": "c", "metadata": {"cms_id": "3", "shop": "us"}})
    res = client.v1.products.search(params={"query": "metadata['cms_id']:'1'"})
    assert res.to_dict()["object"] == "search_result"
    assert _ids(res) == [a.id]
    assert _ids(client.v1.products.search(params={"query": "metadata['shop']:'eu'"})) == [b.id, a.id]
    assert _ids(client.v1.products.search(params={"query": "metadata['shop']:'eu' AND active:'true'"})) == [a.id]
    assert _ids(client.v1.products.search(params={"query": "metadata['cms_id']:'1' OR metadata['cms_id']:'2'"})) == [
        b.id,
        a.id,
    ]
    assert _ids(client.v1.products.search(params={"query": "metadata['cms_id']:'nope'"})) == []


def test_search_pagination(client: stripe.StripeClient) -> None:
    ids = [client.v1.products.create(params={"name": f"p{i}", "metadata": {"batch": "x"}}).id for i in range(5)]
    first = client.v1.products.search(params={"query": "metadata['batch']:'x'", "limit": 2})
    assert first.has_more is True
    assert first.next_page
    second = client.v1.products.search(params={"query": "metadata['batch']:'x'", "limit": 2, "page": first.next_page})
    seen = _ids(first) + _ids(second)
    assert seen == list(reversed(ids))[:4]
    assert sorted(
        o.id for o in client.v1.products.search(params={"query": "metadata['batch']:'x'"}).auto_paging_iter()
    ) == sorted(ids)


def test_bad_queries_are_400(client: stripe.StripeClient) -> None:
    assert stripe_error(lambda: client.v1.products.search(params={"query": "cms_id=1"})).param == "query"
    err = stripe_error(lambda: client.v1.products.search(params={"query": "active:'true' AND name:'a' OR name:'b'"}))
    assert err.param == "query"


def test_prices_search(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    p = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1, "metadata": {"cms_id": "9"}}
    )
    res = client.v1.prices.search(params={"query": f"metadata['cms_id']:'9' AND product:'{product.id}'"})
    assert _ids(res) == [p.id]


def test_new_writes_are_invisible_to_search_for_the_lag(
    emulator, emulator_clock: ManualClock, client: stripe.StripeClient
) -> None:
    emulator.configure(search_lag_s=0.6)
    product = client.v1.products.create(params={"name": "x", "metadata": {"cms_id": "42"}})
    query: ProductSearchParams = {"query": "metadata['cms_id']:'42'"}
    assert _ids(client.v1.products.search(params=query)) == []
    # Retrieve and list are strongly consistent.
    assert client.v1.products.retrieve(product.id).id == product.id
    assert _ids(client.v1.products.list()) == [product.id]
    emulator_clock.advance(0.7)
    assert _ids(client.v1.products.search(params=query)) == [product.id]
    # An update is seen late too: search keeps returning the old version for the lag.
    client.v1.products.update(product.id, params={"metadata": {"cms_id": "43"}})
    assert _ids(client.v1.products.search(params=query)) == [product.id]
    assert _ids(client.v1.products.search(params={"query": "metadata['cms_id']:'43'"})) == []
    emulator_clock.advance(0.7)
    assert _ids(client.v1.products.search(params=query)) == []
    assert _ids(client.v1.products.search(params={"query": "metadata['cms_id']:'43'"})) == [product.id]
