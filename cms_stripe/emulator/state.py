"""The emulated Stripe account's objects: products, prices, lookup keys, creation order, and the writes
on them (create, update, delete) with Stripe's rules.

Every write is split in two: validation (which may raise `ApiError` and changes nothing) returns a
`Commit` callable that applies the write. The server runs both on its single event-loop thread with
no await in between, so a write is atomic, and it can inject faults between the two halves.

Lists and search live in `queries`, idempotency in `idempotency`, the state file in `persistence`.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import rules
from .errors import ApiError, invalid, missing_resource, unsupported
from .params import UNSET
from .search import LaggedIndex

Json = dict[str, Any]
Commit = Callable[[], Json]

_ALNUM = string.ascii_letters + string.digits


class Store:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._ids = random.Random()
        self._clock = clock
        self.clear()

    def clear(self) -> None:
        self.products: dict[str, Json] = {}
        self.prices: dict[str, Json] = {}
        self.seq: dict[str, int] = {}
        self.next_seq = 1
        self.deleted_products: set[str] = set()
        self.lookup_keys: dict[str, str] = {}
        self.prices_by_product: dict[str, list[str]] = {}
        self.search_index = LaggedIndex(self._clock)
        self.dirty = False

    def rebuild(
        self,
        *,
        products: Iterable[Json],
        prices: Iterable[Json],
        seq: dict[str, int],
        next_seq: int,
        deleted_products: Iterable[str],
    ) -> None:
        """Replace everything with saved objects, rebuilding the derived indexes (creation order,
        prices by product, lookup keys). Objects saved without a sequence number go last."""
        self.clear()
        self.seq = dict(seq)
        self.next_seq = next_seq
        for prod in sorted(products, key=lambda o: self.seq.get(o["id"], 0)):
            self.products[prod["id"]] = prod
            self.prices_by_product.setdefault(prod["id"], [])
        for price in sorted(prices, key=lambda o: self.seq.get(o["id"], 0)):
            self.prices[price["id"]] = price
            self.prices_by_product.setdefault(price["product"], []).append(price["id"])
            if price.get("lookup_key"):
                self.lookup_keys[price["lookup_key"]] = price["id"]
        for oid in list(self.products) + list(self.prices):
            if oid not in self.seq:
                self._register(oid)
        self.deleted_products = set(deleted_products)
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
        """Every write passes here: it marks the state unsaved and tells search about it."""
        self.dirty = True
        self.search_index.record(kind, oid, prev, obj, lag)

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
