"""Stripe's value rules for products and prices (limits, descriptors, currencies, amounts)."""

from __future__ import annotations

import decimal
from typing import Any

from .errors import ApiError, invalid
from .params import UNSET

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
IMAGES_MAX = 8
LOOKUP_KEY_MAX = 200
UNIT_LABEL_MAX = 12
ID_MAX = 255
# Stripe caps unit_amount at eight digits in the smallest unit for most currencies.
UNIT_AMOUNT_MAX = 99_999_999


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


ZERO_DECIMAL = _codes("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf")
THREE_DECIMAL = _codes("bhd jod kwd omr tnd")

# Presentment currencies Stripe supports (ISO 4217, lower-case).
CURRENCIES = _codes(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn bzd
    cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd
    hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad
    mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln
    pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs
    uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """
)

_DESCRIPTOR_FORBIDDEN = set("<>\\'\"*")


def check_metadata(meta: Any, param: str, existing: dict[str, str] | None = None) -> dict[str, str]:
    """Merge `meta` into `existing` (an empty value deletes a key) and enforce Stripe's limits."""
    result = dict(existing or {})
    if meta is UNSET:
        return {}
    if not isinstance(meta, dict):
        raise invalid("Invalid hash", param=param)
    for key, value in meta.items():
        if len(key) > METADATA_KEY_MAX:
            raise invalid(
                f"Metadata keys can have up to {METADATA_KEY_MAX} characters; `{key}` has {len(key)}.",
                param=f"{param}[{key}]",
            )
        if not isinstance(value, str):
            raise invalid("Metadata values must be strings.", param=f"{param}[{key}]")
        if value == "":
            result.pop(key, None)
            continue
        if len(value) > METADATA_VALUE_MAX:
            raise invalid(
                f"Metadata values can have up to {METADATA_VALUE_MAX} characters, but you passed in a "
                f"value that is {len(value)} characters.",
                param=f"{param}[{key}]",
            )
        result[key] = value
    if len(result) > METADATA_MAX_KEYS:
        raise invalid(
            f"You can have at most {METADATA_MAX_KEYS} metadata keys; this request would leave {len(result)}.",
            param=param,
        )
    return result


def check_statement_descriptor(value: str, param: str) -> str:
    if not 5 <= len(value) <= 22:
        raise invalid(
            "The statement descriptor must be at least 5 characters and at most 22 characters.",
            param=param,
        )
    if not any(c.isascii() and c.isalpha() for c in value):
        raise invalid("The statement descriptor must contain at least one letter.", param=param)
    if any(c in _DESCRIPTOR_FORBIDDEN for c in value):
        raise invalid(
            "The statement descriptor may not contain any of the special characters <, >, \\, ', \" or *.",
            param=param,
        )
    return value


def check_images(images: Any, param: str) -> list[str]:
    if images is UNSET:
        return []
    if len(images) > IMAGES_MAX:
        raise invalid(f"You can set at most {IMAGES_MAX} images on a product.", param=param)
    for i, url in enumerate(images):
        if len(url) > 2048:
            raise invalid("Image URLs can have up to 2048 characters.", param=f"{param}[{i}]")
    return list(images)


def check_unit_label(value: str, param: str) -> str:
    if len(value) > UNIT_LABEL_MAX:
        raise invalid(f"The unit label may have at most {UNIT_LABEL_MAX} characters.", param=param)
    return value


def check_object_id(value: str, param: str) -> str:
    if len(value) > ID_MAX or any(c.isspace() or c in "/?#%" for c in value):
        raise invalid(f"Invalid id: {value!r}", param=param)
    return value


def check_currency(value: str, param: str) -> str:
    cur = value.lower()
    if cur not in CURRENCIES:
        raise ApiError(
            400,
            f"Invalid currency: {value}. Stripe currently supports these currencies: " + ", ".join(sorted(CURRENCIES)),
            param=param,
        )
    return cur


def check_unit_amount(amount: int, currency: str, param: str) -> int:
    if amount < 0:
        raise invalid("This value must be greater than or equal to 0.", param=param)
    if amount > UNIT_AMOUNT_MAX:
        raise invalid(f"This value must be less than or equal to {UNIT_AMOUNT_MAX}.", param=param)
    if currency in THREE_DECIMAL and amount % 10 != 0:
        raise invalid(
            f"Amounts in {currency.upper()} must be a multiple of 10: the last decimal digit of a "
            "three-decimal currency must be 0.",
            param=param,
        )
    return amount


def check_unit_amount_decimal(amount: decimal.Decimal, currency: str, param: str) -> decimal.Decimal:
    if amount < 0:
        raise invalid("This value must be greater than or equal to 0.", param=param)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        raise invalid("unit_amount_decimal may have at most 12 decimal places.", param=param)
    if amount > UNIT_AMOUNT_MAX:
        raise invalid(f"This value must be less than or equal to {UNIT_AMOUNT_MAX}.", param=param)
    if currency in THREE_DECIMAL and amount == amount.to_integral_value() and int(amount) % 10 != 0:
        raise invalid(
            f"Amounts in {currency.upper()} must be a multiple of 10: the last decimal digit of a "
            "three-decimal currency must be 0.",
            param=param,
        )
    return amount


_INTERVAL_MAX = {"day": 1095, "week": 156, "month": 36, "year": 3}


def check_recurring(rec: dict[str, Any], param: str) -> dict[str, Any]:
    interval = rec["interval"]
    if interval not in _INTERVAL_MAX:
        raise invalid(
            f"Invalid {param}[interval]: must be one of day, week, month, or year",
            param=f"{param}[interval]",
        )
    count = rec.get("interval_count", 1)
    if not 1 <= count <= _INTERVAL_MAX[interval]:
        raise invalid(
            "The maximum billing interval is three years (3 years, 36 months, or 156 weeks).",
            param=f"{param}[interval_count]",
        )
    usage_type = rec.get("usage_type", "licensed")
    if usage_type not in ("licensed", "metered"):
        raise invalid(f"Invalid {param}[usage_type]: must be one of licensed or metered", param=f"{param}[usage_type]")
    trial = rec.get("trial_period_days")
    if trial is not None and trial < 0:
        raise invalid("This value must be greater than or equal to 0.", param=f"{param}[trial_period_days]")
    return {
        "interval": interval,
        "interval_count": count,
        "meter": rec.get("meter"),
        "trial_period_days": trial,
        "usage_type": usage_type,
    }


def check_enum(value: str, allowed: tuple[str, ...], param: str) -> str:
    if value not in allowed:
        raise invalid(f"Invalid {param}: must be one of {', '.join(allowed)}", param=param)
    return value
