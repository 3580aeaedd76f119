"""Validation and planning one page of CMS rows at a time, so memory does not grow with the catalog.

The CMS adapters already read in pages (keyset pagination, MIGRATION_BATCH_SIZE rows a page). These
streams consume such pages and keep, between pages, only what a later page's decision depends on:

- `ValidationStream`: the ids seen so far (a CMS id read twice quarantines every copy; see below);
- `PlanStream`: which CMS row each Stripe product was given to (two rows naming one product: the
  second is quarantined, as `build_plan` does), and the counts.

Each page's rows, Targets and operations are handed to the caller and dropped with the page, so the
peak is one page plus those compact per-row records (two strings a row), not one Target per row.
A page's plan is the plan `build_plan` makes for those rows, operation for operation: `build_plan`
is itself a `PlanStream` fed one page.

Duplicate ids across pages. Whole-batch validation quarantines *every* copy of a duplicated id,
which a stream cannot do for a copy it has already passed on. Give `ValidationStream` the ids known
to repeat (`known_duplicates`, e.g. from a `GROUP BY id HAVING count(*) > 1` or an id-only pass)
and it quarantines every copy exactly as `split_valid` does; a repeat it was not told about (a row
inserted while the read ran) is still quarantined when it appears, and its id is listed in
`late_duplicates` so the caller can report the copy that already went through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.errors import Severity
from cms_stripe.core.mapping import RowIssue, validate_product
from cms_stripe.core.plan import PlanPage, PlanStream
from cms_stripe.core.state import ProductState
from cms_stripe.core.validation import Quarantine, shared_link_issues

__all__ = [
    "PlanPage",
    "PlanStream",
    "StreamedPage",
    "ValidationStream",
    "duplicate_ids",
    "pages",
    "plan_pages",
]

T = TypeVar("T")


def pages(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    """`rows` in lists of `size` (the last one shorter), pulling only one page from the source at a time."""
    if size < 1:
        raise ValueError(f"page size must be positive, got {size}")
    it = iter(rows)
    while page := list(islice(it, size)):
        yield page


def duplicate_ids(ids: Iterable[str]) -> dict[str, int]:
    """Ids occurring more than once, with their count (an id-only pass before a streamed validation)."""
    counts = Counter(i for i in ids if i)
    return {i: n for i, n in counts.items() if n > 1}


def _duplicate_issue(cms_id: str, copies: int) -> RowIssue:
    # The same message `core.validation.duplicate_id_issues` gives.
    return RowIssue("duplicate_cms_id", "id", f"{copies} CMS rows share the id {cms_id!r:.80}", Severity.HIGH)


class ValidationStream:
    """`split_valid`, page by page: per-row rules, duplicated ids, Stripe products shared by two rows."""

    def __init__(self, *, known_duplicates: Mapping[str, int] | None = None, tax_behavior: str | None = None) -> None:
        self.known_duplicates = dict(known_duplicates or {})
        self.tax_behavior = tax_behavior
        self._seen: set[str] = set()
        self.late_duplicates: list[str] = []
        self.rows = 0
        self.valid = 0
        self.quarantined = 0

    def add(
        self, page: Sequence[CmsProduct], *, link_holders: Iterable[CmsProduct] = ()
    ) -> tuple[list[CmsProduct], Quarantine]:
        """(valid rows, quarantined rows with their issues) of one page, in page order.

        `link_holders`: CMS rows outside the page naming one of its Stripe products (as for
        `split_valid`: read from the CMS per page, they decide who keeps a shared product)."""
        issues = [validate_product(p, tax_behavior=self.tax_behavior) for p in page]
        in_page = Counter(p.id for p in page if p.id)
        for i, p in enumerate(page):
            if not p.id:
                continue
            known = self.known_duplicates.get(p.id, 0)
            if known > 1:
                issues[i].append(_duplicate_issue(p.id, known))
            elif in_page[p.id] > 1 or p.id in self._seen:
                copies = in_page[p.id] + (1 if p.id in self._seen else 0)
                issues[i].append(_duplicate_issue(p.id, copies))
                if p.id in self._seen and p.id not in self.late_duplicates:
                    self.late_duplicates.append(p.id)
        for i, issue in shared_link_issues(page, link_holders).items():
            issues[i].append(issue)
        self._seen.update(p.id for p in page if p.id)
        valid = [p for i, p in enumerate(page) if not issues[i]]
        quarantined = [(p, issues[i]) for i, p in enumerate(page) if issues[i]]
        self.rows += len(page)
        self.valid += len(valid)
        self.quarantined += len(quarantined)
        return valid, quarantined


@dataclass
class StreamedPage:
    """What one page of the catalog came to: its valid rows, its quarantine, and its share of the plan."""

    rows: int
    valid: list[CmsProduct]
    quarantined: Quarantine
    plan: PlanPage


def plan_pages(
    source: Iterable[Sequence[CmsProduct]],
    *,
    validation: ValidationStream | None = None,
    planner: PlanStream | None = None,
    state_for: Callable[[Sequence[CmsProduct]], Mapping[str, ProductState]] | None = None,
    holders_for: Callable[[Sequence[CmsProduct]], Iterable[CmsProduct]] | None = None,
) -> Iterator[StreamedPage]:
    """Validate and plan a catalog page by page; nothing of a page is kept once the caller lets it go.

    `state_for(valid rows)`: the Stripe state read for a page (None: an empty Stripe, every live row a
    create); `holders_for(page)`: CMS rows outside the page naming its Stripe products. Pass your own
    `validation`/`planner` to read their counts afterwards.
    """
    validation = validation if validation is not None else ValidationStream()
    planner = planner if planner is not None else PlanStream()
    # The valid rows passed the very check the planner starts with, unless the two disagree on tax behavior.
    validated = validation.tax_behavior == planner.tax_behavior
    for page in source:
        valid, quarantined = validation.add(page, link_holders=holders_for(page) if holders_for else ())
        state = state_for(valid) if state_for is not None else {}
        yield StreamedPage(len(page), valid, quarantined, planner.add(valid, state, validated=validated))
