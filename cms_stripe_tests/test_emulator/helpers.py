"""Small helpers shared by the emulator tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe


def stripe_error(call: Callable[[], Any], kind: type[stripe.StripeError] = stripe.InvalidRequestError) -> Any:
    """Run `call`, assert it raises `kind`, and return the exception (for .code / .param / .http_status)."""
    with pytest.raises(kind) as info:
        call()
    return info.value


def new_client(url: str, key: str = "sk_test_emulator", **kwargs: Any) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, **kwargs)


def off_schema(params: dict[str, Any]) -> Any:
    """Params stripe-python's own types refuse, sent on purpose to see the emulator refuse them as Stripe does."""
    return params


def headers_of(error: stripe.StripeError) -> dict[str, str]:
    assert error.headers is not None, "an HTTP error always carries its response headers"
    return error.headers


def error_body(error: stripe.StripeError) -> dict[str, Any]:
    assert isinstance(error.json_body, dict)
    return error.json_body
