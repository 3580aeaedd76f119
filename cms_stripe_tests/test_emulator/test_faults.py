"""Latency and seeded faults: 500s and dropped connections before or after the write, 429
lock_timeout, injected rate-limit 429s."""

from __future__ import annotations

import threading
import time

import stripe

from cms_stripe.emulator import FaultConfig

from .helpers import new_client, stripe_error


def test_500_before_write_applies_nothing(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(error_500_before=1.0))
    err = stripe_error(lambda: client.v1.products.create(params={"name": "x"}), stripe.APIError)
    assert err.http_status == 500
    assert err.json_body["error"]["type"] == "api_error"
    info = emulator.inspect()
    assert info["objects"]["products"] == 0
    assert info["faults"] == {"error_500_before": 1}
    assert info.get("writes", {}) == {}


def test_500_after_write_applies_it(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(error_500_after=1.0))
    stripe_error(lambda: client.v1.products.create(params={"name": "x", "id": "cms_1"}), stripe.APIError)
    emulator.configure(faults=FaultConfig())
    assert client.v1.products.retrieve("cms_1").name == "x"
    assert emulator.inspect()["writes"] == {"POST /v1/products": 1}


def test_drop_before_write(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(drop_before=1.0))
    stripe_error(lambda: client.v1.products.create(params={"name": "x"}), stripe.APIConnectionError)
    info = emulator.inspect()
    assert info["objects"]["products"] == 0
    assert info["status_codes"] == {"dropped": 1}
    assert info["faults"] == {"drop_before": 1}


def test_drop_after_write_then_retry_with_same_key_gets_the_success(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(drop_after=1.0))
    stripe_error(
        lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "d1"}),
        stripe.APIConnectionError,
    )
    assert emulator.inspect()["objects"]["products"] == 1
    # Still faulty, but a replay returns the stored result before any fault can apply.
    replay = client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "d1"})
    assert replay.name == "x"
    assert emulator.inspect()["objects"]["products"] == 1


def test_stripe_python_network_retry_recovers_from_a_drop_after_write(emulator) -> None:
    emulator.configure(faults=FaultConfig(drop_after=1.0))
    client = new_client(emulator.url, max_network_retries=1)
    product = client.v1.products.create(params={"name": "x"})
    info = emulator.inspect()
    assert info["objects"]["products"] == 1
    assert info["idempotent_replays"] == 1
    assert product.id == emulator.objects()["products"][0]["id"]


def test_lock_timeout(emulator, client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "x"})
    emulator.configure(faults=FaultConfig(lock_timeout_429=1.0))
    err = stripe_error(lambda: client.v1.products.update(product.id, params={"name": "y"}), stripe.RateLimitError)
    assert err.json_body["error"]["code"] == "lock_timeout"
    assert "Stripe-Rate-Limited-Reason" not in err.headers
    # Reads are not writes: no lock timeouts there.
    assert client.v1.products.retrieve(product.id).name == "x"


def test_injected_rate_limit_429(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(rate_429=1.0))
    err = stripe_error(lambda: client.v1.products.list(), stripe.RateLimitError)
    assert err.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert emulator.inspect()["faults"] == {"rate_429": 1}


def test_read_faults_only_when_asked(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(faults=FaultConfig(error_500_before=1.0))
    assert client.v1.products.list().data == []
    emulator.configure(faults=FaultConfig(error_500_before=1.0, reads=True))
    assert stripe_error(lambda: client.v1.products.list(), stripe.APIError).http_status == 500


def _pattern(emulator, client: stripe.StripeClient) -> list[str]:
    out = []
    for i in range(30):
        try:
            client.v1.products.create(params={"name": f"p{i}"})
            out.append("ok")
        except stripe.StripeError as e:
            out.append(type(e).__name__)
    return out


def test_faults_are_seeded_and_repeatable(emulator, client: stripe.StripeClient) -> None:
    faults = FaultConfig(error_500_before=0.15, error_500_after=0.1, lock_timeout_429=0.1, drop_before=0.05, seed=7)
    emulator.configure(faults=faults)
    first = _pattern(emulator, client)
    emulator.reset()
    assert _pattern(emulator, client) == first
    assert "ok" in first
    assert len(set(first)) >= 3
    emulator.reset()
    emulator.configure(faults=FaultConfig(error_500_before=0.15, error_500_after=0.1, lock_timeout_429=0.1, seed=8))
    assert _pattern(emulator, client) != first


def test_latency_is_applied_without_serialising_requests(emulator) -> None:
    emulator.configure(latency_ms=150.0, jitter_ms=20.0)
    client = new_client(emulator.url)
    t0 = time.monotonic()
    client.v1.products.list()
    assert time.monotonic() - t0 >= 0.125

    # Forty requests that each sleep 4 s on the server. If latency blocked the event loop they would
    # run one at a time and the server would never hold more than one in flight; waiting for all forty
    # to be in flight at once (not for a wall-clock window) proves they sleep side by side.
    emulator.configure(latency_ms=4000.0, jitter_ms=0.0)
    clients = [new_client(emulator.url) for _ in range(40)]
    threads = [threading.Thread(target=c.v1.products.list) for c in clients]
    for t in threads:
        t.start()
    peak = 0
    deadline = time.monotonic() + 60
    while peak < 40 and time.monotonic() < deadline:
        peak = max(peak, emulator.inspect()["in_flight"])
    for t in threads:
        t.join()
    assert peak == 40
    log = emulator.requests_log()[-40:]
    assert len(log) == 40
    assert all(e["status"] == 200 and e["end"] - e["start"] >= 3.99 for e in log)
