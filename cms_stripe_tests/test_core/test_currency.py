"""Money reaches Stripe exactly as the CMS states it, or the row is refused (never silently rounded)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cms_stripe.core.currency import (
    SUPPORTED_CURRENCIES,
    THREE_DECIMAL,
    MoneyError,
    exponent,
    from_minor_units,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("19.99", "usd", 1999),
        ("19.9900", "USD", 1999),
        ("0", "eur", 0),
        ("500", "jpy", 500),
        ("1000", "krw", 1000),
        ("1.250", "kwd", 1250),
        ("12.5", "bhd", 12500),
        ("5", "isk", 500),
        ("999999.99", "usd", 99_999_999),
    ],
)
def test_exact_conversion(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        ("0.001", "usd", "price_not_representable"),
        ("1.5", "jpy", "price_not_representable"),
        ("1.005", "kwd", "price_not_representable"),  # three-decimal: last digit must be 0
        ("5.5", "isk", "price_not_representable"),  # whole krónur only
        ("-1", "usd", "price_negative"),
        ("1000000", "usd", "price_too_large"),
        ("NaN", "usd", "price_not_finite"),
        ("1", "xyz", "unknown_currency"),
    ],
)
def test_inexact_or_invalid_is_an_error(amount: str, currency: str, code: str) -> None:
    with pytest.raises(MoneyError) as info:
        to_minor_units(Decimal(amount), currency)
    assert info.value.code == code


def test_float_is_refused() -> None:
    with pytest.raises(MoneyError):
        to_minor_units(19.99, "usd")  # type: ignore[arg-type]


def test_exponents() -> None:
    assert (exponent("usd"), exponent("JPY"), exponent("kwd"), exponent("tnd")) == (2, 0, 3, 3)


@given(st.integers(min_value=0, max_value=9_999_999), st.sampled_from(sorted(SUPPORTED_CURRENCIES)))
def test_round_trip(n: int, currency: str) -> None:
    minor = n * 10 if currency in THREE_DECIMAL or currency == "isk" else n
    if currency == "isk":
        minor = n * 100
    if minor > 99_999_999:
        return
    assert to_minor_units(from_minor_units(minor, currency), currency) == minor
