"""StripeGateway: retries, idempotency keys, ambiguity, circuit breaker, pagination.

Unit tests drive a scripted fake StripeClient with a fake clock; the integration tests at the end
use the real stripe-python client over HTTP against the Stripe emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from requests.structures import CaseInsensitiveDict
from stripe._api_requestor import _APIRequestor

from cms_stripe.core.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
    classify,
)
from cms_stripe.core.gateway import StripeGateway
from cms_stripe.core.limits import (
    EP_CREATE_PRICE,
    EP_CREATE_PRODUCT,
    EP_LIST_PRICES,
    EP_LIST_PRODUCTS,
    EP_RETRIEVE_PRODUCT,
    LimitModel,
    RateLimiter,
)

# -- fakes -------------------------------------------------------------------------------------------


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


def rate_429(reason: str = "endpoint-rate") -> stripe.StripeError:
    return api_error(429, code="rate_limit", headers={"Stripe-Rate-Limited-Reason": reason})


def lock_429() -> stripe.StripeError:
    return api_error(429, code="lock_timeout", headers={"Stripe-Rate-Limited-Reason": "resource-specific"})


def server_500() -> stripe.StripeError:
    return api_error(500, type_="api_error", message="An unknown error occurred")


def conflict_409() -> stripe.StripeError:
    return api_error(409, type_="idempotency_error", message="key in use")


def dropped() -> stripe.StripeError:
    return stripe.APIConnectionError("Network error: ConnectionError: Connection aborted.")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _Resource:
    def __init__(self, client: FakeClient, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, params: Any = None, options: Any = None) -> Any:
            return self._client._dispatch(self._name, method, args, params, options)

        return call


class FakeClient:
    """Stands in for stripe.StripeClient: records every request, answers from a script.

    `script` maps "products.create" (etc.) to a list of outcomes consumed in order; an outcome is an
    exception to raise, a dict to return as a StripeObject, or a callable(params) -> either.
    """

    def __init__(self, script: dict[str, list[Any]] | None = None, default: Any = None) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.v1 = type("V1", (), {})()
        self.v1.products = _Resource(self, "products")
        self.v1.prices = _Resource(self, "prices")
        self._lock = threading.Lock()

    def _dispatch(self, resource: str, method: str, args: tuple, params: Any, options: Any) -> Any:
        name = f"{resource}.{method}"
        with self._lock:
            self.requests.append({"op": name, "args": args, "params": params, "options": dict(options or {})})
            queue = self.script.get(name)
            outcome = queue.pop(0) if queue else self.default
        if callable(outcome) and not isinstance(outcome, BaseException):
            outcome = outcome(params)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:
            outcome = {"id": args[0] if args else "obj_1", "object": resource[:-1]}
        return stripe.StripeObject.construct_from(outcome, "sk_test_fake")

    def keys(self, op: str) -> list[str | None]:
        return [r["options"].get("idempotency_key") for r in self.requests if r["op"] == op]


def make_gateway(client: FakeClient, clock: FakeClock | None = None, **kw: Any) -> StripeGateway:
    clock = clock or FakeClock()
    limits = kw.pop("limits", LimitModel(global_rps=100, endpoint_rps=25))
    return StripeGateway(client, limits, sleep=clock.sleep, clock=clock, **kw)  # type: ignore[arg-type]


PRODUCT = {"id": "cms_p1", "name": "Mug"}

# -- retries with the same key ---------------------------------------------------------------------


def test_rate_429_is_retried_with_the_same_key_and_slows_the_limiter() -> None:
    client = FakeClient({"products.create": [rate_429("endpoint-rate"), rate_429("global-rate"), {"id": "cms_p1"}]})
    gw = make_gateway(client)
    before = gw.limiter.endpoint_rate(EP_CREATE_PRODUCT)
    assert gw.create_product(PRODUCT, "key-1") == {"id": "cms_p1"}
    assert client.keys("products.create") == ["key-1", "key-1", "key-1"]
    assert gw.limiter.penalties == {EP_CREATE_PRODUCT: 1, "global": 1}
    assert gw.limiter.endpoint_rate(EP_CREATE_PRODUCT) < before
    snap = gw.stats.snapshot()
    assert snap["rate_limited"] == {"endpoint-rate": 1, "global-rate": 1}
    assert snap["retries"] == 2 and snap["calls"] == {EP_CREATE_PRODUCT: 3}
    assert snap["status"] == {"200": 1, "429": 2}


def test_lock_timeout_retries_soon_without_slowing_the_limiter() -> None:
    client = FakeClient({"products.update": [lock_429(), lock_429(), {"id": "cms_p1"}]})
    clock = FakeClock()
    gw = make_gateway(client, clock)
    assert gw.update_product("cms_p1", {"name": "Mug 2"}, "key-2") == {"id": "cms_p1"}
    assert client.keys("products.update") == ["key-2"] * 3
    assert gw.limiter.penalties == {}
    assert gw.stats.rate_limited == {"lock_timeout": 2}
    backoffs = [s for s in clock.slept if s > 0.045]  # limiter pacing sleeps are 1/22 s at most
    assert backoffs and all(0.05 <= s <= 0.25 for s in backoffs)


def test_dropped_connection_on_write_is_retried_with_the_same_key() -> None:
    client = FakeClient({"prices.create": [dropped(), dropped(), {"id": "price_1"}]})
    gw = make_gateway(client)
    assert gw.create_price({"product": "cms_p1"}, "key-3") == {"id": "price_1"}
    assert client.keys("prices.create") == ["key-3"] * 3
    assert gw.stats.status[0] == 2


def test_409_key_in_use_is_retried_with_the_same_key() -> None:
    client = FakeClient({"prices.update": [conflict_409(), {"id": "price_1"}]})
    gw = make_gateway(client)
    assert gw.update_price("price_1", {"active": False}, "key-4") == {"id": "price_1"}
    assert client.keys("prices.update") == ["key-4", "key-4"]


# -- 5xx: ambiguous writes, retried reads --------------------------------------------------------------


def test_5xx_on_a_write_is_ambiguous_and_not_retried() -> None:
    client = FakeClient({"products.create": [server_500(), {"id": "never"}]})
    gw = make_gateway(client)
    with pytest.raises(AmbiguousWriteError) as info:
        gw.create_product(PRODUCT, "key-5")
    err = info.value
    assert err.idempotency_key == "key-5"
    assert err.severity is Severity.MEDIUM and classify(err) is Severity.MEDIUM
    assert err.http_status == 500 and err.endpoint == EP_CREATE_PRODUCT
    assert len(client.requests) == 1  # the same key would only replay the stored 500
    assert gw.stats.ambiguous == 1


def test_dropped_then_5xx_replay_is_ambiguous() -> None:
    client = FakeClient({"products.create": [dropped(), server_500()]})
    gw = make_gateway(client)
    with pytest.raises(AmbiguousWriteError):
        gw.create_product(PRODUCT, "key-6")
    assert client.keys("products.create") == ["key-6", "key-6"]


def test_5xx_on_a_read_is_retried() -> None:
    client = FakeClient({"products.retrieve": [server_500(), api_error(503, type_="api_error"), {"id": "cms_p1"}]})
    gw = make_gateway(client)
    assert gw.retrieve_product("cms_p1", expand=["default_price"]) == {"id": "cms_p1"}
    assert len(client.requests) == 3
    assert client.requests[0]["params"] == {"expand": ["default_price"]}


# -- definite answers -----------------------------------------------------------------------------------


def test_duplicate_create_raises_already_exists() -> None:
    client = FakeClient({"products.create": [api_error(400, code="resource_already_exists", param="id")]})
    gw = make_gateway(client)
    with pytest.raises(AlreadyExistsError) as info:
        gw.create_product(PRODUCT, "key-7")
    assert info.value.severity is Severity.LOW
    assert info.value.code == "resource_already_exists" and info.value.param == "id"
    assert len(client.requests) == 1


def test_validation_error_is_high_and_not_retried() -> None:
    client = FakeClient({"prices.create": [api_error(400, code="parameter_invalid_integer", param="unit_amount")]})
    gw = make_gateway(client)
    with pytest.raises(StripeSyncError) as info:
        gw.create_price({"unit_amount": "x"}, "key-8")
    assert info.value.severity is Severity.HIGH
    assert info.value.code == "parameter_invalid_integer"
    assert (info.value.param, info.value.http_status) == ("unit_amount", 400)
    assert len(client.requests) == 1


def test_auth_error_is_critical_and_never_echoes_the_key() -> None:
    client = FakeClient({"products.create": [api_error(401, message="Invalid API Key provided: sk_live_****abcd")]})
    gw = make_gateway(client)
    with pytest.raises(StripeSyncError) as info:
        gw.create_product(PRODUCT, "key-9")
    assert info.value.severity is Severity.CRITICAL
    assert "sk_live" not in str(info.value)


def test_permission_error_is_critical() -> None:
    client = FakeClient({"prices.create": [api_error(403, message="rk_live key lacks write on prices")]})
    with pytest.raises(StripeSyncError) as info:
        make_gateway(client).create_price({}, "key-10")
    assert info.value.severity is Severity.CRITICAL


def test_update_of_missing_product_is_high_and_retrieve_returns_none() -> None:
    missing = api_error(404, code="resource_missing", param="id")
    client = FakeClient({"products.update": [missing], "products.retrieve": [missing]})
    gw = make_gateway(client)
    with pytest.raises(StripeSyncError) as info:
        gw.update_product("cms_gone", {"name": "x"}, "key-11")
    assert info.value.severity is Severity.HIGH and info.value.http_status == 404
    assert gw.retrieve_product("cms_gone") is None


def test_delete_of_absent_product_counts_as_done() -> None:
    client = FakeClient({"products.delete": [dropped(), api_error(404, code="resource_missing", param="id")]})
    gw = make_gateway(client)
    result = gw.delete_product("cms_p1")
    assert result["deleted"] is True and result["already_absent"] is True


def test_idempotency_key_is_required_for_writes() -> None:
    gw = make_gateway(FakeClient())
    with pytest.raises(ValueError):
        gw.create_product(PRODUCT, "")
    with pytest.raises(ValueError):
        gw.create_price({}, "k" * 256)


# -- exhaustion, backoff, breaker -------------------------------------------------------------------------


def test_persistent_429_exhausts_with_bounded_backoff() -> None:
    clock = FakeClock()
    client = FakeClient(default=rate_429("endpoint-rate"))
    gw = make_gateway(client, clock, max_attempts=6, backoff_base_s=0.25, backoff_max_s=2.0)
    with pytest.raises(RetriesExhaustedError) as info:
        gw.create_product(PRODUCT, "key-12")
    assert info.value.severity is Severity.HIGH  # Stripe is up; skip this product, keep the run
    assert info.value.idempotency_key == "key-12"
    assert len(client.requests) == 6
    assert client.keys("products.create") == ["key-12"] * 6
    assert gw.stats.retries == 5
    assert max(clock.slept) <= 2.0
    assert clock.now < 6 * 2.0 + 6  # backoff caps plus (penalised) pacing: bounded


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    gw = make_gateway(FakeClient(), backoff_base_s=0.25, backoff_max_s=8.0)
    import tenacity

    for attempt in range(1, 12):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        waits = [gw._wait(state) for _ in range(200)]
        ceiling = min(8.0, 0.25 * 2 ** (attempt - 1))
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.5  # jitter spans the range, not a constant


def test_down_stripe_opens_the_circuit_after_bounded_attempts() -> None:
    clock = FakeClock()
    client = FakeClient(default=dropped())
    gw = make_gateway(client, clock, max_attempts=8, backoff_base_s=0.25, backoff_max_s=8.0)
    with pytest.raises(CircuitOpenError) as info:
        gw.create_product(PRODUCT, "key-13")
    err = info.value
    assert err.severity is Severity.CRITICAL and classify(err) is Severity.CRITICAL
    assert "circuit open" in err.message and "re-run `cms-stripe migrate`" in err.message
    assert "nothing is lost" in err.message
    assert len(client.requests) == 8
    assert clock.now <= 7 * 8.0 + 1  # simulated seconds spent, bounded by the backoff caps
    # Every further call fails fast, without touching Stripe.
    with pytest.raises(CircuitOpenError):
        gw.retrieve_product("cms_p2")
    with pytest.raises(CircuitOpenError):
        gw.create_price({}, "key-14")
    assert len(client.requests) == 8
    assert gw.stats.circuit_opened == 1
    assert gw.circuit_state == "open"


def test_breaker_counts_consecutive_failures_across_calls() -> None:
    client = FakeClient(default=server_500())
    gw = make_gateway(client, breaker_fail_max=3)
    for i in range(2):
        with pytest.raises(AmbiguousWriteError):
            gw.create_product(PRODUCT, f"key-a{i}")
    with pytest.raises(CircuitOpenError):
        gw.create_product(PRODUCT, "key-a2")
    with pytest.raises(CircuitOpenError):
        gw.create_product(PRODUCT, "key-a3")
    assert len(client.requests) == 3


def test_a_success_resets_the_breaker_count() -> None:
    client = FakeClient({"products.create": [server_500(), server_500(), {"id": "ok"}, server_500(), server_500()]})
    gw = make_gateway(client, breaker_fail_max=3)
    outcomes = []
    for i in range(5):
        try:
            gw.create_product(PRODUCT, f"key-b{i}")
            outcomes.append("ok")
        except AmbiguousWriteError:
            outcomes.append("ambiguous")
    assert outcomes == ["ambiguous", "ambiguous", "ok", "ambiguous", "ambiguous"]
    assert gw.circuit_state == "closed"


def test_4xx_answers_do_not_count_towards_the_breaker() -> None:
    bad = api_error(400, code="parameter_invalid_integer", param="unit_amount")
    client = FakeClient(default=bad)
    gw = make_gateway(client, breaker_fail_max=2)
    for i in range(5):
        with pytest.raises(StripeSyncError) as info:
            gw.create_price({}, f"key-c{i}")
        assert info.value.severity is Severity.HIGH
    assert gw.circuit_state == "closed"


def test_breaker_allows_a_trial_after_the_reset_timeout() -> None:
    clock = FakeClock()
    client = FakeClient({"products.retrieve": [dropped(), dropped(), {"id": "cms_p1"}]})
    gw = make_gateway(client, clock, max_attempts=2, breaker_fail_max=2, breaker_reset_s=0.0)
    with pytest.raises(CircuitOpenError):
        gw.retrieve_product("cms_p1")
    assert gw.retrieve_product("cms_p1") == {"id": "cms_p1"}  # half-open trial succeeds
    assert gw.circuit_state == "closed"


# -- reads: chunking and pagination -----------------------------------------------------------------------


def test_list_products_chunks_ids_by_100() -> None:
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        return {"object": "list", "has_more": False, "data": [{"id": i} for i in params["ids"] if i != "cms_5"]}

    client = FakeClient(default=answer)
    gw = make_gateway(client)
    ids = [f"cms_{i}" for i in range(250)] + ["cms_1"]  # a duplicate is asked once
    found = gw.list_products(ids)
    assert sorted(p["id"] for p in found) == sorted(set(ids) - {"cms_5"})
    sizes = [len(r["params"]["ids"]) for r in client.requests]
    assert sizes == [100, 100, 50]
    assert all(r["params"]["limit"] == 100 for r in client.requests)
    assert all(r["params"]["expand"] == ["data.default_price"] for r in client.requests)
    assert all("starting_after" not in r["params"] for r in client.requests)  # Stripe forbids it with ids
    assert gw.stats.calls == {EP_LIST_PRODUCTS: 3}
    assert gw.list_products([]) == []


def test_list_products_splits_a_chunk_that_says_has_more() -> None:
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        ids = params["ids"]
        return {"object": "list", "has_more": len(ids) > 2, "data": [{"id": i} for i in ids[:2]]}

    client = FakeClient(default=answer)
    found = make_gateway(client).list_products([f"p{i}" for i in range(6)], expand_default_price=False)
    assert sorted(p["id"] for p in found) == [f"p{i}" for i in range(6)]
    assert all("expand" not in r["params"] for r in client.requests)


def test_list_prices_pages_and_chunks_lookup_keys_by_10() -> None:
    def answer(params: dict[str, Any]) -> dict[str, Any]:
        keys = params.get("lookup_keys", [])
        data = [{"id": f"price_{k}", "lookup_key": k} for k in keys]
        after = params.get("starting_after")
        if after is None and len(data) > 3:
            return {"object": "list", "has_more": True, "data": data[:3]}
        if after is not None:
            start = [d["id"] for d in data].index(after) + 1
            return {"object": "list", "has_more": False, "data": data[start:]}
        return {"object": "list", "has_more": False, "data": data}

    client = FakeClient(default=answer)
    gw = make_gateway(client)
    keys = [f"k{i}" for i in range(25)]
    prices = gw.list_prices(lookup_keys=keys, active=True, product="cms_p1")
    assert sorted(p["lookup_key"] for p in prices) == sorted(keys)
    firsts = [r["params"] for r in client.requests if "starting_after" not in r["params"]]
    assert [len(p["lookup_keys"]) for p in firsts] == [10, 10, 5]
    assert all(p["active"] is True and p["product"] == "cms_p1" and p["limit"] == 100 for p in firsts)
    assert [r["params"]["starting_after"] for r in client.requests if "starting_after" in r["params"]] == [
        "price_k2",
        "price_k12",
        "price_k22",
    ]
    assert gw.stats.calls == {EP_LIST_PRICES: 6}


def test_list_prices_without_filters_follows_every_page() -> None:
    pages = [
        {"object": "list", "has_more": True, "data": [{"id": "price_1"}, {"id": "price_2"}]},
        {"object": "list", "has_more": True, "data": [{"id": "price_3"}]},
        {"object": "list", "has_more": False, "data": [{"id": "price_4"}]},
    ]
    client = FakeClient({"prices.list": pages})
    assert [p["id"] for p in make_gateway(client).list_prices()] == ["price_1", "price_2", "price_3", "price_4"]
    assert [r["params"].get("starting_after") for r in client.requests] == [None, "price_2", "price_3"]


def test_results_are_plain_dicts_all_the_way_down() -> None:
    nested = {"id": "cms_p1", "default_price": {"id": "price_1", "object": "price"}}
    client = FakeClient({"products.retrieve": [nested]})
    product = make_gateway(client).retrieve_product("cms_p1")
    assert type(product) is dict and type(product["default_price"]) is dict


# -- concurrency, stats, construction ---------------------------------------------------------------------


def test_max_concurrency_caps_requests_in_flight() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def slow(_params: Any) -> dict[str, Any]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return {"id": "x"}

    client = FakeClient(default=slow)
    gw = StripeGateway(client, LimitModel(global_rps=1000, endpoint_rps=1000, max_concurrency=3))  # type: ignore[arg-type]
    threads = [threading.Thread(target=gw.retrieve_product, args=(f"p{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(client.requests) == 12
    assert peak == 3
    assert gw.observed_latency() >= 0.015


def test_stats_snapshot_is_json_and_latency_is_an_ewma() -> None:
    clock = FakeClock()
    latencies = iter([0.1, 0.3])

    def timed(_params: Any) -> dict[str, Any]:
        clock.now += next(latencies)
        return {"id": "x"}

    client = FakeClient(default=timed)
    gw = make_gateway(client, clock)
    assert gw.observed_latency() == 0.0
    gw.retrieve_product("a")
    assert gw.observed_latency() == pytest.approx(0.1)
    gw.retrieve_product("b")
    assert gw.observed_latency() == pytest.approx(0.1 + 0.2 * (0.3 - 0.1))
    snap = gw.stats.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["calls"] == {EP_RETRIEVE_PRODUCT: 2}


def test_from_settings_builds_a_retry_free_client_and_hides_the_key() -> None:
    env = {"STRIPE_API_BASE": "http://127.0.0.1:1", "STRIPE_MAX_RPS": "50", "MIGRATION_MAX_CONCURRENCY": "4"}
    gw = StripeGateway.from_settings("sk_live_supersecret123", env=env)
    assert gw.limits == LimitModel(global_rps=50, endpoint_rps=25, max_concurrency=4, live=True)
    assert "supersecret" not in repr(gw) and "supersecret" not in repr(gw.limits)
    requestor = gw._client._requestor  # stripe-python internals: the only place these settings live
    assert requestor._options.max_network_retries == 0
    assert requestor.base_addresses.get("api") == "http://127.0.0.1:1"


def test_gateway_uses_an_injected_limiter() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep)
    gw = StripeGateway(FakeClient(), LimitModel(100, 25), limiter=limiter, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert gw.limiter is limiter
    gw.create_price({}, "key-z")
    assert limiter.wait_time(EP_CREATE_PRICE) > 0


def test_core_does_not_import_dagster() -> None:
    code = (
        "import sys, cms_stripe.core.limits, cms_stripe.core.errors, cms_stripe.core.gateway\n"
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
