"""Stripe's value limits: metadata, images, name, statement descriptors, currencies, amounts."""

from __future__ import annotations

from functools import partial

import pytest
import requests
import stripe

from .helpers import stripe_error


def test_metadata_limits(client: stripe.StripeClient) -> None:
    fifty = {f"k{i}": "v" for i in range(50)}
    product = client.v1.products.create(params={"name": "x", "metadata": fifty})
    assert len(product.metadata.to_dict()) == 50
    err = stripe_error(lambda: client.v1.products.update(product.id, params={"metadata": {"one_more": "v"}}))
    assert err.param == "metadata"
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x", "metadata": {"k" * 41: "v"}}))
    assert err.param == f"metadata[{'k' * 41}]"
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x", "metadata": {"k": "v" * 501}}))
    assert err.param == "metadata[k]"
    assert (
        client.v1.products.create(params={"name": "x", "metadata": {"k" * 40: "v" * 500}}).metadata["k" * 40]
        == "v" * 500
    )


def test_metadata_merges_and_empty_value_deletes(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x", "metadata": {"a": "1", "b": "2"}})
    updated = client.v1.products.update(product.id, params={"metadata": {"a": "", "c": "3"}})
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}
    # Replacing one key at the limit is fine: the count is checked after the merge.
    full = client.v1.products.create(params={"name": "y", "metadata": {f"k{i}": "v" for i in range(50)}})
    swapped = client.v1.products.update(full.id, params={"metadata": {"k0": "", "new": "v"}})
    assert len(swapped.metadata.to_dict()) == 50


def test_empty_metadata_clears_all_keys(emulator) -> None:
    auth = {"Authorization": "Bearer sk_test_x"}
    pid = requests.post(
        f"{emulator.url}/v1/products", data={"name": "x", "metadata[a]": "1"}, headers=auth, timeout=5
    ).json()["id"]
    r = requests.post(f"{emulator.url}/v1/products/{pid}", data={"metadata": ""}, headers=auth, timeout=5)
    assert r.status_code == 200
    assert r.json()["metadata"] == {}


def test_images_at_most_eight(client: stripe.StripeClient) -> None:
    urls = [f"https://img.example/{i}.png" for i in range(9)]
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x", "images": urls}))
    assert err.param == "images"
    product = client.v1.products.create(params={"name": "x", "images": urls[:8]})
    assert len(product.images) == 8
    assert stripe_error(lambda: client.v1.products.update(product.id, params={"images": urls})).param == "images"


def test_name_is_required_and_not_blank(client: stripe.StripeClient) -> None:
    assert stripe_error(lambda: client.v1.products.create(params={"name": ""})).code == "parameter_invalid_empty"
    err = stripe_error(
        lambda: client.v1.prices.create(params={"currency": "usd", "unit_amount": 1, "product_data": {"name": ""}})
    )
    assert err.param == "product_data[name]"


@pytest.mark.parametrize(
    ("descriptor", "ok"),
    [
        ("ACME", False),  # too short
        ("ACME SHOP", True),
        ("A" * 22, True),
        ("A" * 23, False),
        ("12345", False),  # needs a letter
        ("ACME <SHOP>", False),
        ("ACME 'SHOP'", False),
        ('ACME "SHOP"', False),
        ("ACME*SHOP", False),
        ("ACME\\SHOP", False),
    ],
)
def test_statement_descriptor_rules(client: stripe.StripeClient, descriptor: str, ok: bool) -> None:
    params = {"name": "x", "statement_descriptor": descriptor}
    if ok:
        assert client.v1.products.create(params=params).statement_descriptor == descriptor  # type: ignore[arg-type]
    else:
        assert stripe_error(lambda: client.v1.products.create(params=params)).param == "statement_descriptor"  # type: ignore[arg-type]


def test_currency_codes(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    err = stripe_error(
        lambda: client.v1.prices.create(params={"product": product.id, "currency": "xyz", "unit_amount": 1})
    )
    assert err.param == "currency"
    err = stripe_error(
        lambda: client.v1.products.create(
            params={"name": "y", "default_price_data": {"currency": "usdollar", "unit_amount": 1}}
        )
    )
    assert err.param == "default_price_data[currency]"
    assert (
        client.v1.prices.create(params={"product": product.id, "currency": "JPY", "unit_amount": 500}).currency == "jpy"
    )


def test_integer_amounts(emulator, client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    auth = {"Authorization": "Bearer sk_test_x"}
    for bad in ("12.5", "1e3", "ten"):
        r = requests.post(
            f"{emulator.url}/v1/prices",
            data={"product": product.id, "currency": "usd", "unit_amount": bad},
            headers=auth,
            timeout=5,
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "parameter_invalid_integer"
        assert r.json()["error"]["param"] == "unit_amount"
    err = stripe_error(
        lambda: client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": -1})
    )
    assert err.param == "unit_amount"
    err = stripe_error(lambda: client.v1.prices.create(params={"product": product.id, "currency": "usd"}))
    assert (err.code, err.param) == ("parameter_missing", "unit_amount")
    both = {"product": product.id, "currency": "usd", "unit_amount": 1, "unit_amount_decimal": "1.5"}
    assert stripe_error(lambda: client.v1.prices.create(params=both)).param == "unit_amount"  # type: ignore[arg-type]
    dec = client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount_decimal": "12.5"})  # type: ignore[typeddict-item]
    assert dec.unit_amount is None
    assert str(dec.unit_amount_decimal) == "12.5"
    assert client.v1.prices.list().data[0].id == dec.id


def test_three_decimal_currencies_end_in_zero(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    for cur in ("bhd", "jod", "kwd", "omr", "tnd"):
        err = stripe_error(
            partial(client.v1.prices.create, params={"product": product.id, "currency": cur, "unit_amount": 1005})
        )
        assert err.param == "unit_amount"
        assert (
            client.v1.prices.create(params={"product": product.id, "currency": cur, "unit_amount": 1010}).unit_amount
            == 1010
        )


def test_unmodelled_features_fail_loudly(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume"}
        )
    )
    assert err.code == "emulator_unsupported_parameter"
