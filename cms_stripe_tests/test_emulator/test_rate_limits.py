"""Rate limits: global and per-endpoint sliding one-second windows, sandbox limits for test keys,
the concurrency limit, and their place before idempotency."""

from __future__ import annotations

import threading
import time

import stripe

from .conftest import ManualClock
from .helpers import error_body, headers_of, new_client


def _burst(call, n: int) -> list[object]:
    out: list[object] = []
    for _ in range(n):
        try:
            out.append(call())
        except stripe.RateLimitError as e:
            out.append(e)
    return out


def _limited(results: list[object]) -> list[stripe.RateLimitError]:
    return [r for r in results if isinstance(r, stripe.RateLimitError)]


def test_global_limit(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(enforce_rate_limits=True, global_rps=10.0, endpoint_rps=100.0)
    results = _burst(lambda: client.v1.products.list(), 14)
    limited = _limited(results)
    assert len(limited) == 4
    for e in limited:
        assert e.http_status == 429
        assert headers_of(e)["Stripe-Rate-Limited-Reason"] == "global-rate"
        assert error_body(e)["error"]["code"] == "rate_limit"
        assert "Stripe-Should-Retry" not in headers_of(e)
    info = emulator.inspect()
    assert info["rate_limited"] == {"global-rate": 4}
    assert info["peak_admitted_rps"]["global"] == 10
    assert info["peak_rps"]["global"] == 14
    assert info["status_codes"] == {"200": 10, "429": 4}


def test_endpoint_limit_is_per_method_and_route(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(enforce_rate_limits=True, global_rps=100.0, endpoint_rps=5.0)
    results = _burst(lambda: client.v1.products.create(params={"name": "x"}), 7)
    limited = _limited(results)
    assert len(limited) == 2
    assert {headers_of(e)["Stripe-Rate-Limited-Reason"] for e in limited} == {"endpoint-rate"}
    # Other endpoints have their own windows.
    product = next(r for r in results if isinstance(r, stripe.Product))
    assert client.v1.products.update(product.id, params={"name": "y"}).name == "y"
    assert client.v1.products.list().data
    assert client.v1.products.retrieve(product.id).id == product.id
    info = emulator.inspect()
    assert info["peak_admitted_rps"]["endpoints"]["POST /v1/products"] == 5
    assert info["requests"]["POST /v1/products"] == 7
    assert info["objects"]["products"] == 5


def test_window_slides(emulator, emulator_clock: ManualClock, client: stripe.StripeClient) -> None:
    emulator.configure(enforce_rate_limits=True, global_rps=5.0)
    assert len(_limited(_burst(lambda: client.v1.products.list(), 6))) == 1
    emulator_clock.advance(1.05)
    assert _limited(_burst(lambda: client.v1.products.list(), 5)) == []


def test_test_mode_limits_apply_to_test_keys_only(emulator, emulator_clock: ManualClock) -> None:
    emulator.configure(enforce_rate_limits=True, global_rps=100.0, endpoint_rps=1000.0, test_mode_limits=True)
    test_client = new_client(emulator.url, "sk_test_x")
    limited = _limited(_burst(lambda: test_client.v1.products.list(), 30))
    assert len(limited) == 5
    assert headers_of(limited[0])["Stripe-Rate-Limited-Reason"] == "global-rate"
    emulator_clock.advance(1.05)
    live_client = new_client(emulator.url, "sk_live_x")
    assert _limited(_burst(lambda: live_client.v1.products.list(), 30)) == []


def test_rate_limit_runs_before_idempotency(emulator, emulator_clock: ManualClock, client: stripe.StripeClient) -> None:
    emulator.configure(enforce_rate_limits=True, endpoint_rps=2.0)
    client.v1.products.create(params={"name": "a"})
    client.v1.products.create(params={"name": "b"})
    err = _limited(_burst(lambda: client.v1.products.create(params={"name": "c"}, options={"idempotency_key": "c"}), 1))
    assert len(err) == 1
    emulator_clock.advance(1.05)
    # The 429 stored nothing: the same key now executes for real, then replays.
    created = client.v1.products.create(params={"name": "c"}, options={"idempotency_key": "c"})
    assert created.last_response is not None
    assert "Idempotent-Replayed" not in created.last_response.headers
    replay = client.v1.products.create(params={"name": "c"}, options={"idempotency_key": "c"})
    assert replay.id == created.id
    assert emulator.inspect()["objects"]["products"] == 3


def test_search_has_its_own_lower_limit(emulator, client: stripe.StripeClient) -> None:
    emulator.configure(enforce_rate_limits=True, endpoint_rps=100.0, search_rps=3.0)
    limited = _limited(_burst(lambda: client.v1.products.search(params={"query": "active:'true'"}), 5))
    assert [headers_of(e)["Stripe-Rate-Limited-Reason"] for e in limited] == ["endpoint-rate", "endpoint-rate"]


def test_concurrency_limit(emulator) -> None:
    # Admitted requests sleep 3 s on the server; rejected ones answer at once.
    emulator.configure(enforce_rate_limits=True, concurrency_limit=2, latency_ms=3000.0)
    results: list[object] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        c = new_client(emulator.url)
        try:
            r: object = c.v1.products.create(params={"name": f"p{i}"})
        except stripe.RateLimitError as e:
            r = e
        with lock:
            results.append(r)

    holders = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in holders:
        t.start()
    # Wait for the two to be in flight on the server (an event, not a guess at timing), then three more.
    deadline = time.monotonic() + 30
    while emulator.inspect()["in_flight"] < 2:
        assert time.monotonic() < deadline, "the first two requests never got in flight"
    for i in range(2, 5):
        call(i)
    for t in holders:
        t.join()
    limited = _limited(results)
    assert len(limited) == 3
    assert {headers_of(e)["Stripe-Rate-Limited-Reason"] for e in limited} == {"global-concurrency"}
    assert emulator.inspect()["rate_limited"] == {"global-concurrency": 3}
