"""Apply a plan to Stripe: products concurrently, each product's steps in order.

The gateway paces, retries (same idempotency key) and trips the breaker; this module owns what a
retry cannot decide:
- "already exists" on a create means an earlier attempt (or run) got there first: re-read the
  product, re-plan it against what Stripe now holds, and carry on;
- an ambiguous write (5xx, dropped connection: Stripe may have stored it under the key) is looked
  up, and only when proven absent sent again under a new key generation. A product is looked up by
  its deterministic id. A price cannot take an id: it is found among the product's live prices by
  its content (amount, currency, recurrence, tax behavior) and the metadata the sync stamps on every
  price it creates (cms_id + the price fingerprint), or by its lookup key when those are on;
- a CRITICAL error (Stripe down, bad key) stops submitting work, lets in-flight products finish,
  and reports how to resume. Nothing needs undoing: the next plan starts from Stripe's state.

Price lookup keys (STRIPE_PRICE_LOOKUP_KEYS) are optional and off by default: exactly-once rests on
the deterministic product id, idempotency keys and the price metadata above, so a lookup key only
serves users who look prices up by it, at the cost of a second request per new product.

Creates use two lanes so they are not capped by the 25/s budget of `POST /v1/products`:
  A: POST /v1/products (id + default_price_data) — one request; with lookup keys on, then
     POST /v1/prices/:id (lookup key);
  B: POST /v1/prices (product_data[id]), then POST /v1/products/:id (fields product_data lacks).
The endpoints are distinct, so both lanes together can use more than one endpoint's budget. Lane B
costs two requests, so it is used only where the global budget exceeds one endpoint's (live mode:
100/s against 25/s) and lane A's endpoint is the one holding a product back; in test mode (25/s
overall) every create takes lane A.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from cms_stripe.core.catalog import SYNC_ARCHIVED, SYNC_FAILED, SYNC_SYNCED, SyncUpdate
from cms_stripe.core.error_codes import code_for_exception
from cms_stripe.core.errors import (
    RESUME_HINT,
    AlreadyExistsError,
    AmbiguousWriteError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
    classify,
)
from cms_stripe.core.identity import idempotency_key
from cms_stripe.core.mapping import (
    META_CMS_ID,
    META_PREV_PRICE,
    PRODUCT_DATA_FIELDS,
    RowIssue,
    Target,
)
from cms_stripe.core.plan import Operation, Plan, plan_product
from cms_stripe.core.ports import EP_CREATE_PRICE, EP_CREATE_PRODUCT, Limiter, Limits
from cms_stripe.core.state import product_prices, refresh_state

log = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "repriced", "archived", "reactivated", "noop", "failed", "skipped"]
_OUTCOME = {
    "create": "created",
    "update": "updated",
    "reprice": "repriced",
    "archive": "archived",
    "reactivate": "reactivated",
    "noop": "noop",
}
# Re-plans of one product within a run (after "already exists", a proven-absent ambiguous write, ...).
MAX_ROUNDS = 4
# New key generations for one write after Stripe stored a 5xx under the previous key.
MAX_GENERATIONS = 5
# Pause before re-planning a product whose write kept failing transiently (doubles per round).
REPLAN_BACKOFF_S = 0.2
MIN_INFLIGHT = 4
DEFAULT_MAX_INFLIGHT = 64
# Latency assumed before the first response is seen.
DEFAULT_LATENCY_S = 0.25
HEADROOM = 1.5

ProgressFn = Callable[[int, int, int, int], None]


class Gateway(Protocol):
    @property
    def limits(self) -> Limits: ...
    @property
    def limiter(self) -> Limiter: ...

    @property
    def stats(self) -> Any: ...

    def create_product(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...
    def update_product(self, product_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...
    def create_price(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...
    def update_price(self, price_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...
    def retrieve_product(self, product_id: str, expand: Sequence[str] = ()) -> dict[str, Any] | None: ...
    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]: ...
    def list_prices(
        self, *, product: str | None = None, lookup_keys: Sequence[str] = (), active: bool | None = None
    ) -> list[dict[str, Any]]: ...
    def observed_latency(self) -> float: ...


@dataclass
class ProductResult:
    """How one CMS row ended up in Stripe."""

    cms_id: str
    product_id: str | None
    price_id: str | None
    outcome: Outcome
    kind: str = ""
    attempts: int = 0  # write requests issued for this product (retries inside the gateway excluded)
    severity: Severity | None = None
    error: str | None = None
    error_class: str | None = None
    error_code: str | None = None  # core.error_codes: the operator-facing code (STRIPE_RATE_LIMIT, ...)
    lane: str | None = None
    content_hash: str = ""
    active: bool = True

    @property
    def ok(self) -> bool:
        return self.outcome not in ("failed", "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "cms_id": self.cms_id,
            "product_id": self.product_id,
            "price_id": self.price_id,
            "outcome": self.outcome,
            "kind": self.kind,
            "attempts": self.attempts,
            "severity": self.severity.value if self.severity else None,
            "error": self.error,
            "error_class": self.error_class,
            "error_code": self.error_code,
            "lane": self.lane,
        }


@dataclass
class ApplyResult:
    results: list[ProductResult]
    stats: dict[str, Any]
    elapsed_s: float
    stopped: bool = False
    critical: str | None = None

    def counts(self) -> dict[str, int]:
        c = Counter(r.outcome for r in self.results)
        return dict(sorted(c.items()))

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> list[ProductResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def rate_limited(self) -> int:
        return int(sum((self.stats.get("rate_limited") or {}).values()))

    @property
    def writes_per_s(self) -> float:
        writes = sum(v for k, v in (self.stats.get("calls") or {}).items() if k.startswith("POST"))
        return writes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def raise_for_critical(self) -> None:
        if self.critical:
            raise SyncAborted(self.critical, self)

    def to_sync_updates(self, now: datetime | None = None) -> list[SyncUpdate]:
        """CMS write-back rows; products never attempted (run stopped) are left pending."""
        at = now or datetime.now(UTC)
        out: list[SyncUpdate] = []
        for r in self.results:
            if r.outcome == "skipped":
                continue
            if r.outcome == "failed":
                out.append(
                    SyncUpdate(
                        id=r.cms_id,
                        sync_status=SYNC_FAILED,
                        stripe_product_id=None,
                        stripe_price_id=None,
                        sync_error=f"[{r.severity.value if r.severity else '?'}] {r.error_code}: {r.error}"[:1000],
                        synced_at=at,
                    )
                )
                continue
            exists = r.product_id is not None and (r.active or r.outcome != "noop" or r.price_id is not None)
            out.append(
                SyncUpdate(
                    id=r.cms_id,
                    sync_status=SYNC_SYNCED if r.active else SYNC_ARCHIVED,
                    stripe_product_id=r.product_id if exists else None,
                    stripe_price_id=r.price_id,
                    synced_at=at,
                    sync_hash=r.content_hash,
                )
            )
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "outcomes": self.counts(),
            "elapsed_s": round(self.elapsed_s, 3),
            "stopped": self.stopped,
            "critical": self.critical,
            "calls": self.stats.get("calls"),
            "total_calls": self.stats.get("total_calls"),
            "rate_limited": self.stats.get("rate_limited"),
            "writes_per_s": round(self.writes_per_s, 2),
        }


class SyncAborted(StripeSyncError):
    """The run stopped on a CRITICAL error; `result` holds what was done before."""

    default_severity = Severity.CRITICAL

    def __init__(self, message: str, result: ApplyResult) -> None:
        super().__init__(message, severity=Severity.CRITICAL)
        self.result = result


class _Replan(Exception):
    """Stripe holds something the operation did not expect: re-read and decide again."""


@dataclass
class _Ctx:
    op: Operation
    attempts: int = 0
    lane: str | None = None
    price_id: str | None = None


def _digest_params(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


class _Applier:
    def __init__(
        self,
        gateway: Gateway,
        *,
        lanes: bool,
        stop: threading.Event,
    ) -> None:
        self.gw = gateway
        self.lanes = lanes
        self.stop = stop
        self._lane_lock = threading.Lock()

    # -- writes with ambiguity handling -----------------------------------------------------------

    def _write(
        self,
        ctx: _Ctx,
        step: str,
        basis: str,
        call: Callable[[str], dict[str, Any]],
        lookup: Callable[[], dict[str, Any] | None] | None,
    ) -> dict[str, Any]:
        """One logical write. After a 5xx, `lookup` says whether it landed; absent → new key generation.

        Without `lookup` the write sets absolute values, so re-sending it is safe.
        """
        last: AmbiguousWriteError | None = None
        for gen in range(MAX_GENERATIONS):
            key = idempotency_key(step, ctx.op.product_id, basis, gen)
            ctx.attempts += 1
            try:
                return call(key)
            except AmbiguousWriteError as exc:
                last = exc
                log.info("ambiguous %s for %s (gen %d): verifying", step, ctx.op.product_id, gen)
                if lookup is not None:
                    found = lookup()
                    if found is not None:
                        return found
        assert last is not None
        raise last

    # -- lanes ------------------------------------------------------------------------------------

    def choose_lane(self) -> str:
        if not self.lanes:
            return "A"
        limiter = self.gw.limiter
        if limiter.global_rate() <= limiter.endpoint_rate(EP_CREATE_PRODUCT):
            # The account budget, not lane A's endpoint, is the bound: a two-request lane B create
            # would only spend more of it.
            return "A"
        with self._lane_lock:
            wa = self.gw.limiter.wait_time(EP_CREATE_PRODUCT)
            wb = self.gw.limiter.wait_time(EP_CREATE_PRICE)
            return "B" if wa > wb else "A"

    # -- operations -------------------------------------------------------------------------------

    def create(self, ctx: _Ctx) -> None:
        op = ctx.op
        t = op.target
        ctx.lane = self.choose_lane()
        if ctx.lane == "A":
            params = t.create_product_params()
            params["expand"] = ["default_price"]

            def lookup_product() -> dict[str, Any] | None:
                if self.gw.retrieve_product(op.product_id) is not None:
                    raise _Replan
                return None

            try:
                product = self._write(
                    ctx,
                    "create-product",
                    _digest_params(params),
                    lambda key: self.gw.create_product(params, key),
                    lookup_product,
                )
            except AlreadyExistsError as exc:
                raise _Replan from exc
            dp = product.get("default_price")
            price_id = dp.get("id") if isinstance(dp, dict) else dp
            if not price_id:
                raise _Replan
            ctx.price_id = price_id
            if t.lookup_key:
                self._set_lookup_key(ctx, price_id, t)
            return

        params = t.create_price_with_product_params()

        def lookup_price() -> dict[str, Any] | None:
            price = self._find_price(t)
            if price is not None:
                return price
            if self.gw.retrieve_product(op.product_id) is not None:
                raise _Replan
            return None

        try:
            price = self._write(
                ctx,
                "create-product-b",
                _digest_params(params),
                lambda key: self.gw.create_price(params, key),
                lookup_price,
            )
        except AlreadyExistsError as exc:
            raise _Replan from exc
        ctx.price_id = price["id"]
        rest: dict[str, Any] = {
            k: v for k, v in t.fields.items() if k not in PRODUCT_DATA_FIELDS and v not in (None, "", [])
        }
        rest["default_price"] = price["id"]
        rest["metadata"] = dict(t.metadata)
        self._write(
            ctx,
            "complete-product-b",
            _digest_params(rest),
            lambda key: self.gw.update_product(op.product_id, rest, key),
            None,
        )

    def _find_price(self, t: Target) -> dict[str, Any] | None:
        """The live price we would have created for the target, if an earlier attempt made it.

        Without a lookup key: the product's live prices, matched on content and our metadata
        (`GET /v1/prices?product=…`, strongly consistent, unlike Search).
        """
        if t.price is None:
            return None
        if not t.lookup_key:
            return product_prices(self.gw, t)
        for price in self.gw.list_prices(lookup_keys=[t.lookup_key]):
            if (
                price.get("lookup_key") == t.lookup_key
                and price.get("product") == t.product_id
                and price.get("active")
                and t.price.matches(price)
            ):
                return price
        return None

    def _set_lookup_key(self, ctx: _Ctx, price_id: str, t: Target) -> None:
        assert t.lookup_key
        params = {"lookup_key": t.lookup_key, "transfer_lookup_key": True}
        self._write(
            ctx,
            "lookup-key",
            f"{price_id}:{t.lookup_key}",
            lambda key: self.gw.update_price(price_id, params, key),
            None,
        )

    def archive(self, ctx: _Ctx) -> None:
        op = ctx.op
        params = dict(op.product_params) or {"active": False}
        self._write(
            ctx,
            "archive",
            f"{op.state_version}:{_digest_params(params)}",
            lambda key: self.gw.update_product(op.product_id, params, key),
            None,
        )
        ctx.price_id = op.price_id

    def converge(self, ctx: _Ctx) -> None:
        """update / reprice / reactivate, in the crash-safe reprice order (see plan.py)."""
        op = ctx.op
        t = op.target
        new_price_id = op.reuse_price_id
        if op.new_price:
            params = t.create_price_params()
            new_price = self._write(
                ctx,
                "price",
                f"{op.old_price_id}:{op.state_version}:{_digest_params(params)}",
                lambda key: self.gw.create_price(params, key),
                lambda: self._find_price(t),
            )
            new_price_id = new_price["id"]
        switching = new_price_id is not None and new_price_id != op.old_price_id
        to_archive = set(op.stale_price_ids)
        if switching and op.old_price_id:
            to_archive.add(op.old_price_id)
        to_archive.discard(new_price_id or "")

        product_params = dict(op.product_params)
        if switching:
            product_params["default_price"] = new_price_id
            if to_archive:
                meta = dict(product_params.get("metadata") or {})
                meta[META_PREV_PRICE] = ",".join(sorted(to_archive))
                product_params["metadata"] = meta
        if product_params:
            self._write(
                ctx,
                "update",
                f"{op.state_version}:{_digest_params(product_params)}",
                lambda key: self.gw.update_product(op.product_id, product_params, key),
                None,
            )
        current = new_price_id or op.price_id
        ctx.price_id = current

        if switching:
            # Orphans of earlier interrupted reprices carry our cms_id; hand-made prices are left alone.
            for price in self.gw.list_prices(product=op.product_id, active=True):
                if price["id"] != current and (price.get("metadata") or {}).get(META_CMS_ID) == t.cms_id:
                    to_archive.add(price["id"])
        for price_id in sorted(to_archive):
            self._write(
                ctx,
                "archive-price",
                f"{price_id}:{current}",
                lambda key, pid=price_id: self.gw.update_price(pid, {"active": False}, key),  # type: ignore[misc]
                None,
            )
        if to_archive or op.stale_price_ids:
            clear = {"metadata": {META_PREV_PRICE: ""}}
            self._write(
                ctx,
                "clear-marker",
                f"{current}:{','.join(sorted(to_archive))}",
                lambda key: self.gw.update_product(op.product_id, clear, key),
                None,
            )
        if op.set_lookup_price_id:
            self._set_lookup_key(ctx, op.set_lookup_price_id, t)

    # -- one product ------------------------------------------------------------------------------

    def run(self, original: Operation) -> ProductResult:
        ctx = _Ctx(original)
        op = original
        for _round in range(MAX_ROUNDS):
            ctx.op = op
            try:
                if op.kind == "noop":
                    ctx.price_id = op.price_id
                elif op.kind == "create":
                    self.create(ctx)
                elif op.kind == "archive":
                    self.archive(ctx)
                else:
                    self.converge(ctx)
                return self._result(original, ctx, _OUTCOME[original.kind])  # type: ignore[arg-type]
            except (AmbiguousWriteError, RetriesExhaustedError) as exc:
                # Stripe is answering but this product's write kept failing: re-read and try again
                # (fresh keys where the state moved) before giving the product up for this run.
                if _round == MAX_ROUNDS - 1 or self.stop.is_set():
                    return self._failure(original, ctx, exc)
                time.sleep(REPLAN_BACKOFF_S * (2**_round) * (0.5 + random.random()))
                try:
                    decided = plan_product(op.target, refresh_state(self.gw, op.target))
                except Exception as exc2:
                    return self._failure(original, ctx, exc2)
                if isinstance(decided, RowIssue):
                    return self._failure(original, ctx, StripeSyncError(decided.message))
                op = decided
            except _Replan:
                log.info("re-planning %s after Stripe answered unexpectedly", op.product_id)
                try:
                    decided = plan_product(op.target, refresh_state(self.gw, op.target))
                except Exception as exc:
                    return self._failure(original, ctx, exc)
                if isinstance(decided, RowIssue):
                    return self._failure(original, ctx, StripeSyncError(decided.message))
                op = decided
            except Exception as exc:
                return self._failure(original, ctx, exc)
        return self._failure(
            original, ctx, StripeSyncError(f"state kept changing under {MAX_ROUNDS} re-plans", severity=Severity.HIGH)
        )

    def _result(self, op: Operation, ctx: _Ctx, outcome: Outcome) -> ProductResult:
        return ProductResult(
            cms_id=op.cms_id,
            product_id=op.product_id,
            price_id=ctx.price_id,
            outcome=outcome,
            kind=op.kind,
            attempts=ctx.attempts,
            lane=ctx.lane,
            content_hash=op.content_hash,
            active=op.target.active,
        )

    def _failure(self, op: Operation, ctx: _Ctx, exc: BaseException) -> ProductResult:
        severity = classify(exc)
        if severity in (Severity.LOW, Severity.MEDIUM):
            # Whatever was transient has been retried already; for this run the product is lost.
            severity = Severity.HIGH
        if severity is Severity.CRITICAL:
            self.stop.set()
        if severity is Severity.HIGH:
            log.warning("product %s failed: %s", op.cms_id, exc)
        result = self._result(op, ctx, "failed")
        result.severity = severity
        result.error = str(exc)[:2000]
        result.error_class = type(exc).__name__
        result.error_code = code_for_exception(exc).value
        return result


def concurrency_for(gateway: Gateway, max_concurrency: int | None = None) -> int:
    """In-flight products ≈ global budget * observed latency * headroom (Little's law), capped."""
    latency = gateway.observed_latency() or DEFAULT_LATENCY_S
    rate = gateway.limiter.global_rate()
    want = max(MIN_INFLIGHT, math.ceil(rate * latency * HEADROOM))
    caps = [c for c in (max_concurrency, gateway.limits.max_concurrency) if c]
    cap = min(caps) if caps else DEFAULT_MAX_INFLIGHT
    return max(1, min(want, cap))


def apply_plan(
    plan: Plan,
    gateway: Gateway,
    *,
    max_concurrency: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    lanes: bool = True,
    on_result: Callable[[ProductResult], None] | None = None,
) -> ApplyResult:
    """Apply every operation of `plan`; never raises for a product, returns a CRITICAL stop in `critical`.

    `progress(done, total, success, failed)` and `on_result(ProductResult)` are called as each product
    finishes (from worker threads, one at a time per product; skipped products are not reported).
    """
    started = time.monotonic()
    ops = list(plan.operations)
    total = len(ops)
    stop = threading.Event()
    applier = _Applier(gateway, lanes=lanes, stop=stop)
    results: dict[int, ProductResult] = {}
    lock = threading.Lock()
    done = success = failed = 0

    def finished(index: int, result: ProductResult) -> None:
        nonlocal done, success, failed
        with lock:
            results[index] = result
            done += 1
            if result.ok:
                success += 1
            else:
                failed += 1
            counts = (done, total, success, failed)
        if on_result is not None:
            # Checkpoint / write-back hook: an exception here is the caller's bug and stops nothing.
            try:
                on_result(result)
            except Exception:
                log.exception("on_result callback failed")
        if progress is not None:
            try:
                progress(*counts)
            except Exception:  # a broken progress line must not break a sync
                log.exception("progress callback failed")

    # No-ops need no Stripe call and no thread.
    work: list[int] = []
    for i, op in enumerate(ops):
        if op.kind == "noop":
            finished(i, applier.run(op))
        else:
            work.append(i)

    hard_cap = max_concurrency or gateway.limits.max_concurrency or DEFAULT_MAX_INFLIGHT
    pending: set[Future[ProductResult]] = set()
    index_of: dict[Future[ProductResult], int] = {}
    next_i = 0
    with ThreadPoolExecutor(max_workers=hard_cap, thread_name_prefix="stripe-apply") as pool:
        while next_i < len(work) or pending:
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
            limit = concurrency_for(gateway, max_concurrency)
            while not stop.is_set() and next_i < len(work) and len(pending) < limit:
                i = work[next_i]
                next_i += 1
                fut = pool.submit(applier.run, ops[i])
                index_of[fut] = i
                pending.add(fut)
            if not pending:
                break
            completed, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in completed:
                finished(index_of.pop(fut), fut.result())

    critical_results = [r for r in results.values() if r.severity is Severity.CRITICAL]
    for i in work[next_i:]:
        op = ops[i]
        results[i] = ProductResult(
            cms_id=op.cms_id,
            product_id=op.product_id,
            price_id=None,
            outcome="skipped",
            kind=op.kind,
            content_hash=op.content_hash,
            active=op.target.active,
        )
    critical = None
    if critical_results:
        first = critical_results[0]
        not_done = sum(1 for r in results.values() if not r.ok)
        critical = (
            f"CRITICAL: run stopped — {first.error_class}: {first.error}. "
            f"{len(results) - not_done} of {total} products done, {not_done} not; {RESUME_HINT}."
        )
    stats = gateway.stats.snapshot() if hasattr(gateway.stats, "snapshot") else dict(gateway.stats)
    return ApplyResult(
        results=[results[i] for i in range(total)],
        stats=stats,
        elapsed_s=time.monotonic() - started,
        stopped=stop.is_set(),
        critical=critical,
    )
