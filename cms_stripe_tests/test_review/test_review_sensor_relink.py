"""Review of issue 11: a row quarantined for sharing another row's Stripe product is told "clear
stripe_product_id on this row to give it its own Stripe product". The quarantine stored the row's
content hash as sync_hash, and the link columns are not part of that hash, so once the editor does
exactly that, the change sensor sees no change: the row stays quarantined (and out of Stripe) until
someone happens to run a full migration. The same holds for `stripe_product_missing`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.changes import summarize_changes
from cms_stripe.core.validation import quarantine_updates, split_valid

T = datetime(2026, 2, 1, 12, tzinfo=UTC)


def test_review_clearing_the_shared_link_as_told_is_seen_by_the_sensor():
    original = CmsProduct(
        id="a",
        title="Original",
        price=Decimal("5.00"),
        currency="usd",
        status="published",
        stripe_product_id="prod_Legacy1",
        created_at=T - timedelta(days=400),
        updated_at=T,
    )
    copy = replace(original, id="b", title="Copy", created_at=T - timedelta(days=1))
    _, quarantined = split_valid([original, copy])
    assert [p.id for p, _ in quarantined] == ["b"]
    assert "clear stripe_product_id" in quarantined[0][1][0].message
    (update,) = quarantine_updates(quarantined, T + timedelta(minutes=1))
    stored = replace(
        copy,
        sync_status=update.sync_status,
        sync_error=update.sync_error,
        sync_hash=update.sync_hash,
        updated_at=T + timedelta(minutes=1),
    )
    # The editor follows the instruction; the updated_at trigger stamps the edit.
    fixed = replace(stored, stripe_product_id=None, updated_at=T + timedelta(hours=1))
    seen = summarize_changes([fixed], cursor=T + timedelta(minutes=30))
    assert seen.changed_rows == 1, "the fixed row is never requested by the change sensor"
