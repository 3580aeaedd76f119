"""Orphans are adopted, not duplicated: a product made by hand (or by a run whose write-back was lost)
with `metadata.cms_id` of a row that names no product becomes that row's product with zero creates
(an archived one is left alone and the row gets its own product); the account listing behind it
expands nothing and keeps only the candidates; and a row linked by an editor to another product gets
its earlier derived product archived."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import stripe
from hypothesis import given
from hypothesis import strategies as st

from cms_stripe.core import reconcile as rc
from cms_stripe.core.catalog import SyncUpdate, WriteBackResult
from cms_stripe.core.journal import JournalEntry
from cms_stripe.core.orphans import index_by_cms_id
from cms_stripe.core.sync import SyncOptions, run_sync
from cms_stripe.stripe.gateway import StripeGateway
from cms_stripe_tests.test_core.conftest import LIVE_KEY, row


class MemoryCms:
    """The CMS side of run_sync: keeps what was written back."""

    def __init__(self) -> None:
        self.updates: dict[str, SyncUpdate] = {}

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        self.updates.update({u.id: u for u in updates})
        return WriteBackResult(written=len(updates))


class MemoryJournal:
    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []

    def record(self, entries: Sequence[JournalEntry]) -> None:
        self.entries.extend(entries)


def options(tmp_path: Any) -> SyncOptions:
    return SyncOptions(run_id="run-orphans", label="t", dry_run=False, reports_dir=str(tmp_path))


def test_a_hand_made_product_with_the_rows_cms_id_is_adopted_with_zero_creates(emulator, gateway, tmp_path):
    client = stripe.StripeClient(LIVE_KEY, base_addresses={"api": emulator.url})
    client.v1.products.create(
        params={
            "id": "prod_MadeByHand1",
            "name": "typed in the Dashboard",
            "metadata": {"cms_id": "orph-1"},
            "default_price_data": {"currency": "usd", "unit_amount": 500},
        }
    )
    rows = [row("orph-1"), row("orph-2")]
    report = rc.reconcile(rows, gateway.iter_all_products(), scope="catalog", orphans=True)
    assert [(r.cms_id, r.outcome) for r in report.rows] == [("orph-1", "missing"), ("orph-2", "missing")]
    assert report.rows[0].detail == (
        "no Stripe product at prod_cms_orph-1; prod_MadeByHand1 carries this row's cms_id (the next sync adopts it)"
    )
    creates_before = emulator.inspect()["requests"].get("POST /v1/products", 0)
    cms, journal, lines = MemoryCms(), MemoryJournal(), list[str]()

    outcome = run_sync(rows, gateway, cms, options(tmp_path), log=lines.append, journal=journal)

    assert outcome.result is not None and outcome.counts == {"created": 1, "repriced": 1}
    # orph-2 is a genuine create; orph-1 none.
    assert emulator.inspect()["requests"].get("POST /v1/products", 0) == creates_before + 1
    products = {p["id"]: p for p in emulator.objects()["products"]}
    assert set(products) == {"prod_MadeByHand1", "prod_cms_orph-2"}
    adopted = products["prod_MadeByHand1"]
    assert adopted["name"] == "Product orph-1" and adopted["active"] is True
    prices = {p["id"]: p for p in emulator.objects()["prices"]}
    assert prices[adopted["default_price"]]["unit_amount"] == 1999
    assert cms.updates["orph-1"].stripe_product_id == "prod_MadeByHand1"
    assert any("adopting Stripe product prod_MadeByHand1 for CMS row orph-1" in line for line in lines)
    # The journal knows the product existed before (a rollback reverts it, never archives it).
    intent = next(e for e in journal.entries if e.product_id == "prod_MadeByHand1" and e.phase == "intent")
    assert intent.before is not None and intent.before.fields["name"] == "typed in the Dashboard"

    again = run_sync(
        [dataclasses.replace(r, stripe_product_id=cms.updates[r.id].stripe_product_id) for r in rows],
        gateway,
        MemoryCms(),
        dataclasses.replace(options(tmp_path), skip_existing=False),
        log=lines.append,
    )
    assert again.counts == {"noop": 2}


def test_a_row_linked_to_another_product_archives_its_derived_one(emulator, gateway, tmp_path):
    first = run_sync([row("dup-1")], gateway, MemoryCms(), options(tmp_path), log=lambda _m: None)
    assert first.counts == {"created": 1}
    client = stripe.StripeClient(LIVE_KEY, base_addresses={"api": emulator.url})
    client.v1.products.create(
        params={"id": "prod_Chosen1", "name": "x", "default_price_data": {"currency": "usd", "unit_amount": 1999}}
    )
    lines: list[str] = []
    journal = MemoryJournal()

    second = run_sync(
        [row("dup-1", stripe_product_id="prod_Chosen1")],
        gateway,
        MemoryCms(),
        options(tmp_path),
        log=lines.append,
        journal=journal,
    )

    assert second.counts == {"updated": 1}
    products = {p["id"]: p for p in emulator.objects()["products"]}
    assert products["prod_cms_dup-1"]["active"] is False
    assert products["prod_Chosen1"]["active"] is True and products["prod_Chosen1"]["name"] == "Product dup-1"
    assert (
        "archived prod_cms_dup-1: the sync created it for CMS row dup-1, which now names Stripe product prod_Chosen1"
        in lines
    )
    kinds = {(e.product_id, e.kind, e.phase) for e in journal.entries}
    assert ("prod_cms_dup-1", "archive-duplicate", "intent") in kinds


def account_listings(emulator: Any) -> list[dict[str, list[str]]]:
    """The query of every whole-account product listing (GET /v1/products without `ids`)."""
    out = []
    for entry in emulator.requests_log():
        if entry["method"] == "GET" and entry["path"] == "/v1/products":
            query = parse_qs(entry["query"])
            if not any(k.startswith("ids") for k in query):
                out.append(query)
    return out


def make_product(gateway: StripeGateway, product_id: str, cms_id: str | None, *, active: bool = True) -> None:
    params: dict[str, Any] = {
        "id": product_id,
        "name": "typed in the Dashboard",
        "default_price_data": {"currency": "usd", "unit_amount": 500},
    }
    if cms_id is not None:
        params["metadata"] = {"cms_id": cms_id}
    gateway.create_product(params, f"test-create-{product_id}")
    if not active:
        gateway.update_product(product_id, {"active": False}, f"test-archive-{product_id}")


def test_an_archived_hand_made_product_is_not_adopted_and_the_row_gets_its_own(emulator, gateway, tmp_path):
    make_product(gateway, "prod_ArchivedByHand", "orph-a", active=False)
    before = rc.reconcile([row("orph-a")], gateway.iter_all_products(), scope="catalog", orphans=True)
    assert [(r.outcome, r.detail) for r in before.rows] == [
        (
            "missing",
            "no Stripe product at prod_cms_orph-a; archived prod_ArchivedByHand carries this row's cms_id "
            "(not adopted: the next sync creates the row's own product)",
        )
    ]
    cms, lines = MemoryCms(), list[str]()

    outcome = run_sync([row("orph-a")], gateway, cms, options(tmp_path), log=lines.append)

    assert outcome.counts == {"created": 1}
    products = {p["id"]: p for p in emulator.objects()["products"]}
    assert set(products) == {"prod_ArchivedByHand", "prod_cms_orph-a"}
    # Left exactly as the human archived it: not reactivated, not renamed, not repriced.
    kept = products["prod_ArchivedByHand"]
    assert kept["active"] is False and kept["name"] == "typed in the Dashboard"
    prices = {p["id"]: p for p in emulator.objects()["prices"]}
    assert prices[kept["default_price"]]["unit_amount"] == 500
    assert products["prod_cms_orph-a"]["active"] is True and products["prod_cms_orph-a"]["name"] == "Product orph-a"
    assert cms.updates["orph-a"].stripe_product_id == "prod_cms_orph-a"
    assert (
        "not adopting archived Stripe product prod_ArchivedByHand for CMS row orph-a: it carries the row's cms_id "
        "but was archived, perhaps on purpose; the row is created as usual at prod_cms_orph-a. To use it, "
        "reactivate it in Stripe and set the row's stripe_product_id to it."
    ) in lines
    assert not any(line.startswith("adopting ") for line in lines)
    # The listing asked for the bare products: no default price expanded.
    sync_listings = account_listings(emulator)[1:]  # the first is the reconciliation's above
    assert sync_listings == [{"limit": ["100"]}]

    # Only active products count: the row and its own product match, no duplicate is reported.
    linked = [row("orph-a", stripe_product_id="prod_cms_orph-a")]
    report = rc.reconcile(linked, gateway.iter_all_products(), scope="catalog", orphans=True)
    assert [(r.cms_id, r.product_id, r.outcome) for r in report.rows] == [("orph-a", "prod_cms_orph-a", "matched")]
    listed = len(account_listings(emulator))  # two reconciliations' and the sync's
    again = run_sync(linked, gateway, MemoryCms(), dataclasses.replace(options(tmp_path), skip_existing=False))
    assert again.counts == {"noop": 1}
    # A row that names its product is no adoption candidate: no further account listing.
    assert listed == 3 and len(account_listings(emulator)) == 3


def test_of_several_active_products_with_the_cms_id_the_oldest_is_adopted_and_the_log_says_so(
    emulator, gateway, tmp_path
):
    make_product(gateway, "prod_FirstByHand", "orph-m")
    make_product(gateway, "prod_SecondByHand", "orph-m")
    make_product(gateway, "prod_ThirdArchived", "orph-m", active=False)
    cms, lines = MemoryCms(), list[str]()

    outcome = run_sync([row("orph-m")], gateway, cms, options(tmp_path), log=lines.append)

    assert outcome.counts == {"repriced": 1}
    assert cms.updates["orph-m"].stripe_product_id == "prod_FirstByHand"
    assert (
        "adopting Stripe product prod_FirstByHand for CMS row orph-m: it carries the row's cms_id (the oldest of 2 "
        "active products carrying it; also live, left for a human: prod_SecondByHand)"
    ) in lines
    assert (
        "not adopting archived Stripe product prod_ThirdArchived for CMS row orph-m: it carries the row's cms_id "
        "but was archived, perhaps on purpose; another active product carrying it is adopted instead. To use it, "
        "reactivate it in Stripe and set the row's stripe_product_id to it."
    ) in lines
    products = {p["id"]: p for p in emulator.objects()["products"]}
    assert products["prod_ThirdArchived"]["active"] is False
    assert products["prod_SecondByHand"]["name"] == "typed in the Dashboard"
    assert "prod_cms_orph-m" not in products


def test_the_adoption_index_keeps_only_the_candidates_and_what_adoption_needs(emulator, gateway):
    for i in range(50):
        make_product(gateway, f"prod_Other{i:02d}", f"other-{i:02d}")
    make_product(gateway, "prod_NoCmsId", None)
    make_product(gateway, "prod_WantLive", "want-1")
    make_product(gateway, "prod_WantArchived", "want-2", active=False)
    created = {p["id"]: p["created"] for p in emulator.objects()["products"]}

    index = index_by_cms_id(gateway.iter_all_products(expand_default_price=False), {"want-1", "want-2", "want-3"})

    assert index == {
        "want-1": [
            {
                "id": "prod_WantLive",
                "active": True,
                "created": created["prod_WantLive"],
                "metadata": {"cms_id": "want-1"},
            }
        ],
        "want-2": [
            {
                "id": "prod_WantArchived",
                "active": False,
                "created": created["prod_WantArchived"],
                "metadata": {"cms_id": "want-2"},
            }
        ],
    }
    # 53 products, 100 per page: one call, and it expanded nothing.
    assert account_listings(emulator) == [{"limit": ["100"]}]


@given(
    listed=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", None]), st.booleans(), st.integers(0, 2_000_000_000)),
        max_size=30,
    ),
    wanted=st.sets(st.sampled_from(["a", "b", "z"])),
)
def test_the_index_holds_only_wanted_cms_ids_and_four_fields(listed, wanted):
    products = [
        {
            "id": f"prod_{i}",
            "object": "product",
            "active": active,
            "created": created,
            "name": "x" * 1000,
            "default_price": {"id": f"price_{i}", "unit_amount": 100},
            "metadata": {"cms_id": cms_id, "cms_hash": "h"} if cms_id else {},
        }
        for i, (cms_id, active, created) in enumerate(listed)
    ]

    index = index_by_cms_id(iter(products), wanted)

    for cms_id in ("a", "b", "c", "z"):
        expected = [
            {"id": f"prod_{i}", "active": active, "created": created, "metadata": {"cms_id": cms_id}}
            for i, (c, active, created) in enumerate(listed)
            if c == cms_id
        ]
        assert index.get(cms_id, []) == (expected if cms_id in wanted else [])
