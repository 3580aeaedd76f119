"""The emulated Stripe account: products, prices, lookup keys, search index, idempotency store.

Every write is split in two: validation (which may raise `ApiError` and changes nothing) returns a
`Commit` callable that applies the write. The server runs both on its single event-loop thread with
no await in between, so a write is atomic, and it can inject faults between the two halves.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import string
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import rules
from .errors import ApiError, invalid, missing_resource, unsupported
from .params import UNSET
from .search import compile_query

Json = dict[str, Any]
Commit = Callable[[], Json]

_ALNUM = string.ascii_letters + string.digits
PRODUCT_SEARCH_FIELDS = frozenset({"active", "created", "description", "name", "shippable", "url", "id"})
PRICE_SEARCH_FIELDS = frozenset({"active", "created", "currency", "lookup_key", "product", "type", "id"})
IDEMPOTENCY_TTL_S = 24 * 3600


@dataclass
class IdemRecord:
    fingerprint: str
    status: int
    body: bytes
    created: float


class Store:
    def __init__(self) -> None:
        self._ids = random.Random()
        self.clear()

    def clear(self) -> None:
        self.products: dict[str, Json] = {}
        self.prices: dict[str, Json] = {}
        self.seq: dict[str, int] = {}
        self.next_seq = 1
        self.deleted_products: set[str] = set()
        self.lookup_keys: dict[str, str] = {}
        self.prices_by_product: dict[str, list[str]] = {}
        # (kind, id) -> [(visible_from_wall_time, snapshot or None when deleted)], only while lag > 0
        self.search_versions: dict[tuple[str, str], list[tuple[float, Json | None]]] = {}
        self.idempotency: dict[tuple[str, str], IdemRecord] = {}
        self.dirty = False

    # -- ids, ordering, search visibility ---------------------------------------------------

    def _new_id(self, prefix: str, n: int) -> str:
        while True:
            oid = prefix + "".join(self._ids.choices(_ALNUM, k=n))
            if oid not in self.products and oid not in self.prices and oid not in self.deleted_products:
                return oid

    def _register(self, oid: str) -> None:
        self.seq[oid] = self.next_seq
        self.next_seq += 1

    def _index(self, kind: str, oid: str, prev: Json | None, obj: Json | None, lag: float) -> None:
        """Record a write for search, which sees it only `lag` seconds later (Stripe's search is
        eventually consistent). Objects are replaced on every write, never mutated in place, so
        keeping references is enough for snapshots."""
        self.dirty = True
        key = (kind, oid)
        versions = self.search_versions.get(key)
        if versions is None:
            if lag <= 0:
                return
            versions = self.search_versions[key] = [(0.0, prev)] if prev is not None else []
        versions.append((time.time() + max(lag, 0.0), obj))

    def _search_view(self, kind: str, objects: dict[str, Json]) -> list[Json]:
        now = time.time()
        out: list[tuple[int, Json]] = []
        seen: set[str] = set()
        for key, versions in list(self.search_versions.items()):
            if key[0] != kind:
                continue
            oid = key[1]
            seen.add(oid)
            n_visible = sum(1 for t, _ in versions if t <= now)
            if n_visible == 0:
                continue
            del versions[: n_visible - 1]
            snap = versions[0][1]
            if len(versions) == 1 and snap is objects.get(oid):
                # Caught up with the live object: back to the fast path.
                del self.search_versions[key]
                seen.discard(oid)
                continue
            if snap is not None:
                out.append((self.seq.get(oid, 0), snap))
        for oid, obj in objects.items():
            if oid not in seen:
                out.append((self.seq[oid], obj))
        out.sort(key=lambda t: -t[0])
        return [o for _, o in out]

    # -- rendering --------------------------------------------------------------------------

    def render_product(self, prod: Json, expand: Iterable[str] = ()) -> Json:
        if "default_price" in expand and prod.get("default_price"):
            price = self.prices.get(prod["default_price"])
            if price is not None:
                return {**prod, "default_price": dict(price)}
        return prod

    def render_price(self, price: Json, expand: Iterable[str] = ()) -> Json:
        if "product" in expand:
            prod = self.products.get(price["product"])
            if prod is not None:
                return {**price, "product": dict(prod)}
        return price

    @staticmethod
    def expansions(params: Json, allowed: frozenset[str]) -> set[str]:
        exp = params.get("expand") or []
        for i, e in enumerate(exp):
            if e not in allowed:
                raise invalid(f"This property cannot be expanded ({e}).", param=f"expand[{i}]")
        return set(exp)

    # -- products ---------------------------------------------------------------------------

    def get_product(self, pid: str, *, param: str = "id", status: int = 404) -> Json:
        prod = self.products.get(pid)
        if prod is None:
            raise missing_resource("product", pid, param=param, status=status)
        return prod

    def get_price(self, pid: str, *, param: str = "id", status: int = 404) -> Json:
        price = self.prices.get(pid)
        if price is None:
            raise missing_resource("price", pid, param=param, status=status)
        return price

    def _check_new_product_id(self, pid: str, param: str) -> str:
        rules.check_object_id(pid, param)
        if pid in self.products or pid in self.deleted_products:
            raise ApiError(400, "Product already exists.", code="resource_already_exists", param=param)
        return pid

    def _product_fields(self, p: Json, prefix: str, current: Json | None) -> Json:
        """Validate the product attributes shared by create, update and `product_data`."""

        def name(k: str) -> str:
            return f"{prefix}[{k}]" if prefix else k

        out: Json = {}
        for key in ("tax_details",):
            if key in p:
                raise unsupported(name(key))
        if "name" in p:
            out["name"] = p["name"]
        if "active" in p:
            out["active"] = p["active"]
        if "description" in p:
            out["description"] = None if p["description"] is UNSET else p["description"]
        if "metadata" in p:
            out["metadata"] = rules.check_metadata(
                p["metadata"], name("metadata"), current["metadata"] if current else None
            )
        if "images" in p:
            out["images"] = rules.check_images(p["images"], name("images"))
        if "statement_descriptor" in p:
            out["statement_descriptor"] = rules.check_statement_descriptor(
                p["statement_descriptor"], name("statement_descriptor")
            )
        if "unit_label" in p:
            out["unit_label"] = (
                None if p["unit_label"] is UNSET else rules.check_unit_label(p["unit_label"], name("unit_label"))
            )
        for key in ("tax_code", "url"):
            if key in p:
                out[key] = None if p[key] is UNSET else p[key]
        if "shippable" in p:
            out["shippable"] = p["shippable"]
        if "type" in p:
            out["type"] = rules.check_enum(p["type"], ("good", "service"), name("type"))
        if "marketing_features" in p:
            mf = p["marketing_features"]
            if mf is not UNSET and len(mf) > 15:
                raise invalid("You can set at most 15 marketing features.", param=name("marketing_features"))
            out["marketing_features"] = [] if mf is UNSET else [{"name": f["name"]} for f in mf]
        if "package_dimensions" in p:
            pd = p["package_dimensions"]
            out["package_dimensions"] = None if pd is UNSET else dict(pd)
        return out

    def _new_product(self, pid: str | None, fields: Json, livemode: bool) -> Json:
        now = int(time.time())
        return {
            "id": pid or self._new_id("prod_", 14),
            "object": "product",
            "active": fields.get("active", True),
            "created": now,
            "default_price": None,
            "description": fields.get("description"),
            "images": fields.get("images", []),
            "livemode": livemode,
            "marketing_features": fields.get("marketing_features", []),
            "metadata": fields.get("metadata", {}),
            "name": fields["name"],
            "package_dimensions": fields.get("package_dimensions"),
            "shippable": fields.get("shippable"),
            "statement_descriptor": fields.get("statement_descriptor"),
            "tax_code": fields.get("tax_code"),
            "type": fields.get("type", "service"),
            "unit_label": fields.get("unit_label"),
            "updated": now,
            "url": fields.get("url"),
        }

    def _insert_product(self, prod: Json, lag: float) -> None:
        self.products[prod["id"]] = prod
        self._register(prod["id"])
        self.prices_by_product.setdefault(prod["id"], [])
        self._index("product", prod["id"], None, prod, lag)

    def create_product(self, p: Json, livemode: bool, lag: float) -> Commit:
        expand = self.expansions(p, frozenset({"default_price"}))
        pid = self._check_new_product_id(p["id"], "id") if "id" in p else None
        fields = self._product_fields(p, "", None)
        price_fields = (
            self._price_amount_fields(p["default_price_data"], "default_price_data")
            if ("default_price_data" in p)
            else None
        )

        def commit() -> Json:
            prod = self._new_product(pid, fields, livemode)
            if price_fields is not None:
                price = self._new_price(prod["id"], price_fields, livemode)
                prod["default_price"] = price["id"]
                self._insert_product(prod, lag)
                self._insert_price(price, lag)
            else:
                self._insert_product(prod, lag)
            return self.render_product(prod, expand)

        return commit

    def retrieve_product(self, pid: str, p: Json) -> Json:
        expand = self.expansions(p, frozenset({"default_price"}))
        return self.render_product(self.get_product(pid), expand)

    def update_product(self, pid: str, p: Json, lag: float) -> Commit:
        expand = self.expansions(p, frozenset({"default_price"}))
        prod = self.get_product(pid)
        fields = self._product_fields(p, "", prod)
        if "default_price" in p:
            price = self.get_price(p["default_price"], param="default_price", status=400)
            if price["product"] != pid:
                raise invalid(
                    f"The price `{price['id']}` does not belong to product `{pid}`; a product's default "
                    "price must be one of its own prices.",
                    param="default_price",
                )
            if not price["active"]:
                raise invalid(
                    f"The price `{price['id']}` is archived; only an active price can be the default price.",
                    param="default_price",
                )
            fields["default_price"] = price["id"]

        def commit() -> Json:
            new = {**prod, **fields, "updated": max(int(time.time()), prod["updated"])}
            self.products[pid] = new
            self._index("product", pid, prod, new, lag)
            return self.render_product(new, expand)

        return commit

    def delete_product(self, pid: str, lag: float) -> Commit:
        self.get_product(pid)
        if self.prices_by_product.get(pid):
            raise invalid(
                "This product cannot be deleted because it has one or more user-created prices.",
                param="id",
            )

        def commit() -> Json:
            tomb = self.products.pop(pid)
            self.prices_by_product.pop(pid, None)
            self.deleted_products.add(pid)
            self._index("product", pid, tomb, None, lag)
            return {"id": pid, "object": "product", "deleted": True}

        return commit

    # -- prices -----------------------------------------------------------------------------

    def _price_amount_fields(self, p: Json, prefix: str) -> Json:
        """Currency, amount, recurring, tax behaviour, metadata: shared by price create and
        `default_price_data`."""

        def name(k: str) -> str:
            return f"{prefix}[{k}]" if prefix else k

        for key in ("currency_options", "custom_unit_amount", "tiers", "tiers_mode", "transform_quantity"):
            if key in p:
                raise unsupported(name(key))
        if p.get("billing_scheme", "per_unit") != "per_unit":
            raise unsupported(name("billing_scheme"))
        currency = rules.check_currency(p["currency"], name("currency"))
        out: Json = {"currency": currency}
        if "unit_amount" in p and "unit_amount_decimal" in p:
            raise invalid(
                f"You may only specify one of these parameters: {name('unit_amount')}, {name('unit_amount_decimal')}.",
                param=name("unit_amount"),
            )
        if "unit_amount" in p:
            amount = rules.check_unit_amount(p["unit_amount"], currency, name("unit_amount"))
            out["unit_amount"] = amount
            out["unit_amount_decimal"] = str(amount)
        elif "unit_amount_decimal" in p:
            dec = rules.check_unit_amount_decimal(p["unit_amount_decimal"], currency, name("unit_amount_decimal"))
            integral = dec == dec.to_integral_value()
            out["unit_amount"] = int(dec) if integral else None
            out["unit_amount_decimal"] = str(int(dec)) if integral else format(dec.normalize(), "f")
        else:
            raise ApiError(
                400,
                f"Missing required param: {name('unit_amount')}.",
                code="parameter_missing",
                param=name("unit_amount"),
            )
        if "recurring" in p:
            out["recurring"] = rules.check_recurring(p["recurring"], name("recurring"))
        if "tax_behavior" in p:
            out["tax_behavior"] = rules.check_enum(
                p["tax_behavior"], ("exclusive", "inclusive", "unspecified"), name("tax_behavior")
            )
        if "metadata" in p:
            out["metadata"] = rules.check_metadata(p["metadata"], name("metadata"))
        return out

    def _new_price(self, product_id: str, f: Json, livemode: bool) -> Json:
        return {
            "id": self._new_id("price_", 24),
            "object": "price",
            "active": f.get("active", True),
            "billing_scheme": "per_unit",
            "created": int(time.time()),
            "currency": f["currency"],
            "custom_unit_amount": None,
            "livemode": livemode,
            "lookup_key": f.get("lookup_key"),
            "metadata": f.get("metadata", {}),
            "nickname": f.get("nickname"),
            "product": product_id,
            "recurring": f.get("recurring"),
            "tax_behavior": f.get("tax_behavior", "unspecified"),
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if f.get("recurring") else "one_time",
            "unit_amount": f["unit_amount"],
            "unit_amount_decimal": f["unit_amount_decimal"],
        }

    def _insert_price(self, price: Json, lag: float) -> None:
        self.prices[price["id"]] = price
        self._register(price["id"])
        self.prices_by_product.setdefault(price["product"], []).append(price["id"])
        if price.get("lookup_key"):
            self.lookup_keys[price["lookup_key"]] = price["id"]
        self._index("price", price["id"], None, price, lag)

    def _check_lookup_key(self, key: str, transfer: bool, own_id: str | None) -> str | None:
        """Return the id of the price the key must be taken from (on transfer), or None."""
        if len(key) > rules.LOOKUP_KEY_MAX:
            raise invalid(f"The lookup key may have at most {rules.LOOKUP_KEY_MAX} characters.", param="lookup_key")
        holder = self.lookup_keys.get(key)
        if holder is None or holder == own_id:
            return None
        if not transfer:
            raise invalid(
                f"A price (`{holder}`) already uses that lookup key. Pass `transfer_lookup_key=true` to move "
                "it to this price.",
                param="lookup_key",
            )
        return holder

    def _take_lookup_key(self, holder: str | None, lag: float) -> None:
        if holder is None:
            return
        old = self.prices[holder]
        new_old = {**old, "lookup_key": None}
        self.prices[holder] = new_old
        self._index("price", holder, old, new_old, lag)

    def create_price(self, p: Json, livemode: bool, lag: float) -> Commit:
        expand = self.expansions(p, frozenset({"product"}))
        if ("product" in p) == ("product_data" in p):
            if "product" in p:
                raise invalid("You may only specify one of these parameters: product, product_data.", param="product")
            raise invalid("You must specify either `product` or `product_data` when creating a price.", param="product")
        f = self._price_amount_fields(p, "")
        if "active" in p:
            f["active"] = p["active"]
        if "nickname" in p:
            f["nickname"] = p["nickname"]
        holder = None
        if "lookup_key" in p:
            holder = self._check_lookup_key(p["lookup_key"], bool(p.get("transfer_lookup_key")), None)
            f["lookup_key"] = p["lookup_key"]
        new_product_id: str | None = None
        product_fields: Json | None = None
        if "product" in p:
            self.get_product(p["product"], param="product", status=400)
        else:
            pd = p["product_data"]
            if "id" in pd:
                new_product_id = self._check_new_product_id(pd["id"], "product_data[id]")
            product_fields = self._product_fields(pd, "product_data", None)

        def commit() -> Json:
            if product_fields is not None:
                prod = self._new_product(new_product_id, product_fields, livemode)
                self._insert_product(prod, lag)
                product_id = prod["id"]
            else:
                product_id = p["product"]
            self._take_lookup_key(holder, lag)
            price = self._new_price(product_id, f, livemode)
            self._insert_price(price, lag)
            return self.render_price(price, expand)

        return commit

    def retrieve_price(self, pid: str, p: Json) -> Json:
        expand = self.expansions(p, frozenset({"product"}))
        return self.render_price(self.get_price(pid), expand)

    def update_price(self, pid: str, p: Json, lag: float) -> Commit:
        expand = self.expansions(p, frozenset({"product"}))
        price = self.get_price(pid)
        if "currency_options" in p:
            raise unsupported("currency_options")
        fields: Json = {}
        if "active" in p:
            if p["active"] is False and price["active"]:
                prod = self.products.get(price["product"])
                if prod is not None and prod.get("default_price") == pid:
                    raise invalid(
                        "This price cannot be archived because it is the default price of its product. Set "
                        "another default price on the product first.",
                        param="active",
                    )
            fields["active"] = p["active"]
        if "metadata" in p:
            fields["metadata"] = rules.check_metadata(p["metadata"], "metadata", price["metadata"])
        if "nickname" in p:
            fields["nickname"] = p["nickname"]
        if "tax_behavior" in p:
            tb = rules.check_enum(p["tax_behavior"], ("exclusive", "inclusive", "unspecified"), "tax_behavior")
            if price["tax_behavior"] in ("exclusive", "inclusive") and tb != price["tax_behavior"]:
                raise invalid(
                    "tax_behavior cannot be changed once it is set to `inclusive` or `exclusive`.",
                    param="tax_behavior",
                )
            fields["tax_behavior"] = tb
        holder = None
        if "lookup_key" in p:
            holder = self._check_lookup_key(p["lookup_key"], bool(p.get("transfer_lookup_key")), pid)
            fields["lookup_key"] = p["lookup_key"]

        def commit() -> Json:
            self._take_lookup_key(holder, lag)
            new = {**price, **fields}
            old_key = price.get("lookup_key")
            if "lookup_key" in fields and old_key and old_key != fields["lookup_key"]:
                self.lookup_keys.pop(old_key, None)
            if new.get("lookup_key"):
                self.lookup_keys[new["lookup_key"]] = pid
            self.prices[pid] = new
            self._index("price", pid, price, new, lag)
            return self.render_price(new, expand)

        return commit

    # -- lists and search -------------------------------------------------------------------

    @staticmethod
    def _limit(p: Json) -> int:
        limit = p.get("limit", 10)
        if limit < 1:
            raise invalid("This value must be greater than or equal to 1.", param="limit")
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        return int(limit)

    @staticmethod
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

    def _paginate(self, items: Iterable[Json], p: Json, kind: str, objects: dict[str, Json]) -> tuple[list[Json], bool]:
        """`items` is a lazy newest-first stream; read only as far as the page needs."""
        limit = self._limit(p)
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
            cut = self.seq[before]
            newer = list(itertools.takewhile(lambda o: self.seq[o["id"]] > cut, items))
            return newer[-limit:], len(newer) > limit
        if after is not None:
            if after not in objects:
                raise missing_resource(kind, after, param="starting_after", status=400)
            cut = self.seq[after]
            items = (o for o in items if self.seq[o["id"]] < cut)
        for o in items:
            if len(page) == limit:
                return page, True
            page.append(o)
        return page, False

    def list_products(self, p: Json) -> Json:
        expand = self.expansions(p, frozenset({"data.default_price"}))
        ids = p.get("ids")
        if ids is not None and len(ids) > 100:
            raise invalid("You may pass at most 100 ids.", param="ids")
        idset = set(ids) if ids is not None else None
        items = (
            o
            for o in reversed(self.products.values())
            if (idset is None or o["id"] in idset)
            and ("active" not in p or o["active"] == p["active"])
            and ("shippable" not in p or o["shippable"] == p["shippable"])
            and ("type" not in p or o["type"] == p["type"])
            and ("url" not in p or o["url"] == p["url"])
            and self._created_ok(o["created"], p.get("created"))
        )
        page, has_more = self._paginate(items, p, "product", self.products)
        inner = {e.split(".", 1)[1] for e in expand}
        return {
            "object": "list",
            "data": [self.render_product(o, inner) for o in page],
            "has_more": has_more,
            "url": "/v1/products",
        }

    def list_prices(self, p: Json) -> Json:
        expand = self.expansions(p, frozenset({"data.product"}))
        lookup = p.get("lookup_keys")
        if lookup is not None and len(lookup) > 10:
            raise invalid("You may only specify up to 10 lookup_keys.", param="lookup_keys")
        lkset = set(lookup) if lookup is not None else None
        currency = p["currency"].lower() if "currency" in p else None
        rec = p.get("recurring") or {}
        if "product" in p:
            source: Iterable[Json] = (self.prices[i] for i in reversed(self.prices_by_product.get(p["product"], [])))
        else:
            source = reversed(self.prices.values())
        items = (
            o
            for o in source
            if (lkset is None or o["lookup_key"] in lkset)
            and ("active" not in p or o["active"] == p["active"])
            and (currency is None or o["currency"] == currency)
            and ("type" not in p or o["type"] == p["type"])
            and ("interval" not in rec or (o["recurring"] or {}).get("interval") == rec["interval"])
            and ("usage_type" not in rec or (o["recurring"] or {}).get("usage_type") == rec["usage_type"])
            and self._created_ok(o["created"], p.get("created"))
        )
        page, has_more = self._paginate(items, p, "price", self.prices)
        inner = {e.split(".", 1)[1] for e in expand}
        return {
            "object": "list",
            "data": [self.render_price(o, inner) for o in page],
            "has_more": has_more,
            "url": "/v1/prices",
        }

    def _search(self, kind: str, p: Json, url: str) -> Json:
        objects = self.products if kind == "product" else self.prices
        inner_field = "data.default_price" if kind == "product" else "data.product"
        allowed = frozenset({inner_field, "total_count"})
        expand = self.expansions(p, allowed)
        pred = compile_query(p["query"], PRODUCT_SEARCH_FIELDS if kind == "product" else PRICE_SEARCH_FIELDS)
        limit = self._limit(p)
        offset = 0
        if "page" in p:
            try:
                offset = int(base64.urlsafe_b64decode(p["page"].encode()).decode().removeprefix("off:"))
            except ValueError:
                raise invalid("Invalid page token.", param="page") from None
        hits = [o for o in self._search_view(kind, objects) if pred(o)]
        page = hits[offset : offset + limit]
        has_more = len(hits) > offset + limit
        inner = {e.split(".", 1)[1] for e in expand if e.startswith("data.")}
        render = self.render_product if kind == "product" else self.render_price
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

    def search_products(self, p: Json) -> Json:
        return self._search("product", p, "/v1/products/search")

    def search_prices(self, p: Json) -> Json:
        return self._search("price", p, "/v1/prices/search")

    # -- idempotency ------------------------------------------------------------------------

    def idem_get(self, scope: str, key: str) -> IdemRecord | None:
        rec = self.idempotency.get((scope, key))
        if rec is not None and time.time() - rec.created > IDEMPOTENCY_TTL_S:
            del self.idempotency[(scope, key)]
            return None
        return rec

    def idem_put(self, scope: str, key: str, fingerprint: str, status: int, body: bytes) -> None:
        self.idempotency[(scope, key)] = IdemRecord(fingerprint, status, body, time.time())
        self.dirty = True

    # -- persistence ------------------------------------------------------------------------

    def snapshot(self) -> Json:
        return {
            "version": 1,
            "products": list(self.products.values()),
            "prices": list(self.prices.values()),
            "seq": self.seq,
            "next_seq": self.next_seq,
            "deleted_products": sorted(self.deleted_products),
            "idempotency": [
                {
                    "scope": scope,
                    "key": key,
                    "fingerprint": r.fingerprint,
                    "status": r.status,
                    "body": r.body.decode(),
                    "created": r.created,
                }
                for (scope, key), r in self.idempotency.items()
            ],
        }

    def restore(self, data: Json) -> None:
        self.clear()
        self.seq = {k: int(v) for k, v in data.get("seq", {}).items()}
        self.next_seq = int(data.get("next_seq", 1))
        for prod in sorted(data.get("products", []), key=lambda o: self.seq.get(o["id"], 0)):
            self.products[prod["id"]] = prod
            self.prices_by_product.setdefault(prod["id"], [])
        for price in sorted(data.get("prices", []), key=lambda o: self.seq.get(o["id"], 0)):
            self.prices[price["id"]] = price
            self.prices_by_product.setdefault(price["product"], []).append(price["id"])
            if price.get("lookup_key"):
                self.lookup_keys[price["lookup_key"]] = price["id"]
        for oid in list(self.products) + list(self.prices):
            if oid not in self.seq:
                self._register(oid)
        self.deleted_products = set(data.get("deleted_products", []))
        for r in data.get("idempotency", []):
            self.idempotency[(r["scope"], r["key"])] = IdemRecord(
                r["fingerprint"], int(r["status"]), r["body"].encode(), float(r["created"])
            )
        self.dirty = False

    def save(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.snapshot(), fh)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.dirty = False

    def load(self, path: str) -> bool:
        if not os.path.exists(path):
            return False
        with open(path) as fh:
            self.restore(json.load(fh))
        return True
