"""Undo a run's Stripe writes from its journal (core.journal), exactly once.

Per product the current Stripe state is compared, field by field (active, the managed fields, the
metadata, the default price's id or terms), with the journal's `before` and `after`:
- every field at `before`: nothing to undo (undone already, or the write never landed);
- some field at neither: someone changed the product after the run — left alone and listed;
- otherwise the fields still at `after` are moved back to `before`.
A field may sit at `before` while others sit at `after` only because an earlier rollback stopped
halfway (or someone restored that very value by hand): either way finishing the undo is right, and
this is what makes a rollback that was killed mid-way safe to start again.

Undo steps, in an order where each crash point leaves a state the next attempt recognises:
- created by the run: archive the product, then archive its other live prices. Its default price
  stays active because Stripe refuses to archive a default price; an archived product's prices
  cannot be bought, so customers see nothing of it;
- archived by the run: reactivate it; reactivated: archive it again;
- repriced: reactivate the previous price, make it the default again (with the earlier fields and
  metadata in the same update), then archive the run's price;
- updated: the earlier values of the fields and metadata the run changed ("" clears).
Every write carries an idempotency key derived from the run id, the object, the step, its params and
the product's `updated` as read before planning, so a retried rollback replays instead of writing
twice, while a rollback repeated after Stripe changed (a later run re-did the write) is a new write,
not a replay of a stored response that reports a write that never happened. A repeated rollback with
nothing changed plans nothing, because every field is back at `before`.
A product that a later run (another run group) journaled a write for is left alone and listed as
"changed by run X": undoing it would undo that run's write, not this one's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cms_stripe.core.identity import idempotency_key
from cms_stripe.core.journal import PriceTerms, ProductJournal, ProductSnapshot
from cms_stripe.core.mapping import CLEARABLE_FIELDS, META_CMS_ID, META_PREV_PRICE, PRODUCT_FIELDS, metadata_diff

log = logging.getLogger(__name__)

Decision = Literal["undo", "undone", "changed", "gone"]
LIST_CHUNK = 100


class RollbackGateway(Protocol):
    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]: ...
    def list_prices(
        self, *, product: str | None = None, lookup_keys: Sequence[str] = (), active: bool | None = None
    ) -> list[dict[str, Any]]: ...
    def update_product(self, product_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...
    def update_price(self, price_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Step:
    """One Stripe write of a rollback."""

    name: str  # reactivate-price | restore-product | archive-price
    object_id: str
    params: dict[str, Any]

    def describe(self) -> str:
        return f"{self.name} {self.object_id} {json.dumps(self.params, sort_keys=True, default=str)}"


@dataclass
class RollbackItem:
    cms_id: str
    product_id: str
    kind: str
    decision: Decision
    reason: str
    steps: list[Step] = field(default_factory=list)
    changed_fields: list[str] = field(default_factory=list)
    # The product's `updated` when the rollback read it: part of every step's idempotency key.
    basis: str = ""
    # The later run that wrote this product (then it is left alone).
    changed_by: str | None = None


@dataclass
class RollbackResult:
    items: list[RollbackItem]
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def count(self, decision: Decision) -> int:
        return sum(1 for i in self.items if i.decision == decision)

    @property
    def changed(self) -> list[RollbackItem]:
        return [i for i in self.items if i.decision == "changed"]

    def summary(self) -> dict[str, int]:
        return {
            "to_undo": self.count("undo"),
            "already_undone": self.count("undone"),
            "changed_since": self.count("changed"),
            "gone": self.count("gone"),
            "steps": sum(len(i.steps) for i in self.items),
            "written": self.written,
            "failed": len(self.failed),
        }


# -- comparing ------------------------------------------------------------------------------------

_FIELDS = ("active", *PRODUCT_FIELDS, "metadata", "default_price")


def _value(snap: ProductSnapshot, name: str) -> Any:
    if name == "active":
        return snap.active
    if name == "metadata":
        return {k: v for k, v in snap.metadata.items() if k != META_PREV_PRICE}
    if name == "default_price":
        return snap.default_price
    return snap.fields.get(name)


def _same(name: str, current: Any, recorded: Any) -> bool:
    if name != "default_price":
        return bool(current == recorded)
    if recorded is None or current is None:
        return current is recorded
    assert isinstance(current, PriceTerms) and isinstance(recorded, PriceTerms)
    if recorded.id:
        return current.id == recorded.id
    return current.same_terms(recorded)


def plan_item(pj: ProductJournal, product: Mapping[str, Any] | None) -> RollbackItem:
    """Decide one product's undo from the journal and what Stripe holds now."""
    item = RollbackItem(pj.cms_id, pj.product_id, pj.kind, "undone", "")
    if product is None:
        item.decision, item.reason = "gone", "no longer in Stripe"
        return item
    if pj.after is None:
        item.reason = "nothing recorded to undo"
        return item
    current = ProductSnapshot.of(product)
    if pj.before is None and current.metadata == {META_CMS_ID: pj.cms_id}:
        # A lane-B create stopped between its two requests: the product carries only our cms_id,
        # which is how an unfinished product of ours looks (mapping.Target), not someone's edit.
        return _undo_created(item, current)
    # A product the run created had no earlier state: undoing it means archiving it, fields untouched.
    before = pj.before or ProductSnapshot(False, pj.after.fields, pj.after.metadata, pj.after.default_price)
    at_after: list[str] = []
    for name in _FIELDS:
        cur, was, now = _value(current, name), _value(before, name), _value(pj.after, name)
        if _same(name, cur, now):
            if not _same(name, was, now) or (name == "default_price" and was is not None and was.id != cur.id):
                at_after.append(name)
        elif not _same(name, cur, was):
            item.changed_fields.append(name)
    if pj.before is None:
        # Only `active` is undone on a product the run created (its prices are handled by the caller).
        at_after = ["active"] if current.active else []
    if item.changed_fields:
        item.decision = "changed"
        item.reason = "changed in Stripe after the run: " + ", ".join(item.changed_fields)
        return item
    if not at_after:
        item.reason = "already as before the run"
        return item

    params: dict[str, Any] = {}
    steps: list[Step] = []
    for name in at_after:
        if name == "active":
            params["active"] = before.active
        elif name == "metadata":
            # Against the full current metadata, so a reprice marker left by the run is cleared too.
            diff = metadata_diff(_value(before, "metadata"), current.metadata)
            if diff:
                params["metadata"] = diff
        elif name == "default_price":
            old = before.default_price
            if pj.before is not None and old is not None and old.id:
                steps.append(Step("reactivate-price", old.id, {"active": True}))
                params["default_price"] = old.id
        else:
            was = before.fields.get(name)
            if name == "images":
                params[name] = list(was or []) or ""
            elif was is None:
                if name in CLEARABLE_FIELDS:
                    params[name] = ""
            else:
                params[name] = was
    if params:
        steps.append(Step("restore-product", pj.product_id, params))
    if "default_price" in params and current.default_price and current.default_price.id:
        steps.append(Step("archive-price", current.default_price.id, {"active": False}))
    item.steps = steps
    item.decision = "undo"
    item.reason = "created by the run" if pj.before is None else f"{pj.kind}: " + ", ".join(at_after)
    return item


def _undo_created(item: RollbackItem, current: ProductSnapshot) -> RollbackItem:
    if current.active:
        item.steps = [Step("restore-product", item.product_id, {"active": False})]
        item.decision, item.reason = "undo", "created by the run"
    else:
        item.reason = "already as before the run"
    return item


def _leftover_price_steps(
    gateway: RollbackGateway, pj: ProductJournal, item: RollbackItem, product: Mapping[str, Any]
) -> list[Step]:
    """Live prices the run made that the product steps leave live.

    Created product: its prices other than the default (Stripe keeps the default active). Repriced
    product already switched back (a rollback stopped before archiving the run's price): that price.
    """
    dp = product.get("default_price")
    default_id = dp.get("id") if isinstance(dp, Mapping) else dp
    planned = {s.object_id for s in item.steps if s.name == "archive-price"}
    if pj.before is None:
        if pj.phase == "done":
            # A finished create made one price, the default: no listing (one GET per product) needed.
            return []
        wanted = None
    else:
        run_price = pj.after.default_price.id if pj.after and pj.after.default_price else None
        old = pj.before.default_price.id if pj.before.default_price else None
        if not run_price or run_price == old or item.decision != "undone":
            return []
        wanted = run_price
    out = []
    for price in gateway.list_prices(product=item.product_id, active=True):
        pid = price["id"]
        if pid == default_id or pid in planned:
            continue
        if wanted is not None and pid != wanted:
            continue
        if (price.get("metadata") or {}).get(META_CMS_ID) == pj.cms_id:
            out.append(Step("archive-price", pid, {"active": False}))
    return out


def plan_rollback(
    gateway: RollbackGateway,
    journal: Mapping[str, ProductJournal],
    later_writers: Mapping[str, str] | None = None,
) -> list[RollbackItem]:
    """One item per journaled product: read Stripe (100 products per call) and decide.
    `later_writers`: product id → a later run that journaled a write for it (left alone, listed)."""
    later = later_writers or {}
    ids = sorted(journal)
    current: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), LIST_CHUNK):
        for product in gateway.list_products(ids[i : i + LIST_CHUNK], expand_default_price=True):
            current[product["id"]] = product
    items: list[RollbackItem] = []
    for pid in ids:
        pj = journal[pid]
        found = current.get(pid)
        item = plan_item(pj, found)
        if found is not None:
            item.basis = str(found.get("updated") or "")
        if pid in later and item.decision != "gone":
            item.decision, item.changed_by, item.steps = "changed", later[pid], []
            item.reason = f"changed by run {later[pid]}"
        if found is not None and item.decision in ("undo", "undone"):
            extra = _leftover_price_steps(gateway, pj, item, found)
            if extra:
                item.steps += extra
                if item.decision == "undone":
                    item.decision, item.reason = "undo", "prices the run made are still live"
        items.append(item)
    return items


def _key(run_id: str, step: Step, item: RollbackItem) -> str:
    params = json.dumps(step.params, sort_keys=True, default=str)
    basis = f"{run_id}:{step.object_id}:{params}:{item.basis}"
    product_id = item.product_id
    return idempotency_key(f"rollback-{step.name}", product_id, basis)


def apply_rollback(gateway: RollbackGateway, items: Sequence[RollbackItem], run_id: str) -> RollbackResult:
    """Run every item's steps in order; a failed product stops its own steps only."""
    result = RollbackResult(list(items))
    for item in items:
        if item.decision != "undo":
            continue
        try:
            for step in item.steps:
                key = _key(run_id, step, item)
                if step.name == "restore-product":
                    gateway.update_product(step.object_id, dict(step.params), key)
                else:
                    gateway.update_price(step.object_id, dict(step.params), key)
                result.written += 1
        except Exception as exc:
            log.warning("rollback of %s failed: %s", item.product_id, exc)
            result.failed.append((item.product_id, f"{type(exc).__name__}: {exc}"[:500]))
    return result


def describe(items: Sequence[RollbackItem], limit: int = 200) -> list[str]:
    """Human lines: what would be (or was) done per product."""
    lines: list[str] = []
    for item in items[:limit]:
        head = f"{item.decision:8} {item.product_id} (cms {item.cms_id}): {item.reason}"
        lines.append(head)
        lines += [f"           {s.describe()}" for s in item.steps]
    if len(items) > limit:
        lines.append(f"… {len(items) - limit} more")
    return lines
