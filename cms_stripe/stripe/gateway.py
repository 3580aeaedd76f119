"""The one door to Stripe: every Stripe call of the project goes through StripeGateway.

Per attempt: circuit-breaker check, concurrency cap, a rate-limiter slot, one HTTP request with
stripe-python's own retries off (`max_network_retries=0`) so that pacing and idempotency keys stay
under our control. Then, by outcome:

- success                       -> plain dict (recursive `to_dict()`)
- 429 rate (global/endpoint...) -> penalize the limiter, back off (full jitter), retry, SAME key
- 429 lock_timeout              -> object lock, not a pacing signal: retry soon, SAME key
- 409 (key in concurrent use)   -> back off, retry, SAME key
- connection error              -> back off, retry, SAME key (Stripe replays a completed write)
- 5xx on a read                 -> back off, retry
- 5xx on a write                -> AmbiguousWriteError at once: Stripe stored the 5xx under the key
                                   and would replay it; the caller verifies, then uses a new key
- resource_already_exists       -> AlreadyExistsError (LOW)
- other 4xx                     -> StripeSyncError HIGH; 401/403 -> CRITICAL

Connection errors, 5xx and rate 429s feed a circuit breaker (consecutive failures across all
calls and threads); once open, every call fails fast with CircuitOpenError (CRITICAL).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import stripe
import tenacity

from cms_stripe.core.errors import (
    RESUME_HINT,
    AlreadyExistsError,
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
)
from cms_stripe.core.ports import (
    EP_CREATE_PRICE,
    EP_CREATE_PRODUCT,
    EP_DELETE_PRODUCT,
    EP_LIST_PRICES,
    EP_LIST_PRODUCTS,
    EP_RETRIEVE_PRODUCT,
    EP_UPDATE_PRICE,
    EP_UPDATE_PRODUCT,
)
from cms_stripe.core.settings import LiveKeyRefused, clean_key, live_write_refusal, scrub
from cms_stripe.stripe.breaker import CircuitBreaker
from cms_stripe.stripe.errors import (
    _header,
    classify,
    error_code,
    error_param,
    is_conflict,
    is_rate_limit,
    is_server_error,
    rate_limited_reason,
)
from cms_stripe.stripe.limits import LimitModel, RateLimiter

log = logging.getLogger(__name__)

MAX_IDS_PER_LIST = 100  # Stripe: list limit is 1..100
# Concurrent list calls in one state read: well under the 25/s endpoint budget at Stripe's latency.
LIST_CONCURRENCY = 8
MAX_LOOKUP_KEYS_PER_LIST = 10  # Stripe: "You can specify up to 10 lookup_keys."
MAX_IDEMPOTENCY_KEY_LEN = 255
# Status recorded for an attempt that got no HTTP response (dropped / refused connection).
NO_RESPONSE = 0


class LiveWriteRefusedError(StripeSyncError, LiveKeyRefused):
    """A write with a live key that nobody allowed: CRITICAL, so the executor stops at once."""

    default_severity = Severity.CRITICAL


@dataclass
class CallStats:
    """Counters for one gateway; safe to update from many threads."""

    calls: Counter[str] = field(default_factory=Counter)  # HTTP requests sent, per endpoint
    status: Counter[int] = field(default_factory=Counter)  # per HTTP status; 0 = no response
    rate_limited: Counter[str] = field(default_factory=Counter)  # 429s by reason (incl. lock_timeout)
    retries: int = 0
    ambiguous: int = 0
    latency_ewma_s: float = 0.0
    circuit_opened: int = 0
    _samples: int = field(default=0, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    _ALPHA = 0.2

    def record_attempt(self, endpoint: str) -> None:
        with self._lock:
            self.calls[endpoint] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self.status[status] += 1

    def record_success(self, status: int, latency_s: float) -> None:
        with self._lock:
            self.status[status] += 1
            if self._samples == 0:
                self.latency_ewma_s = latency_s
            else:
                self.latency_ewma_s += self._ALPHA * (latency_s - self.latency_ewma_s)
            self._samples += 1

    def record_rate_limited(self, reason: str) -> None:
        with self._lock:
            self.rate_limited[reason] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_ambiguous(self) -> None:
        with self._lock:
            self.ambiguous += 1

    def record_circuit_opened(self) -> None:
        with self._lock:
            self.circuit_opened += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "total_calls": sum(self.calls.values()),
                "status": {str(k): v for k, v in sorted(self.status.items())},
                "rate_limited": dict(self.rate_limited),
                "retries": self.retries,
                "ambiguous": self.ambiguous,
                "latency_ewma_s": round(self.latency_ewma_s, 6),
                "circuit_opened": self.circuit_opened,
            }


class _Retry(Exception):
    """One attempt failed in a retryable way; carries what the wait strategy needs."""

    def __init__(self, cause: stripe.StripeError, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.kind = kind  # "rate" | "lock" | "conflict" | "connection" | "server"
        self.retry_after = retry_after


_DOWN_KINDS = frozenset({"connection", "server"})


def _retry_after(exc: stripe.StripeError) -> float | None:
    raw = _header(exc.headers, "Retry-After")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


# Not among the sync's paced endpoints (limits.ENDPOINTS): read once per plan and per apply.
EP_RETRIEVE_ACCOUNT = "GET /v1/account"


class StripeGateway:
    """Rate-limited, retrying, circuit-broken access to the Stripe endpoints the sync uses."""

    def __init__(
        self,
        client: stripe.StripeClient,
        limits: LimitModel,
        *,
        max_attempts: int = 8,
        breaker_fail_max: int = 20,
        breaker_reset_s: float = 30.0,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
        lock_retry_s: tuple[float, float] = (0.05, 0.25),
        allow_live: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._client = client
        self.limits = limits
        # The live-key guard: every write passes `_call`, which refuses it when the key is live
        # (anything not clearly a test key) unless the gateway was built with allow_live=True.
        self.allow_live = allow_live
        self.limiter = limiter if limiter is not None else RateLimiter(limits, clock=clock, sleep=sleep)
        self.stats = CallStats()
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._lock_retry_s = lock_retry_s
        self._backoff_max_s = backoff_max_s
        self._wait_exp = tenacity.wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s)
        self._breaker = CircuitBreaker(breaker_fail_max, breaker_reset_s, clock, on_open=self._on_open)
        self._last_failure: str = ""
        self._slots = threading.BoundedSemaphore(limits.max_concurrency) if limits.max_concurrency else None

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"StripeGateway(limits={self.limits!r})"

    @classmethod
    def from_settings(
        cls,
        api_key: str,
        api_base: str | None = None,
        *,
        limits: LimitModel | None = None,
        **kw: Any,
    ) -> StripeGateway:
        """Gateway for `api_key` (Settings.stripe_secret_key); `api_base` (Settings.stripe_api_base)
        points at an emulator; `limits` defaults to Stripe's published ones for the key's mode."""
        api_key = clean_key(api_key) or ""
        if not api_key:
            raise ValueError("a Stripe API key is required")
        base = clean_key(api_base)
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base} if base else None,
            max_network_retries=0,
            # stripe-python's 80 s read timeout would stall a worker for a minute on a hung
            # connection; a write that times out is retried with the same key, which is safe.
            http_client=stripe.RequestsClient(timeout=(10, 30)),
        )
        return cls(client, limits or LimitModel.for_key(api_key), **kw)

    # -- public API ------------------------------------------------------------------------------

    def create_product(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return self._write(
            EP_CREATE_PRODUCT,
            idempotency_key,
            lambda options: self._client.v1.products.create(params=params, options=options),  # type: ignore[arg-type]
        )

    def update_product(self, product_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return self._write(
            EP_UPDATE_PRODUCT,
            idempotency_key,
            lambda options: self._client.v1.products.update(product_id, params=params, options=options),  # type: ignore[arg-type]
        )

    def create_price(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return self._write(
            EP_CREATE_PRICE,
            idempotency_key,
            lambda options: self._client.v1.prices.create(params=params, options=options),  # type: ignore[arg-type]
        )

    def update_price(self, price_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return self._write(
            EP_UPDATE_PRICE,
            idempotency_key,
            lambda options: self._client.v1.prices.update(price_id, params=params, options=options),  # type: ignore[arg-type]
        )

    def retrieve_product(self, product_id: str, expand: Sequence[str] = ()) -> dict[str, Any] | None:
        """The product, or None if Stripe has no product with that id."""
        params: dict[str, Any] = {"expand": list(expand)} if expand else {}
        try:
            return self._call(
                EP_RETRIEVE_PRODUCT,
                lambda: self._client.v1.products.retrieve(product_id, params=params),  # type: ignore[arg-type]
                write=False,
            )
        except StripeSyncError as exc:
            if exc.http_status == 404 and exc.code == "resource_missing":
                return None
            raise

    def retrieve_account(self) -> dict[str, Any]:
        """The account the key belongs to (`GET /v1/account`): a reviewed plan names it, so it is
        applied only to the account it was made against."""
        return self._call(EP_RETRIEVE_ACCOUNT, lambda: self._client.v1.accounts.retrieve_current(), write=False)

    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]:
        """The products among `ids` that exist (any order). An empty `ids` lists nothing.

        Stripe forbids `starting_after` together with `ids`, so instead of paging, a chunk whose
        answer says `has_more` is split and asked again.
        """
        unique = list(dict.fromkeys(ids))
        chunks = [unique[i : i + MAX_IDS_PER_LIST] for i in range(0, len(unique), MAX_IDS_PER_LIST)]
        found: dict[str, dict[str, Any]] = {}
        if len(chunks) <= 1:
            pages = [self._list_products_chunk(c, expand_default_price) for c in chunks]
        else:
            # One call per 100 ids is the floor; issuing them concurrently keeps a 10,000-product state
            # read from costing 100 round trips of latency. The limiter still paces every call.
            with ThreadPoolExecutor(max_workers=min(LIST_CONCURRENCY, len(chunks))) as pool:
                pages = list(pool.map(lambda c: self._list_products_chunk(c, expand_default_price), chunks))
        for page in pages:
            for product in page:
                found[product["id"]] = product
        return list(found.values())

    def iter_all_products(self, expand_default_price: bool = True) -> Iterator[dict[str, Any]]:
        """Every product of the account, 100 per page, paced, retried and behind the breaker like any call."""
        params: dict[str, Any] = {"limit": MAX_IDS_PER_LIST}
        if expand_default_price:
            params["expand"] = ["data.default_price"]
        yield from self._paginate(EP_LIST_PRODUCTS, self._client.v1.products.list, params)

    def list_prices(
        self,
        *,
        product: str | None = None,
        lookup_keys: Sequence[str] = (),
        active: bool | None = None,
    ) -> list[dict[str, Any]]:
        """All prices matching the filters, every page followed; lookup keys asked 10 at a time."""
        base: dict[str, Any] = {"limit": 100}
        if product is not None:
            base["product"] = product
        if active is not None:
            base["active"] = active
        keys = list(dict.fromkeys(lookup_keys))
        groups: list[list[str] | None] = (
            [keys[i : i + MAX_LOOKUP_KEYS_PER_LIST] for i in range(0, len(keys), MAX_LOOKUP_KEYS_PER_LIST)]
            if keys
            else [None]
        )
        out: dict[str, dict[str, Any]] = {}
        for group in groups:
            params = dict(base)
            if group is not None:
                params["lookup_keys"] = group
            for price in self._paginate(EP_LIST_PRICES, self._client.v1.prices.list, params):
                out[price["id"]] = price
        return list(out.values())

    def delete_product(self, product_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """Delete a product. A product that is already gone counts as deleted (`already_absent`).

        Stripe ignores idempotency keys on DELETE; a retry after a dropped connection whose delete
        went through answers 404, which is why 404 means "done" here.
        """
        options: dict[str, Any] = {"idempotency_key": _check_key(idempotency_key)} if idempotency_key else {}
        try:
            return self._call(
                EP_DELETE_PRODUCT,
                lambda: self._client.v1.products.delete(product_id, options=options),  # type: ignore[arg-type]
                write=True,
                idempotency_key=idempotency_key,
            )
        except StripeSyncError as exc:
            if exc.http_status == 404 and exc.code == "resource_missing":
                return {"id": product_id, "object": "product", "deleted": True, "already_absent": True}
            raise

    def observed_latency(self) -> float:
        """EWMA of successful request latency in seconds (0.0 before the first success)."""
        return self.stats.latency_ewma_s

    @property
    def circuit_state(self) -> str:
        return self._breaker.state

    # -- internals -------------------------------------------------------------------------------

    def _write(self, endpoint: str, idempotency_key: str, send: Callable[[Any], Any]) -> dict[str, Any]:
        """A POST under a caller-chosen idempotency key, the same key on every retry."""
        key = _check_key(idempotency_key)
        return self._call(endpoint, lambda: send({"idempotency_key": key}), write=True, idempotency_key=key)

    def _list_products_chunk(self, chunk: list[str], expand: bool) -> list[dict[str, Any]]:
        if not chunk:
            return []
        params: dict[str, Any] = {"ids": chunk, "limit": MAX_IDS_PER_LIST}
        if expand:
            params["expand"] = ["data.default_price"]
        page = self._call(
            EP_LIST_PRODUCTS,
            lambda: self._client.v1.products.list(params=params),  # type: ignore[arg-type]
            write=False,
        )
        data = list(page.get("data") or [])
        if page.get("has_more") and len(chunk) > 1:
            half = len(chunk) // 2
            return self._list_products_chunk(chunk[:half], expand) + self._list_products_chunk(chunk[half:], expand)
        return data

    def _paginate(self, endpoint: str, list_fn: Callable[..., Any], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page_params = dict(params)
            if cursor is not None:
                page_params["starting_after"] = cursor

            def fetch(p: dict[str, Any] = page_params) -> Any:
                return list_fn(params=p)

            page = self._call(endpoint, fetch, write=False)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            cursor = data[-1]["id"]

    def _call(
        self,
        endpoint: str,
        fn: Callable[[], Any],
        *,
        write: bool,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        refusal = live_write_refusal(f"send {endpoint}", self.limits.live, self.allow_live) if write else None
        if refusal:
            raise LiveWriteRefusedError(
                refusal, code="live_key_refused", endpoint=endpoint, idempotency_key=idempotency_key
            )
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            before_sleep=lambda state: self._before_sleep(endpoint, idempotency_key, state),
            reraise=True,
        )
        try:
            result: dict[str, Any] = retrying(self._attempt, endpoint, fn, write, idempotency_key)
            return result
        except _Retry as exhausted:
            raise self._exhausted(endpoint, idempotency_key, exhausted) from exhausted.cause

    def _attempt(
        self, endpoint: str, fn: Callable[[], Any], write: bool, idempotency_key: str | None
    ) -> dict[str, Any]:
        self._check_open(endpoint, idempotency_key)
        with self._slots if self._slots is not None else contextlib.nullcontext():
            self.limiter.acquire(endpoint)
            self.stats.record_attempt(endpoint)
            started = self._clock()
            try:
                obj = fn()
            except stripe.StripeError as exc:
                failure: stripe.StripeError = exc
            else:
                response = getattr(obj, "last_response", None)
                self.stats.record_success(getattr(response, "code", None) or 200, self._clock() - started)
                self._breaker_event(None, endpoint)
                return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        return self._handle_failure(endpoint, failure, write, idempotency_key)

    def _handle_failure(
        self, endpoint: str, exc: stripe.StripeError, write: bool, idempotency_key: str | None
    ) -> dict[str, Any]:
        connection = isinstance(exc, stripe.APIConnectionError)
        self.stats.record_status(NO_RESPONSE if connection else (exc.http_status or NO_RESPONSE))
        if is_rate_limit(exc):
            reason = rate_limited_reason(exc)
            self.stats.record_rate_limited(reason)
            if reason == "lock_timeout":
                self._breaker_event(None, endpoint)  # Stripe is healthy; another writer holds the object
                raise _Retry(exc, kind="lock")
            self.limiter.penalize(endpoint, reason)
            self._breaker_event(exc, endpoint, idempotency_key)
            raise _Retry(exc, kind="rate", retry_after=_retry_after(exc))
        if connection:
            self._breaker_event(exc, endpoint, idempotency_key)
            raise _Retry(exc, kind="connection")
        if is_conflict(exc):
            self._breaker_event(None, endpoint)
            raise _Retry(exc, kind="conflict")
        if is_server_error(exc) or (isinstance(exc, stripe.APIError) and exc.http_status is None):
            # A write that trips the breaker surfaces as CircuitOpenError (CRITICAL) rather than as
            # ambiguous: the run stops, and the resumed run re-reads Stripe before writing anyway.
            self._breaker_event(exc, endpoint, idempotency_key)
            if write:
                self.stats.record_ambiguous()
                raise AmbiguousWriteError(
                    f"Stripe answered {exc.http_status or 'an unreadable response'} to a write; it may or may "
                    "not have been applied: verify, then retry with a new idempotency key",
                    code=error_code(exc),
                    http_status=exc.http_status,
                    endpoint=endpoint,
                    idempotency_key=idempotency_key,
                    request_id=exc.request_id,
                ) from exc
            raise _Retry(exc, kind="server")
        # Stripe answered with a definite refusal: it is up, and retrying cannot help.
        self._breaker_event(None, endpoint)
        raise _convert(exc, endpoint, idempotency_key) from exc

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retry) and exc.kind == "lock":
            low, high = self._lock_retry_s
            return random.uniform(low, high)
        wait = float(self._wait_exp(state))
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self._backoff_max_s))
        return wait

    def _before_sleep(self, endpoint: str, key: str | None, state: tenacity.RetryCallState) -> None:
        self.stats.record_retry()
        exc = state.outcome.exception() if state.outcome is not None else None
        kind = exc.kind if isinstance(exc, _Retry) else "?"
        log.info(
            "Stripe %s: attempt %d failed (%s: %s); retrying in %.2fs with idempotency key %s",
            endpoint,
            state.attempt_number,
            kind,
            exc,
            state.upcoming_sleep,
            key or "-",
        )

    # -- circuit breaker -------------------------------------------------------------------------

    def _breaker_event(self, exc: BaseException | None, endpoint: str, idempotency_key: str | None = None) -> None:
        """Tell the breaker how an attempt went; a failure that leaves the circuit open ends the call."""
        if exc is None:
            self._breaker.success()
            return
        self._last_failure = f"{endpoint}: {_describe(exc)}"
        if self._breaker.failure():
            raise self._open_error(endpoint, idempotency_key) from exc

    def _on_open(self, failures: int) -> None:
        self.stats.record_circuit_opened()
        log.error("Stripe circuit breaker opened after %d consecutive failures (%s)", failures, self._last_failure)

    def _check_open(self, endpoint: str, idempotency_key: str | None = None) -> None:
        if not self._breaker.allow():
            raise self._open_error(endpoint, idempotency_key)

    def _open_error(self, endpoint: str, idempotency_key: str | None = None) -> CircuitOpenError:
        failures = self._breaker.opened_after or self._breaker.failures
        last = f" Last error: {self._last_failure}." if self._last_failure else ""
        return CircuitOpenError(
            f"Stripe unreachable: circuit open after {failures} consecutive failures; {RESUME_HINT}.{last}",
            code="circuit_open",
            endpoint=endpoint,
            idempotency_key=idempotency_key,
        )

    def _exhausted(self, endpoint: str, key: str | None, exhausted: _Retry) -> StripeSyncError:
        cause = exhausted.cause
        if exhausted.kind in _DOWN_KINDS and self._breaker.open_if_failing(self.max_attempts):
            return self._open_error(endpoint, key)
        return RetriesExhaustedError(
            scrub(f"Stripe call still failing after {self.max_attempts} attempts ({exhausted.kind}): {cause}"),
            code=error_code(cause) or exhausted.kind,
            http_status=cause.http_status,
            endpoint=endpoint,
            idempotency_key=key,
            request_id=cause.request_id,
        )


def _describe(exc: BaseException) -> str:
    """One short line about a failure, for logs and the circuit-open message."""
    text = " ".join(scrub(exc).split())
    if isinstance(exc, stripe.APIConnectionError) and "Network error: " in text:
        # stripe-python wraps the useful part ("Connection refused"...) in boilerplate.
        text = text.split("Network error: ", 1)[1].rstrip(")")
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}"


def _check_key(key: str | None) -> str:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LEN:
        raise ValueError(f"idempotency key must be 1..{MAX_IDEMPOTENCY_KEY_LEN} characters, got {key!r}")
    return key


def _convert(exc: stripe.StripeError, endpoint: str, key: str | None) -> StripeSyncError:
    """A non-retryable stripe-python error as a StripeSyncError of the right class and severity."""
    code = error_code(exc)
    common: dict[str, Any] = {
        "code": code,
        "http_status": exc.http_status,
        "param": error_param(exc),
        "endpoint": endpoint,
        "idempotency_key": key,
        "request_id": exc.request_id,
    }
    message = scrub(exc.user_message or type(exc).__name__)
    if isinstance(exc, stripe.InvalidRequestError) and code == "resource_already_exists":
        return AlreadyExistsError(message, **common)
    if isinstance(exc, stripe.AuthenticationError):
        # Stripe's own message quotes part of the key; keep it out of logs and reports.
        return StripeSyncError(
            "Stripe rejected the API key (401): check STRIPE_API_KEY", severity=Severity.CRITICAL, **common
        )
    if isinstance(exc, stripe.PermissionError):
        return StripeSyncError(
            f"the API key lacks a permission this sync needs (403): {message}", severity=Severity.CRITICAL, **common
        )
    if isinstance(exc, stripe.IdempotencyError):
        common["code"] = code or "idempotency_error"
        return StripeSyncError(
            f"idempotency key reused with different parameters: {message}", severity=Severity.HIGH, **common
        )
    return StripeSyncError(message, severity=classify(exc), **common)
