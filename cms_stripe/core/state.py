"""What Stripe holds for a batch of CMS rows, read in as few calls as Stripe allows.

One `GET /v1/products?ids[]=…` per 100 rows (default price expanded) answers almost everything.
Prices are listed by lookup key only for products whose default price does not match the CMS:
those are the rows where a reprice may already be half done and its new price must be reused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.identity import product_id_for
from cms_stripe.core.mapping import Target, target_for, validate_product

LOOKUP_KEYS_PER_CALL = 10  # Stripe's limit for `lookup_keys[]` on GET /v1/prices


class StateReader(Protocol):
    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]: ...

    def list_prices(
        self, *, product: str | None = None, lookup_keys: Sequence[str] = (), active: bool | None = None
    ) -> list[dict[str, Any]]: ...

    def retrieve_product(self, product_id: str, expand: Sequence[str] = ()) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class ProductState:
    """Stripe's side of one row: the product (None = absent), its default price, the lookup-key price."""

    product_id: str
    product: dict[str, Any] | None = None
    default_price: dict[str, Any] | None = None
    lookup_price: dict[str, Any] | None = None

    @property
    def exists(self) -> bool:
        return self.product is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "product": self.product,
            "default_price": self.default_price,
            "lookup_price": self.lookup_price,
        }


def _split_default_price(product: dict[str, Any]) -> dict[str, Any] | None:
    dp = product.get("default_price")
    return dp if isinstance(dp, dict) else None


def state_from_product(
    product_id: str, product: dict[str, Any] | None, lookup_price: dict[str, Any] | None = None
) -> ProductState:
    if product is None:
        return ProductState(product_id)
    return ProductState(product_id, product, _split_default_price(product), lookup_price)


def needs_lookup(target: Target, product: Mapping[str, Any] | None) -> bool:
    """Only an existing, live-wanted product whose default price is wrong may have an orphan new price."""
    if product is None or not target.active or target.price is None or not target.lookup_key:
        return False
    dp = product.get("default_price")
    return not (isinstance(dp, dict) and dp.get("active") and target.price.matches(dp))


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def lookup_prices(reader: StateReader, lookup_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    keys = sorted(set(lookup_keys))
    for chunk in _chunks(keys, LOOKUP_KEYS_PER_CALL):
        for price in reader.list_prices(lookup_keys=list(chunk)):
            key = price.get("lookup_key")
            if key:
                found[key] = price
    return found


def targets_for(products: Iterable[CmsProduct], *, tax_behavior: str | None = None) -> dict[str, Target]:
    """Targets of the rows that pass validation (the rest are quarantined by the planner)."""
    out: dict[str, Target] = {}
    for p in products:
        if not validate_product(p, tax_behavior=tax_behavior):
            out[p.id] = target_for(p, tax_behavior=tax_behavior)
    return out


def read_state(
    reader: StateReader, products: Sequence[CmsProduct], *, tax_behavior: str | None = None
) -> dict[str, ProductState]:
    """Stripe state keyed by CMS id: ceil(N/100) product list calls, plus ≤ 1 price list per 10 repricings."""
    ids_by_cms: dict[str, str] = {}
    for p in products:
        if p.id:
            ids_by_cms[p.id] = product_id_for(p)
    unique_ids = sorted(set(ids_by_cms.values()))
    listed = reader.list_products(unique_ids, expand_default_price=True) if unique_ids else []
    by_id = {obj["id"]: obj for obj in listed}

    targets = targets_for(products, tax_behavior=tax_behavior)
    wanted = [t.lookup_key for t in targets.values() if t.lookup_key and needs_lookup(t, by_id.get(t.product_id))]
    prices = lookup_prices(reader, wanted) if wanted else {}

    out: dict[str, ProductState] = {}
    for cms_id, pid in ids_by_cms.items():
        target = targets.get(cms_id)
        lookup = prices.get(target.lookup_key) if target and target.lookup_key else None
        out[cms_id] = state_from_product(pid, by_id.get(pid), lookup)
    return out


def refresh_state(reader: StateReader, target: Target) -> ProductState:
    """Re-read one product (after "already exists" or an ambiguous write) before deciding again."""
    product = reader.retrieve_product(target.product_id, expand=("default_price",))
    lookup = None
    if target.lookup_key and needs_lookup(target, product):
        lookup = lookup_prices(reader, [target.lookup_key]).get(target.lookup_key)
    return state_from_product(target.product_id, product, lookup)
