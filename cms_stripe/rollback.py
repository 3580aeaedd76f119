"""The rollback job: undo a sync run's Stripe writes from its journal, then (optionally) the CMS sync
columns from the run's backup. The same job runs from the UI (Launchpad config: run id, dry_run) and
from `cms-stripe rollback --stripe`. Safe to re-run: see core/rollback.py."""

import contextlib
import json
from typing import Any

import dagster as dg

from cms_stripe.assets.journal import later_writers, read_journal
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import STRIPE_POOL, STRIPE_WRITES
from cms_stripe.core.journal import merge
from cms_stripe.core.rollback import apply_rollback, describe, plan_rollback
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource

ROLLBACK_JOB = "stripe_rollback"


class RollbackConfig(dg.Config):
    run_id: str
    # Print what would be undone; write nothing (the safe default, as for the sync).
    dry_run: bool = True
    # Also restore the CMS sync columns from the run's backup (after Stripe).
    cms: bool = True
    # Roll back even though a run of the group is not finished: only for a run whose process was
    # killed (it stays STARTED forever). A run that is really still going keeps writing after the
    # rollback, which is why this is refused by default.
    force: bool = False


FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def unfinished_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> list[str]:
    """`run id (STATUS)` for every run of the group not in a finished state."""
    out = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in FINISHED:
            out.append(f"{run_id} ({run.status.value})")
    return out


def unfinished_message(unfinished: list[str]) -> str:
    return (
        "refusing to roll back: not finished: " + ", ".join(unfinished) + ". A run still writing would keep "
        "writing after the rollback; wait for it to end. If its process was killed, pass --force "
        "(or run `cms-stripe resume`, which marks it failed and finishes it)"
    )


def run_group_ids(instance: dg.DagsterInstance, run_id: str) -> tuple[str, list[str], float | None, float | None]:
    """The root run id, every run of its group (re-executions, newest first), and the time window their
    journal batches were written in (so a rollback of an old run does not read every later run's journal)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise dg.Failure(f"run {run_id} is not on this instance")
    root = run.root_run_id or run.run_id
    root_record = instance.get_run_record_by_id(root)
    if root_record is None:
        raise dg.Failure(f"run {run_id} names root run {root}, which is not on this instance")
    # By the runs' root_run_id, not get_run_group: that follows the dagster/root_run_id tag, which
    # a re-execution launched with its own tags (cms-stripe resume) does not carry.
    later = instance.get_run_records(dg.RunsFilter(job_name=run.job_name, created_after=root_record.create_timestamp))
    records = [root_record, *(r for r in later if r.dagster_run.root_run_id == root)]
    # Newest first: a row written by a re-execution is restored to what the run before it wrote,
    # and then by that run's backup to what it was before the whole group.
    records.sort(key=lambda rec: rec.create_timestamp, reverse=True)
    ids = [rec.dagster_run.run_id for rec in records]
    starts = [rec.create_timestamp.timestamp() for rec in records]
    ends = [rec.end_time for rec in records]
    since = min(starts) - 1 if starts else None
    # A run still going (or killed without an end) may have journaled up to now: no upper bound then.
    until = max(e for e in ends if e is not None) + 60 if ends and all(e is not None for e in ends) else None
    return root, ids, since, until


def recorded_stripe_writes(instance: dg.DagsterInstance, run_ids: list[str]) -> int:
    """The Stripe writes the runs recorded in their metadata (stripe_products materializations, the
    apply op's output or failure) or their run report (a selective run's figures are only there)."""
    from cms_stripe.core.report import find_report
    from cms_stripe.core.settings import Settings

    kinds = {
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.STEP_OUTPUT,
        dg.DagsterEventType.STEP_FAILURE,
    }
    total = 0
    for run_id in run_ids:
        # Run-wide, the same on every partition of a range run: the most any event says.
        most = 0
        for record in instance.all_logs(run_id, of_type=kinds):
            event = record.dagster_event
            data: Any = event.event_specific_data if event is not None else None
            meta: Any = None
            if event is not None and event.is_step_materialization:
                meta = data.materialization.metadata
            elif event is not None and event.is_successful_output:
                meta = data.metadata
            elif event is not None and event.is_step_failure and data.user_failure_data is not None:
                meta = data.user_failure_data.metadata
            value = getattr((meta or {}).get(STRIPE_WRITES), "value", 0)
            most = max(most, value if isinstance(value, int) else 0)
        report = find_report(Settings.from_env().reports_dir, run_id)
        if report is not None:
            # An unreadable report says nothing: the event log above still does.
            with contextlib.suppress(OSError, ValueError, TypeError):
                most = max(most, int(json.loads(report.read_text()).get("stripe_writes") or 0))
        total += most
    return total


@dg.op(pool=STRIPE_POOL, tags={"kind": "stripe"})
def stripe_rollback(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: dg.ResourceParam[CatalogSource],
) -> dict[str, Any]:
    """Archive what the run created, reactivate what it archived, revert its reprices and field updates;
    leave alone (and list) every product changed in Stripe since the run."""
    root, runs, since, until = run_group_ids(context.instance, config.run_id)
    unfinished = unfinished_runs(context.instance, runs)
    if unfinished and not config.force:
        raise dg.Failure(unfinished_message(unfinished), allow_retries=False)
    journal = merge(read_journal(context.instance, root, since=since, until=until))
    empty: list[str] = []
    if not journal:
        writes = recorded_stripe_writes(context.instance, runs)
        if writes:
            # Archiving nothing and exiting 0 would tell the operator Stripe is back as it was.
            raise dg.Failure(
                description=f"run {root} recorded {writes} Stripe writes but its journal holds none "
                "(a run older than the journal, or its journal was deleted): they cannot be undone from it; "
                "nothing was changed in Stripe or the CMS",
                allow_retries=False,
            )
        empty.append(f"run {root} journaled no Stripe write and recorded none: nothing to undo in Stripe")
        context.log.warning(empty[0])
    # Writes with a live key need the same allowance as a sync (the gateway enforces it).
    gateway = stripe.gateway_for(settings.live_allowed)
    # Runs of other groups that wrote the same products afterwards: their writes are not undone.
    later = later_writers(context.instance, root, since=since) if journal else {}
    items = plan_rollback(gateway, journal, later)
    for line in describe(items):
        context.log.info(line)
    result = apply_rollback(gateway, [] if config.dry_run else items, root)
    result.items = items
    summary: dict[str, Any] = {
        "run_id": root,
        "dry_run": config.dry_run,
        "journaled": len(journal),
        **result.summary(),
    }
    changed = result.changed
    if changed:
        context.log.warning(
            f"{len(changed)} products changed in Stripe since run {root} were left alone: "
            + ", ".join(
                f"{i.product_id} (changed by run {i.changed_by})"
                if i.changed_by
                else f"{i.product_id} ({', '.join(i.changed_fields)})"
                for i in changed[:50]
            )
        )
    if result.failed:
        # The CMS is restored only once Stripe is: a re-run then does both.
        raise dg.Failure(
            description=f"{len(result.failed)} products could not be rolled back (re-run the rollback): "
            + "; ".join(f"{pid}: {err}" for pid, err in result.failed[:20]),
            metadata={"failed": dg.MetadataValue.int(len(result.failed))},
        )
    restored = conflicts = 0
    if config.cms and not config.dry_run:
        writer = guarded_writer(catalog, settings.live_allowed)
        for run_id in runs:
            outcome = writer.restore_backup(run_id)
            restored += outcome.written
            conflicts += len(outcome.conflicts)
    summary.update({"cms_restored": restored, "cms_conflicts": conflicts})
    context.add_output_metadata(
        {
            "plan": dg.MetadataValue.md("```\n" + "\n".join(describe(items)) + "\n```"),
            **{
                k: dg.MetadataValue.int(v) for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)
            },
        }
    )
    summary["lines"] = empty + describe(items)
    summary["changed"] = [
        {"product_id": i.product_id, "fields": i.changed_fields, "changed_by": i.changed_by} for i in changed
    ]
    return summary


@dg.graph
def stripe_rollback_graph() -> None:
    stripe_rollback()


rollback_job = stripe_rollback_graph.to_job(
    name=ROLLBACK_JOB,
    description="Undo a sync run in Stripe (from its journal) and in the CMS sync columns; dry-run by default.",
)
