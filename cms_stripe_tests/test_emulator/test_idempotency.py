"""Idempotency keys on POST: replay without re-applying, mismatch errors, concurrent duplicates,
and which results are stored (2xx and 5xx) or not (validation 400s, 429s)."""

from __future__ import annotations

import threading

import pytest
import stripe

from cms_stripe.emulator import FaultConfig

from .helpers import new_client, stripe_error


def test_same_key_same_params_replays_without_reapplying(emulator, client: stripe.StripeClient) -> None:
    params = {"name": "x", "metadata": {"cms_id": "1"}}
    first = client.v1.products.create(params=params, options={"idempotency_key": "create-1"})  # type: ignore[arg-type]
    second = client.v1.products.create(params=params, options={"idempotency_key": "create-1"})  # type: ignore[arg-type]
    assert second.id == first.id
    assert second.to_dict() == first.to_dict()
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    info = emulator.inspect()
    assert info["objects"]["products"] == 1
    assert info["writes"]["POST /v1/products"] == 1
    assert info["idempotent_replays"] == 1


def test_same_key_different_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k"})
    err = stripe_error(
        lambda: client.v1.products.create(params={"name": "y"}, options={"idempotency_key": "k"}),
        stripe.IdempotencyError,
    )
    assert err.http_status == 400
    # The key is also bound to its endpoint.
    product = client.v1.products.list().data[0]
    stripe_error(
        lambda: client.v1.products.update(product.id, params={"name": "x"}, options={"idempotency_key": "k"}),
        stripe.IdempotencyError,
    )


def test_keys_are_scoped_to_the_api_key(emulator) -> None:
    a = new_client(emulator.url, "sk_test_a").v1.products.create(params={"name": "x"}, options={"idempotency_key": "k"})
    b = new_client(emulator.url, "sk_test_b").v1.products.create(params={"name": "x"}, options={"idempotency_key": "k"})
    assert a.id != b.id


@pytest.mark.timing
def test_concurrent_duplicate_is_409(emulator) -> None:
    emulator.configure(latency_ms=300.0)
    results: list[object] = []

    def call() -> None:
        c = new_client(emulator.url)
        try:
            results.append(c.v1.products.create(params={"name": "x"}, options={"idempotency_key": "same"}))
        except stripe.StripeError as e:
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, stripe.StripeError)]
    assert len(errors) == 1
    assert errors[0].http_status == 409
    assert isinstance(errors[0], stripe.APIError)
    assert emulator.inspect()["objects"]["products"] == 1
    # The conflict stored nothing: the key now replays the winner.
    replay = new_client(emulator.url).v1.products.create(params={"name": "x"}, options={"idempotency_key": "same"})
    assert replay.id == next(r for r in results if isinstance(r, stripe.Product)).id


def test_validation_400_is_not_stored(client: stripe.StripeClient) -> None:
    params = {"product": "cms_late", "currency": "usd", "unit_amount": 5}
    err = stripe_error(lambda: client.v1.prices.create(params=params, options={"idempotency_key": "p1"}))  # type: ignore[arg-type]
    assert err.code == "resource_missing"
    client.v1.products.create(params={"name": "late", "id": "cms_late"})
    # Same key, same params: re-executed (not replayed), and now it succeeds.
    price = client.v1.prices.create(params=params, options={"idempotency_key": "p1"})  # type: ignore[arg-type]
    assert price.product == "cms_late"


def test_500_is_stored_and_replayed(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(error_500_after=1.0))
    err = stripe_error(
        lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k5"}), stripe.APIError
    )
    assert err.http_status == 500
    emulator.configure(faults=FaultConfig())
    again = stripe_error(
        lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k5"}), stripe.APIError
    )
    assert again.http_status == 500
    assert again.headers.get("Idempotent-Replayed") == "true"
    info = emulator.inspect()
    assert info["objects"]["products"] == 1  # applied once, by the first request
    assert info["idempotent_replays"] == 1


def test_429_is_not_stored(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(lock_timeout_429=1.0))
    err = stripe_error(
        lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k4"}),
        stripe.RateLimitError,
    )
    # stripe-python does not copy `code` onto RateLimitError; it is in the error body.
    assert err.json_body["error"]["code"] == "lock_timeout"
    emulator.configure(faults=FaultConfig())
    product = client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k4"})
    assert product.last_response is not None
    assert "Idempotent-Replayed" not in product.last_response.headers
    assert emulator.inspect()["objects"]["products"] == 1


def test_client_retries_reuse_the_key_safely(emulator) -> None:
    # stripe-python retries a 500 with the same key; Stripe stores the 500, so every retry replays it.
    emulator.configure(faults=FaultConfig(error_500_before=1.0))
    client = new_client(emulator.url, max_network_retries=2)
    stripe_error(
        lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "r"}), stripe.APIError
    )
    info = emulator.inspect()
    assert info["requests"]["POST /v1/products"] == 3
    assert info["idempotent_replays"] == 2
    assert info["objects"]["products"] == 0
