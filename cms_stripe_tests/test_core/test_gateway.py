"""StripeGateway: retries, idempotency keys, ambiguity, circuit breaker, pagination.

Unit tests drive a scripted fake StripeClient with a fake clock; the integration tests at the end
use the real stripe-python client over HTTP against the Stripe emulator.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from cms_stripe.core.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
    classify,
)
from cms_stripe.core.ports import (
    EP_CREATE_PRICE,
    EP_CREATE_PRODUCT,
    EP_LIST_PRICES,
    EP_LIST_PRODUCTS,
    EP_RETRIEVE_PRODUCT,
)
from cms_stripe.core.settings import Settings
from cms_stripe.stripe.gateway import StripeGateway
from cms_stripe.stripe.limits import LimitModel, RateLimiter
from cms_stripe_tests.test_core.conftest import api_error

try:
    from cms_stripe.emulator import EmulatorConfig, EmulatorServer, FaultConfig

    HAVE_EMULATOR = True
except ImportError:  # the unit tests must still run without the emulator
    HAVE_EMULATOR = False

# -- fakes -------------------------------------------------------------------------------------------


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
    # Backoff ceilings 0.25+0.5+1+2+4+8+8 s, plus pacing: seconds, not minutes.
    assert clock.now <= 23.75 + 1
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
    """Twelve threads, a cap of 3: requests are held open until three are in flight together, and
    no fourth gets past the gateway meanwhile."""
    in_flight = 0
    peak = 0
    changed = threading.Condition()
    release = threading.Event()

    def held(_params: Any) -> dict[str, Any]:
        nonlocal in_flight, peak
        with changed:
            in_flight += 1
            peak = max(peak, in_flight)
            changed.notify_all()
        release.wait(timeout=30)
        with changed:
            in_flight -= 1
        return {"id": "x"}

    client = FakeClient(default=held)
    gw = StripeGateway(client, LimitModel(global_rps=1000, endpoint_rps=1000, max_concurrency=3))  # type: ignore[arg-type]
    threads = [threading.Thread(target=gw.retrieve_product, args=(f"p{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    with changed:
        assert changed.wait_for(lambda: in_flight == 3, timeout=30), "three requests never got in flight"
        # The 3 in flight is the synchronisation; this bounded wait only gives a fourth (a broken cap)
        # the chance to show itself, so a slow machine can hide a bug but never fail a correct gateway.
        changed.wait_for(lambda: in_flight > 3, timeout=0.3)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert len(client.requests) == 12
    assert peak == 3


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
    key = "sk_live_" + "supersecret123"
    settings = Settings.from_env({"STRIPE_MAX_RPS": "50", "MIGRATION_MAX_CONCURRENCY": "4"})
    gw = StripeGateway.from_settings(key, "http://127.0.0.1:1", limits=LimitModel.for_key(key, settings))
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


# == integration: the real stripe-python client over HTTP against the Stripe emulator ================

requires_emulator = pytest.mark.skipif(
    not HAVE_EMULATOR, reason="module cms_stripe.emulator (the Stripe emulator) is not importable"
)

# Not a real key: the live prefix selects Stripe's live budgets (100/s global, 25/s per endpoint).
EMU_KEY = "sk_live_" + "e" * 24


def emu_gateway(url: str, **kw: Any) -> StripeGateway:
    return StripeGateway.from_settings(EMU_KEY, api_base=url, **{"allow_live": True, **kw})


def emulator_log(url: str) -> list[dict[str, Any]]:
    import requests

    resp = requests.get(f"{url}/_emulator/requests", timeout=10)
    resp.raise_for_status()
    return list(resp.json()["requests"])


@requires_emulator
@pytest.mark.timing
def test_emulator_mixed_load_at_live_limits_causes_no_429() -> None:
    """1,000 requests over five endpoints from 16 threads (about 10 s at the limits): paced, so Stripe
    never has to say 429."""
    from concurrent.futures import ThreadPoolExecutor

    n_products = 200  # five requests each
    with EmulatorServer(EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0)) as emu:
        gw = emu_gateway(emu.url)
        assert gw.limits == LimitModel(global_rps=100, endpoint_rps=25, max_concurrency=None, live=True)

        def lifecycle(i: int) -> str:
            pid = f"cms_load_{i}"
            created = gw.create_product({"id": pid, "name": f"Load {i}"}, f"test:cp:{pid}")
            price = gw.create_price(
                {"product": pid, "currency": "usd", "unit_amount": 100 + i, "lookup_key": f"lk_load_{i}"},
                f"test:pr:{pid}",
            )
            gw.update_product(pid, {"default_price": price["id"]}, f"test:up:{pid}")
            fetched = gw.retrieve_product(pid, expand=["default_price"])
            gw.update_price(price["id"], {"metadata": {"n": str(i)}}, f"test:upp:{pid}")
            assert fetched is not None and fetched["default_price"]["id"] == price["id"]
            return str(created["id"])

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(lifecycle, range(n_products)))
        elapsed = time.monotonic() - started
        report = emu.inspect()

    stats = gw.stats.snapshot()
    assert ids == [f"cms_load_{i}" for i in range(n_products)]
    assert stats["total_calls"] == 5 * n_products == report["requests_total"]
    assert report["rate_limited"] == {}, report["rate_limited"]
    assert stats["rate_limited"] == {} and stats["retries"] == 0
    assert report["status_codes"] == {"200": 5 * n_products}
    assert report["peak_rps"]["global"] <= 100
    assert max(report["peak_rps"]["endpoints"].values()) <= 25
    print(
        f"\n[gateway load] {stats['total_calls']} requests in {elapsed:.1f}s = "
        f"{stats['total_calls'] / elapsed:.1f} req/s (limits 100 global / 25 per endpoint); "
        f"peak 1-s window at the emulator: global {report['peak_rps']['global']}, "
        f"per endpoint {report['peak_rps']['endpoints']}; 429s: {report['rate_limited'] or 0}; "
        f"latency EWMA {stats['latency_ewma_s'] * 1000:.1f} ms"
    )


@requires_emulator
def test_emulator_faults_writes_succeed_or_are_ambiguous_with_stable_keys() -> None:
    """30 % 429, 10 % 5xx, 5 % dropped connections: no write is lost, duplicated, or re-keyed."""
    from concurrent.futures import ThreadPoolExecutor

    faults = FaultConfig(
        rate_429=0.30, error_500_before=0.05, error_500_after=0.05, drop_before=0.025, drop_after=0.025, seed=11
    )
    n = 50
    with EmulatorServer(EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0, faults=faults)) as emu:
        limits = LimitModel(global_rps=100, endpoint_rps=25, live=True)
        # Injected 429s are random, not caused by load: with production AIMD settings they would
        # throttle this test to the floor rate (that behaviour is unit-tested); recover fast here.
        limiter = RateLimiter(limits, recovery_per_s=2.0)
        gw = emu_gateway(emu.url, max_attempts=12, backoff_base_s=0.05, backoff_max_s=0.5, limiter=limiter)

        def write(kind: str, i: int) -> tuple[str, str, str | None]:
            key = f"test:{kind}:{i}"
            try:
                if kind == "product":
                    gw.create_product({"id": f"cms_fault_{i}", "name": f"Fault {i}"}, key)
                else:
                    gw.create_price({"product": "cms_fault_base", "currency": "usd", "unit_amount": 500 + i}, key)
            except AmbiguousWriteError as exc:
                assert exc.idempotency_key == key and exc.http_status == 500
                return kind, key, "ambiguous"
            return kind, key, "ok"

        # The prices' product must exist first; retry it through the ambiguity protocol too.
        base_key = "test:base"
        for attempt in range(10):
            try:
                gw.create_product({"id": "cms_fault_base", "name": "Base"}, f"{base_key}:{attempt}")
                break
            except AmbiguousWriteError:
                if gw.retrieve_product("cms_fault_base") is not None:
                    break
            except AlreadyExistsError:
                break

        jobs = [("product", i) for i in range(n)] + [("price", i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(lambda job: write(*job), jobs))

        log = [
            e for e in emulator_log(emu.url) if e["method"] == "POST" and not e["idempotency_key"].startswith(base_key)
        ]
        objects = emu.objects()

    by_key: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(log, key=lambda e: e["seq"]):
        by_key.setdefault(entry["idempotency_key"], []).append(entry)
    our_keys = {key for _, key, _ in outcomes}
    # Every request the gateway sent carried the caller's key (never stripe-python's random one) ...
    assert set(by_key) == our_keys
    retried = {k: es for k, es in by_key.items() if len(es) > 1}
    assert retried, "the fault mix should have forced retries"
    for key, entries in by_key.items():
        outcome = next(o for _, k, o in outcomes if k == key)
        # ... only 429s, dropped connections (no status) and 409s were retried, always with that key ...
        assert all(e["status"] in (429, None, 409) for e in entries[:-1]), (key, entries)
        last = entries[-1]
        if outcome == "ok":
            assert last["status"] == 200
        else:
            assert last["status"] == 500
        # ... and no key was ever applied twice: no duplicate product or price.
        assert sum(1 for e in entries if e["applied"]) <= 1, key
    assert any(e["status"] is None for es in retried.values() for e in es[:-1]), "no dropped connection retried"
    assert any(e["status"] == 429 for es in retried.values() for e in es[:-1]), "no 429 retried"

    results = {k: o for _, k, o in outcomes}
    ambiguous = [k for k, o in results.items() if o == "ambiguous"]
    assert ambiguous, "the fault mix should have produced ambiguous writes"
    applied_keys = {k for k, es in by_key.items() if any(e["applied"] for e in es)}
    assert {k for k, o in results.items() if o == "ok"} <= applied_keys
    prices = [p for p in objects["prices"] if p["product"] == "cms_fault_base"]
    assert len(prices) == len([k for k in applied_keys if k.startswith("test:price:")])
    products = {p["id"] for p in objects["products"]}
    for i in range(n):
        key = f"test:product:{i}"
        assert (f"cms_fault_{i}" in products) == (key in applied_keys)
    print(
        f"\n[gateway faults] {len(jobs)} writes: {sum(o == 'ok' for o in results.values())} ok, "
        f"{len(ambiguous)} ambiguous (of which {len(set(ambiguous) & applied_keys)} applied); "
        f"{len(log)} requests, {len(retried)} keys retried; stats {gw.stats.snapshot()}"
    )


@requires_emulator
def test_emulator_ambiguous_write_is_resolved_by_lookup_then_new_key() -> None:
    """The caller's protocol after AmbiguousWriteError: look up, and only if absent retry with a new key."""
    faults = FaultConfig(error_500_before=1.0, seed=3)
    with EmulatorServer(EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0, faults=faults)) as emu:
        gw = emu_gateway(emu.url)
        with pytest.raises(AmbiguousWriteError) as info:
            gw.create_product({"id": "cms_amb", "name": "Amb"}, "test:amb:1")
        assert info.value.idempotency_key == "test:amb:1"
        assert gw.retrieve_product("cms_amb") is None  # reads are not faulted: it was not applied
        # The same key would replay the stored 500 forever ...
        emu.configure(faults=FaultConfig())
        with pytest.raises(AmbiguousWriteError):
            gw.create_product({"id": "cms_amb", "name": "Amb"}, "test:amb:1")
        # ... a new key, after verifying absence, creates it exactly once.
        created = gw.create_product({"id": "cms_amb", "name": "Amb"}, "test:amb:2")
        assert created["id"] == "cms_amb"
        assert [p["id"] for p in emu.objects()["products"]] == ["cms_amb"]
        replays = [e for e in emulator_log(emu.url) if e["idempotency_key"] == "test:amb:1"]
        assert [e["status"] for e in replays] == [500, 500] and replays[1]["replayed"]


@requires_emulator
def test_emulator_duplicate_product_id_raises_already_exists() -> None:
    with EmulatorServer(EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0)) as emu:
        gw = emu_gateway(emu.url)
        first = gw.create_product({"id": "cms_dup", "name": "Dup"}, "test:dup:1")
        assert first["id"] == "cms_dup" and type(first) is dict
        # Same key: Stripe replays the first answer; this is a retry, not a duplicate.
        assert gw.create_product({"id": "cms_dup", "name": "Dup"}, "test:dup:1") == first
        with pytest.raises(AlreadyExistsError) as info:
            gw.create_product({"id": "cms_dup", "name": "Dup"}, "test:dup:2")
        assert info.value.severity is Severity.LOW and info.value.code == "resource_already_exists"
        assert classify(info.value) is Severity.LOW
        assert len(emu.objects()["products"]) == 1
        # Reads and 404s through the real client.
        assert gw.retrieve_product("cms_nope") is None
        assert [p["id"] for p in gw.list_products(["cms_dup", "cms_nope"])] == ["cms_dup"]
        with pytest.raises(StripeSyncError) as bad:
            gw.create_price({"product": "cms_dup", "currency": "usd", "unit_amount": -5}, "test:dup:price")
        assert bad.value.severity is Severity.HIGH and bad.value.http_status == 400


@requires_emulator
@pytest.mark.timing
def test_emulator_stopped_opens_the_circuit_fast() -> None:
    """Stripe unreachable (connection refused): CRITICAL after a bounded number of attempts, in seconds."""
    emu = EmulatorServer(EmulatorConfig()).start()
    url = emu.url
    emu.stop()

    # One caller, default retry policy but short backoff: exactly max_attempts requests.
    gw = emu_gateway(url, max_attempts=8, backoff_base_s=0.05, backoff_max_s=0.5)
    started = time.monotonic()
    with pytest.raises(CircuitOpenError) as info:
        gw.create_product({"id": "cms_x", "name": "X"}, "test:down:1")
    single = time.monotonic() - started
    err = info.value
    assert err.severity is Severity.CRITICAL
    assert "Stripe unreachable: circuit open after 8 consecutive failures" in err.message
    assert "re-run `cms-stripe migrate`" in err.message and "resume from the last checkpoint" in err.message
    assert gw.stats.snapshot()["total_calls"] == 8
    with pytest.raises(CircuitOpenError):
        gw.list_prices(lookup_keys=["a"])
    assert gw.stats.snapshot()["total_calls"] == 8  # open circuit: no further request

    # Many workers, production backoff settings: the shared breaker trips at 20 failures.
    from concurrent.futures import ThreadPoolExecutor

    gw2 = emu_gateway(url)
    started = time.monotonic()

    def worker(i: int) -> BaseException | None:
        try:
            gw2.create_product({"id": f"cms_w{i}", "name": "W"}, f"test:down:w{i}")
        except BaseException as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=10) as pool:
        errors = list(pool.map(worker, range(10)))
    many = time.monotonic() - started
    assert all(isinstance(e, CircuitOpenError) for e in errors), errors
    attempts = gw2.stats.snapshot()["total_calls"]
    assert 20 <= attempts <= 20 + 10  # fail_max, plus at most one in-flight attempt per worker
    print(
        f"\n[gateway down] single caller: CRITICAL after 8 attempts in {single:.2f}s; "
        f"10 workers: after {attempts} attempts in {many:.2f}s"
    )
