"""CMS row → Stripe params, and the quarantine checks that keep Stripe-invalid rows out of requests."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cms_stripe.core.catalog import STATUS_DRAFT, CmsProduct
from cms_stripe.core.errors import Severity
from cms_stripe.core.mapping import (
    META_CMS_ID,
    META_HASH,
    META_PRICE,
    target_for,
    validate_product,
)
from cms_stripe_tests.expected import assert_stripe_matches
from cms_stripe_tests.test_core.conftest import row, sync


def codes(p: CmsProduct) -> set[str]:
    return {i.code for i in validate_product(p)}


def test_valid_row_has_no_issues() -> None:
    assert validate_product(row("a")) == []


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"title": None}, "title_missing"),
        ({"title": "   "}, "title_missing"),
        ({"title": "x" * 251}, "title_too_long"),
        ({"price": None}, "price_missing"),
        ({"price": Decimal("-1")}, "price_negative"),
        ({"price": Decimal("0.001")}, "price_not_representable"),
        ({"price": Decimal("1.5"), "currency": "jpy"}, "price_not_representable"),
        ({"price": Decimal("1.005"), "currency": "kwd"}, "price_not_representable"),
        ({"currency": "zzz"}, "unknown_currency"),
        ({"currency": None}, "currency_missing"),
        ({"recurring_interval": "fortnight"}, "invalid_interval"),
        ({"recurring_interval": "month", "recurring_interval_count": 37}, "invalid_interval_count"),
        ({"recurring_interval": "year", "recurring_interval_count": 0}, "invalid_interval_count"),
        ({"metadata": {f"k{i}": "v" for i in range(47)}}, "metadata_too_many_keys"),
        ({"metadata": {"k" * 41: "v"}}, "metadata_key_length"),
        ({"metadata": {"k": "v" * 501}}, "metadata_value_too_long"),
        ({"metadata": {"cms_hash": "mine"}}, "metadata_reserved_key"),
        ({"metadata": {"a[b]": "v"}}, "metadata_key_chars"),
        ({"images": tuple(f"https://x.example/{i}.png" for i in range(9))}, "too_many_images"),
        ({"images": ("ftp://x.example/a.png",)}, "invalid_url"),
        ({"url": "javascript:alert(1)"}, "invalid_url"),
        ({"url": "https://x.example/" + "a" * 2040}, "url_too_long"),
        ({"statement_descriptor": "ABCD"}, "statement_descriptor_length"),
        ({"statement_descriptor": "X" * 23}, "statement_descriptor_length"),
        ({"statement_descriptor": "12345"}, "statement_descriptor_letter"),
        ({"statement_descriptor": "SHOP*ITEM"}, "statement_descriptor_chars"),
        ({"statement_descriptor": "CAFÉ SHOP"}, "statement_descriptor_ascii"),
        ({"unit_label": "x" * 13}, "unit_label_too_long"),
        ({"tax_code": "general"}, "invalid_tax_code"),
    ],
)
def test_quarantine_reasons(kw: dict, code: str) -> None:
    issues = validate_product(row("a", **kw))
    assert code in {i.code for i in issues}
    assert all(i.severity is Severity.HIGH for i in issues)


def test_inactive_rows_only_need_an_identity() -> None:
    assert validate_product(row("a", status=STATUS_DRAFT, title=None, price=None)) == []


def test_product_params() -> None:
    p = row("a", metadata={"n": 3, "flag": True, "nested": {"b": [1, 2]}, "none": None}, tax_code="txcd_10000000")
    params = target_for(p).create_product_params()
    assert params["id"] == "prod_cms_a"
    assert params["name"] == "Product a" and params["tax_code"] == "txcd_10000000"
    assert params["metadata"] == {
        "n": "3",
        "flag": "true",
        "nested": '{"b":[1,2]}',
        META_CMS_ID: "a",
        # Pinned: a new hash or fingerprint for unchanged content would rewrite every synced product.
        META_HASH: "f02aa95ee856813c9cd7c9f328e06541",
        META_PRICE: "e9b250726ced49b9",  # 19.99 USD one-time, as in the golden catalog's Cotton Tee
    }
    assert params["default_price_data"]["unit_amount"] == 1999
    assert "recurring" not in params["default_price_data"]


def test_price_params_recurring_and_currencies() -> None:
    p = row("a", price=Decimal("1200"), currency="JPY", recurring_interval="month", recurring_interval_count=3)
    params = target_for(p).create_price_params()
    assert params["product"] == "prod_cms_a" and params["currency"] == "jpy" and params["unit_amount"] == 1200
    assert params["recurring"] == {"interval": "month", "interval_count": 3}
    assert params["metadata"] == {META_CMS_ID: "a", META_PRICE: "91c8fea65d0ec6ee"}
    assert "lookup_key" not in params and "transfer_lookup_key" not in params
    keyed = target_for(p, lookup_keys=True).create_price_params()
    assert keyed["transfer_lookup_key"] is True and keyed["lookup_key"].startswith("cms:a:")
    kwd = target_for(row("b", price=Decimal("2.5"), currency="kwd")).create_price_params()
    assert kwd["unit_amount"] == 2500


def test_lookup_key_follows_price_content() -> None:
    a = target_for(row("a"), lookup_keys=True)
    assert a.lookup_key == target_for(row("a", title="other"), lookup_keys=True).lookup_key
    assert a.lookup_key != target_for(row("a", price=Decimal("20")), lookup_keys=True).lookup_key
    assert a.lookup_key != target_for(row("a", recurring_interval="year"), lookup_keys=True).lookup_key


def test_lookup_keys_are_off_unless_the_setting_says_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_PRICE_LOOKUP_KEYS", raising=False)
    off = target_for(row("a"))
    assert off.lookup_key is None
    assert "lookup_key" not in off.create_price_with_product_params()
    monkeypatch.setenv("STRIPE_PRICE_LOOKUP_KEYS", "true")
    assert target_for(row("a")).lookup_key == target_for(row("a"), lookup_keys=True).lookup_key
    assert (target_for(row("a")).lookup_key or "").startswith("cms:a:")
    assert target_for(row("a"), lookup_keys=False).lookup_key is None  # an explicit choice wins


def test_reusable_price_is_ours_live_and_of_this_content() -> None:
    t = target_for(row("a", recurring_interval="month"))
    assert t.price is not None
    ours = {
        "id": "price_1",
        "product": t.product_id,
        "active": True,
        "currency": "usd",
        "unit_amount": 1999,
        "recurring": {"interval": "month", "interval_count": 1},
        "tax_behavior": "unspecified",
        "metadata": {META_CMS_ID: "a", META_PRICE: t.price.fingerprint},
    }
    assert t.is_reusable_price(ours)
    assert not t.is_reusable_price({**ours, "active": False})
    assert not t.is_reusable_price({**ours, "product": "prod_other"})
    assert not t.is_reusable_price({**ours, "unit_amount": 2000})
    assert not t.is_reusable_price({**ours, "recurring": None})
    assert not t.is_reusable_price({**ours, "metadata": {}})  # made by hand
    assert not t.is_reusable_price({**ours, "metadata": {META_CMS_ID: "b", META_PRICE: t.price.fingerprint}})
    assert not t.is_reusable_price({**ours, "metadata": {META_CMS_ID: "a", META_PRICE: "0" * 16}})


def test_diff_only_changed_fields_and_clears_removed() -> None:
    t = target_for(row("a", description=None, metadata={"sku": "A"}))
    stripe_product = {
        "name": "Product a",
        "description": "old text",
        "images": ["https://cdn.example.com/a.png"],
        "url": "https://shop.example.com/a",
        "shippable": True,
        "metadata": {**t.metadata, "sku": "OLD", "gone": "x"},
    }
    assert t.product_diff(stripe_product) == {"description": "", "metadata": {"sku": "A", "gone": ""}}


def test_edge_valid_rows_are_accepted_by_stripe(emulator, gateway) -> None:
    """Anything validate_product lets through must not be a 400 at apply time (emulator = Stripe's rules)."""
    rows = [
        row(
            "edge1",
            title="t" * 250,
            metadata={f"k{i:02d}" + "x" * 36: "v" * 500 for i in range(46)},
            images=tuple(f"https://cdn.example.com/{i}/" + "i" * 2000 for i in range(8)),
            statement_descriptor="A" * 22,
            unit_label="u" * 12,
            tax_code="txcd_99999999",
        ),
        row("edge2", price=Decimal("0"), recurring_interval="year", recurring_interval_count=3),
        row("edge3", price=Decimal("999999.99"), recurring_interval="day", recurring_interval_count=1095),
        row("edge4", price=Decimal("99999.990"), currency="kwd", statement_descriptor="a1234"),
        row(
            "edge5", price=Decimal("99999999"), currency="jpy", recurring_interval="week", recurring_interval_count=156
        ),
        row("Edge/6 with spaces", description="", images=(), url=None, shippable=None, metadata={}),
    ]
    assert all(validate_product(r) == [] for r in rows)
    _plan, result = sync(gateway, rows)
    assert [r.outcome for r in result.results] == ["created"] * len(rows), [r.error for r in result.results]
    assert_stripe_matches(emulator.objects(), rows)


def test_whatever_validation_accepts_stripe_accepts(emulator, gateway) -> None:
    """Random rows: every one validate_product passes is created without a 400 (no surprise at apply time)."""
    from collections import Counter
    from itertools import count

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ids = count()
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
    rows_st = st.builds(
        lambda title, desc, price, cur, interval, n, meta, desc_sd, unit, imgs: row(
            f"h{next(ids)}",
            title=title,
            description=desc,
            price=price,
            currency=cur,
            recurring_interval=interval,
            recurring_interval_count=n if interval else None,
            metadata=meta,
            statement_descriptor=desc_sd,
            unit_label=unit,
            images=tuple(imgs),
        ),
        st.one_of(st.text(min_size=1, max_size=30).filter(lambda t: t.strip() != ""), st.none()),
        st.one_of(st.none(), text),
        st.builds(lambda n, d: Decimal(n) / d, st.integers(0, 10**7), st.sampled_from([1, 10, 100, 1000])),
        st.sampled_from(["usd", "jpy", "kwd", "eur", "isk", "usd", "xyz"]),
        st.sampled_from([None, None, "day", "week", "month", "year", "fortnight"]),
        st.integers(min_value=1, max_value=40),
        st.dictionaries(text, st.one_of(text, st.integers(), st.booleans()), max_size=5),
        st.one_of(st.none(), st.none(), st.none(), text),
        st.one_of(st.none(), st.none(), st.text(max_size=14)),
        st.one_of(
            *[st.lists(st.sampled_from(["https://x.example/a.png", "http://y.example/b"]), max_size=8)] * 4,
            st.lists(st.sampled_from(["https://x.example/a.png", "nope", "ftp://x/y"]), max_size=9),
        ),
    )

    accepted: list = []
    reasons: Counter = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(rows_st, min_size=1, max_size=4))
    def check(rows: list) -> None:
        for r in rows:
            reasons.update(i.code for i in validate_product(r))
        valid = [r for r in rows if validate_product(r) == []]
        if not valid:
            return
        _plan, result = sync(gateway, valid)
        failures = [(r.cms_id, r.error) for r in result.results if not r.ok]
        assert not failures, failures
        accepted.extend(valid)

    check()
    print(f"\n{len(accepted)} random valid rows created without a 400; rejected for {dict(reasons)}")
    assert accepted, "the strategy produced no valid rows"
    assert_stripe_matches(emulator.objects(), accepted)
