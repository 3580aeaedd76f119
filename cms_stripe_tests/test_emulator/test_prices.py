"""Prices: product_data (with a custom id), list filters, lookup keys and transfer_lookup_key."""

from __future__ import annotations

import stripe

from .helpers import stripe_error


def test_price_with_product_data_creates_the_product(client: stripe.StripeClient) -> None:
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 700,
            "product_data": {"id": "cms_9", "name": "Book", "metadata": {"cms_id": "9"}, "unit_label": "copy"},
            "expand": ["product"],
        }
    )
    product = price.product
    assert isinstance(product, stripe.Product)
    assert (product.id, product.name, product.unit_label) == ("cms_9", "Book", "copy")
    assert product.metadata.to_dict() == {"cms_id": "9"}
    # product_data[id] is a product id like any other: a duplicate is rejected and creates no price.
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 1, "product_data": {"id": "cms_9", "name": "x"}}
        )
    )
    assert (err.code, err.param) == ("resource_already_exists", "product_data[id]")
    assert len(client.v1.prices.list().data) == 1


def test_price_needs_exactly_one_of_product_and_product_data(client: stripe.StripeClient) -> None:
    err = stripe_error(lambda: client.v1.prices.create(params={"currency": "usd", "unit_amount": 1}))
    assert err.param == "product"
    err = stripe_error(
        lambda: client.v1.prices.create(params={"currency": "usd", "unit_amount": 1, "product": "prod_missing"})
    )
    assert (err.http_status, err.code, err.param) == (400, "resource_missing", "product")


def test_recurring_price_shape(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
            "nickname": "Yearly",
        }
    )
    assert price.type == "recurring"
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count, price.recurring.usage_type) == (
        "year",
        1,
        "licensed",
    )
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "unit_amount": 1, "recurring": {"interval": "fortnight"}}
        )
    )
    assert err.param == "recurring[interval]"
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "month", "interval_count": 37},
            }
        )
    )
    assert err.param == "recurring[interval_count]"


def test_list_filters(client: stripe.StripeClient) -> None:
    a = client.v1.products.create(params={"name": "a"})
    b = client.v1.products.create(params={"name": "b"})
    p1 = client.v1.prices.create(params={"product": a.id, "currency": "usd", "unit_amount": 1, "lookup_key": "a_usd"})
    p2 = client.v1.prices.create(params={"product": a.id, "currency": "eur", "unit_amount": 2, "active": False})
    p3 = client.v1.prices.create(params={"product": b.id, "currency": "usd", "unit_amount": 3, "lookup_key": "b_usd"})
    assert [p.id for p in client.v1.prices.list(params={"product": a.id}).data] == [p2.id, p1.id]
    assert [p.id for p in client.v1.prices.list(params={"active": False}).data] == [p2.id]
    assert [p.id for p in client.v1.prices.list(params={"currency": "usd"}).data] == [p3.id, p1.id]
    assert {p.id for p in client.v1.prices.list(params={"lookup_keys": ["a_usd", "b_usd"]}).data} == {p1.id, p3.id}
    assert [p.id for p in client.v1.prices.list(params={"product": a.id, "currency": "usd"}).data] == [p1.id]
    err = stripe_error(lambda: client.v1.prices.list(params={"lookup_keys": [f"k{i}" for i in range(11)]}))
    assert err.param == "lookup_keys"


def test_lookup_key_is_unique_per_account(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    first = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1, "lookup_key": "std"}
    )
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "unit_amount": 2, "lookup_key": "std"}
        )
    )
    assert err.param == "lookup_key"
    other = client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 2})
    err = stripe_error(lambda: client.v1.prices.update(other.id, params={"lookup_key": "std"}))
    assert err.param == "lookup_key"
    # Archiving does not free the key either.
    client.v1.prices.update(first.id, params={"active": False})
    assert stripe_error(lambda: client.v1.prices.update(other.id, params={"lookup_key": "std"})).param == "lookup_key"
    assert [p.id for p in client.v1.prices.list(params={"lookup_keys": ["std"]}).data] == [first.id]


def test_transfer_lookup_key_moves_it_atomically(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    old = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 100, "lookup_key": "std"}
    )
    new = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 120,
            "lookup_key": "std",
            "transfer_lookup_key": True,
        }
    )
    assert new.lookup_key == "std"
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    assert [p.id for p in client.v1.prices.list(params={"lookup_keys": ["std"]}).data] == [new.id]
    # ... and back again through update.
    moved = client.v1.prices.update(old.id, params={"lookup_key": "std", "transfer_lookup_key": True})
    assert moved.lookup_key == "std"
    assert client.v1.prices.retrieve(new.id).lookup_key is None


def test_price_update_allowed_fields(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    price = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1, "metadata": {"a": "1"}}
    )
    updated = client.v1.prices.update(
        price.id, params={"nickname": "n", "metadata": {"b": "2"}, "tax_behavior": "exclusive", "active": False}
    )
    assert (updated.nickname, updated.tax_behavior, updated.active) == ("n", "exclusive", False)
    assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
    err = stripe_error(lambda: client.v1.prices.update(price.id, params={"tax_behavior": "inclusive"}))
    assert err.param == "tax_behavior"
