"""Money in Stripe's minor units, exactly or not at all.

Prices arrive as `Decimal` major units (19.99 USD, 500 JPY, 1.250 KWD) and leave as integer minor
units. A value that needs rounding to fit is refused: silently charging 0.01 less or more is exactly
the incident this tool must never cause.
"""

from __future__ import annotations

from decimal import Decimal, DecimalException

# Stripe's presentment currencies (docs.stripe.com/currencies), lower case as the API wants them.
SUPPORTED_CURRENCIES = frozenset(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn
    bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf
    gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr
    lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen
    pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd
    top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """.split()  # noqa: SIM905
)

ZERO_DECIMAL = frozenset(
    """
    bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf
    """.split()  # noqa: SIM905
)
# The API takes three decimals for these, but the last digit must be 0 (Stripe's partners
# settle in tens of the minor unit).
THREE_DECIMAL = frozenset(
    """
    bhd jod kwd omr tnd
    """.split()  # noqa: SIM905
)
# Two-decimal in the API, but only whole units may be charged (amount divisible by 100).
WHOLE_UNITS_ONLY = frozenset({"isk"})

# Stripe's ceiling for a price's unit_amount (8 digits in the minor unit).
MAX_UNIT_AMOUNT = 99_999_999


class MoneyError(ValueError):
    """A price that cannot be sent to Stripe exactly as the CMS states it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalize_currency(currency: str | None) -> str | None:
    return currency.strip().lower() if currency else None


def is_supported(currency: str | None) -> bool:
    return normalize_currency(currency) in SUPPORTED_CURRENCIES


def exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit in Stripe's API."""
    cur = normalize_currency(currency)
    if cur not in SUPPORTED_CURRENCIES:
        raise MoneyError("unknown_currency", f"currency {currency!r} is not supported by Stripe")
    if cur in ZERO_DECIMAL:
        return 0
    if cur in THREE_DECIMAL:
        return 3
    return 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Major units → Stripe integer minor units; raises MoneyError rather than round."""
    if not isinstance(amount, Decimal):
        # Floats carry binary noise (0.1 + 0.2); ints are fine but go through Decimal for one path.
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise MoneyError("price_not_decimal", f"price must be a Decimal, got {type(amount).__name__}")
        amount = Decimal(amount)
    if not amount.is_finite():
        raise MoneyError("price_not_finite", f"price {amount} is not a finite number")
    if amount < 0:
        raise MoneyError("price_negative", f"price {amount} is negative")
    cur = normalize_currency(currency) or ""
    exp = exponent(cur)
    if amount.adjusted() > 12:
        # Far beyond any unit amount: refuse before building a million-digit integer.
        raise MoneyError("price_too_large", f"price {amount} {cur.upper()} exceeds Stripe's maximum unit amount")
    try:
        scaled = amount.scaleb(exp)
        minor = int(scaled)
    except (DecimalException, OverflowError) as exc:
        raise MoneyError("price_not_representable", f"price {amount} {cur} cannot be converted") from exc
    if scaled != minor:
        raise MoneyError(
            "price_not_representable",
            f"price {amount} {cur.upper()} has more than {exp} decimal(s); refusing to round",
        )
    if cur in THREE_DECIMAL and minor % 10 != 0:
        raise MoneyError(
            "price_not_representable",
            f"price {amount} {cur.upper()}: Stripe requires the third decimal to be 0",
        )
    if cur in WHOLE_UNITS_ONLY and minor % 100 != 0:
        raise MoneyError("price_not_representable", f"price {amount} {cur.upper()}: only whole units can be charged")
    if minor > MAX_UNIT_AMOUNT:
        raise MoneyError("price_too_large", f"price {amount} {cur.upper()} exceeds Stripe's maximum unit amount")
    return minor


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Stripe integer minor units → Decimal major units (exact)."""
    return Decimal(int(minor)).scaleb(-exponent(currency))
