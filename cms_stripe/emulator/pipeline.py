"""The Stripe request pipeline: routing, auth, rate limits, idempotency, faults, and the admin URLs.

It sees parsed requests and returns responses; the HTTP/1.1 wire is `transport`'s job.

Pipeline for a /v1 request, in Stripe's order:
auth -> rate limits (global, endpoint, concurrency; injected 429s) -> idempotency (replay, mismatch,
concurrent duplicate) -> latency -> parameter validation -> lock_timeout / 500 / drop "before" faults
-> apply the write -> 500 / drop "after" faults -> store the result under the idempotency key.

A single event loop (see `server`) serves every connection: latency is an `asyncio.sleep`, so
hundreds of requests can be in flight without a thread each, and state needs no lock because
validation and the write run with no await between them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from . import params as wire
from . import persistence, queries
from .config import TEST_MODE_GLOBAL_RPS, EmulatorConfig, FaultConfig
from .errors import ApiError
from .idempotency import IdempotencyStore
from .state import Store
from .stats import Stats

STRIPE_VERSION = "2025-09-30.clover"
REQUEST_LOG_MAX = 100_000
_FAULT_ORDER = ("rate_429", "lock_timeout_429", "error_500_before", "drop_before", "error_500_after", "drop_after")
_READ_FAULTS = frozenset({"rate_429", "error_500_before", "drop_before"})


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class DropConnection(Exception):
    """Close the connection without writing any response."""


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), headers or {})


def _error(err: ApiError) -> Response:
    return _json(err.status, err.body(), dict(err.headers))


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    op: str
    write: bool
    search: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


_ROUTES: dict[tuple[str, str], Route] = {
    (r.method, r.template): r
    for r in (
        Route("GET", "/v1/products", "product.list", False),
        Route("POST", "/v1/products", "product.create", True),
        Route("GET", "/v1/products/search", "product.search", False, search=True),
        Route("GET", "/v1/products/:id", "product.retrieve", False),
        Route("POST", "/v1/products/:id", "product.update", True),
        Route("DELETE", "/v1/products/:id", "product.delete", True),
        Route("GET", "/v1/prices", "price.list", False),
        Route("POST", "/v1/prices", "price.create", True),
        Route("GET", "/v1/prices/search", "price.search", False, search=True),
        Route("GET", "/v1/prices/:id", "price.retrieve", False),
        Route("POST", "/v1/prices/:id", "price.update", True),
        Route("GET", "/v1/account", "account.retrieve", False),
    )
}


def account_object(config: EmulatorConfig) -> dict[str, Any]:
    """The emulated account (`GET /v1/account`): the fields a client reads to tell accounts apart."""
    return {
        "id": config.effective_account_id,
        "object": "account",
        "type": "standard",
        "country": "US",
        "default_currency": "usd",
        "charges_enabled": True,
        "payouts_enabled": True,
        "details_submitted": True,
    }


def match_route(method: str, path: str) -> tuple[Route | None, str | None]:
    """Return the route and the object id from the path (ids arrive quote_plus-encoded)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "v1":
        return None, None
    if parts[2] == "account":
        # The singular `/v1/account` (the key's own account) takes no id.
        return (_ROUTES.get((method, "/v1/account")), None) if len(parts) == 3 else (None, None)
    base = f"/v1/{parts[2]}"
    if len(parts) == 3:
        return _ROUTES.get((method, base)), None
    if len(parts) == 4 and parts[3]:
        if parts[3] == "search" and method == "GET":
            return _ROUTES.get((method, base + "/search")), None
        return _ROUTES.get((method, base + "/:id")), unquote_plus(parts[3])
    return None, None


def _parse_api_key(header: str | None) -> tuple[str | None, str | None]:
    """Return (key, error message)."""
    if not header:
        return None, (
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value).decode().split(":", 1)[0]
        except ValueError:
            value = ""
    elif scheme.lower() != "bearer":
        return None, "Invalid authorization header; use Bearer auth with your secret key."
    prefix = value[:8]
    if (
        prefix in ("sk_test_", "rk_test_", "sk_live_", "rk_live_")
        and len(value) > 8
        and value.isascii()
        and all(c.isalnum() or c == "_" for c in value)
    ):
        return value, None
    masked = value[:8] + "*" * max(0, len(value) - 12) + value[-4:] if len(value) > 12 else value
    return None, f"Invalid API Key provided: {masked}"


class Emulator:
    """Everything that runs on the event-loop thread: state, stats, and request handling."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        # Rate-limit windows and search lag read this clock (the request log keeps real time); tests pass
        # a manual one so that a burst is one instant and a window slides when the test says, however
        # loaded the machine is.
        self.clock = clock
        self.store = Store(clock)
        self.idempotency = IdempotencyStore()
        self.stats = Stats()
        self.fault_rng = random.Random(config.faults.seed)
        self.latency_rng = random.Random(config.faults.seed + 1)
        self.in_flight = 0
        # Applied writes since start (or reset), with a condition other threads wait on: tests that
        # stop Stripe or kill a client "after N writes" wait for the write itself, not for a time.
        self.write_signal = threading.Condition()
        self.writes_done = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_MAX)
        self.log_seq = 0
        self.req_counter = 0
        if config.state_file:
            persistence.load(config.state_file, self.store, self.idempotency)
        wire.preload()

    # -- admin ------------------------------------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        out = self.stats.report()
        out["in_flight"] = self.in_flight
        out["objects"] = {
            "products": len(self.store.products),
            "prices": len(self.store.prices),
            "active_products": sum(1 for p in self.store.products.values() if p["active"]),
            "active_prices": sum(1 for p in self.store.prices.values() if p["active"]),
            "idempotency_keys": len(self.idempotency),
        }
        out["config"] = self.config.to_dict()
        return out

    def objects(self) -> dict[str, Any]:
        return {
            "products": list(self.store.products.values()),
            "prices": list(self.store.prices.values()),
            "deleted_products": sorted(self.store.deleted_products),
        }

    def requests_log(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.log if e["seq"] > since]

    def reset(self) -> None:
        self.store.clear()
        self.idempotency.clear()
        self.stats.clear()
        with self.write_signal:
            self.writes_done = 0
        self.log.clear()
        self.fault_rng = random.Random(self.config.faults.seed)
        self.latency_rng = random.Random(self.config.faults.seed + 1)
        if self.config.state_file:
            persistence.save(self.config.state_file, self.store, self.idempotency)

    def configure(self, **changes: Any) -> EmulatorConfig:
        if isinstance(changes.get("faults"), dict):
            changes["faults"] = FaultConfig(**changes["faults"])
        unknown = set(changes) - {f.name for f in dataclasses.fields(EmulatorConfig)}
        if unknown:
            raise TypeError(f"unknown emulator settings: {sorted(unknown)}")
        old = self.config
        self.config = dataclasses.replace(old, **changes)
        if "faults" in changes:
            self.fault_rng = random.Random(self.config.faults.seed)
            self.latency_rng = random.Random(self.config.faults.seed + 1)
        return self.config

    def save_if_dirty(self) -> None:
        if self.config.state_file and persistence.is_dirty(self.store, self.idempotency):
            persistence.save(self.config.state_file, self.store, self.idempotency)

    async def handle(self, req: Request) -> Response:
        """Answer one request (raises `DropConnection` when a fault drops it unanswered)."""
        if req.path.startswith("/_emulator/"):
            return await self.handle_admin(req)
        return await self.handle_api(req)

    async def handle_admin(self, req: Request) -> Response:
        name = req.path[len("/_emulator/") :]
        if req.method == "GET" and name == "inspect":
            return _json(200, self.inspect())
        if req.method == "GET" and name == "objects":
            return _json(200, self.objects())
        if req.method == "GET" and name == "requests":
            q = dict(wire.parse_pairs(req.query))
            since = int(q.get("since", "0") or 0)
            return _json(200, {"requests": self.requests_log(since)})
        if req.method == "POST" and name == "reset":
            self.reset()
            return _json(200, {"reset": True})
        if req.method == "POST" and name == "config":
            try:
                cfg = self.configure(**json.loads(req.body or b"{}"))
            except (TypeError, ValueError) as e:
                return _json(400, {"error": {"type": "invalid_request_error", "message": str(e)}})
            return _json(200, cfg.to_dict())
        return _json(404, {"error": {"type": "invalid_request_error", "message": f"No such admin URL {req.path}"}})

    # -- the Stripe pipeline ----------------------------------------------------------------

    def _draw_fault(self, route: Route) -> str | None:
        f = self.config.faults
        if f.total() <= 0:
            return None
        u = self.fault_rng.random()
        acc = 0.0
        for name in _FAULT_ORDER:
            acc += getattr(f, name)
            if u < acc:
                if route.write or name == "rate_429" or (f.reads and name in _READ_FAULTS):
                    return name
                return None
        return None

    async def _latency(self) -> None:
        cfg = self.config
        if cfg.latency_ms <= 0 and cfg.jitter_ms <= 0:
            return
        delay = cfg.latency_ms
        if cfg.jitter_ms > 0:
            delay += self.latency_rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    def _next_request_id(self) -> str:
        self.req_counter += 1
        return f"req_emu{self.req_counter:011d}"

    async def handle_api(self, req: Request) -> Response:
        start = time.monotonic()
        arrived = self.clock()
        route, obj_id = match_route(req.method, req.path)
        endpoint = route.endpoint if route else f"{req.method} (unrecognized)"
        self.stats.arrive(endpoint, arrived)
        entry: dict[str, Any] = {
            "method": req.method,
            "route": endpoint.split(" ", 1)[1],
            "path": req.path,
            "query": req.query,  # tests check what a read asked for (e.g. no `expand`)
            "start": start,
            "arrived": arrived,
            "idempotency_key": req.headers.get("idempotency-key") if req.method == "POST" else None,
            "applied": False,
            "replayed": False,
            "fault": None,
            "rate_limited_reason": None,
        }
        status: int | None = None
        request_id = self._next_request_id()
        try:
            resp = await self._pipeline(req, route, obj_id, endpoint, entry)
            status = resp.status
            resp.headers["Request-Id"] = request_id
            resp.headers["Stripe-Version"] = req.headers.get("stripe-version", STRIPE_VERSION)
            if entry["idempotency_key"]:
                resp.headers["Idempotency-Key"] = entry["idempotency_key"]
            return resp
        finally:
            self.stats.finish(endpoint, status)
            self.log_seq += 1
            entry["seq"] = self.log_seq
            entry["status"] = status
            entry["end"] = time.monotonic()
            entry["request_id"] = request_id
            self.log.append(entry)

    async def _pipeline(
        self, req: Request, route: Route | None, obj_id: str | None, endpoint: str, entry: dict[str, Any]
    ) -> Response:
        api_key, auth_error = _parse_api_key(req.headers.get("authorization"))
        if api_key is None:
            return _error(ApiError(401, auth_error or "Invalid API Key provided"))
        if route is None:
            return _error(
                ApiError(
                    404,
                    f"Unrecognized request URL ({req.method}: {req.path}). Please see https://stripe.com/docs "
                    "or we can help at https://support.stripe.com/.",
                )
            )
        cfg = self.config
        livemode = api_key[3:8] == "live_"

        # Rate limits come before idempotency: a 429 is never stored, so a retry with the same key is safe.
        if cfg.enforce_rate_limits:
            g_limit = cfg.global_rps
            if cfg.test_mode_limits and not livemode:
                g_limit = min(g_limit, TEST_MODE_GLOBAL_RPS)
            e_limit = min(cfg.endpoint_rps, cfg.search_rps) if route.search else cfg.endpoint_rps
        else:
            g_limit = e_limit = float("inf")
        reason = self.stats.admit(endpoint, entry["arrived"], g_limit, e_limit)
        if reason is not None:
            return self._rate_limited(reason, entry)
        fault = self._draw_fault(route)
        if fault == "rate_429":
            self.stats.faults[fault] += 1
            entry["fault"] = fault
            return self._rate_limited("global-rate", entry, injected=True)
        if cfg.concurrency_limit is not None and self.in_flight >= cfg.concurrency_limit:
            return self._rate_limited("global-concurrency", entry)

        self.in_flight += 1
        idem: tuple[str, str] | None = None
        try:
            try:
                pairs = wire.parse_pairs(req.body) if req.method == "POST" else []
                pairs += wire.parse_pairs(req.query)
                raw = wire.decode(pairs)
            except ApiError as e:
                return _error(e)

            fingerprint = ""
            if req.method == "POST" and entry["idempotency_key"]:
                ikey = entry["idempotency_key"]
                if len(ikey) > 255:
                    return _error(
                        ApiError(400, "Idempotency keys can be at most 255 characters long.", param="Idempotency-Key")
                    )
                idem = (api_key, ikey)
                fingerprint = hashlib.sha256(repr((req.method, req.path, sorted(pairs))).encode()).hexdigest()
                record = self.idempotency.get(*idem)
                if record is not None:
                    idem = None  # a replay neither holds nor releases the in-flight marker
                    if record.fingerprint != fingerprint:
                        return _error(
                            ApiError(
                                400,
                                "Keys for idempotent requests can only be used with the same parameters they "
                                f"were first used with. Try using a key other than '{ikey}' if you meant to "
                                "execute a different request.",
                                type="idempotency_error",
                            )
                        )
                    await self._latency()
                    self.stats.replays += 1
                    self.stats.replays_by_endpoint[endpoint] += 1
                    entry["replayed"] = True
                    return Response(record.status, record.body, {"Idempotent-Replayed": "true"})
                if not self.idempotency.claim(*idem):
                    idem = None
                    self.stats.conflicts_409 += 1
                    return _error(
                        ApiError(
                            409,
                            "There is currently another in-progress request using this Stripe token (probably "
                            "the same idempotency key). Please retry this request later.",
                            type="idempotency_error",
                            code="idempotency_key_in_use",
                        )
                    )

            await self._latency()
            return self._execute(route, obj_id, raw, livemode, fault, endpoint, entry, idem, fingerprint)
        finally:
            self.in_flight -= 1
            if idem is not None:
                self.idempotency.release(*idem)

    def _rate_limited(self, reason: str, entry: dict[str, Any], injected: bool = False) -> Response:
        self.stats.rate_limited["injected" if injected else reason] += 1
        entry["rate_limited_reason"] = reason
        return _error(
            ApiError(
                429,
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                headers={"Stripe-Rate-Limited-Reason": reason},
            )
        )

    def _execute(
        self,
        route: Route,
        obj_id: str | None,
        raw: dict[str, Any],
        livemode: bool,
        fault: str | None,
        endpoint: str,
        entry: dict[str, Any],
        idem: tuple[str, str] | None,
        fingerprint: str,
    ) -> Response:
        """Validate, inject faults, apply. Runs with no await: the write is atomic."""
        store = self.store
        lag = self.config.search_lag_s
        try:
            p = wire.validate(route.op, raw)
            commit: Callable[[], dict[str, Any]] | None = None
            result: dict[str, Any] | None = None
            op = route.op
            if op == "product.create":
                commit = store.create_product(p, livemode, lag)
            elif op == "product.update":
                commit = store.update_product(str(obj_id), p, lag)
            elif op == "product.delete":
                commit = store.delete_product(str(obj_id), lag)
            elif op == "price.create":
                commit = store.create_price(p, livemode, lag)
            elif op == "price.update":
                commit = store.update_price(str(obj_id), p, lag)
            elif op == "product.retrieve":
                result = store.retrieve_product(str(obj_id), p)
            elif op == "price.retrieve":
                result = store.retrieve_price(str(obj_id), p)
            elif op == "product.list":
                result = queries.list_products(store, p)
            elif op == "price.list":
                result = queries.list_prices(store, p)
            elif op == "account.retrieve":
                result = account_object(self.config)
            elif op == "product.search":
                result = queries.search_products(store, p)
            elif op == "price.search":
                result = queries.search_prices(store, p)
            else:  # pragma: no cover - the route table and this dispatch are written together
                raise ApiError(404, f"Unrecognized operation {op}")
        except ApiError as e:
            return _error(e)  # validation errors are never stored under the idempotency key

        def remember(resp: Response) -> Response:
            if idem is not None:
                self.idempotency.put(idem[0], idem[1], fingerprint, resp.status, resp.body)
            return resp

        if fault is not None:
            self.stats.faults[fault] += 1
            entry["fault"] = fault
        if fault == "lock_timeout_429":
            return _error(
                ApiError(
                    429,
                    "This object cannot be accessed right now because another API request or Stripe process "
                    "is currently accessing it. If you see this error intermittently, retry the request.",
                    code="lock_timeout",
                )
            )
        if fault == "error_500_before":
            return remember(self._error_500())
        if fault == "drop_before":
            raise DropConnection()
        if commit is not None:
            result = commit()
            self.stats.writes[endpoint] += 1
            with self.write_signal:
                self.writes_done += 1
                self.write_signal.notify_all()
            entry["applied"] = True
        resp = _json(200, result)
        if fault == "error_500_after":
            return remember(self._error_500())
        if fault == "drop_after":
            remember(resp)  # the write completed, so Stripe's stored result is the success
            raise DropConnection()
        return remember(resp)

    @staticmethod
    def _error_500() -> Response:
        return _error(
            ApiError(
                500,
                "An unknown error occurred (injected by the Stripe emulator).",
                type="api_error",
            )
        )
