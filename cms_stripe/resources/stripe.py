"""Dagster resource for the Stripe side of the sync: read state, plan, apply — paced to the account's limits."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.executor import ApplyResult, ProgressFn, apply_plan
from cms_stripe.core.gateway import StripeGateway
from cms_stripe.core.limits import ENV_ENDPOINT_RPS, ENV_MAX_CONCURRENCY, ENV_MAX_RPS
from cms_stripe.core.plan import Plan, build_plan
from cms_stripe.core.state import ProductState, read_state

_MASK = "********"


def _capped(env: dict[str, str], name: str, value: float | int | None) -> None:
    """Config can only lower what the environment allows, never raise it."""
    if value is None:
        return
    current = env.get(name)
    if current:
        # A malformed env value is reported by LimitModel itself.
        with contextlib.suppress(ValueError):
            value = min(type(value)(float(current)), value)
    env[name] = str(value)


class StripeResource(dg.ConfigurableResource):
    """Stripe products and prices for the CMS sync (the API key never leaves this object)."""

    api_key: str
    api_base: str | None = None
    max_rps: float | None = None
    endpoint_rps: float | None = None
    max_concurrency: int | None = None
    # Applied to every price the sync creates; None leaves Stripe's "unspecified".
    tax_behavior: str | None = None

    _gateway: StripeGateway | None = PrivateAttr(default=None)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_MASK if name == "api_key" and value else value)

    def __str__(self) -> str:
        return repr(self)

    def _limits_env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        _capped(out, ENV_MAX_RPS, self.max_rps)
        _capped(out, ENV_ENDPOINT_RPS, self.endpoint_rps)
        _capped(out, ENV_MAX_CONCURRENCY, self.max_concurrency)
        return out

    def build_gateway(self, env: Mapping[str, str] | None = None) -> StripeGateway:
        return StripeGateway.from_settings(
            self.api_key, api_base=self.api_base or None, env=self._limits_env(os.environ if env is None else env)
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._gateway = self.build_gateway()

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = self.build_gateway()
        return self._gateway

    # -- domain methods ---------------------------------------------------------------------------

    def read_state(self, products: Sequence[CmsProduct]) -> dict[str, ProductState]:
        """Stripe state for these rows: one list call per 100 products (default price expanded)."""
        return read_state(self.gateway, products, tax_behavior=self.tax_behavior)

    def plan(self, products: Sequence[CmsProduct], state: Mapping[str, ProductState] | None = None) -> Plan:
        """The operations that make Stripe match these rows; invalid rows come back quarantined."""
        if state is None:
            state = self.read_state(products)
        return build_plan(products, state, tax_behavior=self.tax_behavior)

    def apply(
        self,
        plan: Plan,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        raise_on_critical: bool = True,
    ) -> ApplyResult:
        """Apply a plan. On a CRITICAL stop raises SyncAborted (its `.result` holds the finished work)."""
        result = apply_plan(
            plan, self.gateway, max_concurrency=self.max_concurrency, progress=progress, should_stop=should_stop
        )
        if raise_on_critical:
            result.raise_for_critical()
        return result

    def call_stats(self) -> dict[str, Any]:
        return self.gateway.stats.snapshot()
