"""Apply a reviewed plan file (`cms-stripe apply FILE`, or this job launched from the UI with the file
in its config). Orchestration only: the checks and the writes are core.apply's."""

import json
import pathlib
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from cms_stripe.assets.journal import InstanceJournal
from cms_stripe.cms.source import CatalogSource
from cms_stripe.constants import (
    APPLY_REFUSED,
    APPLY_REPORT,
    PLAN_REFUSED,
    REPORT_PATH,
    STRIPE_POOL,
    STRIPE_WRITES,
)
from cms_stripe.core.apply import PlanRefused, apply_reviewed_plan, check_plan, load_plan
from cms_stripe.core.settings import Settings
from cms_stripe.resources.cms import guarded_writer
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import StripeResource


class ApplyPlanConfig(dg.Config):
    plan_file: str = Field(description="The plan JSON written by `cms-stripe plan` (or by a dry run).")


def _save_report(reports_dir: str, run_id: str, data: dict[str, Any], markdown: str) -> str:
    root = pathlib.Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"apply-{run_id[:8]}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    path.with_suffix(".md").write_text(markdown + "\n")
    return str(path)


@dg.op(pool=STRIPE_POOL, tags={"kind": "stripe"})
def apply_plan_file(
    context: dg.OpExecutionContext,
    config: ApplyPlanConfig,
    settings: SyncSettingsResource,
    stripe: StripeResource,
    catalog: dg.ResourceParam[CatalogSource],
) -> dict[str, Any]:
    """Write exactly the plan's operations whose CMS rows and Stripe objects are as the plan read them;
    list the others as refused (the run fails when any was). Applying a plan again writes nothing."""
    # Applying is the explicit request to write, so MIGRATION_DRY_RUN (the default for `migrate`)
    # does not turn it into a plan; the live-key guard still applies.
    if stripe.is_live and not settings.live_allowed:
        raise dg.Failure("STRIPE_SECRET_KEY is a live key: set MIGRATION_ALLOW_LIVE=true (or --confirm-live) to apply")
    path = pathlib.Path(config.plan_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise dg.Failure(f"cannot read the plan file {path}: {exc.strerror or exc}", allow_retries=False) from None
    try:
        plan = load_plan(text)
        account_id, mode = stripe.account()
        check_plan(
            plan,
            account_id=account_id,
            mode=mode,
            now=datetime.now(UTC),
            max_age_hours=Settings.from_env().plan_max_age_hours,
        )
    except PlanRefused as exc:
        raise dg.Failure(
            description=f"plan refused ({exc.reason}): {exc}",
            metadata={PLAN_REFUSED: dg.MetadataValue.text(exc.reason)},
            allow_retries=False,
        ) from None
    context.log.info(
        f"applying {len(plan.operations)} operations of the plan made {plan.created_at.isoformat()} "
        f"for {plan.account_id} ({plan.mode} mode)"
    )
    report = apply_reviewed_plan(
        plan,
        reader=catalog,
        gateway=stripe.gateway_for(settings.live_allowed),
        writer=guarded_writer(catalog, settings.live_allowed),
        run_id=context.run.run_id,
        log=context.log.info,
        max_concurrency=stripe.max_concurrency,
        # Journaled like a sync's writes, under the root run, so `rollback --stripe` undoes an apply too.
        journal=InstanceJournal(context.instance, context.run.root_run_id or context.run.run_id),
        journal_run=context.run.root_run_id or context.run.run_id,
    )
    data = report.to_dict()
    markdown = report.summary_markdown()
    report_path = _save_report(settings.reports_dir, context.run.run_id, data, markdown)
    metadata = {
        APPLY_REPORT: dg.MetadataValue.json(data),
        APPLY_REFUSED: dg.MetadataValue.int(len(report.refused)),
        STRIPE_WRITES: dg.MetadataValue.int(report.stripe_writes),
        REPORT_PATH: dg.MetadataValue.path(report_path),
        "summary": dg.MetadataValue.md(markdown),
    }
    if not report.ok:
        raise dg.Failure(
            description=f"{len(report.refused)} operations refused, {len(report.failed)} failed"
            + (f"; {report.critical}" if report.critical else ""),
            metadata=metadata,
            # A retry would refuse the same operations again; the failure is the report.
            allow_retries=False,
        )
    context.add_output_metadata(metadata)
    return data


@dg.graph
def apply_plan_graph() -> None:
    apply_plan_file()
