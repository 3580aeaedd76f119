"""The plan: one decided operation per CMS row, as plain data that can be printed, saved and applied later.

Decisions compare the CMS row's desired state (mapping.Target) with what Stripe holds, field by
field, so an unchanged catalog plans zero writes and drift made by hand in the Dashboard is undone —
unless STRIPE_DASHBOARD_EDITS=keep: then a product whose CMS row has not changed since the sync last
wrote it (its `cms_hash` metadata is the row's content hash) keeps its Dashboard edits, until the row
changes again. The hash is written in the same update as the fields and the default price, so a
crash mid-write never looks like a Dashboard edit.

Reprice order (each step leaves a state the next plan completes):
  1. new price, stamped with the row's cms_id and price fingerprint in its metadata (and, with
     STRIPE_PRICE_LOOKUP_KEYS on, the row's lookup key via transfer_lookup_key) — a crash here: the
     next read sees a default price that does not match, looks for a live price of the product that
     the sync made for this content (by lookup key, or by listing the product's prices) and reuses
     it; the new price itself is the marker that survives the crash;
  2. product update: default_price → new price, changed fields, and the `cms_prev_price` marker —
     a crash here: the marker makes the next plan finish the reprice;
  3. archive the old price (and any other live price of the product);
  4. clear the marker.

Rows that are not live in the CMS (draft, archived, soft-deleted) archive their Stripe product when it
exists and is active; they never create one (an inactive product nobody asked for is clutter, and a
later publish creates it with its then-current content).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, cast

from cms_stripe.core.basis import decision_basis
from cms_stripe.core.catalog import (
    CmsProduct,
)
from cms_stripe.core.currency import from_minor_units
from cms_stripe.core.errors import Severity
from cms_stripe.core.identity import derived_product_id
from cms_stripe.core.mapping import (
    META_HASH,
    META_PREV_PRICE,
    RowIssue,
    Target,
    target_for,
    validate_product,
)
from cms_stripe.core.settings import DASHBOARD_KEEP, dashboard_edits, price_lookup_keys
from cms_stripe.core.state import ProductState

OperationKind = Literal["create", "update", "reprice", "archive", "reactivate", "noop"]
KINDS: tuple[OperationKind, ...] = ("create", "update", "reprice", "archive", "reactivate", "noop")
# 2: operations record what they were decided from (`basis`); plans name their Stripe account and
# mode. Version 1 plans lack both, so `apply` cannot check them and refuses them.
PLAN_VERSION = 2


def _cell(text: str) -> str:
    """CMS text inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True, slots=True)
class Operation:
    """What to do to one Stripe product. Everything the executor needs, nothing it must re-read."""

    kind: OperationKind
    cms_id: str
    product_id: str
    reason: str
    content_hash: str
    target: Target
    # Product fields to write (changed ones only; `active` included for reactivate/archive).
    product_params: dict[str, Any] = field(default_factory=dict)
    # Reprice: the price to make default (one the sync made earlier for this content), else a new one is created.
    reuse_price_id: str | None = None
    new_price: bool = False
    # The default price before this operation (archived after the switch).
    old_price_id: str | None = None
    # Prices left live by an interrupted reprice (from the `cms_prev_price` marker).
    stale_price_ids: tuple[str, ...] = ()
    # The current default price lacks the lookup key (lookup keys on): set it (no new price needed).
    set_lookup_price_id: str | None = None
    # Price id that is current after this operation when it is known at plan time.
    price_id: str | None = None
    # Stripe's `updated` of the product when read: part of every idempotency key, so writing the same
    # values again after a later change (A → B → A) is a new write, not a replay of the first one.
    state_version: str = ""
    # What the decision was made from: {"cms": ..., "stripe": ...} (see core.basis). Empty for
    # operations the executor re-plans mid-run, which are never saved.
    basis: dict[str, Any] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.kind != "noop"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cms_id": self.cms_id,
            "product_id": self.product_id,
            "reason": self.reason,
            "content_hash": self.content_hash,
            "target": self.target.to_dict(),
            "product_params": self.product_params,
            "reuse_price_id": self.reuse_price_id,
            "new_price": self.new_price,
            "old_price_id": self.old_price_id,
            "stale_price_ids": list(self.stale_price_ids),
            "set_lookup_price_id": self.set_lookup_price_id,
            "price_id": self.price_id,
            "state_version": self.state_version,
            "basis": self.basis,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operation:
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        return cls(
            kind=cast(OperationKind, kind),
            cms_id=data["cms_id"],
            product_id=data["product_id"],
            reason=data.get("reason", ""),
            content_hash=data["content_hash"],
            target=Target.from_dict(data["target"]),
            product_params=dict(data.get("product_params") or {}),
            reuse_price_id=data.get("reuse_price_id"),
            new_price=bool(data.get("new_price")),
            old_price_id=data.get("old_price_id"),
            stale_price_ids=tuple(data.get("stale_price_ids") or ()),
            set_lookup_price_id=data.get("set_lookup_price_id"),
            price_id=data.get("price_id"),
            state_version=str(data.get("state_version") or ""),
            basis=dict(data.get("basis") or {}),
        )


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A row left out of the plan, with every reason."""

    cms_id: str
    issues: tuple[RowIssue, ...]

    @property
    def message(self) -> str:
        return "; ".join(f"{i.field}: {i.message}" for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {"cms_id": self.cms_id, "issues": [i.to_dict() for i in self.issues]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quarantined:
        return cls(data["cms_id"], tuple(RowIssue.from_dict(i) for i in data["issues"]))


@dataclass
class Plan:
    operations: list[Operation]
    quarantined: list[Quarantined] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The Stripe account and mode ("test"/"live") the plan was read from; set for plans meant to be
    # applied later (`cms-stripe plan`, dry runs), checked by `cms-stripe apply`.
    account_id: str | None = None
    mode: str | None = None

    def counts(self) -> dict[str, int]:
        c = Counter(op.kind for op in self.operations)
        out: dict[str, int] = {k: c.get(k, 0) for k in KINDS}
        out["quarantined"] = len(self.quarantined)
        return out

    @property
    def writes(self) -> list[Operation]:
        return [op for op in self.operations if op.is_write]

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(
            {
                "version": PLAN_VERSION,
                "created_at": self.created_at.isoformat(),
                "account_id": self.account_id,
                "mode": self.mode,
                "operations": [op.to_dict() for op in self.operations],
                "quarantined": [q.to_dict() for q in self.quarantined],
            },
            indent=indent,
            sort_keys=True,
        )

    def write_json(self, fh: TextIO, indent: int = 2) -> None:
        """Exactly the text of `to_json(indent)`, written one operation at a time: the whole text of a
        big plan, and the dicts it is made from, took several times the memory of the plan itself."""
        pad = " " * indent
        head: dict[str, Any] = {
            "version": PLAN_VERSION,
            "created_at": self.created_at.isoformat(),
            "account_id": self.account_id,
            "mode": self.mode,
        }
        items: dict[str, Iterable[Operation | Quarantined]] = {
            "operations": self.operations,
            "quarantined": self.quarantined,
        }
        fh.write("{")
        for n, key in enumerate(sorted([*head, *items])):
            fh.write(("\n" if n == 0 else ",\n") + pad + json.dumps(key) + ": ")
            if key in head:
                fh.write(json.dumps(head[key], sort_keys=True))
                continue
            count = 0
            for item in items[key]:
                text = json.dumps(item.to_dict(), indent=indent, sort_keys=True)
                # A list item two levels down: every line of its own dump moves right by two levels.
                fh.write(("[\n" if count == 0 else ",\n") + "\n".join(pad * 2 + line for line in text.split("\n")))
                count += 1
            fh.write("\n" + pad + "]" if count else "[]")
        fh.write("\n}")

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {data.get('version')!r}")
        return cls(
            operations=[Operation.from_dict(o) for o in data["operations"]],
            quarantined=[Quarantined.from_dict(q) for q in data.get("quarantined", [])],
            created_at=datetime.fromisoformat(data["created_at"]),
            account_id=data.get("account_id"),
            mode=data.get("mode"),
        )

    def summary_markdown(self, limit: int = 50) -> str:
        counts = self.counts()
        lines = [
            f"**Plan** ({self.created_at:%Y-%m-%d %H:%M:%S} UTC): "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            "",
            *([f"Stripe account {self.account_id} ({self.mode} mode)", ""] if self.account_id else []),
            "| kind | count |",
            "|---|---:|",
            *(f"| {k} | {v} |" for k, v in counts.items()),
        ]
        writes = self.writes
        if writes:
            lines += ["", "| CMS id | operation | Stripe product | reason |", "|---|---|---|---|"]
            lines += [
                f"| {_cell(op.cms_id)} | {op.kind} | {op.product_id} | {_cell(op.reason)} |" for op in writes[:limit]
            ]
            if len(writes) > limit:
                lines.append(f"| … | {len(writes) - limit} more | | |")
        if self.quarantined:
            lines += ["", "| quarantined CMS id | reasons |", "|---|---|"]
            lines += [f"| {_cell(q.cms_id)} | {_cell(q.message)} |" for q in self.quarantined[:limit]]
            if len(self.quarantined) > limit:
                lines.append(f"| … | {len(self.quarantined) - limit} more |")
        return "\n".join(lines)


# -- deciding -------------------------------------------------------------------------------------


def _describe_price(price: Mapping[str, Any] | None) -> str:
    if not price:
        return "none"
    cur = str(price.get("currency") or "")
    amount = price.get("unit_amount")
    text = f"{from_minor_units(amount, cur)} {cur.upper()}" if isinstance(amount, int) and cur else "?"
    rec = price.get("recurring")
    if rec:
        text += f"/{rec.get('interval_count') or 1} {rec.get('interval')}"
    return text


def edited_in_stripe(target: Target, product: Mapping[str, Any]) -> bool:
    """The sync last wrote this very CMS content into the product: any difference was made in Stripe."""
    return bool((product.get("metadata") or {}).get(META_HASH) == target.content_hash)


def plan_product(
    target: Target,
    state: ProductState,
    *,
    keep_dashboard_edits: bool = False,
    basis: dict[str, Any] | None = None,
) -> Operation | RowIssue:
    """The one operation that brings this product to its target (or why it cannot be planned).
    `basis`: what the decision is made from (core.basis), recorded on the operation."""
    product = state.product
    version = str(product.get("updated") or product.get("created") or "") if product else ""
    base: dict[str, Any] = {
        "cms_id": target.cms_id,
        "product_id": target.product_id,
        "content_hash": target.content_hash,
        "target": target,
        "state_version": version,
        "basis": {} if basis is None else basis,
    }
    dp = state.default_price
    current_price_id = dp.get("id") if dp else None

    if not target.active:
        if product is None:
            return Operation(kind="noop", reason="not live in the CMS and absent from Stripe", **base)
        if product.get("active"):
            return Operation(
                kind="archive",
                reason="unpublished, archived or deleted in the CMS",
                product_params={"active": False},
                price_id=current_price_id,
                **base,
            )
        return Operation(kind="noop", reason="already archived", price_id=current_price_id, **base)

    assert target.price is not None
    if product is None:
        if target.adopted and target.product_id != derived_product_id(target.cms_id):
            return RowIssue(
                "stripe_product_missing",
                "stripe_product_id",
                f"the row names Stripe product {target.product_id}, which does not exist in this account; "
                "clear stripe_product_id in the CMS to create a new product",
                Severity.HIGH,
            )
        return Operation(kind="create", reason="not in Stripe yet", new_price=True, **base)

    params = target.product_diff(product)
    meta = params.get("metadata")
    if meta is not None:
        # The reprice marker is cleared only after the old price is archived (step 4).
        meta.pop(META_PREV_PRICE, None)
        if not meta:
            params.pop("metadata")
    reasons: list[str] = []
    if params:
        reasons.append(", ".join(sorted(params)) + " changed")

    marker = (product.get("metadata") or {}).get(META_PREV_PRICE)
    stale = tuple(sorted({m for m in str(marker or "").split(",") if m}))
    price_ok = bool(dp and dp.get("active") and target.price.matches(dp))
    reuse = None
    new_price = False
    set_lookup = None
    price_id = current_price_id
    if price_ok:
        assert dp is not None
        # With lookup keys off an existing key is left alone (it names this very price content).
        if target.lookup_key and dp.get("lookup_key") != target.lookup_key:
            set_lookup = current_price_id
            reasons.append("price lookup key missing")
    else:
        lp = state.lookup_price
        if lp and lp.get("active") and lp.get("product") == target.product_id and target.price.matches(lp):
            reuse = lp["id"]
            price_id = reuse
        else:
            new_price = True
            price_id = None
        reasons.append(f"price {_describe_price(dp)} → {_describe_price(target.price.params())}")
    if stale:
        reasons.append("finish interrupted reprice")

    drifted = bool(params) or not price_ok or not product.get("active")
    if keep_dashboard_edits and not stale and drifted and edited_in_stripe(target, product):
        return Operation(
            kind="noop",
            reason="edited in Stripe since the last sync: kept (STRIPE_DASHBOARD_EDITS=keep); "
            + "; ".join(reasons or ["archived by hand"]),
            price_id=current_price_id,
            **base,
        )

    kind: OperationKind
    if not product.get("active"):
        kind = "reactivate"
        params["active"] = True
        reasons.insert(0, "live again in the CMS")
    elif not price_ok or stale:
        kind = "reprice"
    elif params or set_lookup:
        kind = "update"
    else:
        return Operation(kind="noop", reason="in sync", price_id=current_price_id, **base)
    return Operation(
        kind=kind,
        reason="; ".join(reasons),
        product_params=params,
        reuse_price_id=reuse,
        new_price=new_price,
        old_price_id=current_price_id if not price_ok else None,
        stale_price_ids=stale,
        set_lookup_price_id=set_lookup,
        price_id=price_id,
        **base,
    )


@dataclass
class PlanPage:
    """One page's share of a plan (see PlanStream)."""

    operations: list[Operation] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)


class PlanStream:
    """The planner, one page of rows at a time (`build_plan` is this fed one page).

    Between pages it keeps only which CMS row each Stripe product went to (so a second row naming
    the same product is quarantined whichever page it is in) and the counts: each page's Targets
    and operations go to the caller and are dropped with the page, so planning a catalog page by
    page holds one page, not one Target per row.
    """

    def __init__(
        self, *, tax_behavior: str | None = None, lookup_keys: bool | None = None, dashboard: str | None = None
    ) -> None:
        self.tax_behavior = tax_behavior
        self.lookup_keys = price_lookup_keys() if lookup_keys is None else lookup_keys
        self.keep_dashboard_edits = (dashboard_edits() if dashboard is None else dashboard) == DASHBOARD_KEEP
        # Stripe product id → the CMS row it went to: the one per-row record kept across pages.
        self._product_owner: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def add(
        self, products: Iterable[CmsProduct], state: Mapping[str, ProductState], *, validated: bool = False
    ) -> PlanPage:
        """Validate each row of the page, then plan one operation per valid row against its Stripe state.

        `validated`: every row already passed `validate_product` with this stream's tax behavior
        (a `ValidationStream` page), so the same pure check is not run twice."""
        out = PlanPage()
        for p in products:
            try:
                self._plan_row(p, state, out, validated)
            except Exception as exc:  # a value no check foresaw must cost one row, not the run
                issue = RowIssue(
                    "unexpected_value", "row", f"planning failed on this row: {type(exc).__name__}: {exc}"[:300]
                )
                out.quarantined.append(Quarantined(p.id, (issue,)))
        self._counts.update(op.kind for op in out.operations)
        self._counts["quarantined"] += len(out.quarantined)
        return out

    def _plan_row(self, p: CmsProduct, state: Mapping[str, ProductState], out: PlanPage, validated: bool) -> None:
        tax_behavior = self.tax_behavior
        issues = [] if validated else validate_product(p, tax_behavior=tax_behavior)
        if issues:
            out.quarantined.append(Quarantined(p.id, tuple(issues)))
            return
        target = target_for(p, tax_behavior=tax_behavior, lookup_keys=self.lookup_keys)
        other = self._product_owner.get(target.product_id)
        if other is not None:
            # Two rows naming one Stripe product would overwrite each other on every run.
            out.quarantined.append(
                Quarantined(
                    p.id,
                    (
                        RowIssue(
                            "stripe_product_shared",
                            "stripe_product_id",
                            f"Stripe product {target.product_id} is already synced from CMS row {other}",
                        ),
                    ),
                )
            )
            return
        st = state.get(p.id) or ProductState(target.product_id)
        decided = plan_product(
            target,
            st,
            keep_dashboard_edits=self.keep_dashboard_edits,
            basis=decision_basis(p, st, target.content_hash),
        )
        # Claimed only once decided: a row that failed above leaves the product to no one.
        self._product_owner[target.product_id] = p.id
        if isinstance(decided, RowIssue):
            out.quarantined.append(Quarantined(p.id, (decided,)))
        else:
            out.operations.append(decided)

    def counts(self) -> dict[str, int]:
        """`Plan.counts()` over every page added so far."""
        out: dict[str, int] = {k: self._counts.get(k, 0) for k in KINDS}
        out["quarantined"] = self._counts.get("quarantined", 0)
        return out


def build_plan(
    products: Iterable[CmsProduct],
    state: Mapping[str, ProductState],
    *,
    tax_behavior: str | None = None,
    now: datetime | None = None,
    lookup_keys: bool | None = None,
    dashboard: str | None = None,
) -> Plan:
    """Validate every row, then plan one operation per valid row against the Stripe state read for it.

    `lookup_keys`: give new prices a lookup key; None = the STRIPE_PRICE_LOOKUP_KEYS setting.
    `dashboard`: overwrite or keep products edited in Stripe; None = the STRIPE_DASHBOARD_EDITS setting.
    """
    page = PlanStream(tax_behavior=tax_behavior, lookup_keys=lookup_keys, dashboard=dashboard).add(products, state)
    return Plan(page.operations, page.quarantined, now or datetime.now(UTC))
