"""Apply a reviewed plan: exactly its operations, each only while what it was decided from still holds.

`cms-stripe plan` saves what a sync would do; a human reads it; `cms-stripe apply FILE` writes it.
Between the two, editors keep editing the CMS and people keep editing Stripe. Applying an operation
whose inputs moved would write something nobody reviewed, so:

- The plan as a whole is refused when it was made for another Stripe account or mode, in another
  format version, or longer ago than MIGRATION_PLAN_MAX_AGE_HOURS (default 24 h, the lifetime of
  Stripe's idempotency keys: every apply and re-apply of a plan then runs while the keys of its first
  apply are still stored, so a repeat can never create a second object).
- Before each chunk of operations is written, its CMS rows are re-read by id and its Stripe products
  re-read, and every operation is compared with the basis it recorded (core.basis):
    * the CMS row is gone                                   -> refused `gone`
    * its content hash or its Stripe link changed          -> refused `cms-changed`
    * its recorded target is not the one the row (content hash unchanged) maps to: the plan file
      was edited after it was made (an amount, a name)      -> refused `plan-altered`
    * its Stripe product (recorded as existing) is gone     -> refused `gone`
    * its Stripe product or default price changed, and Stripe does not already hold the operation's
      target                                                -> refused `stripe-changed`
    * Stripe already holds the target (this plan was applied before, or a later sync did it)
                                                            -> already applied: no Stripe write
    * nothing changed                                       -> applied with the plan's own operation
  A refused operation is listed with its reason and not written; the others go ahead.
- Already applied is recognised by re-deciding the operation against what Stripe holds now: an
  operation whose target Stripe already holds decides to a no-op. That makes a re-apply write
  nothing, and a half-finished reprice of an apply that crashed (recognised by the sync's own
  `cms_prev_price` marker with the target price already the default) is finished, not refused.
- Written operations run through the same executor as `migrate`, so their idempotency keys are the
  ones a repeat of this plan sends again. The CMS write-back is the compare-and-set one: a row an
  editor re-links while the apply runs is left alone.

Re-reading happens per chunk of `CHECK_CHUNK` operations (one product list call per chunk), just
before that chunk is written, and each chunk is written back to the CMS as soon as it is done: an
edit made between the check and the write of the same chunk (about a second) is the window left open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

from cms_stripe.core.basis import price_snapshot, product_snapshot
from cms_stripe.core.catalog import CmsProduct, SyncLink, SyncUpdate, WriteBackResult, content_hash
from cms_stripe.core.executor import ApplyResult, Gateway, ProductResult, apply_plan
from cms_stripe.core.journal import JournalSink, intent_entries, result_entries
from cms_stripe.core.mapping import META_PREV_PRICE, RowIssue, Target, target_for, validate_product
from cms_stripe.core.plan import PLAN_VERSION, Operation, Plan, plan_product
from cms_stripe.core.settings import scrub
from cms_stripe.core.state import ProductState, state_from_product
from cms_stripe.core.sync import _changes_row, _keep_ids

# Reasons an operation is refused (the words the operator reads in the report).
RefusalReason = Literal["cms-changed", "stripe-changed", "gone", "plan-altered"]
CMS_CHANGED: Final = "cms-changed"
PLAN_ALTERED: Final = "plan-altered"
STRIPE_CHANGED: Final = "stripe-changed"
GONE: Final = "gone"

# Reasons a plan is refused whole.
PLAN_VERSION_MISMATCH = "version"
PLAN_OTHER_ACCOUNT = "account"
PLAN_OTHER_MODE = "mode"
PLAN_TOO_OLD = "too-old"
PLAN_FROM_THE_FUTURE = "clock"
PLAN_UNREADABLE = "unreadable"

# A plan stamped this far in the future means the clocks disagree; its age cannot be trusted.
CLOCK_SKEW = timedelta(minutes=5)
# Operations checked together (one `GET /v1/products?ids[]=…` and one CMS read) and then written.
# 25 is about a second of writes at test mode's 25 requests/s: an edit can slip in between an
# operation's check and its write only within that second, for one extra read per 25 operations.
CHECK_CHUNK = 25

MODE_TEST = "test"
MODE_LIVE = "live"


def mode_of(live: bool) -> str:
    return MODE_LIVE if live else MODE_TEST


class PlanRefused(Exception):
    """The plan is not applied at all; `reason` is one of the PLAN_* codes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Refusal:
    """An operation of the plan that was not written, and why."""

    cms_id: str
    product_id: str
    kind: str
    reason: RefusalReason
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "cms_id": self.cms_id,
            "product_id": self.product_id,
            "kind": self.kind,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Proceed:
    """Write `operation`: the plan's own, or (finishing this plan's interrupted reprice) its re-decision."""

    operation: Operation


@dataclass(frozen=True, slots=True)
class AlreadyApplied:
    """Stripe already holds the operation's target: nothing to write; the CMS is brought up to date."""

    price_id: str | None


Verdict = Proceed | AlreadyApplied | Refusal


# -- the whole plan -------------------------------------------------------------------------------


def load_plan(text: str) -> Plan:
    """Parse a plan file, refusing formats this version cannot check."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PlanRefused(PLAN_UNREADABLE, f"the plan file is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PlanRefused(PLAN_UNREADABLE, "the plan file is not a cms-stripe plan")
    version = data.get("version")
    if version != PLAN_VERSION:
        raise PlanRefused(
            PLAN_VERSION_MISMATCH,
            f"the plan has format version {version!r}; this cms-stripe applies version {PLAN_VERSION} only "
            "(make a new plan with `cms-stripe plan`)",
        )
    try:
        plan = Plan.from_json(text)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanRefused(PLAN_UNREADABLE, f"the plan file is damaged: {type(exc).__name__}: {exc}") from None
    missing = [op.cms_id for op in plan.operations if not op.basis.get("cms") or "stripe" not in op.basis]
    if missing:
        raise PlanRefused(
            PLAN_UNREADABLE,
            f"{len(missing)} operations record no basis to check (first: {missing[0]}); make a new plan",
        )
    return plan


def check_plan(plan: Plan, *, account_id: str, mode: str, now: datetime, max_age_hours: float) -> None:
    """Raise PlanRefused unless the plan was made for this account and mode, recently enough."""
    if not plan.account_id:
        raise PlanRefused(
            PLAN_OTHER_ACCOUNT,
            "the plan names no Stripe account (only plans from `cms-stripe plan` or a dry run can be applied)",
        )
    if plan.account_id != account_id:
        raise PlanRefused(
            PLAN_OTHER_ACCOUNT,
            f"the plan was made for Stripe account {plan.account_id}; STRIPE_SECRET_KEY belongs to {account_id}",
        )
    if plan.mode != mode:
        raise PlanRefused(
            PLAN_OTHER_MODE, f"the plan was made in {plan.mode} mode; STRIPE_SECRET_KEY is a {mode}-mode key"
        )
    created = plan.created_at if plan.created_at.tzinfo else plan.created_at.replace(tzinfo=UTC)
    age = now - created
    if age < -CLOCK_SKEW:
        raise PlanRefused(
            PLAN_FROM_THE_FUTURE,
            f"the plan is dated {created.isoformat()}, after this machine's clock ({now.isoformat()})",
        )
    if age > timedelta(hours=max_age_hours):
        raise PlanRefused(
            PLAN_TOO_OLD,
            f"the plan is {age.total_seconds() / 3600:.1f} h old; plans older than {max_age_hours:g} h "
            "(MIGRATION_PLAN_MAX_AGE_HOURS) are refused: make a new one",
        )


# -- one operation --------------------------------------------------------------------------------


def _changed_fields(recorded: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> list[str]:
    if recorded is None or current is None:
        return []
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


def _stripe_difference(recorded: Mapping[str, Any], state: ProductState) -> str | None:
    """None when Stripe still holds what the plan read; else what changed, in words."""
    parts: list[str] = []
    want_product = recorded.get("product")
    have_product = product_snapshot(state.product)
    if want_product is None and have_product is not None:
        parts.append("product created since the plan")
    elif want_product != have_product:
        parts.append("product " + ", ".join(_changed_fields(want_product, have_product)) + " changed")
    if recorded.get("default_price") != price_snapshot(state.default_price):
        parts.append("default price changed")
    if "reuse_price" in recorded and recorded["reuse_price"] != price_snapshot(state.lookup_price):
        parts.append("the price the plan reuses changed")
    return "; ".join(parts) or None


def _finishes_own_reprice(op: Operation, decided: Operation, state: ProductState) -> bool:
    """An apply of this very operation stopped between switching the default price and archiving the
    old one: the target price is already the default and only the sync's own marker is left."""
    product = state.product or {}
    target_price = op.target.price
    return bool(
        (product.get("metadata") or {}).get(META_PREV_PRICE)
        and target_price is not None
        and target_price.matches(state.default_price)
        and decided.kind == "reprice"
        and not decided.product_params
        and not decided.new_price
        and decided.reuse_price_id is None
    )


def _comparable(target: Target) -> dict[str, Any]:
    # As the plan file holds it (JSON), without `adopted`: a row the apply already wrote back names
    # the product it was created as, which is the same product id.
    data = json.loads(json.dumps(target.to_dict(), sort_keys=True, default=str))
    data.pop("adopted", None)
    return dict(data)


def _altered_target(op: Operation, row: CmsProduct) -> str | None:
    """None when the operation's target is what the row maps to now (as the sync would build it);
    else the fields that differ. The content hash alone does not cover the target: a plan file edited
    by hand (another amount) with its hash left alone would be written as reviewed."""
    issues = validate_product(row)
    if issues:
        return "the row does not pass validation: " + "; ".join(i.message for i in issues)
    rebuilt = _comparable(target_for(row, lookup_keys=op.target.lookup_key is not None))
    recorded = _comparable(op.target)
    differing = sorted(k for k in set(rebuilt) | set(recorded) if rebuilt.get(k) != recorded.get(k))
    if not differing:
        return None
    return "the plan's target differs from the CMS row's in " + ", ".join(differing)


def check_operation(op: Operation, row: CmsProduct | None, state: ProductState) -> Verdict:
    """Decide whether a planned operation may still be written, from the CMS row and Stripe state now."""

    def refuse(reason: RefusalReason, detail: str) -> Refusal:
        return Refusal(op.cms_id, op.product_id, op.kind, reason, detail)

    if row is None:
        return refuse(GONE, "the CMS row no longer exists")
    cms = op.basis["cms"]
    if content_hash(row) != op.content_hash:
        return refuse(CMS_CHANGED, "the row's content changed since the plan")
    planned = (cms.get("stripe_product_id"), cms.get("stripe_price_id"))
    now_linked = (row.stripe_product_id, row.stripe_price_id)
    # After an apply wrote this content back, the row carries the ids the apply wrote: that is the
    # plan's own doing, not an editor's re-link.
    written_back = row.sync_hash == op.content_hash and row.stripe_product_id in (op.product_id, None)
    if now_linked != planned and not written_back:
        return refuse(
            CMS_CHANGED,
            f"the row's Stripe link changed since the plan ({planned[0] or 'none'} → {now_linked[0] or 'none'})",
        )

    altered = _altered_target(op, row)
    if altered:
        return refuse(PLAN_ALTERED, altered)

    recorded = op.basis["stripe"]
    if recorded.get("product") is not None and state.product is None:
        return refuse(GONE, "the Stripe product no longer exists")
    difference = _stripe_difference(recorded, state)
    if difference is None:
        return Proceed(op)
    decided = plan_product(op.target, state)
    if isinstance(decided, RowIssue):
        return refuse(STRIPE_CHANGED, f"{difference}; {decided.message}")
    if decided.kind == "noop":
        return AlreadyApplied(decided.price_id)
    if _finishes_own_reprice(op, decided, state):
        return Proceed(decided)
    return refuse(STRIPE_CHANGED, difference)


# -- reading what is current ----------------------------------------------------------------------


class RowReader(Protocol):
    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]: ...


class WriteBack(Protocol):
    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult: ...


def read_current(gateway: Gateway, ops: Sequence[Operation]) -> dict[str, ProductState]:
    """Stripe state for these operations keyed by CMS id: one product list per 100, plus one price
    list for each operation whose plan reuses a price (only then does its current state matter)."""
    ids = sorted({op.product_id for op in ops})
    by_id = {p["id"]: p for p in gateway.list_products(ids, expand_default_price=True)} if ids else {}
    out: dict[str, ProductState] = {}
    for op in ops:
        product = by_id.get(op.product_id)
        reuse = None
        recorded = (op.basis.get("stripe") or {}).get("reuse_price")
        if recorded is not None and product is not None:
            prices = gateway.list_prices(product=op.product_id, active=True)
            reuse = next((p for p in prices if p.get("id") == recorded.get("id")), None)
        out[op.cms_id] = state_from_product(op.product_id, product, reuse)
    return out


# -- applying -------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    """What an apply did with each operation of the plan."""

    plan_operations: int
    results: list[ProductResult] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    # Operations never checked because the run stopped on a CRITICAL error.
    not_attempted: list[str] = field(default_factory=list)
    critical: str | None = None
    written_back: int = 0
    writeback_conflicts: list[str] = field(default_factory=list)
    writeback_missing: list[str] = field(default_factory=list)
    writeback_failed: list[tuple[str, str]] = field(default_factory=list)
    stripe_writes: int = 0

    @property
    def failed(self) -> list[ProductResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def ok(self) -> bool:
        return not (self.refused or self.failed or self.critical or self.not_attempted or self.writeback_failed)

    def counts(self) -> dict[str, int]:
        outcomes = ApplyResult(self.results, {}, 0.0).counts()
        return {
            "operations": self.plan_operations,
            **{k: v for k, v in outcomes.items() if k != "skipped"},
            "already_applied": len(self.already_applied),
            "refused": len(self.refused),
            "not_attempted": len(self.not_attempted),
            "stripe_writes": self.stripe_writes,
            "written_back": self.written_back,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "refused": [r.to_dict() for r in self.refused],
            "failed": [r.to_dict() for r in self.failed],
            "already_applied": list(self.already_applied),
            "not_attempted": list(self.not_attempted),
            "critical": self.critical,
            "writeback_conflicts": list(self.writeback_conflicts),
            "writeback_missing": list(self.writeback_missing),
            "writeback_failed": [list(f) for f in self.writeback_failed],
        }

    def summary_markdown(self) -> str:
        counts = self.counts()
        lines = ["**Apply**: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k == "refused"), ""]
        if self.refused:
            lines += ["| CMS id | operation | Stripe product | refused | why |", "|---|---|---|---|---|"]
            lines += [
                f"| {r.cms_id} | {r.kind} | {r.product_id} | {r.reason} | {r.detail.replace('|', '/')} |"
                for r in self.refused
            ]
        if self.failed:
            lines += ["", "| CMS id | failed |", "|---|---|"]
            lines += [f"| {r.cms_id} | {(r.error or '').replace('|', '/')[:300]} |" for r in self.failed]
        if self.critical:
            lines += ["", self.critical]
        return "\n".join(lines)


def _writes(stats: Mapping[str, Any]) -> int:
    return int(sum(v for k, v in (stats.get("calls") or {}).items() if not str(k).startswith("GET")))


def _stats(gateway: Gateway) -> dict[str, Any]:
    stats = gateway.stats
    return dict(stats.snapshot()) if hasattr(stats, "snapshot") else dict(stats)


def apply_reviewed_plan(
    plan: Plan,
    *,
    reader: RowReader,
    gateway: Gateway,
    writer: WriteBack,
    run_id: str,
    log: Callable[[str], None] = print,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_concurrency: int | None = None,
    chunk_size: int = CHECK_CHUNK,
    journal: JournalSink | None = None,
    journal_run: str | None = None,
) -> ApplyReport:
    """Check and apply the plan's operations chunk by chunk (the plan itself already checked by check_plan).

    `journal` receives, per chunk, the intent of every write before it is sent (from the Stripe state
    just re-read, so `rollback --stripe` of this run knows what to restore) and the results before the
    chunk's CMS write-back, under `journal_run` (the root run id; `run_id` when None), as a sync does."""
    report = ApplyReport(plan_operations=len(plan.operations))
    writes_before = _writes(_stats(gateway))
    ops = list(plan.operations)
    for start in range(0, len(ops), chunk_size):
        chunk = ops[start : start + chunk_size]
        if report.critical:
            report.not_attempted += [op.cms_id for op in chunk]
            continue
        rows = {p.id: p for p in reader.read_ids([op.cms_id for op in chunk])}
        states = read_current(gateway, chunk)
        to_write: list[Operation] = []
        done_already: list[ProductResult] = []
        for op in chunk:
            verdict = check_operation(op, rows.get(op.cms_id), states[op.cms_id])
            if isinstance(verdict, Refusal):
                report.refused.append(verdict)
                log(f"refused {op.cms_id} ({op.kind} {op.product_id}): {verdict.reason}: {verdict.detail}")
            elif isinstance(verdict, AlreadyApplied):
                report.already_applied.append(op.cms_id)
                done_already.append(
                    ProductResult(
                        cms_id=op.cms_id,
                        product_id=op.product_id,
                        price_id=verdict.price_id,
                        outcome="noop",
                        kind="noop",
                        content_hash=op.content_hash,
                        active=op.target.active,
                    )
                )
            else:
                to_write.append(verdict.operation)
        if journal is not None and to_write:
            # Before any write of the chunk: a failure to record stops the apply before Stripe is touched.
            journal.record(intent_entries(journal_run or run_id, to_write, states))
        result = (
            apply_plan(Plan(to_write), gateway, max_concurrency=max_concurrency)
            if to_write
            else ApplyResult([], {}, 0.0)
        )
        if journal is not None and result.results:
            try:
                journal.record(result_entries(journal_run or run_id, result.results))
            except Exception as exc:
                # The intents recorded before the writes still let a rollback find and judge them.
                error = f"{type(exc).__name__}: {scrub(str(exc))}"
                log(f"[MEDIUM] journal of {len(result.results)} results not recorded: {error}")
        report.results += [r for r in result.results if r.outcome != "skipped"]
        if result.critical:
            report.critical = result.critical
            report.not_attempted += [r.cms_id for r in result.results if r.outcome == "skipped"]
        _write_back(report, [*result.results, *done_already], rows, writer, run_id, now(), log)
    report.stripe_writes = _writes(_stats(gateway)) - writes_before
    return report


def _write_back(
    report: ApplyReport,
    results: list[ProductResult],
    rows: Mapping[str, CmsProduct],
    writer: WriteBack,
    run_id: str,
    at: datetime,
    log: Callable[[str], None],
) -> None:
    """Compare-and-set on the rows as this apply re-read them: an editor's change since then wins."""
    updates = []
    for update in ApplyResult(results, {}, 0.0).to_sync_updates(at):
        row = rows.get(update.id)
        update = _keep_ids(update, row)
        if row is not None:
            update = replace(update, expected=SyncLink.of(row))
        if _changes_row(update, row):
            updates.append(update)
    if not updates:
        return
    try:
        written = writer.write_back(updates, run_id=run_id)
    except Exception as exc:
        message = f"{type(exc).__name__}: {scrub(str(exc))}"[:500]
        report.writeback_failed += [(u.id, message) for u in updates]
        log(f"[HIGH] CMS write-back of {len(updates)} rows failed: {message}")
        return
    report.written_back += written.written
    report.writeback_conflicts += written.conflicts
    report.writeback_missing += written.missing
