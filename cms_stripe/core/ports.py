"""What the pure core needs from a Stripe adapter, stated as Protocols so the core never imports one.

The executor schedules creates across two endpoints (see executor.py), so it names them; the
adapter (`cms_stripe.stripe`) paces every request by these same names.
"""

from __future__ import annotations

from typing import Protocol

# Endpoint names (method + path template, as Stripe counts them for its per-endpoint limits).
EP_CREATE_PRODUCT = "POST /v1/products"
EP_UPDATE_PRODUCT = "POST /v1/products/:id"
EP_CREATE_PRICE = "POST /v1/prices"
EP_UPDATE_PRICE = "POST /v1/prices/:id"
EP_LIST_PRODUCTS = "GET /v1/products"
EP_RETRIEVE_PRODUCT = "GET /v1/products/:id"
EP_LIST_PRICES = "GET /v1/prices"
EP_RETRIEVE_PRICE = "GET /v1/prices/:id"
EP_DELETE_PRODUCT = "DELETE /v1/products/:id"

ENDPOINTS = (
    EP_CREATE_PRODUCT,
    EP_UPDATE_PRODUCT,
    EP_CREATE_PRICE,
    EP_UPDATE_PRICE,
    EP_LIST_PRODUCTS,
    EP_RETRIEVE_PRODUCT,
    EP_LIST_PRICES,
    EP_RETRIEVE_PRICE,
    EP_DELETE_PRODUCT,
)


class Limits(Protocol):
    """The request budget a gateway schedules against."""

    @property
    def max_concurrency(self) -> int | None: ...


class Limiter(Protocol):
    """The pace a gateway can currently sustain, per endpoint and overall (requests/second)."""

    def global_rate(self, now: float | None = None) -> float: ...
    def endpoint_rate(self, endpoint: str, now: float | None = None) -> float: ...
    def wait_time(self, endpoint: str) -> float: ...
