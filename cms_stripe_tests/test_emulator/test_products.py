"""Products: CRUD, custom ids, default prices, deletion rules, list pagination and filters."""

from __future__ import annotations

import requests
import stripe

from .helpers import stripe_error


def test_create_retrieve_update_delete(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Lamp", "description": "bright", "metadata": {"a": "1"}})
    assert product.id.startswith("prod_")
    assert product.active is True
    got = client.v1.products.retrieve(product.id)
    assert got.to_dict() == product.to_dict()
    updated = client.v1.products.update(product.id, params={"name": "Lamp 2", "metadata": {"b": "2"}, "active": False})
    assert updated.name == "Lamp 2"
    assert updated.active is False
    assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
    deleted = client.v1.products.delete(product.id)
    assert deleted.deleted is True
    assert stripe_error(lambda: client.v1.products.retrieve(product.id)).http_status == 404


def test_custom_id_and_duplicate(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x", "id": "cms_123"})
    assert product.id == "cms_123"
    err = stripe_error(lambda: client.v1.products.create(params={"name": "y", "id": "cms_123"}))
    assert (err.http_status, err.code, err.param) == (400, "resource_already_exists", "id")
    assert client.v1.products.retrieve("cms_123").name == "x"


def test_default_price_data_creates_the_default_price(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"name": "x", "default_price_data": {"currency": "gbp", "unit_amount": 250, "tax_behavior": "inclusive"}}
    )
    price = client.v1.prices.retrieve(product.default_price)  # type: ignore[arg-type]
    assert price.product == product.id
    assert (price.currency, price.unit_amount, price.tax_behavior, price.type) == ("gbp", 250, "inclusive", "one_time")


def test_switch_default_price(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"name": "x", "default_price_data": {"currency": "usd", "unit_amount": 100}}
    )
    new = client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 120})
    updated = client.v1.products.update(product.id, params={"default_price": new.id})
    assert updated.default_price == new.id
    # The old default can now be archived; the new one cannot.
    old = client.v1.prices.update(product.default_price, params={"active": False})  # type: ignore[arg-type]
    assert old.active is False
    err = stripe_error(lambda: client.v1.prices.update(new.id, params={"active": False}))
    assert (err.http_status, err.param) == (400, "active")
    assert "default price" in err.user_message
    assert client.v1.prices.retrieve(new.id).active is True


def test_default_price_must_be_an_active_price_of_this_product(client: stripe.StripeClient) -> None:
    a = client.v1.products.create(params={"name": "a"})
    b = client.v1.products.create(params={"name": "b", "default_price_data": {"currency": "usd", "unit_amount": 1}})
    b_price = b.default_price
    assert isinstance(b_price, str)
    err = stripe_error(lambda: client.v1.products.update(a.id, params={"default_price": b_price}))
    assert err.param == "default_price"
    err = stripe_error(lambda: client.v1.products.update(a.id, params={"default_price": "price_missing"}))
    assert (err.code, err.param) == ("resource_missing", "default_price")
    archived = client.v1.prices.create(params={"product": a.id, "currency": "usd", "unit_amount": 1, "active": False})
    err = stripe_error(lambda: client.v1.products.update(a.id, params={"default_price": archived.id}))
    assert err.param == "default_price"


def test_product_with_prices_cannot_be_deleted(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    price = client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 1})
    client.v1.prices.update(price.id, params={"active": False})
    err = stripe_error(lambda: client.v1.products.delete(product.id))
    assert err.http_status == 400
    assert "prices" in err.user_message
    assert client.v1.products.retrieve(product.id).id == product.id


def test_list_is_newest_first_with_cursors(client: stripe.StripeClient) -> None:
    ids = [client.v1.products.create(params={"name": f"p{i}"}).id for i in range(7)]
    newest_first = list(reversed(ids))
    page = client.v1.products.list(params={"limit": 3})
    assert [p.id for p in page.data] == newest_first[:3]
    assert page.has_more is True
    page2 = client.v1.products.list(params={"limit": 3, "starting_after": page.data[-1].id})
    assert [p.id for p in page2.data] == newest_first[3:6]
    page3 = client.v1.products.list(params={"limit": 3, "starting_after": page2.data[-1].id})
    assert [p.id for p in page3.data] == newest_first[6:]
    assert page3.has_more is False
    back = client.v1.products.list(params={"limit": 2, "ending_before": newest_first[3]})
    assert [p.id for p in back.data] == newest_first[1:3]
    assert back.has_more is True
    # auto_paging_iter walks every page through starting_after.
    assert [p.id for p in client.v1.products.list(params={"limit": 2}).auto_paging_iter()] == newest_first


def test_list_limit_bounds(client: stripe.StripeClient) -> None:
    assert stripe_error(lambda: client.v1.products.list(params={"limit": 101})).param == "limit"
    assert stripe_error(lambda: client.v1.products.list(params={"limit": 0})).param == "limit"
    assert client.v1.products.list(params={"limit": 100}).data == []
    err = stripe_error(lambda: client.v1.products.list(params={"starting_after": "prod_nope"}))
    assert (err.code, err.param) == ("resource_missing", "starting_after")


def test_list_filters_active_and_ids(client: stripe.StripeClient) -> None:
    a = client.v1.products.create(params={"name": "a"})
    b = client.v1.products.create(params={"name": "b", "active": False})
    c = client.v1.products.create(params={"name": "c"})
    assert {p.id for p in client.v1.products.list(params={"active": True}).data} == {a.id, c.id}
    assert [p.id for p in client.v1.products.list(params={"active": False}).data] == [b.id]
    assert [p.id for p in client.v1.products.list(params={"ids": [a.id, b.id]}).data] == [b.id, a.id]
    err = stripe_error(lambda: client.v1.products.list(params={"ids": [f"p{i}" for i in range(101)]}))
    assert err.param == "ids"


def test_list_by_ids_refuses_a_cursor(client: stripe.StripeClient, emulator) -> None:
    """Stripe's List all products: `ids` "cannot be used with starting_after or ending_before" (400)."""
    a = client.v1.products.create(params={"name": "a"})
    b = client.v1.products.create(params={"name": "b"})
    ids = [a.id, b.id]
    errors = {
        "starting_after": stripe_error(lambda: client.v1.products.list(params={"ids": ids, "starting_after": a.id})),
        "ending_before": stripe_error(lambda: client.v1.products.list(params={"ids": ids, "ending_before": a.id})),
    }
    for cursor, err in errors.items():
        assert err.http_status == 400
        assert err.json_body["error"]["type"] == "invalid_request_error"
        assert err.param == "ids"
        assert err.user_message == f"You may only specify one of these parameters: ids, {cursor}."
    # So stripe-python's auto-paging cannot walk a list by ids: its second page sends starting_after.
    first = client.v1.products.list(params={"ids": [a.id, b.id], "limit": 1})
    assert ([p.id for p in first.data], first.has_more) == ([b.id], True)
    pages = first.auto_paging_iter()
    assert next(pages).id == b.id
    assert stripe_error(lambda: next(pages)).param == "ids"
    # The same request as bare form parameters, as any client would send it.
    resp = requests.get(
        f"{emulator.url}/v1/products",
        params=[("ids[]", a.id), ("ids[]", b.id), ("starting_after", a.id)],
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    # Cursors without ids, and ids without cursors, still work.
    assert [p.id for p in client.v1.products.list(params={"starting_after": b.id}).data] == [a.id]
    assert [p.id for p in client.v1.products.list(params={"ids": [a.id]}).data] == [a.id]
