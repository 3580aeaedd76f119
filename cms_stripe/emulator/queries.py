"""Lists and search over the emulated account: filters, cursor pagination, search pages.

Reads only: nothing here changes the store. Lists see every write at once; search sees a write
only after `search_lag_s` (see `search.LaggedIndex`), like Stripe's eventually consistent search.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable
from typing import Any

from .errors import invalid, missing_resource
from .search import compile_query
from .state import Json, Store

PRODUCT_SEARCH_FIELDS = frozenset({"active", "created", "description", "name", "shippable", "url", "id"})
PRICE_SEARCH_FIELDS = frozenset({"active", "created", "currency", "lookup_key", "product", "type", "id"})
MAX_IDS = 100
MAX_LOOKUP_KEYS = 10


def _limit(p: Json) -> int:
    limit = p.get("limit", 10)
    if limit < 1:
        raise invalid("This value must be greater than or equal to 1.", param="limit")
    if limit > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    return int(limit)


def _created_ok(created: int, flt: Any) -> bool:
    if flt is None:
        return True
    if isinstance(flt, int):
        return created == flt
    return (
        ("gt" not in flt or created > flt["gt"])
        and ("gte" not in flt or created >= flt["gte"])
        and ("lt" not in flt or created < flt["lt"])
        and ("lte" not in flt or created <= flt["lte"])
    )


def _paginate(
    store: Store, items: Iterable[Json], p: Json, kind: str, objects: dict[str, Json]
) -> tuple[list[Json], bool]:
    """`items` is a lazy newest-first stream; read only as far as the page needs."""
    limit = _limit(p)
    after, before = p.get("starting_after"), p.get("ending_before")
    if after is not None and before is not None:
        raise invalid(
            "You may only specify one of these parameters: starting_after, ending_before.",
            param="starting_after",
        )
    page: list[Json] = []
    if before is not None:
        if before not in objects:
            raise missing_resource(kind, before, param="ending_before", status=400)
        cut = store.seq[before]
        newer = list(itertools.takewhile(lambda o: store.seq[o["id"]] > cut, items))
        return newer[-limit:], len(newer) > limit
    if after is not None:
        if after not in objects:
            raise missing_resource(kind, after, param="starting_after", status=400)
        cut = store.seq[after]
        items = (o for o in items if store.seq[o["id"]] < cut)
    for o in items:
        if len(page) == limit:
            return page, True
        page.append(o)
    return page, False


def list_products(store: Store, p: Json) -> Json:
    expand = store.expansions(p, frozenset({"data.default_price"}))
    ids = p.get("ids")
    if ids is not None and len(ids) > MAX_IDS:
        raise invalid("You may pass at most 100 ids.", param="ids")
    if ids is not None:
        # Stripe's List all products: `ids` "cannot be used with starting_after or ending_before",
        # so a list by ids is one page; a caller needing more must split the ids, not page.
        for cursor in ("starting_after", "ending_before"):
            if cursor in p:
                raise invalid(f"You may only specify one of these parameters: ids, {cursor}.", param="ids")
    idset = set(ids) if ids is not None else None
    items = (
        o
        for o in reversed(store.products.values())
        if (idset is None or o["id"] in idset)
        and ("active" not in p or o["active"] == p["active"])
        and ("shippable" not in p or o["shippable"] == p["shippable"])
        and ("type" not in p or o["type"] == p["type"])
        and ("url" not in p or o["url"] == p["url"])
        and _created_ok(o["created"], p.get("created"))
    )
    page, has_more = _paginate(store, items, p, "product", store.products)
    inner = {e.split(".", 1)[1] for e in expand}
    return {
        "object": "list",
        "data": [store.render_product(o, inner) for o in page],
        "has_more": has_more,
        "url": "/v1/products",
    }


def list_prices(store: Store, p: Json) -> Json:
    expand = store.expansions(p, frozenset({"data.product"}))
    lookup = p.get("lookup_keys")
    if lookup is not None and len(lookup) > MAX_LOOKUP_KEYS:
        raise invalid("You may only specify up to 10 lookup_keys.", param="lookup_keys")
    lkset = set(lookup) if lookup is not None else None
    currency = p["currency"].lower() if "currency" in p else None
    rec = p.get("recurring") or {}
    if "product" in p:
        source: Iterable[Json] = (store.prices[i] for i in reversed(store.prices_by_product.get(p["product"], [])))
    else:
        source = reversed(store.prices.values())
    items = (
        o
        for o in source
        if (lkset is None or o["lookup_key"] in lkset)
        and ("active" not in p or o["active"] == p["active"])
        and (currency is None or o["currency"] == currency)
        and ("type" not in p or o["type"] == p["type"])
        and ("interval" not in rec or (o["recurring"] or {}).get("interval") == rec["interval"])
        and ("usage_type" not in rec or (o["recurring"] or {}).get("usage_type") == rec["usage_type"])
        and _created_ok(o["created"], p.get("created"))
    )
    page, has_more = _paginate(store, items, p, "price", store.prices)
    inner = {e.split(".", 1)[1] for e in expand}
    return {
        "object": "list",
        "data": [store.render_price(o, inner) for o in page],
        "has_more": has_more,
        "url": "/v1/prices",
    }


def _search(store: Store, kind: str, p: Json, url: str) -> Json:
    objects = store.products if kind == "product" else store.prices
    inner_field = "data.default_price" if kind == "product" else "data.product"
    allowed = frozenset({inner_field, "total_count"})
    expand = store.expansions(p, allowed)
    pred = compile_query(p["query"], PRODUCT_SEARCH_FIELDS if kind == "product" else PRICE_SEARCH_FIELDS)
    limit = _limit(p)
    offset = 0
    if "page" in p:
        try:
            offset = int(base64.urlsafe_b64decode(p["page"].encode()).decode().removeprefix("off:"))
        except ValueError:
            raise invalid("Invalid page token.", param="page") from None
    hits = [o for o in store.search_index.view(kind, objects, store.seq) if pred(o)]
    page = hits[offset : offset + limit]
    has_more = len(hits) > offset + limit
    inner = {e.split(".", 1)[1] for e in expand if e.startswith("data.")}
    render = store.render_product if kind == "product" else store.render_price
    out: Json = {
        "object": "search_result",
        "data": [render(o, inner) for o in page],
        "has_more": has_more,
        "next_page": base64.urlsafe_b64encode(f"off:{offset + limit}".encode()).decode() if has_more else None,
        "url": url,
    }
    if "total_count" in expand:
        out["total_count"] = len(hits)
    return out


def search_products(store: Store, p: Json) -> Json:
    return _search(store, "product", p, "/v1/products/search")


def search_prices(store: Store, p: Json) -> Json:
    return _search(store, "price", p, "/v1/prices/search")
