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
