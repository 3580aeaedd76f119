"""One sync of a set of CMS rows: skip what is done, read Stripe, plan, save the plan, apply with
checkpoints, write back. Used by the Dagster assets and the selective job alike; no Dagster here.

Exactly-once rests on three things: deterministic Stripe identities and idempotency keys (core),
write-back of each finished product at every checkpoint (a crash loses at most one checkpoint
interval of write-backs, and the next run finds those products in sync with Stripe and plans no-ops
for them), and checkpoints recorded by the caller so a re-executed run skips finished products
without even reading them from Stripe.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from cms_stripe.core import runlog
from cms_stripe.core.catalog import (
    SYNC_ARCHIVED,
    SYNC_FAILED,
    SYNC_SYNCED,
    CmsProduct,
    SyncLink,
    SyncUpdate,
    WriteBackResult,
    content_hash,
)
from cms_stripe.core.error_codes import ErrorCode, code_for_exception
from cms_stripe.core.errors import Severity
from cms_stripe.core.executor import ApplyResult, Gateway, ProductResult, apply_plan
from cms_stripe.core.journal import JournalSink, intent_entries, result_entries
from cms_stripe.core.orphans import adopt_orphans, archive_duplicates, derived_duplicates
from cms_stripe.core.plan import Plan, build_plan
from cms_stripe.core.progress import ProgressTracker
from cms_stripe.core.report import quarantine_errors
from cms_stripe.core.settings import scrub
from cms_stripe.core.state import read_state
from cms_stripe.core.validation import quarantine_updates


class WriteBack(Protocol):
    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult: ...


@dataclass(frozen=True)
class SyncOptions:
    run_id: str
    label: str
    dry_run: bool = True
    skip_existing: bool = True
    checkpoint_interval: int = 100
    reports_dir: str = "reports"
    max_concurrency: int | None = None
    # Stamped on the saved plan so `cms-stripe apply` can refuse it for another account or mode;
    # None leaves the plan unappliable (a run that applies its own plan needs no review).
    account_id: str | None = None
    mode: str | None = None
    # The run a journal entry belongs to: a re-execution journals under its root so one rollback
    # undoes the run with all its resumes.
    root_run_id: str | None = None


@dataclass
class SyncOutcome:
    plan: Plan
    skipped_existing: int = 0
    resumed: int = 0
    # Which rows those were, so each partition of a range run can count its own.
    skipped_ids: list[str] = field(default_factory=list)
    resumed_ids: list[str] = field(default_factory=list)
    result: ApplyResult | None = None
    plan_path: str | None = None
    summary_path: str | None = None
    written_back: int = 0
    # Rows an editor re-linked or deleted mid-run (left alone; the next run plans them again).
    writeback_conflicts: list[str] = field(default_factory=list)
    writeback_missing: list[str] = field(default_factory=list)
    # CMS write-backs that failed after their Stripe writes (HIGH): (cms id, error).
    writeback_failed: list[tuple[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    stripe_stats: dict[str, Any] = field(default_factory=dict)

    def record(self, result: WriteBackResult) -> None:
        self.written_back += result.written
        self.writeback_conflicts += result.conflicts
        self.writeback_missing += result.missing

    @property
    def writeback_failure_message(self) -> str | None:
        if not self.writeback_failed:
            return None
        ids = ", ".join(i for i, _ in self.writeback_failed[:20])
        more = f" and {len(self.writeback_failed) - 20} more" if len(self.writeback_failed) > 20 else ""
        return (
            f"[HIGH] CMS write-back failed for {len(self.writeback_failed)} rows after their Stripe writes "
            f"({ids}{more}): {self.writeback_failed[0][1]}. Stripe holds the right state; the next run repairs "
            "these rows from it (it finds their products by their deterministic ids) without writing to Stripe again."
        )

    @property
    def counts(self) -> dict[str, int]:
        if self.result is None:
            return {}
        return self.result.counts()

    @property
    def failures(self) -> list[tuple[str, str]]:
        if self.result is None:
            return []
        out = [(r.cms_id, f"[{r.severity.value if r.severity else '?'}] {r.error}") for r in self.result.failed]
        if self.result.critical:
            out += [(r.cms_id, "not attempted: run stopped") for r in self.result.results if r.outcome == "skipped"]
        return out

    @property
    def succeeded(self) -> int:
        return self.result.succeeded if self.result else 0

    @property
    def stripe_calls(self) -> int:
        return int(sum((self.stripe_stats.get("calls") or {}).values()))

    @property
    def stripe_writes(self) -> int:
        calls = self.stripe_stats.get("calls") or {}
        return int(sum(v for k, v in calls.items() if not k.startswith("GET")))

    @property
    def rate_limited(self) -> int:
        return int(sum((self.stripe_stats.get("rate_limited") or {}).values()))


def is_done(product: CmsProduct) -> bool:
    """Synced (or archived) earlier with exactly this content: nothing to ask Stripe (MIGRATION_SKIP_EXISTING)."""
    if product.sync_hash is None or product.sync_hash != content_hash(product):
        return False
    if product.sync_status == SYNC_SYNCED:
        return bool(product.stripe_product_id)
    return product.sync_status == SYNC_ARCHIVED and not product.should_be_active


def save_plan(plan: Plan, reports_dir: str, label: str, run_id: str) -> tuple[str, str]:
    root = pathlib.Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"plan-{label}-{run_id[:8]}"
    json_path, md_path = root / f"{stem}.json", root / f"{stem}.md"
    with json_path.open("w") as fh:
        plan.write_json(fh, indent=2)
    md_path.write_text(plan.summary_markdown(limit=500) + "\n")
    return str(json_path), str(md_path)


def _stats(gateway: Gateway) -> dict[str, Any]:
    stats = gateway.stats
    return dict(stats.snapshot()) if hasattr(stats, "snapshot") else dict(stats)


def run_sync(
    products: Sequence[CmsProduct],
    gateway: Gateway,
    cms: WriteBack,
    options: SyncOptions,
    *,
    checkpoint_done: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
    on_checkpoint: Callable[[list[tuple[str, str]]], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    journal: JournalSink | None = None,
) -> SyncOutcome:
    """`checkpoint_done`: cms id → content hash finished by an earlier attempt of this run.
    `on_checkpoint` receives the (cms id, content hash) pairs finished since the previous checkpoint,
    after their write-back is committed.
    `journal` receives the intent of every planned write before the first Stripe call (a failure to
    record it stops the run before anything is written), and each product's result before the CMS
    write-back of its batch."""
    started = time.monotonic()

    def say(message: str) -> None:
        # The log file's line first: the run's Dagster log (and its copy in the file) comes second.
        runlog.note(message)
        log(message)

    done_before = checkpoint_done or {}
    todo: list[CmsProduct] = []
    resumed_ids: list[str] = []
    skipped_ids: list[str] = []
    for p in products:
        if done_before.get(p.id) == content_hash(p):
            resumed_ids.append(p.id)
        elif options.skip_existing and is_done(p):
            skipped_ids.append(p.id)
        else:
            todo.append(p)
    resumed, skipped = len(resumed_ids), len(skipped_ids)
    if resumed or skipped:
        say(f"{resumed} finished by an earlier attempt (checkpoint), {skipped} already in sync; {len(todo)} to plan")

    state = read_state(gateway, todo)
    # Orphans are adopted, not duplicated (core/orphans.py): the rows to plan name them. `todo` keeps
    # the rows as read, for the compare-and-set write-back.
    planned, adoptions = adopt_orphans(gateway, todo, state, log=say)  # type: ignore[arg-type]
    if adoptions:
        adopted = {a.cms_id for a in adoptions}
        state = {**state, **read_state(gateway, [p for p in planned if p.id in adopted])}
        for a in adoptions:
            others = (
                f" (the oldest of {len(a.others) + 1} active products carrying it; also live, left for a human: "
                f"{', '.join(a.others)})"
                if a.others
                else ""
            )
            say(f"adopting Stripe product {a.product_id} for CMS row {a.cms_id}: it carries the row's cms_id{others}")
    duplicates = derived_duplicates(gateway, planned)  # type: ignore[arg-type]
    plan = build_plan(planned, state, now=now())
    plan.account_id, plan.mode = options.account_id, options.mode
    plan_path, summary_path = save_plan(plan, options.reports_dir, options.label, options.run_id)
    counts = plan.counts()
    say("plan: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + f" (saved to {plan_path})")
    outcome = SyncOutcome(
        plan=plan,
        skipped_existing=skipped,
        resumed=resumed,
        skipped_ids=skipped_ids,
        resumed_ids=resumed_ids,
        plan_path=plan_path,
        summary_path=summary_path,
    )
    if options.dry_run:
        for row, sp in duplicates:
            say(f"would archive {sp['id']}: created for CMS row {row.id}, which now names {row.stripe_product_id}")
        say("dry run: no Stripe write made (set MIGRATION_DRY_RUN=false to apply)")
        outcome.duration_s = time.monotonic() - started
        outcome.stripe_stats = _stats(gateway)
        return outcome

    by_id = {p.id: p for p in todo}
    journal_run = options.root_run_id or options.run_id
    if journal is not None and plan.writes:
        journal.record(intent_entries(journal_run, plan.writes, state))

    def write(updates: list[SyncUpdate]) -> bool:
        """Write back; a failure (after tenacity's retries) is recorded, not raised, so Stripe writes
        already made are not abandoned halfway. True when the rows were written (or left alone)."""
        if not updates:
            return True
        try:
            outcome.record(cms.write_back(updates, run_id=options.run_id))
        except Exception as exc:
            message = f"{code_for_exception(exc)}: {type(exc).__name__}: {scrub(str(exc))}"[:500]
            outcome.writeback_failed += [(u.id, message) for u in updates]
            log(f"[HIGH] CMS write-back of {len(updates)} rows failed: {message}")
            for u in updates:
                runlog.row_error(u.id, ErrorCode.CMS_WRITE_BACK, Severity.HIGH, message)
            return False
        return True

    if plan.quarantined:
        pairs = [(by_id[q.cms_id], list(q.issues)) for q in plan.quarantined if q.cms_id in by_id]
        for item in quarantine_errors([(p.id, issues) for p, issues in pairs]):
            runlog.row_error(item.cms_id, item.code, item.severity, item.reason)
        write(quarantine_updates(pairs, now()))

    lock = threading.Lock()
    buffer: list[ProductResult] = []

    def emit_progress(line: str) -> None:
        runlog.progress(line, done=tracker.done, total=tracker.total, success=tracker.success, failed=tracker.failed)
        log(line)

    tracker = ProgressTracker(total=len(plan.operations), emit=emit_progress, every=options.checkpoint_interval)
    checkpointed = 0

    def flush(results: list[ProductResult]) -> None:
        if journal is not None:
            try:
                journal.record(result_entries(journal_run, results))
            except Exception as exc:
                # The intents recorded before the writes still let a rollback find and judge them.
                say(f"[MEDIUM] journal of {len(results)} results not recorded: {type(exc).__name__}: {scrub(str(exc))}")
        updates = [
            _with_expected(_keep_ids(u, by_id.get(u.id)), by_id.get(u.id))
            for u in ApplyResult(results, {}, 0.0).to_sync_updates(now())
        ]
        updates = [u for u in updates if _changes_row(u, by_id.get(u.id))]
        # Only rows whose write-back is committed are checkpointed: a resumed run must still write
        # back the others (it finds them in sync in Stripe and plans no-ops for them).
        nonlocal checkpointed
        if write(updates):
            if on_checkpoint is not None:
                on_checkpoint([(r.cms_id, r.content_hash) for r in results if r.ok])
            checkpointed += len(results)
            runlog.checkpoint(checkpointed, len(plan.operations))

    def on_result(result: ProductResult) -> None:
        if result.outcome == "failed":
            runlog.row_error(
                result.cms_id,
                result.error_code or ErrorCode.INTERNAL_ERROR,
                result.severity or Severity.HIGH,
                result.error or "",
            )
        elif result.attempts:
            runlog.write(result.cms_id, result.outcome, result.product_id, result.price_id, result.attempts)
        batch: list[ProductResult] | None = None
        with lock:
            buffer.append(result)
            if len(buffer) >= options.checkpoint_interval:
                batch, buffer[:] = list(buffer), []
        if batch:
            # Serialised so checkpoints are recorded in order and write-backs never interleave.
            with flush_lock:
                flush(batch)
        tracker.record(result.ok)

    flush_lock = threading.Lock()
    result = apply_plan(plan, gateway, max_concurrency=options.max_concurrency, on_result=on_result)
    if duplicates and not result.critical:
        try:
            archive_duplicates(gateway, duplicates, run_id=journal_run, journal=journal, log=say)
        except Exception as exc:
            # The row's own product is synced; the duplicate is reported by the reconciliation.
            say(f"[HIGH] archiving derived duplicates failed: {type(exc).__name__}: {scrub(str(exc))}")
    with flush_lock:
        rest = [r for r in buffer if r.outcome != "skipped"]
        buffer.clear()
        if rest:
            flush(rest)
    outcome.result = result
    outcome.duration_s = time.monotonic() - started
    outcome.stripe_stats = result.stats
    if tracker.done < tracker.total:  # stopped early: say where it stopped
        emit_progress(tracker.line())
    return outcome


def _keep_ids(update: SyncUpdate, product: CmsProduct | None) -> SyncUpdate:
    """A failed write must not erase the Stripe ids the row already had (an adopted product)."""
    if product is None or update.sync_status != SYNC_FAILED:
        return update
    return replace(
        update,
        stripe_product_id=update.stripe_product_id or product.stripe_product_id,
        stripe_price_id=update.stripe_price_id or product.stripe_price_id,
        sync_hash=product.sync_hash,
    )


def _with_expected(update: SyncUpdate, product: CmsProduct | None) -> SyncUpdate:
    """Compare-and-set on what the run read, so an editor's change made during the run wins."""
    return update if product is None else replace(update, expected=SyncLink.of(product))


def _changes_row(update: SyncUpdate, product: CmsProduct | None) -> bool:
    """Skip write-backs that would store what the row already holds (each UPDATE fires Supabase's
    updated_at trigger, which would make the change sensor look at the row again)."""
    if product is None:
        return True
    return not (
        product.sync_status == update.sync_status
        and product.sync_hash == update.sync_hash
        and product.stripe_product_id == update.stripe_product_id
        and product.stripe_price_id == update.stripe_price_id
        and product.sync_error == update.sync_error
    )
