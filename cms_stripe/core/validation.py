"""Row-by-row validation of a batch of CMS rows, and the quarantine write-back.

Everything here decides per row: one bad value, one duplicated id or one pair of rows tied to the
same Stripe product quarantines those rows with a reason, never the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from cms_stripe.core.catalog import SYNC_QUARANTINED, CmsProduct, SyncLink, SyncUpdate, content_hash
from cms_stripe.core.errors import Severity
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


def _keeper_order(p: CmsProduct) -> tuple[int, datetime, str]:
    # The oldest row keeps the product: an editor's copy is newer than what it copied.
    created = p.created_at
    return (0, created, p.id) if created is not None else (1, datetime.max.replace(tzinfo=None), p.id)


def shared_link_issues(products: Sequence[CmsProduct], holders: Iterable[CmsProduct] = ()) -> dict[int, RowIssue]:
    """Rows of the batch that name a Stripe product (or price) another CMS row also names: an editor
    duplicated a row with its Stripe ids. The oldest row (created_at, then id) keeps it; every other
    one is quarantined with a reason naming the keeper, so the two never overwrite each other."""
    out: dict[int, RowIssue] = {}
    by_id = {p.id: p for p in holders}
    by_id.update({p.id: p for p in products if p.id})
    for column in ("stripe_product_id", "stripe_price_id"):
        sharing: dict[str, list[CmsProduct]] = defaultdict(list)
        for p in by_id.values():
            value = (getattr(p, column) or "").strip()
            if value:
                sharing[value].append(p)
        for value, rows in sharing.items():
            if len(rows) < 2:
                continue
            keeper = min(rows, key=_keeper_order)
            for i, p in enumerate(products):
                if p.id != keeper.id and (getattr(p, column) or "").strip() == value and i not in out:
                    out[i] = RowIssue(
                        f"shared_{column}",
                        column,
                        f"{value} is also the {column} of CMS row {keeper.id!r:.80} (which keeps it); "
                        f"clear {column} on this row to give it its own Stripe product",
                        Severity.HIGH,
                    )
    return out


def quarantine_reason(issues: Sequence[RowIssue]) -> str:
    return "; ".join(f"{i.severity.value} {i.code} ({i.field}): {i.message}" for i in issues)[:REASON_MAX]


def quarantine_updates(quarantined: Quarantine, now: datetime) -> list[SyncUpdate]:
    """The write-back of quarantined rows. It keeps what the row had: its Stripe ids stay, so a row
    fixed later syncs into the product it already had instead of a new one (a duplicate). Rows already
    quarantined with the same reason and content are left alone, so a rerun writes nothing."""
    updates = []
    for p, issues in quarantined:
        if not p.id:
            continue  # nothing to write back to; the run's report lists it
        reason, chash = quarantine_reason(issues), content_hash(p)
        if p.sync_status == SYNC_QUARANTINED and p.sync_error == reason and p.sync_hash == chash:
            continue
        updates.append(
            SyncUpdate(
                id=p.id,
                sync_status=SYNC_QUARANTINED,
                stripe_product_id=p.stripe_product_id,
                stripe_price_id=p.stripe_price_id,
                sync_error=reason,
                synced_at=now,
                # The hash marks this content as handled: the change sensor ignores the write-back,
                # and an edit that fixes the row changes the hash and brings it back.
                sync_hash=chash,
                expected=SyncLink.of(p),
            )
        )
    return updates


def md_cell(text: object) -> str:
    """CMS text inside a Markdown table cell: no pipes, no line breaks, no control characters."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return cleaned.replace("|", "\\|")[:300]


def issues_by_code(quarantined: Quarantine) -> Mapping[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for _, issues in quarantined:
        for i in issues:
            counts[i.code] += 1
    return dict(counts)
