"""What Stripe holds for a batch of CMS rows, read in as few calls as Stripe allows.

One `GET /v1/products?ids[]=…` per 100 rows (default price expanded) answers almost everything.
Prices are listed only for products whose default price does not match the CMS: those are the rows
where a reprice (or a lane-B create) may already be half done and its new price must be reused
rather than made again. With price lookup keys on, those prices are asked by lookup key (10 per
call); without, each such product's live prices are listed (`GET /v1/prices?product=…`) and the one
the sync made for exactly this content is recognised by Target.is_reusable_price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.identity import product_id_for
from cms_stripe.core.mapping import Target, target_for, validate_product
from cms_stripe.core.settings import price_lookup_keys

LOOKUP_KEYS_PER_CALL = 10  # Stripe's limit for `lookup_keys[]` on GET /v1/prices
# Concurrent `GET /v1/prices?product=` reads (the limiter paces them; this only hides latency).
PRICE_LIST_CONCURRENCY = 8


class StateReader(Protocol):
    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]: ...

    def list_prices(
        self, *, product: str | None = None, lookup_keys: Sequence[str] = (), active: bool | None = None
    ) -> list[dict[str, Any]]: ...

    def retrieve_product(self, product_id: str, expand: Sequence[str] = ()) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class ProductState:
    """Stripe's side of one row: the product (None = absent), its default price, and `lookup_price`:
    a live price the sync already made for the row's current content that is not (yet) the default
    (found by lookup key, or by listing the product's prices when lookup keys are off)."""

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
    if product is None or not target.active or target.price is None:
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


def targets_for(
    products: Iterable[CmsProduct], *, tax_behavior: str | None = None, lookup_keys: bool | None = None
) -> dict[str, Target]:
    """Targets of the rows that pass validation (the rest are quarantined by the planner)."""
    keys = price_lookup_keys() if lookup_keys is None else lookup_keys
    out: dict[str, Target] = {}
    for p in products:
        if not validate_product(p, tax_behavior=tax_behavior):
            out[p.id] = target_for(p, tax_behavior=tax_behavior, lookup_keys=keys)
    return out


def reusable_price(target: Target, prices: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Among a product's prices, the newest one the sync made for the target's content."""
    found = [p for p in prices if target.is_reusable_price(p)]
    if not found:
        return None
    # Normally one; after hand edits, the newest wins and the executor archives the others.
    return max(found, key=lambda p: (int(p.get("created") or 0), str(p.get("id"))))


def product_prices(reader: StateReader, target: Target) -> dict[str, Any] | None:
    """The reusable price of one product, from its live prices (one paged `GET /v1/prices?product=`)."""
    return reusable_price(target, reader.list_prices(product=target.product_id, active=True))


def _reusable_prices(reader: StateReader, targets: Sequence[Target]) -> dict[str, dict[str, Any]]:
    """cms id → reusable price, for targets already known to need one looked up."""
    out: dict[str, dict[str, Any]] = {}
    keyed = [t for t in targets if t.lookup_key]
    if keyed:
        by_key = lookup_prices(reader, [t.lookup_key for t in keyed if t.lookup_key])
        for t in keyed:
            price = by_key.get(t.lookup_key or "")
            if price is not None:
                out[t.cms_id] = price
    listed = [t for t in targets if not t.lookup_key]
    if len(listed) == 1:
        found = product_prices(reader, listed[0])
        if found is not None:
            out[listed[0].cms_id] = found
    elif listed:
        with ThreadPoolExecutor(max_workers=min(PRICE_LIST_CONCURRENCY, len(listed))) as pool:
            for t, found in zip(listed, pool.map(lambda t: product_prices(reader, t), listed), strict=True):
                if found is not None:
                    out[t.cms_id] = found
    return out


def read_state(
    reader: StateReader,
    products: Sequence[CmsProduct],
    *,
    tax_behavior: str | None = None,
    lookup_keys: bool | None = None,
) -> dict[str, ProductState]:
    """Stripe state keyed by CMS id: ceil(N/100) product list calls, plus, for rows whose default price
    is wrong, ≤ 1 price list per 10 of them (lookup keys on) or 1 per row (off)."""
    ids_by_cms: dict[str, str] = {}
    for p in products:
        if p.id:
            ids_by_cms[p.id] = product_id_for(p)
    unique_ids = sorted(set(ids_by_cms.values()))
    listed = reader.list_products(unique_ids, expand_default_price=True) if unique_ids else []
    by_id = {obj["id"]: obj for obj in listed}

    targets = targets_for(products, tax_behavior=tax_behavior, lookup_keys=lookup_keys)
    wanted = [t for t in targets.values() if needs_lookup(t, by_id.get(t.product_id))]
    prices = _reusable_prices(reader, wanted) if wanted else {}

    out: dict[str, ProductState] = {}
    for cms_id, pid in ids_by_cms.items():
        out[cms_id] = state_from_product(pid, by_id.get(pid), prices.get(cms_id))
    return out


def refresh_state(reader: StateReader, target: Target) -> ProductState:
    """Re-read one product (after "already exists" or an ambiguous write) before deciding again."""
    product = reader.retrieve_product(target.product_id, expand=("default_price",))
    lookup = None
    if needs_lookup(target, product):
        lookup = _reusable_prices(reader, [target]).get(target.cms_id)
    return state_from_product(target.product_id, product, lookup)
