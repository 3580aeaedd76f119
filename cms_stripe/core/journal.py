"""The journal of a run's Stripe writes: per product, what Stripe held before and what the run wrote.

Why it exists: `cms-stripe rollback --stripe` undoes a run in Stripe from it, and an operator can read
in the Dagster UI exactly which products a run touched and how.

Write-ahead, so a crash never loses the record of a write that happened:
- an `intent` entry per planned write is recorded before the executor sends anything; it holds the
  `before` snapshot (the ProductState the plan was decided from) and the `after` Stripe will hold
  if the write lands (derived from the plan's target, so it is known before the write);
- a `done` (or `failed`) entry per product is recorded as results come in, before the CMS write-back
  of the same batch, with the price id the product ended on (a new price's id is only known then).
A product whose intent has no `done` (the process died in between) is decided by comparing Stripe
with both snapshots, which is what rollback does for every entry anyway.

Only what the sync manages is recorded: active, the PRODUCT_FIELDS (name, description, images, …),
the whole metadata (the sync replaces it wholesale) and the default price with its terms.
No Dagster here: the sink that stores entries is passed in (see assets/journal.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from cms_stripe.core.mapping import PRODUCT_FIELDS, Target
from cms_stripe.core.state import ProductState

JOURNAL_FORMAT = 1
Phase = Literal["intent", "done", "failed"]
# Entries per stored event: metadata of at most 50 keys of 500 chars makes a worst-case entry ~30 kB,
# a typical one under 1 kB; 200 keeps a typical event well under the ~1 MB a UI page renders easily.
ENTRIES_PER_EVENT = 200


def _norm(name: str, value: Any) -> Any:
    """Field values as Stripe reports them after a write of the sync ("" clears, lists for images)."""
    if name == "images":
        return list(value or [])
    if name == "tax_code" and isinstance(value, Mapping):
        value = value.get("id")
    if value == "":
        return None
    return value


@dataclass(frozen=True)
class PriceTerms:
    """A default price as customers see it: amount, currency, recurrence, tax behavior (and its id)."""

    id: str | None
    currency: str
    unit_amount: int | None
    interval: str | None = None
    interval_count: int | None = None
    tax_behavior: str = "unspecified"

    @classmethod
    def of(cls, price: Mapping[str, Any]) -> PriceTerms:
        rec = price.get("recurring") or {}
        return cls(
            id=price.get("id"),
            currency=str(price.get("currency") or ""),
            unit_amount=price.get("unit_amount"),
            interval=rec.get("interval"),
            interval_count=(rec.get("interval_count") or 1) if rec.get("interval") else None,
            tax_behavior=str(price.get("tax_behavior") or "unspecified"),
        )

    def same_terms(self, other: PriceTerms | None) -> bool:
        if other is None:
            return False
        return (self.currency, self.unit_amount, self.interval, self.interval_count, self.tax_behavior) == (
            other.currency,
            other.unit_amount,
            other.interval,
            other.interval_count,
            other.tax_behavior,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "currency": self.currency,
            "unit_amount": self.unit_amount,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "tax_behavior": self.tax_behavior,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTerms:
        return cls(
            id=data.get("id"),
            currency=data["currency"],
            unit_amount=data.get("unit_amount"),
            interval=data.get("interval"),
            interval_count=data.get("interval_count"),
            tax_behavior=data.get("tax_behavior") or "unspecified",
        )


@dataclass(frozen=True)
class ProductSnapshot:
    """The managed part of one Stripe product."""

    active: bool
    fields: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    default_price: PriceTerms | None = None

    @classmethod
    def of(cls, product: Mapping[str, Any], default_price: Mapping[str, Any] | None = None) -> ProductSnapshot:
        dp = default_price
        if dp is None and isinstance(product.get("default_price"), Mapping):
            dp = product["default_price"]
        terms = PriceTerms.of(dp) if dp else None
        if terms is None and isinstance(product.get("default_price"), str):
            # Not expanded: the id alone still tells which price to make default again.
            terms = PriceTerms(id=product["default_price"], currency="", unit_amount=None)
        return cls(
            active=bool(product.get("active")),
            fields={name: _norm(name, product.get(name)) for name in PRODUCT_FIELDS},
            metadata={str(k): str(v) for k, v in (product.get("metadata") or {}).items()},
            default_price=terms,
        )

    @classmethod
    def of_target(cls, target: Target) -> ProductSnapshot:
        """What Stripe holds once a create/update/reprice/reactivate for `target` has landed."""
        price = None
        if target.price is not None:
            spec = target.price
            price = PriceTerms(
                id=None,
                currency=spec.currency,
                unit_amount=spec.unit_amount,
                interval=spec.interval,
                interval_count=spec.effective_interval_count,
                tax_behavior=spec.effective_tax_behavior,
            )
        return cls(
            active=True,
            fields={name: _norm(name, target.fields.get(name)) for name in PRODUCT_FIELDS},
            metadata=dict(target.metadata),
            default_price=price,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "fields": self.fields,
            "metadata": self.metadata,
            "default_price": self.default_price.to_dict() if self.default_price else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductSnapshot:
        dp = data.get("default_price")
        return cls(
            active=bool(data["active"]),
            fields=dict(data.get("fields") or {}),
            metadata=dict(data.get("metadata") or {}),
            default_price=PriceTerms.from_dict(dp) if dp else None,
        )


@dataclass(frozen=True)
class JournalEntry:
    """One product's write in one run. `before` None = the product did not exist (the run created it)."""

    run_id: str
    cms_id: str
    product_id: str
    kind: str
    phase: Phase
    before: ProductSnapshot | None
    after: ProductSnapshot | None
    price_id: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": JOURNAL_FORMAT,
            "run_id": self.run_id,
            "cms_id": self.cms_id,
            "product_id": self.product_id,
            "kind": self.kind,
            "phase": self.phase,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
            "price_id": self.price_id,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalEntry:
        if data.get("v") != JOURNAL_FORMAT:
            raise ValueError(f"unsupported journal entry format {data.get('v')!r}")
        return cls(
            run_id=data["run_id"],
            cms_id=data["cms_id"],
            product_id=data["product_id"],
            kind=data["kind"],
            phase=data["phase"],
            before=ProductSnapshot.from_dict(data["before"]) if data.get("before") else None,
            after=ProductSnapshot.from_dict(data["after"]) if data.get("after") else None,
            price_id=data.get("price_id"),
            error=data.get("error"),
        )


class JournalSink(Protocol):
    """Stores entries durably before returning (the write-ahead rule depends on it)."""

    def record(self, entries: Sequence[JournalEntry]) -> None: ...


def intent_entries(run_id: str, operations: Iterable[Any], state: Mapping[str, ProductState]) -> list[JournalEntry]:
    """One `intent` per planned write, from the state the plan was decided from."""
    out: list[JournalEntry] = []
    for op in operations:
        if not op.is_write:
            continue
        st = state.get(op.cms_id)
        before = ProductSnapshot.of(st.product, st.default_price) if st is not None and st.product else None
        if op.kind == "archive":
            after = replace(before, active=False) if before else None
        else:
            after = ProductSnapshot.of_target(op.target)
        out.append(JournalEntry(run_id, op.cms_id, op.product_id, op.kind, "intent", before, after))
    return out


def result_entries(run_id: str, results: Iterable[Any]) -> list[JournalEntry]:
    """`done` / `failed` entries for finished writes (no-ops and never-attempted products are left out)."""
    out: list[JournalEntry] = []
    for r in results:
        if r.outcome in ("noop", "skipped"):
            continue
        phase: Phase = "failed" if r.outcome == "failed" else "done"
        out.append(JournalEntry(run_id, r.cms_id, r.product_id or "", r.kind, phase, None, None, r.price_id, r.error))
    return out


def chunks(entries: Sequence[JournalEntry], size: int = ENTRIES_PER_EVENT) -> list[Sequence[JournalEntry]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


@dataclass
class ProductJournal:
    """Everything one run (with its re-executions) recorded for one product."""

    cms_id: str
    product_id: str
    kind: str
    before: ProductSnapshot | None
    after: ProductSnapshot | None
    phase: Phase = "intent"
    price_id: str | None = None

    @property
    def created(self) -> bool:
        return self.before is None


def merge(entries: Iterable[JournalEntry]) -> dict[str, ProductJournal]:
    """Per product: the FIRST intent's `before` (a resumed attempt reads a state the run already
    changed), the latest intent's `after`, and the latest result."""
    out: dict[str, ProductJournal] = {}
    for e in entries:
        pj = out.get(e.product_id)
        if e.phase == "intent":
            if pj is None:
                out[e.product_id] = ProductJournal(e.cms_id, e.product_id, e.kind, e.before, e.after)
            else:
                pj.after = e.after
            continue
        if pj is None:
            # Cannot happen for a run of this version (intents are stored before any write); a result
            # without its `before` could not be undone safely anyway.
            continue
        pj.phase = e.phase
        if e.price_id:
            pj.price_id = e.price_id
    for pj in out.values():
        if pj.after is not None and pj.after.default_price is not None and pj.price_id and pj.after.active:
            pj.after = replace(pj.after, default_price=replace(pj.after.default_price, id=pj.price_id))
    return out
