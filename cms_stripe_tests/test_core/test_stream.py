"""Issue 15, bounded memory: validating and planning the catalog page by page (core.stream) decides
every row exactly as the whole-catalog path does, one bad row or page stops nothing, and the rows
held at once are bounded by the page size, not by the catalog."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cms_stripe.core.catalog import STATUS_ARCHIVED, STATUS_DRAFT, CmsProduct
from cms_stripe.core.mapping import target_for, validate_product
from cms_stripe.core.plan import PlanStream, build_plan
from cms_stripe.core.state import ProductState
from cms_stripe.core.stream import ValidationStream, pages, plan_pages
from cms_stripe.core.validation import holder_queries, split_valid
from cms_stripe_tests.test_core.conftest import row
from cms_stripe_tests.test_core.test_plan import stripe_state

NOW = datetime(2026, 1, 2, 3, 4, 5)

# Small alphabets on purpose: repeated ids, rows naming one Stripe product, invalid values and
# products already in Stripe all turn up within a few rows.
_IDS = ("a", "b", "c", "d", "e", "f")


@st.composite
def catalog_rows(draw: st.DrawFn) -> CmsProduct:
    cms_id = draw(st.sampled_from(_IDS))
    return row(
        cms_id,
        title=draw(st.sampled_from([f"Product {cms_id}", "", None, "Other title"])),
        price=draw(st.sampled_from([Decimal("19.99"), Decimal("5"), Decimal("-1"), Decimal("0.001"), None])),
        currency=draw(st.sampled_from(["usd", "jpy", "xyz"])),
        status=draw(st.sampled_from(["published", "published", STATUS_DRAFT, STATUS_ARCHIVED])),
        stripe_product_id=draw(st.sampled_from([None, None, "prod_cms_a", "prod_shared", "prod_cms_zz"])),
        created_at=draw(st.sampled_from([None, datetime(2020, 1, 1), datetime(2021, 1, 1)])),
    )


def in_stripe(rows: Sequence[CmsProduct], which: set[str]) -> dict[str, ProductState]:
    """Stripe as a finished sync of the first valid row of each chosen id left it, price drifted for 'c'."""
    out: dict[str, ProductState] = {}
    for p in rows:
        # Only a valid live row was ever synced.
        if p.id in which and p.id not in out and not validate_product(p) and p.should_be_active:
            t = target_for(p, lookup_keys=False)
            state = stripe_state(t)
            if p.id == "c":
                state = stripe_state(t, price={"id": "price_old", "active": True, "currency": "usd", "unit_amount": 1})
            out[p.id] = state
    return out


def dicts(plan_ops: Sequence[Any]) -> list[dict[str, Any]]:
    return [op.to_dict() for op in plan_ops]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(catalog_rows(), max_size=14),
    page_size=st.integers(min_value=1, max_value=15),
    synced=st.sets(st.sampled_from(_IDS)),
    keep=st.booleans(),
)
def test_the_paged_plan_is_the_whole_catalogs_plan(
    rows: list[CmsProduct], page_size: int, synced: set[str], keep: bool
) -> None:
    state = in_stripe(rows, synced)
    dashboard = "keep" if keep else "overwrite"
    whole = build_plan(rows, state, now=NOW, lookup_keys=False, dashboard=dashboard)
    planner = PlanStream(lookup_keys=False, dashboard=dashboard)
    ops: list[Any] = []
    quarantined: list[Any] = []
    for page in pages(rows, page_size):
        part = planner.add(page, state)
        ops += part.operations
        quarantined += part.quarantined
    assert dicts(ops) == dicts(whole.operations)
    assert [q.to_dict() for q in quarantined] == [q.to_dict() for q in whole.quarantined]
    assert planner.counts() == whole.counts()


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(catalog_rows(), max_size=14, unique_by=lambda p: p.id),
    page_size=st.integers(min_value=1, max_value=15),
    synced=st.sets(st.sampled_from(_IDS)),
)
def test_validating_then_planning_pages_plans_what_the_whole_catalog_plans(
    rows: list[CmsProduct], page_size: int, synced: set[str]
) -> None:
    state = in_stripe(rows, synced)
    valid, _ = split_valid(rows)
    whole = build_plan(valid, state, now=NOW, lookup_keys=False)
    done = list(
        plan_pages(
            pages(rows, page_size),
            planner=PlanStream(lookup_keys=False),
            state_for=lambda page: {p.id: state[p.id] for p in page if p.id in state},
            holders_for=lambda page: _holders(rows, page),
        )
    )
    assert dicts([op for d in done for op in d.plan.operations]) == dicts(whole.operations)
    assert [q.to_dict() for d in done for q in d.plan.quarantined] == [q.to_dict() for q in whole.quarantined]


def _holders(catalog: Sequence[CmsProduct], page: Sequence[CmsProduct]) -> list[CmsProduct]:
    """What the CMS answers for a page (`assets.common.link_holders`): rows storing one of the page's
    Stripe products, and rows whose own derived product one of them names."""
    stripe_ids, cms_ids = holder_queries(page)
    found = [p for p in catalog if (p.stripe_product_id or "").strip() in stripe_ids]
    return found + [p for p in catalog if p.id in cms_ids]


def _issues(quarantine: Sequence[tuple[CmsProduct, list[Any]]]) -> list[tuple[str, list[str]]]:
    return [(p.id, [f"{i.code}|{i.field}|{i.message}" for i in issues]) for p, issues in quarantine]


unique_rows = st.lists(catalog_rows(), max_size=14, unique_by=lambda p: p.id)
# Repeated ids without stored Stripe links: whole-catalog validation compares one copy per id for
# shared products (the last), so with links the reasons a copy gets besides "duplicate" may differ
# (it is quarantined either way).
repeated_rows = st.lists(catalog_rows().map(lambda p: dataclasses.replace(p, stripe_product_id=None)), max_size=14)


@settings(max_examples=200, deadline=None)
@given(rows=st.one_of(unique_rows, repeated_rows), page_size=st.integers(min_value=1, max_value=15))
def test_paged_validation_is_the_whole_catalogs_validation(rows: list[CmsProduct], page_size: int) -> None:
    counts = Counter(p.id for p in rows)
    repeated = {i: n for i, n in counts.items() if n > 1}
    whole_valid, whole_quarantined = split_valid(rows)
    stream = ValidationStream(known_duplicates=repeated)
    valid: list[CmsProduct] = []
    quarantined: list[tuple[CmsProduct, list[Any]]] = []
    for page in pages(rows, page_size):
        v, q = stream.add(page, link_holders=_holders(rows, page))
        valid += v
        quarantined += q
    assert valid == whole_valid
    assert _issues(quarantined) == _issues(whole_quarantined)
    assert (stream.rows, stream.valid, stream.quarantined) == (len(rows), len(whole_valid), len(whole_quarantined))
    assert stream.late_duplicates == []


def test_a_repeat_nobody_announced_is_quarantined_when_it_appears_and_reported() -> None:
    stream = ValidationStream()
    first_valid, _ = stream.add([row("a"), row("b")])
    valid, quarantined = stream.add([row("c"), row("a", title="Copy")])
    assert [p.id for p in first_valid] == ["a", "b"]
    assert [p.id for p in valid] == ["c"]
    assert [(p.id, [i.code for i in issues]) for p, issues in quarantined] == [("a", ["duplicate_cms_id"])]
    assert stream.late_duplicates == ["a"], "the copy already passed on is named for the report"


class Exploding(dict[str, Any]):
    """Metadata whose every read raises: a value no check foresaw."""

    def items(self) -> Any:
        raise RuntimeError("unreadable metadata")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("unreadable metadata")


def test_bad_rows_in_one_page_never_stop_the_other_rows_or_pages() -> None:
    catalog = [
        row("a1"),
        row("a2", price=Decimal("-5")),
        # Caught by validation (it reads the metadata), and, empty, only by the planner's hash of it.
        dataclasses.replace(row("a3"), metadata=Exploding(k="v")),
        dataclasses.replace(row("a4"), metadata=Exploding()),
        row("b1", currency="xyz"),
        row("b2"),
        row("b3"),
    ]
    done = list(plan_pages(pages(catalog, 4)))
    assert [d.rows for d in done] == [4, 3]
    planned = [op.cms_id for d in done for op in d.plan.operations]
    assert planned == ["a1", "b2", "b3"]
    validation = {p.id: [i.code for i in issues] for d in done for p, issues in d.quarantined}
    assert validation == {"a2": ["price_negative"], "a3": ["unexpected_value"], "b1": ["unknown_currency"]}
    planning = [(q.cms_id, [i.code for i in q.issues]) for d in done for q in d.plan.quarantined]
    assert planning == [("a4", ["unexpected_value"])]
    assert "RuntimeError: unreadable metadata" in done[0].plan.quarantined[0].message


class Counted(CmsProduct):
    """A CMS row that counts how many of its kind are alive (created and not yet freed)."""

    __slots__ = ()
    alive: ClassVar[int] = 0
    most: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Counted.alive += 1
        Counted.most = max(Counted.most, Counted.alive)

    def __del__(self) -> None:
        Counted.alive -= 1


@pytest.mark.parametrize("page_size", [1, 7, 50])
def test_rows_held_at_once_are_bounded_by_the_page_not_the_catalog(page_size: int) -> None:
    Counted.alive = Counted.most = 0
    n = 600

    def source() -> Iterator[CmsProduct]:
        for i in range(n):
            yield Counted(id=f"r{i:04d}", title=f"Product {i}", price=Decimal("9.99"), currency="usd")

    validation, planner = ValidationStream(), PlanStream(lookup_keys=False)
    creates = 0
    for done in plan_pages(pages(source(), page_size), validation=validation, planner=planner):
        creates += sum(1 for op in done.plan.operations if op.kind == "create")
    assert creates == n and validation.rows == n
    # The page being read, the page just planned (still referenced until the next one replaces it),
    # and the row in hand: never the catalog.
    assert Counted.most <= 2 * page_size + 1, Counted.most
    del done  # the last page, still referenced by the loop variable
    assert Counted.alive == 0, "nothing of a page outlives it"


def test_pages_pulls_one_page_at_a_time_and_refuses_a_zero_size() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    it = pages(source(), 4)
    assert next(it) == [0, 1, 2, 3]
    assert pulled == [0, 1, 2, 3], "nothing beyond the page is read ahead"
    assert list(it) == [[4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError):
        next(pages([1], 0))


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(catalog_rows(), max_size=10),
    synced=st.sets(st.sampled_from(_IDS)),
    account=st.sampled_from([None, "acct_1"]),
    indent=st.sampled_from([2, 4]),
)
def test_the_plan_file_written_operation_by_operation_is_the_plans_json(
    rows: list[CmsProduct], synced: set[str], account: str | None, indent: int
) -> None:
    plan = build_plan(rows, in_stripe(rows, synced), now=NOW, lookup_keys=False)
    plan.account_id, plan.mode = account, "live" if account else None
    out = io.StringIO()
    plan.write_json(out, indent=indent)
    assert out.getvalue() == plan.to_json(indent=indent)
