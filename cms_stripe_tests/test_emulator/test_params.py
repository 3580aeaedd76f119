"""Parameters are checked against stripe-python's typed request params for each operation."""

from __future__ import annotations

import pytest
import requests
import stripe

from .helpers import off_schema, stripe_error


@pytest.fixture()
def price(client: stripe.StripeClient) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Mug"})
    return client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 900})


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"unit_amount": 1000}, "unit_amount"),
        ({"currency": "eur"}, "currency"),
        ({"recurring": {"interval": "month"}}, "recurring"),
        ({"product": "prod_other"}, "product"),
    ],
)
def test_price_amount_currency_recurring_are_immutable(
    client: stripe.StripeClient, price: stripe.Price, params: dict, param: str
) -> None:
    err = stripe_error(lambda: client.v1.prices.update(price.id, params=params))  # type: ignore[arg-type]
    assert err.http_status == 400
    assert err.code == "parameter_unknown"
    assert err.param == param
    assert client.v1.prices.retrieve(price.id).unit_amount == 900


def test_unknown_top_level_and_nested_parameters(client: stripe.StripeClient) -> None:
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x", "colour": "red"}))  # type: ignore[typeddict-unknown-key]
    assert (err.code, err.param) == ("parameter_unknown", "colour")
    err = stripe_error(
        lambda: client.v1.products.create(
            params={"name": "x", "default_price_data": {"currency": "usd", "unit_amount": 1, "nickname": "n"}}  # type: ignore[typeddict-unknown-key]
        )
    )
    assert (err.code, err.param) == ("parameter_unknown", "default_price_data[nickname]")
    err = stripe_error(
        lambda: client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 1, "product_data": {"name": "x", "images": ["u"]}}  # type: ignore[typeddict-unknown-key]
        )
    )
    assert (err.code, err.param) == ("parameter_unknown", "product_data[images]")
    # Nothing was written by any of the rejected calls.
    assert client.v1.products.list().data == []


def test_product_update_rejects_create_only_params(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    err = stripe_error(lambda: client.v1.products.update(product.id, params=off_schema({"type": "good"})))
    assert (err.code, err.param) == ("parameter_unknown", "type")
    err = stripe_error(
        lambda: client.v1.products.update(
            product.id,
            params=off_schema({"default_price_data": {"currency": "usd", "unit_amount": 1}}),
        )
    )
    assert (err.code, err.param) == ("parameter_unknown", "default_price_data")


def test_required_params(client: stripe.StripeClient) -> None:
    err = stripe_error(lambda: client.v1.products.create(params={"description": "no name"}))  # type: ignore[typeddict-item]
    assert (err.code, err.param) == ("parameter_missing", "name")
    err = stripe_error(lambda: client.v1.prices.create(params={"product_data": {"name": "x"}, "unit_amount": 5}))  # type: ignore[typeddict-item]
    assert (err.code, err.param) == ("parameter_missing", "currency")
    err = stripe_error(
        lambda: client.v1.prices.create(
            params=off_schema({"currency": "usd", "unit_amount": 5, "recurring": {"interval_count": 2}})
        )
    )
    assert (err.code, err.param) == ("parameter_missing", "recurring[interval]")


def test_typed_values_are_checked(emulator) -> None:
    auth = {"Authorization": "Bearer sk_test_x"}
    r = requests.post(f"{emulator.url}/v1/products", data={"name": "x", "active": "yes"}, headers=auth, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "active"
    r = requests.get(f"{emulator.url}/v1/products", params={"limit": "ten"}, headers=auth, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "parameter_invalid_integer"


def test_empty_string_only_unsets_fields_that_allow_it(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x", "description": "d", "url": "https://x"})
    updated = client.v1.products.update(product.id, params={"description": "", "url": ""})
    assert updated.description is None
    assert updated.url is None
    err = stripe_error(lambda: client.v1.products.update(product.id, params={"name": ""}))
    assert (err.code, err.param) == ("parameter_invalid_empty", "name")


def test_request_options_are_not_params(client: stripe.StripeClient) -> None:
    # stripe-python's params TypedDicts include request options; those travel as headers and must
    # not be accepted in the body.
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x", "idempotency_key": "k"}))  # type: ignore[typeddict-unknown-key]
    assert (err.code, err.param) == ("parameter_unknown", "idempotency_key")
