"""Deterministic Stripe identities for CMS rows.

The product id is chosen by us on create, so a replayed or concurrent create fails with
"already exists" instead of making a second product. Prices cannot take an id: a price the sync
made is recognised among its product's prices by its content and the cms_id + fingerprint metadata
it carries (mapping.Target.is_reusable_price), so a reprice that crashed after creating the new
price finds it again instead of creating another. With STRIPE_PRICE_LOOKUP_KEYS on, prices also
carry a lookup key derived from the CMS id and the price's fingerprint (lookup_key_for).

Two disjoint id forms keep the mapping collision-free:
- `prod_cms_<id>` when the CMS id is short and uses only lower-case letters, digits, `-` and `_`;
- `prod_cmsh_<sha256 hex>` otherwise. The 9th character (`_` vs `h`) separates the forms, the
  direct form is injective, and the hashed form is a 128-bit digest of the exact CMS id.
Upper case goes to the hashed form so two CMS ids differing only in case can never meet on a
case-insensitive id store.
"""

from __future__ import annotations

import hashlib
import re

from cms_stripe.core.catalog import CmsProduct

PRODUCT_PREFIX = "prod_cms_"
HASHED_PRODUCT_PREFIX = "prod_cmsh_"
_DIRECT_ID = re.compile(r"^[a-z0-9_-]{1,40}$")
# Stripe accepts custom object ids of letters, digits, `_` and `-`.
_STRIPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

LOOKUP_PREFIX = "cms:"
HASHED_LOOKUP_PREFIX = "cmsh:"
_DIRECT_LOOKUP = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_LOOKUP_KEY = 200
MAX_IDEMPOTENCY_KEY = 255


def _digest(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def derived_product_id(cms_id: str) -> str:
    """The Stripe product id this CMS id always maps to (when the row names no product itself)."""
    if _DIRECT_ID.match(cms_id):
        return PRODUCT_PREFIX + cms_id
    return HASHED_PRODUCT_PREFIX + _digest(cms_id)


def is_valid_stripe_id(value: str) -> bool:
    return bool(_STRIPE_ID.match(value))


def product_id_for(product: CmsProduct) -> str:
    """A row that already names a Stripe product (an earlier tool, or set by hand) is synced into it."""
    if product.stripe_product_id and product.stripe_product_id.strip():
        return product.stripe_product_id.strip()
    return derived_product_id(product.id)


def lookup_key_for(cms_id: str, price_fingerprint: str) -> str:
    """Unique per (CMS row, price content); moved to each new price with transfer_lookup_key."""
    if _DIRECT_LOOKUP.match(cms_id):
        key = f"{LOOKUP_PREFIX}{cms_id}:{price_fingerprint}"
    else:
        key = f"{HASHED_LOOKUP_PREFIX}{_digest(cms_id)}:{price_fingerprint}"
    assert len(key) <= MAX_LOOKUP_KEY
    return key


def idempotency_key(step: str, product_id: str, basis: str, generation: int = 0) -> str:
    """One key per logical write: `basis` names the transition (params and the state it starts from).

    The same key is reused for every retry of that write, across processes and restarts; a new
    `generation` is taken only after the write was proven absent following an ambiguous 5xx.
    """
    key = f"cms-stripe:{step}:{product_id}:{_digest(basis, 24)}:g{generation}"
    if len(key) > MAX_IDEMPOTENCY_KEY:
        key = f"cms-stripe:{step}:{_digest(product_id + basis, 48)}:g{generation}"
    return key
