"""What a rollback decides per product from the journal and Stripe's current state: the undo steps of
a create, an archive, a reprice and a field update; nothing for a product already back; nothing but a
listing for a product someone changed after the run; and the remaining steps of a rollback that
stopped halfway. Plus: journal entries survive their JSON round trip unchanged."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cms_stripe.core.journal import JournalEntry, PriceTerms, ProductJournal, ProductSnapshot, merge
from cms_stripe.core.rollback import apply_rollback, plan_item, plan_rollback

RUN = "run-1"


def price(pid: str, amount: int, active: bool = True) -> dict[str, Any]:
    return {"id": pid, "object": "price", "currency": "usd", "unit_amount": amount, "active": active}


def product(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "prod_cms_a",
        "active": True,
        "name": "Old name",
        "description": "About a",
        "images": ["https://cdn.example.com/a.png"],
        "metadata": {"cms_id": "a", "cms_hash": "h1"},
        "default_price": price("price_old", 1000),
    }
    base.update(kw)
    return base


BEFORE = ProductSnapshot.of(product())


def journal(
    after: ProductSnapshot | None, before: ProductSnapshot | None = BEFORE, kind: str = "update"
) -> ProductJournal:
    return ProductJournal("a", "prod_cms_a", kind, before, after)


def steps(item) -> list[tuple[str, str, dict[str, Any]]]:
    return [(s.name, s.object_id, s.params) for s in item.steps]


def test_a_field_update_gets_its_earlier_values_back():
    after = ProductSnapshot.of(product(name="New name", images=[], metadata={"cms_id": "a", "cms_hash": "h2"}))
    now = product(name="New name", images=[], metadata={"cms_id": "a", "cms_hash": "h2"})
    item = plan_item(journal(after), now)
    assert item.decision == "undo"
    assert steps(item) == [
        (
            "restore-product",
            "prod_cms_a",
            {"name": "Old name", "images": ["https://cdn.example.com/a.png"], "metadata": {"cms_hash": "h1"}},
        )
    ]


def test_a_reprice_is_reverted_in_a_crash_safe_order_and_finished_after_a_stop():
    after_product = product(default_price=price("price_new", 1300), metadata={"cms_id": "a", "cms_hash": "h2"})
    pj = journal(ProductSnapshot.of(after_product), kind="reprice")
    expected = [
        ("reactivate-price", "price_old", {"active": True}),
        ("restore-product", "prod_cms_a", {"metadata": {"cms_hash": "h1"}, "default_price": "price_old"}),
        ("archive-price", "price_new", {"active": False}),
    ]
    assert steps(plan_item(pj, after_product)) == expected
    # Stopped after the first step: the old price is live again, the default not switched yet.
    assert steps(plan_item(pj, after_product)) == expected
    # Stopped after the switch: every compared field is back; only the run's price is left (the
    # caller lists the product's prices for that).
    back = plan_item(pj, product())
    assert back.decision == "undone" and back.steps == []


def test_an_intent_without_result_is_judged_by_price_terms():
    """The process died before the result: the new price's id is unknown, its terms are not."""
    after = ProductSnapshot.of(product(default_price=price("unknown", 1300)))
    after = ProductSnapshot(after.active, after.fields, after.metadata, PriceTerms(None, "usd", 1300))
    pj = journal(after, kind="reprice")
    landed = plan_item(pj, product(default_price=price("price_new", 1300)))
    assert landed.decision == "undo" and steps(landed)[-1] == ("archive-price", "price_new", {"active": False})
    never = plan_item(pj, product())
    assert never.decision == "undone"


def test_created_and_archived_products():
    created = journal(BEFORE, before=None, kind="create")
    assert steps(plan_item(created, product())) == [("restore-product", "prod_cms_a", {"active": False})]
    assert plan_item(created, product(active=False)).decision == "undone"

    archived = journal(ProductSnapshot.of(product(active=False)), kind="archive")
    assert steps(plan_item(archived, product(active=False))) == [("restore-product", "prod_cms_a", {"active": True})]


def test_a_create_stopped_between_its_two_requests_is_still_undone():
    """Lane B makes the product with only our cms_id, then completes it: a kill in between leaves that."""
    created = journal(BEFORE, before=None, kind="create")
    half = product(metadata={"cms_id": "a"}, description=None, images=[])
    assert steps(plan_item(created, half)) == [("restore-product", "prod_cms_a", {"active": False})]


def test_a_reprice_marker_left_by_the_run_is_cleared():
    after_product = product(
        default_price=price("price_new", 1300),
        metadata={"cms_id": "a", "cms_hash": "h2", "cms_prev_price": "price_old"},
    )
    item = plan_item(journal(ProductSnapshot.of(after_product), kind="reprice"), after_product)
    assert steps(item)[1] == (
        "restore-product",
        "prod_cms_a",
        {"metadata": {"cms_hash": "h1", "cms_prev_price": ""}, "default_price": "price_old"},
    )


def test_a_product_changed_after_the_run_is_left_alone_and_listed():
    after = ProductSnapshot.of(product(name="New name"))
    item = plan_item(journal(after), product(name="Someone else's name"))
    assert item.decision == "changed" and item.changed_fields == ["name"] and item.steps == []
    assert plan_item(journal(after), None).decision == "gone"


def test_merge_keeps_the_first_before_and_the_results_price():
    first = ProductSnapshot.of(product())
    later = ProductSnapshot.of(product(name="half done"))
    after = ProductSnapshot(True, first.fields, first.metadata, PriceTerms(None, "usd", 1300))
    merged = merge(
        [
            JournalEntry(RUN, "a", "prod_cms_a", "reprice", "intent", first, after),
            JournalEntry(RUN, "a", "prod_cms_a", "reprice", "intent", later, after),
            JournalEntry(RUN, "a", "prod_cms_a", "reprice", "done", None, None, price_id="price_new"),
        ]
    )
    pj = merged["prod_cms_a"]
    assert pj.before == first and pj.phase == "done"
    assert pj.after is not None and pj.after.default_price == PriceTerms("price_new", "usd", 1300)


text = st.text(max_size=20)
snapshots = st.builds(
    ProductSnapshot,
    active=st.booleans(),
    fields=st.fixed_dictionaries({"name": text, "images": st.lists(text, max_size=8), "description": st.none() | text}),
    metadata=st.dictionaries(st.text(min_size=1, max_size=40), text, max_size=50),
    default_price=st.none()
    | st.builds(
        PriceTerms,
        id=st.none() | text,
        currency=st.sampled_from(["usd", "jpy", "kwd"]),
        unit_amount=st.none() | st.integers(0, 10**12),
        interval=st.none() | st.sampled_from(["month", "year"]),
        interval_count=st.none() | st.integers(1, 36),
        tax_behavior=st.sampled_from(["unspecified", "inclusive", "exclusive"]),
    ),
)


@given(
    before=st.none() | snapshots,
    after=st.none() | snapshots,
    phase=st.sampled_from(["intent", "done", "failed"]),
    price_id=st.none() | text,
)
def test_journal_entries_survive_json(before, after, phase, price_id):
    entry = JournalEntry(RUN, "cms-1", "prod_cms_cms-1", "update", phase, before, after, price_id)
    assert JournalEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry


# -- property: from any mix of before/after, the planned steps bring the product back to before --------

names = st.text(min_size=1, max_size=12)
field_sets = st.fixed_dictionaries(
    {"name": names, "description": st.none() | names, "images": st.lists(names, max_size=3)}
)
metadata_sets = st.dictionaries(st.sampled_from(["cms_id", "cms_hash", "sku", "colour"]), names, max_size=4)


def as_product(snap: ProductSnapshot, prices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    dp = snap.default_price
    return {
        "id": "prod_cms_a",
        "active": snap.active,
        **snap.fields,
        "metadata": dict(snap.metadata),
        "default_price": prices[dp.id] if dp and dp.id else None,
    }


def apply_steps(product: dict[str, Any], item, prices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Stripe's update semantics for the params a rollback sends ("" clears, metadata merges)."""
    out = json.loads(json.dumps(product))
    for step in item.steps:
        if step.name != "restore-product":
            prices[step.object_id]["active"] = step.params["active"]
            continue
        for key, value in step.params.items():
            if key == "metadata":
                for mk, mv in value.items():
                    if mv == "":
                        out["metadata"].pop(mk, None)
                    else:
                        out["metadata"][mk] = mv
            elif key == "default_price":
                out["default_price"] = prices[value]
            elif key == "images":
                out["images"] = [] if value == "" else value
            else:
                out[key] = None if value == "" else value
    return out


@given(
    before_fields=field_sets,
    after_fields=field_sets,
    before_meta=metadata_sets,
    after_meta=metadata_sets,
    before_active=st.booleans(),
    after_active=st.booleans(),
    reprice=st.booleans(),
    mix=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_steps_from_any_partial_state_end_at_before_and_a_second_plan_is_empty(
    before_fields, after_fields, before_meta, after_meta, before_active, after_active, reprice, mix
):
    prices = {"price_old": price("price_old", 1000), "price_new": price("price_new", 1300)}
    old = PriceTerms.of(prices["price_old"])
    new = PriceTerms.of(prices["price_new"]) if reprice else old
    before = ProductSnapshot(before_active, before_fields, before_meta, old)
    after = ProductSnapshot(after_active, after_fields, after_meta, new)
    # Where an earlier rollback stopped: each part of the product either still at after or back at before.
    current = ProductSnapshot(
        before.active if mix[0] else after.active,
        {
            "name": (before if mix[1] else after).fields["name"],
            "description": (before if mix[2] else after).fields["description"],
            "images": (before if mix[3] else after).fields["images"],
        },
        before.metadata if mix[4] else after.metadata,
        old if mix[5] else new,
    )
    pj = journal(after, before=before, kind="reprice" if reprice else "update")
    item = plan_item(pj, as_product(current, prices))
    assert item.decision in ("undo", "undone")
    restored = apply_steps(as_product(current, prices), item, prices)
    snap = ProductSnapshot.of(restored)
    assert (snap.active, snap.metadata, snap.default_price) == (before.active, before.metadata, before.default_price)
    assert {k: snap.fields[k] for k in before.fields} == before.fields
    assert plan_item(pj, restored).steps == []


class RecordingGateway:
    """Serves one product and records the idempotency key of each write."""

    def __init__(self, current: dict[str, Any]) -> None:
        self.current = current
        self.keys: list[str] = []

    def list_products(self, ids: Any, expand_default_price: bool = True) -> list[dict[str, Any]]:
        return [self.current] if self.current["id"] in ids else []

    def list_prices(self, **kw: Any) -> list[dict[str, Any]]:
        return []

    def update_product(self, product_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        self.keys.append(idempotency_key)
        return self.current

    def update_price(self, price_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        self.keys.append(idempotency_key)
        return {}


def test_the_same_undo_of_a_product_updated_since_gets_a_new_idempotency_key():
    after = ProductSnapshot.of(product(name="New name"))
    keys = []
    for updated in (1700000000, 1700000000, 1700000500):
        gateway = RecordingGateway(product(name="New name", updated=updated))
        apply_rollback(gateway, plan_rollback(gateway, {"prod_cms_a": journal(after)}), RUN)
        keys.append(gateway.keys)
    assert len(keys[0]) == 1
    assert keys[0] == keys[1], "a retry against the same state replays"
    assert keys[2] != keys[0], "a product written since is a new write, not a replay"


def test_a_product_a_later_run_wrote_is_left_alone_and_named():
    after = ProductSnapshot.of(product(name="New name"))
    gateway = RecordingGateway(product(name="New name", updated=1700000000))
    items = plan_rollback(gateway, {"prod_cms_a": journal(after)}, {"prod_cms_a": "run-2"})
    assert [(i.decision, i.reason, i.changed_by, i.steps) for i in items] == [
        ("changed", "changed by run run-2", "run-2", [])
    ]
    assert apply_rollback(gateway, items, RUN).written == 0
    assert gateway.keys == []
