"""Stripe products the CMS does not point at: orphans to adopt, derived duplicates to archive.

Orphan: an ACTIVE product carrying `metadata.cms_id` of a CMS row that has no `stripe_product_id` and
whose derived product (identity.derived_product_id) does not exist — made by hand, or by another
tool. Creating would duplicate it, so the row adopts it instead: it is planned as if the row named it
(update / reprice to the CMS content) and the write-back stores its id. A product a run created
with the derived id is found by that id anyway (a lost write-back needs nothing from here).

An archived product carrying the row's cms_id is never adopted: someone may have archived it on
purpose, and adopting would reactivate and reprice it. A log line names it for a human to decide,
and the row is created as usual at its derived id (the reconciliation counts only active products,
so the pair is not reported as a duplicate). When several active products carry the cms_id, the
oldest is adopted (the one customers have known longest) and the log line names the others.

How orphans are found: Stripe's List cannot filter by metadata and Search is eventually consistent
(about a minute behind, longer in incidents), so neither answers "is there a product with this
cms_id?" reliably. Only when the plan would create something, the whole account is listed once,
100 products per call without `expand` (the default price is not needed to decide). Pages are
streamed: of each product only id, active, created and cms_id are kept, and only when the cms_id is
one of the rows about to be created, so memory grows with those rows, not with the account.
Remaining cost: one list pass per run that creates — ceil(account products / 100) List calls (1,000
for 100,000 products), paced by the gateway's limiter like any read.
Limit: a product made by hand while a run is between that listing and its create is not seen; the
next catalog reconciliation reports the pair as a duplicate.

Derived duplicate: a row that names a product (its `stripe_product_id`) other than its derived one,
while a live derived product carrying its cms_id exists — the sync created it before an editor linked
the row elsewhere. The row's product is the one it names; the derived one is archived with a log
line (and journaled, so a rollback can bring it back).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.identity import derived_product_id, idempotency_key
from cms_stripe.core.journal import JournalEntry, JournalSink, ProductSnapshot
from cms_stripe.core.mapping import META_CMS_ID
from cms_stripe.core.state import ProductState

LIST_CHUNK = 100


class OrphanReader(Protocol):
    def iter_all_products(self, expand_default_price: bool = True) -> Iterator[dict[str, Any]]: ...
    def list_products(self, ids: Sequence[str], expand_default_price: bool = True) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Adoption:
    cms_id: str
    product_id: str
    others: tuple[str, ...] = ()  # further live products with the same cms_id (left for a human)


def index_by_cms_id(products: Iterable[Mapping[str, Any]], wanted: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """cms id → the products carrying it, for the cms ids in `wanted` only.

    `products` is consumed as a stream (the account listing, page by page); each kept product is cut
    down to what adoption decides on (id, active, created, cms_id), so the index stays as small as
    the rows being planned for create whatever the size of the account."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sp in products:
        cms_id = (sp.get("metadata") or {}).get(META_CMS_ID)
        if cms_id and str(cms_id) in wanted:
            out[str(cms_id)].append(
                {
                    "id": sp["id"],
                    "active": bool(sp.get("active")),
                    "created": sp.get("created"),
                    "metadata": {META_CMS_ID: str(cms_id)},
                }
            )
    return dict(out)


def _pick(candidates: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """A live product before an archived one, then the oldest (the one customers have known longest).
    adopt_orphans passes live ones only, so this is "the oldest, then the smallest id"."""
    return min(candidates, key=lambda sp: (not sp.get("active"), int(sp.get("created") or 0), str(sp["id"])))


def adoption_candidates(products: Sequence[CmsProduct], state: Mapping[str, ProductState]) -> list[CmsProduct]:
    """Live rows that would be created: no product named, derived product absent."""
    out = []
    for p in products:
        if p.stripe_product_id and p.stripe_product_id.strip():
            continue
        st = state.get(p.id)
        if p.should_be_active and (st is None or not st.exists):
            out.append(p)
    return out


def adopt_orphans(
    reader: OrphanReader,
    products: Sequence[CmsProduct],
    state: Mapping[str, ProductState],
    *,
    index: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[CmsProduct], list[Adoption]]:
    """The rows to plan, with each orphan's id set as the row's `stripe_product_id`.

    `index`: cms id → products, when the caller already listed the account (else it is listed here,
    and only when some row would be created). Archived products carrying a candidate's cms_id are
    not adopted; `log` receives a line naming them."""
    candidates = adoption_candidates(products, state)
    if not candidates:
        return list(products), []
    if index is None:
        index = index_by_cms_id(reader.iter_all_products(expand_default_price=False), {p.id for p in candidates})
    adopted: dict[str, Adoption] = {}
    for p in candidates:
        found = [sp for sp in index.get(p.id, ()) if sp["id"] != derived_product_id(p.id)]
        live = [sp for sp in found if sp.get("active")]
        archived = sorted(str(sp["id"]) for sp in found if not sp.get("active"))
        if archived:
            instead = (
                "another active product carrying it is adopted instead"
                if live
                else f"the row is created as usual at {derived_product_id(p.id)}"
            )
            log(
                f"not adopting archived Stripe product{'s' if len(archived) > 1 else ''} {', '.join(archived)} "
                f"for CMS row {p.id}: it carries the row's cms_id but was archived, perhaps on purpose; {instead}. "
                "To use it, reactivate it in Stripe and set the row's stripe_product_id to it."
            )
        if not live:
            continue
        chosen = _pick(live)
        others = tuple(sorted(str(sp["id"]) for sp in live if sp["id"] != chosen["id"]))
        adopted[p.id] = Adoption(p.id, str(chosen["id"]), others)
    if not adopted:
        return list(products), []
    rows = [replace(p, stripe_product_id=adopted[p.id].product_id) if p.id in adopted else p for p in products]
    return rows, list(adopted.values())


def derived_duplicates(reader: OrphanReader, products: Sequence[CmsProduct]) -> list[tuple[CmsProduct, dict[str, Any]]]:
    """Live derived products of rows that name another product (one list call per 100 such rows)."""
    linked = {
        derived_product_id(p.id): p
        for p in products
        if p.stripe_product_id
        and p.stripe_product_id.strip()
        and p.stripe_product_id.strip() != derived_product_id(p.id)
    }
    ids = sorted(linked)
    out: list[tuple[CmsProduct, dict[str, Any]]] = []
    for i in range(0, len(ids), LIST_CHUNK):
        for sp in reader.list_products(ids[i : i + LIST_CHUNK], expand_default_price=True):
            row = linked.get(sp["id"])
            if row is not None and sp.get("active") and (sp.get("metadata") or {}).get(META_CMS_ID) == row.id:
                out.append((row, sp))
    return out


class ArchiveWriter(Protocol):
    def update_product(self, product_id: str, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]: ...


def archive_duplicates(
    gateway: ArchiveWriter,
    duplicates: Sequence[tuple[CmsProduct, dict[str, Any]]],
    *,
    run_id: str,
    journal: JournalSink | None,
    log: Callable[[str], None],
) -> int:
    """Archive each derived duplicate (journaled first); returns how many were archived."""
    if not duplicates:
        return 0
    entries = []
    for row, sp in duplicates:
        before = ProductSnapshot.of(sp)
        entries.append(
            JournalEntry(run_id, row.id, sp["id"], "archive-duplicate", "intent", before, replace(before, active=False))
        )
    if journal is not None:
        journal.record(entries)
    done = 0
    for row, sp in duplicates:
        key = idempotency_key("archive-duplicate", sp["id"], f"{row.stripe_product_id}:{sp.get('updated') or ''}")
        gateway.update_product(sp["id"], {"active": False}, key)
        log(
            f"archived {sp['id']}: the sync created it for CMS row {row.id}, which now names "
            f"Stripe product {row.stripe_product_id}"
        )
        done += 1
    return done
