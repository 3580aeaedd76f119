"""Applying plans against the emulator with the real stripe-python client: every operation kind,
multi-currency and recurring prices, adopted products, "already exists", Stripe faults and Stripe down.

The incidents these pin down: a duplicate product, a wrong or still-live old price, a lost write.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

from cms_stripe.core.catalog import STATUS_ARCHIVED, STATUS_DRAFT
from cms_stripe.core.errors import RESUME_HINT, AmbiguousWriteError
from cms_stripe.core.executor import apply_plan
from cms_stripe.core.plan import build_plan
from cms_stripe.core.state import read_state
from cms_stripe.emulator import EmulatorConfig, EmulatorServer, FaultConfig
from cms_stripe.stripe.gateway import StripeGateway
from cms_stripe_tests.expected import assert_stripe_matches
from cms_stripe_tests.test_core.conftest import LOOKUP_KEYS, changed, make_gateway, row, sync


def catalog() -> list:
    return [
        row("usd-once"),
        row("usd-monthly", price=Decimal("9.00"), recurring_interval="month"),
        row(
            "eur-quarterly", price=Decimal("25"), currency="EUR", recurring_interval="month", recurring_interval_count=3
        ),
        row("jpy-once", price=Decimal("1500"), currency="jpy"),
        row("jpy-yearly", price=Decimal("12000"), currency="JPY", recurring_interval="year"),
        row("kwd-once", price=Decimal("4.750"), currency="kwd", statement_descriptor="KW SHOP"),
        row("bhd-weekly", price=Decimal("1.5"), currency="bhd", recurring_interval="week", recurring_interval_count=2),
        row("draft-never", status=STATUS_DRAFT),
    ]


@LOOKUP_KEYS
def test_every_operation_kind(emulator, gateway, lookup_keys: bool) -> None:
    rows = catalog()
    plan, result = sync(gateway, rows, lookup_keys=lookup_keys)
    assert plan.counts()["create"] == 7 and plan.counts()["noop"] == 1
    assert result.counts() == {"created": 7, "noop": 1}, [r.error for r in result.results]
    assert {r.lane for r in result.results if r.kind == "create"} == {"A", "B"}
    assert_stripe_matches(emulator.objects(), rows, lookup_keys=lookup_keys)
    updates = {u.id: u for u in result.to_sync_updates()}
    assert updates["jpy-once"].stripe_product_id == "prod_cms_jpy-once" and updates["jpy-once"].stripe_price_id
    assert updates["draft-never"].sync_status == "archived" and updates["draft-never"].stripe_product_id is None

    # An unchanged catalog: no writes, one list call per 100 products.
    before = emulator.inspect()["requests_total"]
    plan, result = sync(gateway, rows, lookup_keys=lookup_keys)
    assert plan.writes == [] and emulator.inspect()["requests_total"] - before == 1

    rows2 = [
        changed(rows[0], title="Renamed", metadata={"sku": "X"}),  # update
        changed(rows[1], price=Decimal("11.00")),  # reprice
        changed(rows[2], recurring_interval_count=6),  # reprice (recurring is immutable)
        changed(rows[3], price=Decimal("1600"), description="new"),  # reprice + update
        changed(rows[4], status=STATUS_ARCHIVED),  # archive
        changed(rows[5], deleted_at=__import__("datetime").datetime(2026, 1, 1)),  # archive (soft delete)
        rows[6],
        rows[7],
    ]
    plan, result = sync(gateway, rows2, lookup_keys=lookup_keys)
    assert plan.counts() == {
        "create": 0,
        "update": 1,
        "reprice": 3,
        "archive": 2,
        "reactivate": 0,
        "noop": 2,
        "quarantined": 0,
    }
    assert all(r.ok for r in result.results), [r.error for r in result.results]
    assert_stripe_matches(emulator.objects(), rows2, lookup_keys=lookup_keys)

    rows3 = [
        changed(r, status="published", deleted_at=None) if r.id in ("jpy-yearly", "kwd-once") else r for r in rows2
    ]
    rows3[4] = changed(rows3[4], price=Decimal("13000"))  # reactivate with a new price
    plan, result = sync(gateway, rows3, lookup_keys=lookup_keys)
    assert plan.counts()["reactivate"] == 2
    assert result.counts()["reactivated"] == 2
    assert_stripe_matches(emulator.objects(), rows3, lookup_keys=lookup_keys)
    # And back to the very first price (A -> B -> A): a new price, not a replayed idempotent answer.
    rows4 = [changed(r, price=Decimal("9.00")) if r.id == "usd-monthly" else r for r in rows3]
    sync(gateway, rows4, lookup_keys=lookup_keys)
    assert_stripe_matches(emulator.objects(), rows4, lookup_keys=lookup_keys)
    assert sync(gateway, rows4, lookup_keys=lookup_keys)[0].writes == []


def test_existing_stripe_product_id_is_synced_into_that_product(emulator, gateway) -> None:
    legacy = gateway.create_product(
        {
            "id": "prod_Legacy1",
            "name": "Old name",
            "metadata": {"legacy_ref": "x"},
            "default_price_data": {"currency": "usd", "unit_amount": 1999},
        },
        "test-legacy-1",
    )
    other = gateway.create_product(
        {"id": "prod_Legacy2", "name": "Other", "default_price_data": {"currency": "gbp", "unit_amount": 500}},
        "test-legacy-2",
    )
    rows = [row("a", stripe_product_id="prod_Legacy1"), row("b", stripe_product_id="prod_Legacy2")]
    plan, result = sync(gateway, rows)
    assert [op.kind for op in plan.operations] == ["update", "reprice"]
    assert all(r.ok for r in result.results)
    objs = emulator.objects()
    assert sorted(p["id"] for p in objs["products"]) == ["prod_Legacy1", "prod_Legacy2"]
    assert result.results[0].price_id == legacy["default_price"]  # same amount: price kept, lookup key added
    assert result.results[1].price_id != other["default_price"]
    assert_stripe_matches(objs, rows)


@LOOKUP_KEYS
def test_already_exists_is_verified_not_duplicated(emulator, gateway, lookup_keys: bool) -> None:
    rows = [row(f"r{i}", price=Decimal(i + 1)) for i in range(6)]
    stale_plan = build_plan(rows, {}, lookup_keys=lookup_keys)  # planned before anything existed
    sync(gateway, rows[:3], lookup_keys=lookup_keys)  # ...then another run created half of them, one with older content
    sync(gateway, [changed(rows[3], title="older")], lookup_keys=lookup_keys)
    result = apply_plan(stale_plan, gateway)
    assert all(r.ok for r in result.results), [r.error for r in result.results]
    assert result.counts() == {"created": 6}
    assert_stripe_matches(emulator.objects(), rows, lookup_keys=lookup_keys)


@LOOKUP_KEYS
def test_faults_every_product_synced_exactly_once(lookup_keys: bool) -> None:
    faults = FaultConfig(
        rate_429=0.3, error_500_before=0.05, error_500_after=0.05, drop_before=0.025, drop_after=0.025, seed=7
    )
    config = EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=2, jitter_ms=2, faults=faults)
    with EmulatorServer(config) as emu:
        gw = make_gateway(emu.url, backoff_base_s=0.05, backoff_max_s=1.0, max_attempts=10)
        rows = [
            row(
                f"f{i:03d}",
                price=Decimal(10 + i),
                currency=("usd", "jpy", "kwd", "eur")[i % 4],
                recurring_interval=(None, "month")[i % 2],
            )
            for i in range(40)
        ]
        _plan, result = sync(gw, rows, lookup_keys=lookup_keys)
        assert all(r.ok for r in result.results), [(r.cms_id, r.error) for r in result.results if not r.ok]
        rows2 = [
            changed(r, price=Decimal(11 + i)) if i % 3 == 0 else changed(r, title=f"{r.title}!")
            for i, r in enumerate(rows)
        ]
        _plan, result2 = sync(gw, rows2, lookup_keys=lookup_keys)
        assert all(r.ok for r in result2.results), [(r.cms_id, r.error) for r in result2.results if not r.ok]
        info = emu.inspect()
        print("\nfault run:", info["faults"], "429s:", info["rate_limited"], "gateway:", gw.stats.snapshot())
        emu.configure(faults=FaultConfig())
        assert_stripe_matches(emu.objects(), rows2, lookup_keys=lookup_keys)
        assert sync(gw, rows2, lookup_keys=lookup_keys)[0].writes == []


def test_stripe_down_stops_with_critical_and_resume_hint() -> None:
    with EmulatorServer(EmulatorConfig()) as emu:
        url = emu.url
        gw = make_gateway(url, backoff_base_s=0.01, backoff_max_s=0.05, breaker_fail_max=10)
        rows = [row(f"d{i}") for i in range(50)]
        state = read_state(gw, rows)
    plan = build_plan(rows, state)  # the emulator is stopped from here on
    progress: list[tuple[int, int, int, int]] = []
    started = time.monotonic()
    result = apply_plan(plan, gw, progress=lambda *a: progress.append(a))
    assert time.monotonic() - started < 30
    assert result.critical is not None and RESUME_HINT in result.critical
    assert result.stopped
    calls = result.stats["total_calls"]
    assert calls <= 10 + 2 * 16, calls  # bounded: breaker threshold + in-flight attempts, then fail fast
    assert result.counts().get("skipped", 0) > 0
    assert progress and progress[-1][1] == 50


def test_should_stop_lets_in_flight_finish(emulator, gateway) -> None:
    rows = [row(f"s{i}") for i in range(40)]
    plan = build_plan(rows, read_state(gateway, rows))
    stop = threading.Event()
    reported: list = []
    result = apply_plan(
        plan,
        gateway,
        should_stop=stop.is_set,
        progress=lambda d, *_: stop.set() if d >= 5 else None,
        on_result=reported.append,
    )
    done = [r for r in result.results if r.ok]
    assert 5 <= len(done) < 40 and result.critical is None
    assert sorted(r.cms_id for r in reported) == sorted(r.cms_id for r in done)
    # Resuming is just planning again.
    sync(gateway, rows)
    assert_stripe_matches(emulator.objects(), rows)


@LOOKUP_KEYS
def test_half_done_lane_b_create_is_completed(emulator, gateway, lookup_keys: bool) -> None:
    """A crash after `POST /v1/prices` with product_data (before the product update) leaves a bare product
    carrying only cms_id and no default price; the next plan reuses that price instead of making another."""
    from cms_stripe.core.mapping import target_for

    rows = [row("lane-b", recurring_interval="month", tax_code="txcd_10000000", unit_label="seat")]
    t = target_for(rows[0], lookup_keys=lookup_keys)
    gateway.create_price(t.create_price_with_product_params(), "test-half-done-b")
    plan, result = sync(gateway, rows, lookup_keys=lookup_keys)
    op = plan.operations[0]
    assert op.kind == "reprice" and op.reuse_price_id and not op.new_price
    assert all(r.ok for r in result.results)
    objs = emulator.objects()
    assert len(objs["products"]) == 1 and len(objs["prices"]) == 1
    assert_stripe_matches(objs, rows, lookup_keys=lookup_keys)


TEST_KEY = "sk_test_" + "0" * 24


@LOOKUP_KEYS
def test_a_new_product_costs_one_request_without_lookup_keys(lookup_keys: bool) -> None:
    """Test mode (25/s overall): every create takes lane A; the lookup key is the only second request."""
    with EmulatorServer(EmulatorConfig(test_mode_limits=True, latency_ms=0, jitter_ms=0)) as emu:
        gw = StripeGateway.from_settings(TEST_KEY, api_base=emu.url)
        rows = [row(f"one{i}", price=Decimal(i + 1)) for i in range(12)]
        _plan, result = sync(gw, rows, lookup_keys=lookup_keys)
        assert result.counts() == {"created": 12}
        assert {r.lane for r in result.results} == {"A"}
        expected = {"GET /v1/products": 1, "POST /v1/products": 12}
        if lookup_keys:
            expected["POST /v1/prices/:id"] = 12
        assert emu.inspect()["requests"] == expected
        assert_stripe_matches(emu.objects(), rows, lookup_keys=lookup_keys)


class LosesAnswers:
    """A gateway whose first `n` answers to `method` are lost after Stripe applied the write (a 5xx
    stored under the key, or the connection dropped on the way back): the caller sees only ambiguity."""

    def __init__(self, gw: StripeGateway, method: str, n: int = 1) -> None:
        self._gw, self._method, self._left = gw, method, n

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._gw, name)
        if name != self._method:
            return real

        def call(*args: Any, **kw: Any) -> Any:
            out = real(*args, **kw)
            if self._left > 0:
                self._left -= 1
                raise AmbiguousWriteError(f"{name}: answer lost", http_status=500)
            return out

        return call


@LOOKUP_KEYS
def test_ambiguous_price_create_is_found_not_repeated(emulator, gateway, lookup_keys: bool) -> None:
    """Reprice step 1 lands but its answer is lost: the price is found (lookup key, or the product's
    prices matched on content + metadata) and no second price is made."""
    rows = [row("amb", recurring_interval="month")]
    sync(gateway, rows, lookup_keys=lookup_keys)
    rows2 = [changed(rows[0], price=Decimal("29.99"))]
    plan = build_plan(rows2, read_state(gateway, rows2, lookup_keys=lookup_keys), lookup_keys=lookup_keys)
    result = apply_plan(plan, LosesAnswers(gateway, "create_price"))  # type: ignore[arg-type]
    assert result.counts() == {"repriced": 1}, [r.error for r in result.results]
    prices = emulator.objects()["prices"]
    assert sorted((p["unit_amount"], p["active"]) for p in prices) == [(1999, False), (2999, True)]
    assert result.results[0].price_id == next(p["id"] for p in prices if p["active"])
    assert_stripe_matches(emulator.objects(), rows2, lookup_keys=lookup_keys)
    assert sync(gateway, rows2, lookup_keys=lookup_keys)[0].writes == []


@LOOKUP_KEYS
def test_ambiguous_creates_in_both_lanes_make_one_product_and_price(emulator, gateway, lookup_keys: bool) -> None:
    rows = [row(f"lane{i}", price=Decimal(i + 5)) for i in range(8)]
    plan = build_plan(rows, read_state(gateway, rows, lookup_keys=lookup_keys), lookup_keys=lookup_keys)
    lossy = LosesAnswers(LosesAnswers(gateway, "create_product", 3), "create_price", 3)  # type: ignore[arg-type]
    result = apply_plan(plan, lossy)  # type: ignore[arg-type]
    assert result.counts() == {"created": 8}, [r.error for r in result.results]
    assert {r.lane for r in result.results} == {"A", "B"}
    objs = emulator.objects()
    assert len(objs["products"]) == 8 and len(objs["prices"]) == 8
    assert_stripe_matches(objs, rows, lookup_keys=lookup_keys)
    assert sync(gateway, rows, lookup_keys=lookup_keys)[0].writes == []
