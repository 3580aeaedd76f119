"""Row-by-row validation of real catalogs: values no form would allow quarantine their row with a code
naming the column, never the batch; normalisable formatting is not a defect; duplicated ids and two
rows tied to one Stripe product are caught before any write; a quarantine keeps the row's Stripe ids.

Every expected code is written out here, not derived from the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.core.catalog import CmsProduct, FieldError, SyncLink
from cms_stripe.core.validation import quarantine_updates, split_valid

T = datetime(2026, 1, 5, tzinfo=UTC)
GOOD = dict(title="Mug", price=Decimal("12.50"), currency="usd", status="published", updated_at=T)


def row(cms_id: str, **fields) -> CmsProduct:
    return CmsProduct(id=cms_id, **{**GOOD, **fields})


def codes(products: list[CmsProduct], **kw) -> dict[str, list[str]]:
    _, quarantined = split_valid(products, **kw)
    return {p.id: sorted(i.code for i in issues) for p, issues in quarantined}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (dict(title="Mug\x00"), ["control_character"]),
        (dict(title="Line\nbreak"), ["control_character"]),
        (dict(description="two\nlines are fine"), []),
        (dict(description="bell\x07"), ["control_character"]),
        (dict(url="javascript:alert(1)"), ["invalid_url"]),
        (dict(images=("ftp://files.example/a.png",)), ["invalid_url"]),
        (dict(images=("https://img.example/a\x01.png",)), ["control_character"]),
        (dict(price=Decimal("NaN")), ["price_not_finite"]),
        (dict(price=Decimal("Infinity")), ["price_not_finite"]),
        (dict(price=Decimal("1E+999999")), ["price_too_large"]),
        (dict(recurring_interval="month", recurring_interval_count=37), ["invalid_interval_count"]),
        (dict(recurring_interval="day", recurring_interval_count=1095), []),
        (dict(status="live"), ["unknown_status"]),
        (dict(metadata={"k": "v" * 501}), ["metadata_value_too_long"]),
        (dict(metadata={"k\x02": "v"}), ["control_character"]),
    ],
)
def test_values_stripe_would_refuse_quarantine_the_row(fields, expected):
    assert codes([row("a", **fields)]).get("a", []) == expected


def test_an_id_stripe_cannot_carry_as_metadata_is_quarantined():
    assert codes([row("x" * 501)]) == {"x" * 501: ["id_too_long"]}


def test_read_errors_become_quarantine_reasons_naming_the_column():
    bad = row("a", read_errors=(FieldError("invalid_metadata", "metadata", "column 'metadata': must be an object"),))
    _, quarantined = split_valid([bad, row("b")])
    assert [(p.id, [(i.code, i.field) for i in issues]) for p, issues in quarantined] == [
        ("a", [("invalid_metadata", "metadata")])
    ]


def test_reader_normalises_formatting_and_keeps_bad_values_per_row():
    m = ColumnMapping()
    raw = {
        "f_id": "a",
        "f_title": 42,  # SQLite stores what it was given
        "f_currency": " USD ",
        "f_status": " Published",
        "f_price": "19.990",
        "f_images": '{"url": "https://x.example"}',
        "f_metadata": "[1, 2]",
        "f_recurring_interval_count": 2.5,
        "f_updated_at": "not a time",
        "f_shippable": "maybe",
    }
    p = m.product_from_row(raw)
    assert (p.title, p.currency, p.status, p.price) == ("42", "usd", "published", Decimal("19.990"))
    assert sorted((e.code, e.field) for e in p.read_errors) == [
        ("invalid_boolean", "shippable"),
        ("invalid_images", "images"),
        ("invalid_interval_count", "recurring_interval_count"),
        ("invalid_metadata", "metadata"),
        ("invalid_timestamp", "updated_at"),
    ]
    assert (p.images, p.metadata, p.recurring_interval_count, p.updated_at) == ((), {}, None, None)


def test_a_row_without_id_is_reported_not_raised():
    p = ColumnMapping().product_from_row({"f_id": None, "f_title": "orphan"})
    assert p.id == "" and [e.code for e in p.read_errors] == ["missing_id"]
    assert quarantine_updates(split_valid([p])[1], T) == [], "nothing to write back to"


def test_duplicate_cms_ids_quarantine_every_copy():
    _, quarantined = split_valid([row("a"), row("b"), row("a", title="Other")])
    assert [p.id for p, _ in quarantined] == ["a", "a"]


def test_a_copied_row_sharing_a_stripe_product_is_quarantined_and_the_oldest_keeps_it():
    original = row("orig", stripe_product_id="prod_A", stripe_price_id="price_A", created_at=datetime(2020, 1, 1))
    copy = row("copy", stripe_product_id="prod_A", stripe_price_id="price_A", created_at=datetime(2026, 1, 1))
    # The original is outside this batch (another day): it is found by its Stripe id.
    assert codes([copy, row("c")], link_holders=[original]) == {"copy": ["shared_stripe_product_id"]}
    _, quarantined = split_valid([copy], link_holders=[original])
    assert "belongs to CMS row 'orig'" in quarantined[0][1][0].message
    assert codes([original], link_holders=[copy]) == {}, "the keeper syncs on"


def test_quarantine_keeps_the_rows_stripe_ids_and_compares_and_sets():
    was_synced = row("a", price=Decimal("NaN"), stripe_product_id="prod_A", stripe_price_id="price_A", sync_hash="h")
    (update,) = quarantine_updates(split_valid([was_synced])[1], T)
    assert (update.sync_status, update.stripe_product_id, update.stripe_price_id) == (
        "quarantined",
        "prod_A",
        "price_A",
    )
    assert update.expected == SyncLink("prod_A", "price_A", "h")
    assert (update.sync_error or "").startswith("HIGH VALIDATION_ERROR[price_not_finite] (price): ")
