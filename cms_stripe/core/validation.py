"""Row-by-row validation of a batch of CMS rows, and the quarantine write-back.

Everything here decides per row: one bad value, one duplicated id or one pair of rows tied to the
same Stripe product quarantines those rows with a reason, never the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from cms_stripe.core.catalog import (
    SYNC_ARCHIVED,
    SYNC_QUARANTINED,
    SYNC_SYNCED,
    CmsProduct,
    SyncLink,
    SyncUpdate,
    content_hash,
    quarantine_hash,
)
from cms_stripe.core.error_codes import validation_code
from cms_stripe.core.errors import Severity
from cms_stripe.core.identity import PRODUCT_PREFIX, derived_product_id, product_id_for
from cms_stripe.core.mapping import RowIssue, validate_product

Quarantine = list[tuple[CmsProduct, list[RowIssue]]]

REASON_MAX = 2000


def split_valid(
    products: Sequence[CmsProduct],
    *,
    link_holders: Iterable[CmsProduct] = (),
    tax_behavior: str | None = None,
) -> tuple[list[CmsProduct], Quarantine]:
    """(valid rows, quarantined rows with their issues), in input order.

    `link_holders`: other CMS rows (outside this batch) that name one of the batch's Stripe products;
    with the batch itself they decide which row of a shared `stripe_product_id` keeps it.
    """
    issues: dict[int, list[RowIssue]] = {
        i: validate_product(p, tax_behavior=tax_behavior) for i, p in enumerate(products)
    }
    for i, issue in duplicate_id_issues(products).items():
        issues[i].append(issue)
    for i, issue in shared_link_issues(products, link_holders).items():
        issues[i].append(issue)
    valid = [p for i, p in enumerate(products) if not issues[i]]
    quarantined = [(p, issues[i]) for i, p in enumerate(products) if issues[i]]
    return valid, quarantined


def duplicate_id_issues(products: Sequence[CmsProduct]) -> dict[int, RowIssue]:
    """A CMS id read twice (a table without a primary key, a view): every copy is quarantined, since
    the write-back by id could not tell them apart."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(products):
        if p.id:
            positions[p.id].append(i)
    out: dict[int, RowIssue] = {}
    for cms_id, where in positions.items():
        if len(where) > 1:
            for i in where:
                out[i] = RowIssue(
                    "duplicate_cms_id", "id", f"{len(where)} CMS rows share the id {cms_id!r:.80}", Severity.HIGH
                )
    return out


def _stored_link_in_sync(p: CmsProduct) -> bool:
    return p.sync_status in (SYNC_SYNCED, SYNC_ARCHIVED) and p.sync_hash == content_hash(p)


def choose_keeper(product_id: str, rows: Sequence[CmsProduct]) -> CmsProduct | None:
    """The row a shared Stripe product belongs to, or None when the CMS alone cannot tell.

    In order: the row the product's id was derived from (the sync made it for that row); the only row
    whose stored link is in sync with its content; the only oldest row by `created_at`. Without one
    of these (copied rows both look synced, no timestamps), guessing could write one row's price into
    the other's product, so nobody keeps it until an editor clears the copy's link.
    """
    derived = [p for p in rows if derived_product_id(p.id) == product_id]
    if len(derived) == 1:
        return derived[0]
    in_sync = [p for p in rows if _stored_link_in_sync(p)]
    if len(in_sync) == 1:
        return in_sync[0]
    dated = sorted((p for p in rows if p.created_at is not None), key=lambda p: p.created_at)  # type: ignore[arg-type, return-value]
    if len(dated) == len(rows) and (len(dated) == 1 or dated[0].created_at != dated[1].created_at):
        return dated[0]
    return None


def holder_queries(products: Sequence[CmsProduct]) -> tuple[list[str], list[str]]:
    """What to look up to find other rows tied to the batch's Stripe products: the product ids the
    batch writes to (stored or derived), and the CMS ids whose derived product a batch row names."""
    targets = sorted({product_id_for(p) for p in products if p.id})
    owners = sorted(
        {
            t[len(PRODUCT_PREFIX) :]
            for t in targets
            if t.startswith(PRODUCT_PREFIX) and derived_product_id(t[len(PRODUCT_PREFIX) :]) == t
        }
        - {p.id for p in products}
    )
    return targets, owners


def shared_link_issues(products: Sequence[CmsProduct], holders: Iterable[CmsProduct] = ()) -> dict[int, RowIssue]:
    """Rows of the batch that would write to a Stripe product another CMS row also writes to: an
    editor duplicated a row with its Stripe ids, or cleared the original's. The product is compared
    as the planner will use it (stripped, derived when blank), so no two rows ever write one product.
    The keeper (see `choose_keeper`) syncs on; every other row is quarantined naming the keeper."""
    out: dict[int, RowIssue] = {}
    by_id = {p.id: p for p in holders if p.id}
    by_id.update({p.id: p for p in products if p.id})
    sharing: dict[str, list[CmsProduct]] = defaultdict(list)
    for p in by_id.values():
        sharing[product_id_for(p)].append(p)
    for product_id, rows in sharing.items():
        if len(rows) < 2:
            continue
        keeper = choose_keeper(product_id, rows)
        others = ", ".join(
            repr(p.id[:80]) for p in sorted(rows, key=lambda p: p.id) if keeper is None or p.id != keeper.id
        )
        for i, p in enumerate(products):
            if product_id_for(p) != product_id or (keeper is not None and p.id == keeper.id):
                continue
            if keeper is not None:
                message = (
                    f"Stripe product {product_id} belongs to CMS row {keeper.id!r:.80}; clear stripe_product_id and "
                    "stripe_price_id on this row to give it its own product"
                )
            else:
                message = (
                    f"Stripe product {product_id} is named by CMS rows {others} and the CMS cannot tell whose it "
                    "is; clear stripe_product_id and stripe_price_id on the copy"
                )
            out[i] = RowIssue("shared_stripe_product_id", "stripe_product_id", message, Severity.HIGH)
    return out


def quarantine_reason(issues: Sequence[RowIssue]) -> str:
    """`HIGH VALIDATION_ERROR[title_missing] (title): title is missing or blank; ...` (see core.error_codes)."""
    return "; ".join(f"{i.severity.value} {validation_code(i.code)} ({i.field}): {i.message}" for i in issues)[
        :REASON_MAX
    ]


def quarantine_updates(quarantined: Quarantine, now: datetime) -> list[SyncUpdate]:
    """The write-back of quarantined rows. It keeps what the row had: its Stripe ids stay, so a row
    fixed later syncs into the product it already had instead of a new one (a duplicate). Rows already
    quarantined with the same reason and content are left alone, so a rerun writes nothing."""
    updates = []
    for p, issues in quarantined:
        if not p.id:
            continue  # nothing to write back to; the run's report lists it
        reason, qhash = quarantine_reason(issues), quarantine_hash(p)
        if p.sync_status == SYNC_QUARANTINED and p.sync_error == reason and p.sync_hash == qhash:
            continue
        updates.append(
            SyncUpdate(
                id=p.id,
                sync_status=SYNC_QUARANTINED,
                stripe_product_id=p.stripe_product_id,
                stripe_price_id=p.stripe_price_id,
                sync_error=reason,
                synced_at=now,
                # The hash marks this content and link as handled: the change sensor ignores the
                # write-back, and an edit that fixes the row (its content, or clearing its link as the
                # reason asks) changes the hash and brings it back.
                sync_hash=qhash,
                expected=SyncLink.of(p),
            )
        )
    return updates


def md_cell(text: object) -> str:
    """CMS text inside a Markdown table cell: no pipes, no line breaks, no control characters."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return cleaned.replace("|", "\\|")[:300]
