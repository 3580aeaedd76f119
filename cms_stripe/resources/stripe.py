"""Dagster resource for the Stripe side of the sync: read state, plan, apply — paced to the account's limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.executor import ApplyResult, ProgressFn, apply_plan
from cms_stripe.core.plan import Plan, build_plan
from cms_stripe.core.settings import Settings, SettingsError, is_live_key
from cms_stripe.core.state import ProductState, read_state
from cms_stripe.core.sync import SyncOptions, SyncOutcome, WriteBack, run_sync
from cms_stripe.loggers import attach_to_run
from cms_stripe.resources.settings import refuse_live_writes
from cms_stripe.stripe.gateway import StripeGateway
from cms_stripe.stripe.limits import LimitModel

N = TypeVar("N", int, float)


def _lower(configured: N | None, allowed: N | None) -> N | None:
    """Config can only lower what the environment allows, never raise it."""
    if configured is None:
        return allowed
    return configured if allowed is None else min(configured, allowed)


class StripeResource(dg.ConfigurableResource):
    """Stripe products and prices for the CMS sync (the API key never leaves this object).

    The key and the API base are not config: they are read from the code location's environment
    (STRIPE_SECRET_KEY, STRIPE_API_BASE) when the gateway is built. Config set per run (the
    Launchpad) could otherwise point the run at another host while the key still flows to it.
    Config can only lower the request pace, never raise it.
    """

    max_rps: float | None = None
    endpoint_rps: float | None = None
    max_concurrency: int | None = None
    # Applied to every price the sync creates; None leaves Stripe's "unspecified".
    tax_behavior: str | None = None

    _gateways: dict[bool, StripeGateway] = PrivateAttr(default_factory=dict)

    @staticmethod
    def _api_key(settings: Settings) -> str:
        if not settings.stripe_secret_key:
            raise SettingsError("STRIPE_SECRET_KEY is not set in the code location's environment")
        return settings.stripe_secret_key

    def build_gateway(self, env: Mapping[str, str] | None = None, *, allow_live: bool = False) -> StripeGateway:
        """A gateway on the environment's key and API base; writes with a live key are refused unless
        `allow_live` (the guard sits in the gateway, so no caller can skip it)."""
        settings = Settings.from_env(env)
        key = self._api_key(settings)
        capped = replace(
            settings,
            stripe_max_rps=_lower(self.max_rps, settings.stripe_max_rps),
            stripe_endpoint_rps=_lower(self.endpoint_rps, settings.stripe_endpoint_rps),
            max_concurrency=_lower(self.max_concurrency, settings.max_concurrency),
        )
        return StripeGateway.from_settings(
            key, settings.stripe_api_base, limits=LimitModel.for_key(key, capped), allow_live=allow_live
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        attach_to_run(context)  # the run's events to the log file, the missing key's failure included
        # Fail at launch on a missing key, not at the first Stripe call.
        self._api_key(Settings.from_env())

    @property
    def is_live(self) -> bool:
        """True unless the key is clearly a test key (the one live-key rule, core.settings.is_live_key)."""
        return is_live_key(Settings.from_env().stripe_secret_key)

    def check_writes_allowed(self, allow_live: bool) -> None:
        """Refuse a writing run before it reads anything, by the same guard the gateway applies to
        every write (a run passes its SyncSettingsResource.live_allowed)."""
        refuse_live_writes("write to Stripe", allow_live)

    def gateway_for(self, allow_live: bool) -> StripeGateway:
        """The gateway a writer uses: `allow_live` must be said explicitly (a run passes its
        SyncSettingsResource.live_allowed)."""
        allow = bool(allow_live)
        if allow not in self._gateways:
            self._gateways[allow] = self.build_gateway(allow_live=allow)
        return self._gateways[allow]

    @property
    def gateway(self) -> StripeGateway:
        """For reads: with a live key every write through it is refused."""
        return self.gateway_for(False)

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
        *,
        allow_live: bool = False,
    ) -> ApplyResult:
        """Apply a plan. On a CRITICAL stop raises SyncAborted (its `.result` holds the finished work).
        With a live key nothing is written unless `allow_live=True`."""
        result = apply_plan(
            plan,
            self.gateway_for(allow_live),
            max_concurrency=self.max_concurrency,
            progress=progress,
            should_stop=should_stop,
        )
        if raise_on_critical:
            result.raise_for_critical()
        return result

    def account(self) -> tuple[str, str]:
        """(account id, "test" or "live"): what a reviewed plan is made for and checked against."""
        account = self.gateway.retrieve_account()
        return str(account["id"]), "live" if self.is_live else "test"

    def sync(
        self,
        products: Sequence[CmsProduct],
        cms: WriteBack,
        options: SyncOptions,
        *,
        allow_live: bool = False,
        **kw: Any,
    ) -> SyncOutcome:
        """Skip what is done, plan, apply (unless dry-run) and write the outcome back to the CMS, paced
        by this resource's caps; with a live key nothing is written unless `allow_live=True`.
        `kw` goes to core.sync.run_sync (checkpoints, log)."""
        if options.max_concurrency is None:
            options = replace(options, max_concurrency=self.max_concurrency)
        return run_sync(products, self.gateway_for(allow_live), cms, options, **kw)

    def list_products(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The existing products among `ids` (100 per call, default price expanded)."""
        return self.gateway.list_products(ids, expand_default_price=True)

    def iter_all_products(self) -> Iterator[dict[str, Any]]:
        """Every product of the account, 100 per page (for orphan detection in reconciliation)."""
        yield from self.gateway.iter_all_products()

    def call_stats(self) -> dict[str, Any]:
        return self.gateway.stats.snapshot()


def stripe_resource_from_env(env: Mapping[str, str] | None = None) -> StripeResource:
    """The resource as Definitions wires it. The key, API base and rate caps are read from the
    settings when a run builds the gateway, so they need no config here."""
    return StripeResource(tax_behavior=Settings.from_env(env).stripe_tax_behavior)
