"""Names shared by writers and readers: asset group, pools, metadata keys, environment variables."""

from __future__ import annotations

GROUP = "cms_stripe"

# Concurrency pools. Stripe's limits are account-wide, so every Stripe-writing step shares one pool
# whose limit (1 in dagster.yaml) keeps overlapping runs from exceeding them together.
STRIPE_POOL = "stripe_api"
CMS_POOL = "cms_database"

DEFAULT_PARTITION_START = "2025-01-01"

# Materialization metadata keys: numeric ones are plotted over time in the UI.
ROWS = "rows"
MAX_UPDATED_AT = "max_updated_at"
# Rows a partition holds because its edge is open (first: older or undated; last: future-stamped).
ROWS_BEFORE_START = "rows_before_start"
ROWS_UNDATED = "rows_without_updated_at"
ROWS_IN_FUTURE = "rows_in_future"
UNREADABLE_ROWS = "rows_with_unreadable_values"
VALID_ROWS = "valid_rows"
QUARANTINED_ROWS = "quarantined_rows"
VALIDATION_RATE = "validation_success_rate"
QUARANTINE_TABLE = "quarantine"
DRY_RUN = "dry_run"
PLANNED = "planned"
CREATED = "created"
UPDATED = "updated"
REPRICED = "repriced"
ARCHIVED = "archived"
REACTIVATED = "reactivated"
NOOP = "noop"
FAILED = "failed"
SKIPPED = "skipped_existing"
RESUMED = "resumed_from_checkpoint"
SUCCESS_RATE = "success_rate"
PRODUCTS_PER_SECOND = "products_per_second"
STRIPE_CALLS = "stripe_calls"
STRIPE_WRITES = "stripe_writes"
RATE_LIMITED = "stripe_429s"
DURATION_S = "duration_s"
PLAN_PATH = "plan_path"
PLAN_SUMMARY = "plan_summary"
FAILURES_TABLE = "failures"
REPORT_PATH = "report_path"
REPORT_TABLE = "report"
MATCHED = "matched"
MISSING = "missing"
DRIFT = "drift"
DUPLICATES = "duplicates"
ORPHANS = "orphans"
CHECKPOINT = "checkpoint"
CHECKPOINT_DONE = "checkpoint_done"

# Asset check names.
CHECK_VALIDATION_RATE = "validation_success_rate_at_least_threshold"
CHECK_NO_FAILED_WRITES = "no_failed_stripe_writes"
CHECK_NO_DRIFT = "no_reconciliation_drift"
CHECK_NO_DUPLICATES = "no_duplicate_stripe_products"

# Asset names (their keys), for readers of a run's materializations such as the run report.
RAW_ASSET = "raw_cms_products"
VALIDATED_ASSET = "validated_products"
STRIPE_ASSET = "stripe_products"
RECONCILIATION_ASSET = "reconciliation_report"

# Outcomes of a product in a sync (core.executor's Outcome), as metadata keys.
NOT_ATTEMPTED = "skipped"
OUTCOME_KEYS = (CREATED, UPDATED, REPRICED, ARCHIVED, REACTIVATED, NOOP, FAILED, NOT_ATTEMPTED)

# Errors of a run, for the run report: the first ones with their CMS ids (JSON list of
# {cms_id, code, severity, reason}) and counts by operator code and severity.
ERRORS = "errors"
ERRORS_BY_CODE = "errors_by_code"
ERRORS_BY_SEVERITY = "errors_by_severity"
WRITTEN_BACK = "written_back"
# Rows the plan refused (e.g. two rows naming one Stripe product): core.plan counts them as "quarantined".
PLAN_QUARANTINED = "plan_quarantined"
RUN_REPORT_PATH = "run_report_path"
LOG_PATH = "log_path"

# Keys whose value in a range run is each partition's own (a run's total is their sum); every other
# key describes the whole run and is the same on every partition of it.
PER_PARTITION_KEYS = frozenset(
    {
        ROWS,
        ROWS_BEFORE_START,
        ROWS_UNDATED,
        ROWS_IN_FUTURE,
        UNREADABLE_ROWS,
        VALID_ROWS,
        QUARANTINED_ROWS,
        *OUTCOME_KEYS,
        MATCHED,
        MISSING,
        DRIFT,
        DUPLICATES,
        ORPHANS,
        ERRORS,
        ERRORS_BY_CODE,
        ERRORS_BY_SEVERITY,
    }
)

# Run tag: checkpoints of this run recorded before this time (a float timestamp) are ignored
# (`cms-stripe reset`), so resuming it starts over instead of skipping what they list.
CHECKPOINTS_RESET_TAG = "cms_stripe/checkpoints_reset_at"
# Python logger the sync's progress, writes and row errors go to (console and log file listen).
RUN_LOGGER = "cms_stripe.run"
