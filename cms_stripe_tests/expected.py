"""What Stripe must hold for a CMS row, worked out without the code under test.

The rules are Stripe's, written here from its documentation: amounts in the currency's minor unit
(no decimals for JPY, three for KWD), the sync's product id (`prod_cms_<id>`, or the id the row
names), metadata values as strings. cms_stripe.core.mapping and .currency are never called: a
mapping bug must fail the tests that use these helpers, not agree with them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from cms_stripe.core.catalog import CmsProduct

# Minor-unit decimals of the currencies the test catalogs use (Stripe: "zero-decimal" and "three-decimal";
# ISK keeps two decimals in the API, whole krónur only).
DECIMALS = {
    "usd": 2,
    "eur": 2,
    "gbp": 2,
    "cad": 2,
    "aud": 2,
    "chf": 2,
    "isk": 2,
    "jpy": 0,
    "krw": 0,
    "kwd": 3,
    "bhd": 3,
}
# Keys the sync itself writes; their values are hashes, pinned by the golden catalog instead.
SYNC_HASH_KEYS = ("cms_hash", "cms_price")
_DIRECT = re.compile(r"[a-z0-9_-]{1,40}")


def minor_units(amount: Decimal, currency: str) -> int:
    scaled = amount.scaleb(DECIMALS[currency.strip().lower()])
    assert scaled == scaled.to_integral_value(), f"{amount} {currency} is not a whole number of minor units"
    return int(scaled)


def stripe_metadata(cms: Mapping[str, Any]) -> dict[str, str]:
    """CMS metadata as Stripe keeps it: strings only (booleans in JSON spelling, structures as compact
    JSON); a null or empty value is no key at all (Stripe deletes a key set to "")."""
    out: dict[str, str] = {}
    for key, value in cms.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, dict | list):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = "" if value is None else str(value)
        if text:
            out[key] = text
    return out


def is_live(row: CmsProduct) -> bool:
    """Published and not soft-deleted: the only rows that are active products in Stripe."""
    return (row.status or "").strip().lower() == "published" and row.deleted_at is None


def assert_stripe_matches(objects: dict[str, Any], rows: Sequence[CmsProduct], *, lookup_keys: bool = False) -> None:
    """Stripe equals the CMS: one product per row, right fields, right default price, old prices archived.

    With lookup keys on, the default price carries a key of the row's own (`cms:<id>:…`); off, none.
    """
    products = {p["id"]: p for p in objects["products"]}
    prices = {p["id"]: p for p in objects["prices"]}
    per_cms = Counter(p["metadata"].get("cms_id") for p in products.values())
    dupes = {k: v for k, v in per_cms.items() if v > 1}
    assert not dupes, f"duplicate products per cms_id: {dupes}"
    by_cms = {p["metadata"].get("cms_id"): p for p in products.values()}
    for r in rows:
        prod = products.get(r.stripe_product_id) if r.stripe_product_id else by_cms.get(r.id)
        if not is_live(r):
            assert prod is None or not prod["active"], r.id
            continue
        assert prod is not None, f"missing product for {r.id}"
        if r.stripe_product_id:
            assert prod["id"] == r.stripe_product_id, r.id
        elif _DIRECT.fullmatch(r.id):
            assert prod["id"] == f"prod_cms_{r.id}", r.id
        else:
            assert prod["id"].startswith("prod_cmsh_"), r.id
        assert prod["active"], r.id
        assert prod["name"] == r.title, r.id
        # Stripe stores an empty description as none at all.
        assert prod.get("description") == (r.description or None), r.id
        assert list(prod.get("images") or []) == list(r.images), r.id
        for name in ("url", "shippable", "tax_code", "unit_label", "statement_descriptor"):
            want = getattr(r, name)
            if want is not None:
                # An empty text is "not set" in Stripe.
                assert prod.get(name) == (None if want == "" else want), (r.id, name)
        metadata = dict(prod["metadata"])
        assert all(metadata.pop(k, None) for k in SYNC_HASH_KEYS), (r.id, prod["metadata"])
        assert metadata == {**stripe_metadata(r.metadata), "cms_id": r.id}, r.id

        dp = prod["default_price"]
        dp_id = dp["id"] if isinstance(dp, dict) else dp
        price = prices[dp_id]
        assert r.price is not None and r.currency is not None
        assert price["currency"] == r.currency.strip().lower(), (r.id, price)
        assert price["unit_amount"] == minor_units(r.price, r.currency), (r.id, price)
        recurring = price.get("recurring")
        if r.recurring_interval:
            assert recurring is not None, r.id
            got = (recurring["interval"], recurring["interval_count"])
            assert got == (r.recurring_interval, r.recurring_interval_count or 1), r.id
        else:
            assert not recurring, r.id
        assert price["active"], (r.id, price)
        if lookup_keys:
            assert str(price["lookup_key"]).startswith(f"cms:{r.id}:"), (r.id, price["lookup_key"])
        else:
            assert price["lookup_key"] is None, (r.id, price["lookup_key"])
        live = [p for p in prices.values() if p["product"] == prod["id"] and p["active"]]
        assert [p["id"] for p in live] == [dp_id], f"{r.id}: live prices {[p['id'] for p in live]}"
