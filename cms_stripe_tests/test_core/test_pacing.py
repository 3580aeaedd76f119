"""Pacing: 600 creations at live-mode limits (over ten seconds of sustained writing) cause zero 429s from
our own pacing, with both create lanes in use. How fast that is (the two lanes together past the 25/s
budget of `POST /v1/products`) and the same at 10,000 products are the benchmark's (`creates_live`);
the rate is printed here but not asserted.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cms_stripe.core.executor import apply_plan
from cms_stripe.core.plan import build_plan
from cms_stripe.core.state import read_state
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_core.conftest import make_gateway, row

pytestmark = pytest.mark.timing

N = 600


@pytest.mark.slow
def test_creations_at_live_limits_without_429() -> None:
    config = EmulatorConfig(global_rps=100, endpoint_rps=25, latency_ms=0, jitter_ms=0)
    with EmulatorServer(config) as emu:
        gw = make_gateway(emu.url)
        currencies = ("usd", "jpy", "eur")
        rows = [row(f"bulk-{i:05d}", price=Decimal(1 + i % 500), currency=currencies[i % 3]) for i in range(N)]
        plan = build_plan(rows, read_state(gw, rows))
        assert plan.counts()["create"] == N
        result = apply_plan(plan, gw)
        info = emu.inspect()
        creates_per_s = N / result.elapsed_s
        lanes = {lane: sum(1 for r in result.results if r.lane == lane) for lane in ("A", "B")}
        print(
            f"\npacing: {N} creations in {result.elapsed_s:.1f}s = {creates_per_s:.1f} creates/s, "
            f"{result.writes_per_s:.1f} writes/s; lanes {lanes}; calls {result.stats['calls']}; "
            f"429s seen by Stripe {info['rate_limited']}; peak rps {info.get('peak_rps')}; "
            f"calls/product {result.stats['total_calls'] / N:.2f}"
        )
        assert all(r.ok for r in result.results)
        assert info["rate_limited"] == {} and result.rate_limited == 0
        assert len(emu.objects()["products"]) == N
        assert lanes["B"] > 0 and lanes["A"] > 0
