"""Deterministic, Stripe-valid, collision-free ids: a replayed create can never make a second product."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.identity import (
    derived_product_id,
    idempotency_key,
    is_valid_stripe_id,
    lookup_key_for,
    product_id_for,
)

STRIPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def test_simple_ids_are_readable() -> None:
    assert derived_product_id("sku-123") == "prod_cms_sku-123"
    assert derived_product_id("7d2f6c1e-0b1a-4e8e-9a51-2b0c1d9e8f00").startswith("prod_cms_7d2f")


def test_odd_ids_are_hashed_and_distinct() -> None:
    ids = ["ABC", "abc", "a/b", "a b", "a%2Fb", "é", "x" * 41, "x" * 40]
    out = [derived_product_id(i) for i in ids]
    assert len(set(out)) == len(ids)
    assert all(STRIPE_ID.match(o) for o in out)
    assert out[0].startswith("prod_cmsh_") and out[1] == "prod_cms_abc"


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_collision_free_and_valid(a: str, b: str) -> None:
    pa, pb = derived_product_id(a), derived_product_id(b)
    assert STRIPE_ID.match(pa) and is_valid_stripe_id(pa)
    assert (pa == pb) == (a == b)
    assert derived_product_id(a) == pa  # deterministic


@given(st.text(min_size=1, max_size=500))
def test_lookup_key_bounded(cms_id: str) -> None:
    key = lookup_key_for(cms_id, "0123456789abcdef")
    assert len(key) <= 200 and key == lookup_key_for(cms_id, "0123456789abcdef")
    assert key != lookup_key_for(cms_id, "fedcba9876543210")


def test_existing_stripe_product_id_wins() -> None:
    assert product_id_for(CmsProduct(id="a", stripe_product_id="prod_Legacy1")) == "prod_Legacy1"
    assert product_id_for(CmsProduct(id="a", stripe_product_id="  ")) == "prod_cms_a"


def test_idempotency_key_deterministic_and_bounded() -> None:
    k = idempotency_key("create-product", "prod_cms_a", "basis", 0)
    assert k == idempotency_key("create-product", "prod_cms_a", "basis", 0)
    assert k != idempotency_key("create-product", "prod_cms_a", "basis", 1)
    assert k != idempotency_key("create-product", "prod_cms_a", "other", 0)
    assert len(idempotency_key("x", "p" * 300, "b", 9)) <= 255
