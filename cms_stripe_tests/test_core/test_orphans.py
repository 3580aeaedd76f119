"""Orphans are adopted, not duplicated: a product made by hand (or by a run whose write-back was lost)
with `metadata.cms_id` of a row that names no product becomes that row's product with zero creates;
and a row linked by an editor to another product gets its earlier derived product archived."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import stripe

from cms_stripe.core import reconcile as rc
from cms_stripe.core.catalog import SyncUpdate, WriteBackResult
from cms_stripe.core.journal import JournalEntry
from cms_stripe.core.sync import SyncOptions, run_sync
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
