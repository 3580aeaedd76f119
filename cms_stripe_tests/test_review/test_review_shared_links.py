"""Review of issue 11: two CMS rows that end up writing the same Stripe product without being told apart.

1. The shared-link check compares the stored `stripe_product_id` values, but the planner syncs a row
   without one into its derived product (`prod_cms_<id>`). A copy that kept `prod_cms_a` while the
   original's link was cleared (an editor "fixing" the pair, a compare-and-set conflict, a lost
   write-back) makes both rows target the same product: neither is quarantined.
2. The SQL lookup of rows outside the batch groups by the exact stored text while validation and the
   planner strip it: 'prod_X' and 'prod_X ' name one Stripe product, yet the row in another partition
   is not found, so the batch row is planned into the product the other row keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from cms_stripe.assets.common import link_holders
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.identity import product_id_for
from cms_stripe.core.validation import split_valid
from cms_stripe_tests.test_cms.conftest import fresh_table

T = datetime(2026, 2, 1, 12, tzinfo=UTC)


def _row(cms_id: str, stripe_product_id: str | None, created: datetime | None, title: str) -> CmsProduct:
    return CmsProduct(
        id=cms_id,
        title=title,
        price=Decimal("5.00"),
        currency="usd",
        status="published",
        stripe_product_id=stripe_product_id,
        created_at=created,
        updated_at=T,
    )


def test_review_derived_product_id_shared_with_a_copy_is_detected(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cms.sqlite'}")
    original = _row("a", None, T - timedelta(days=400), "Original")
    # The copy kept the id the original was synced into before the original's link was cleared.
    copy = _row("b", "prod_cms_a", T - timedelta(days=1), "Copy, other price")
    assert product_id_for(original) == product_id_for(copy) == "prod_cms_a"  # one Stripe product
    fresh_table(engine, [original, copy])
    source = SqlCatalogSource(engine)
    try:
        # validated_products for the copy's partition (the original lives in another day); the
        # planner's own same-product check sees only this batch.
        batch = [p for p in source.read_all() if p.id == "b"]
        holders = link_holders(source, batch)  # what validated_products and the selective job look up
    finally:
        source.close()
        engine.dispose()
    _, quarantined = split_valid(batch, link_holders=holders)
    assert [p.id for p, _ in quarantined] == ["b"], "the copy would overwrite the original's product"


def test_review_sql_holder_lookup_ignores_whitespace_the_planner_strips(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cms.sqlite'}")
    original = _row("a", "prod_Legacy1 ", T - timedelta(days=400), "Original")  # pasted with a space
    copy = _row("b", "prod_Legacy1", T - timedelta(days=1), "Copy")
    fresh_table(engine, [original, copy])
    source = SqlCatalogSource(engine)
    try:
        # validated_products for the copy's partition only (the original lives in another day).
        batch = [p for p in source.read_all() if p.id == "b"]
        holders = link_holders(source, batch)
    finally:
        source.close()
        engine.dispose()
    _valid, quarantined = split_valid(batch, link_holders=holders)
    assert product_id_for(original) == product_id_for(copy)
    assert [p.id for p, _ in quarantined] == ["b"], "the copy would be written into the original's product"


def test_review_keeper_without_created_at_is_the_row_stripe_reflects():
    """A table without `created_at` (mapped to null, or never set by an old import): the keeper is the
    smallest id. With random UUID ids the copy wins half the time, the synced original is quarantined,
    and the copy's price is then written into the product the original has sold under for years."""
    from dataclasses import replace

    from cms_stripe.core.catalog import SYNC_SYNCED, content_hash

    original = replace(_row("f3a9c2d0-0000-4000-8000-000000000001", "prod_Legacy1", None, "Original"), created_at=None)
    original = replace(original, sync_status=SYNC_SYNCED, sync_hash=content_hash(original))
    copy = replace(
        _row("0b7e4d11-0000-4000-8000-000000000002", "prod_Legacy1", None, "Copy"),
        created_at=None,
        price=Decimal("1.00"),
    )
    valid, quarantined = split_valid([original, copy])
    assert [p.id for p in valid] == [original.id]
    assert [p.id for p, _ in quarantined] == [copy.id]
