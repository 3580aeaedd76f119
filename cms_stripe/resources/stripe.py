"""Dagster resource for the Stripe side of the sync: read state, plan, apply — paced to the account's limits."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.executor import ApplyResult, ProgressFn, apply_plan
from cms_stripe.core.gateway import StripeGateway
from cms_stripe.core.limits import (
    ENV_ENDPOINT_RPS,
    ENV_MAX_CONCURRENCY,
    ENV_MAX_RPS,
    is_live_key,
)
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
    def is_live(self) -> bool:
        """True for a live-mode key (the asset refuses live writes unless explicitly allowed)."""
        return is_live_key(self.api_key)

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

    def list_products(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The existing products among `ids` (100 per call, default price expanded)."""
        return self.gateway.list_products(ids, expand_default_price=True)

    def iter_all_products(self) -> Iterator[dict[str, Any]]:
        """Every product of the account, 100 per page (for orphan detection in reconciliation)."""
        yield from self.gateway.iter_all_products()

    def call_stats(self) -> dict[str, Any]:
        return self.gateway.stats.snapshot()


def stripe_resource_from_env(env: Mapping[str, str] | None = None) -> StripeResource:
    """The resource as Definitions wires it: the key stays an EnvVar (resolved at launch, never shown).

    Rate and concurrency caps (STRIPE_MAX_RPS, STRIPE_ENDPOINT_RPS, MIGRATION_MAX_CONCURRENCY) are read
    by the limit model when the gateway is built, so they need no config field here.
    """
    source = os.environ if env is None else env
    return StripeResource(
        api_key=dg.EnvVar("STRIPE_SECRET_KEY"),
        api_base=dg.EnvVar("STRIPE_API_BASE") if source.get("STRIPE_API_BASE") else None,
        tax_behavior=source.get("STRIPE_TAX_BEHAVIOR") or None,
    )
