"""Subprocess for test_crash_safety: plans and applies `catalog(phase)` against an emulator, one product at a time.

Run as `python -m cms_stripe_tests.test_core.crash_driver URL PHASE LOOKUP_KEYS(0|1)`; the test SIGKILLs it
mid-apply.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from cms_stripe.core.catalog import STATUS_DRAFT, CmsProduct
from cms_stripe.core.executor import apply_plan
from cms_stripe.core.plan import build_plan
from cms_stripe.core.state import read_state
from cms_stripe.stripe.gateway import StripeGateway

LIVE_KEY = "sk_live_" + "0" * 24


def catalog(phase: int) -> list[CmsProduct]:
    """Phase 0 is synced beforehand; phase 1 reprices, updates, archives and creates."""

    def p(cms_id: str, price: str, currency: str = "usd", **kw: object) -> CmsProduct:
        return CmsProduct(
            id=cms_id,
            title=str(kw.pop("title", f"Product {cms_id}")),
            price=Decimal(price),
            currency=currency,
            metadata={"sku": cms_id},
            **kw,  # type: ignore[arg-type]
        )

    if phase == 0:
        return [
            p("c-rep1", "10.00"),
            p("c-rep2", "500", "jpy", recurring_interval="month"),
            p("c-upd", "5.00"),
            p("c-arch", "7.00"),
        ]
    return [
        p("c-rep1", "12.00"),
        p("c-rep2", "600", "jpy", recurring_interval="month"),
        p("c-upd", "5.00", title="Renamed"),
        p("c-arch", "7.00", status=STATUS_DRAFT),
        p("c-new1", "1.250", "kwd"),
        p("c-new2", "3.00", "eur", recurring_interval="year"),
    ]


def main(url: str, phase: int, lookup_keys: bool) -> int:
    gw = StripeGateway.from_settings(LIVE_KEY, api_base=url, allow_live=True)
    rows = catalog(phase)
    plan = build_plan(rows, read_state(gw, rows, lookup_keys=lookup_keys), lookup_keys=lookup_keys)
    # One product at a time, lanes fixed: the k-th request is the same step in every run.
    result = apply_plan(plan, gw, max_concurrency=1, lanes=False)
    print(result.counts(), flush=True)
    return 0 if all(r.ok for r in result.results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
