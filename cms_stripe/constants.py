"""Names shared by writers and readers: asset group, pools, outcome names, metadata keys, check names.

The assets and checks write these keys and the CLI reads them back, so each is spelled once, here."""

from __future__ import annotations

GROUP = "cms_stripe"

# Concurrency pools. Stripe's limits are account-wide, so every Stripe-writing step shares one pool
# whose limit (1 in dagster.yaml) keeps overlapping runs from exceeding them together.
STRIPE_POOL = "stripe_api"
CMS_POOL = "cms_database"

# Run tags: Dagster's own for a single-run partition range, ours for what started a run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TRIGGER_TAG = "cms_stripe/trigger"
# The process that executes a CLI run in-process (host and pid): a run whose process is gone can be
# told from one still writing.
HOST_TAG = "cms_stripe/host"
PID_TAG = "cms_stripe/pid"

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
QUARANTINE_BY_CODE = "quarantine_by_code"
QUARANTINE_WRITTEN_BACK = "quarantine_written_back"
QUARANTINE_WRITE_BACK_ERROR = "quarantine_write_back_error"
DRY_RUN = "dry_run"
PLANNED = "planned"
# Prefix of the per-operation-kind plan counts (plan_create, plan_update, ...): one per kind of
# core.plan.KINDS, and plan_quarantined for the rows the plan refused.
PLAN_COUNT_PREFIX = "plan_"
PLAN_COUNT_KEYS = tuple(
    PLAN_COUNT_PREFIX + kind for kind in ("create", "update", "reprice", "archive", "reactivate", "noop", "quarantined")
)
# How each CMS row ended up in Stripe (the values of core.executor.Outcome): each is also the
# metadata key of its count.
CREATED = "created"
UPDATED = "updated"
REPRICED = "repriced"
ARCHIVED = "archived"
REACTIVATED = "reactivated"
NOOP = "noop"
FAILED = "failed"
SKIPPED = "skipped"
OUTCOMES = (CREATED, UPDATED, REPRICED, ARCHIVED, REACTIVATED, NOOP, FAILED, SKIPPED)
SKIPPED_EXISTING = "skipped_existing"
RESUMED = "resumed_from_checkpoint"
WRITTEN_BACK = "written_back"
WRITEBACK_CONFLICTS = "writeback_conflicts"
WRITEBACK_FAILED = "writeback_failed"
SUCCESS_RATE = "success_rate"
PRODUCTS_PER_SECOND = "products_per_second"
STRIPE_CALLS = "stripe_calls"
STRIPE_WRITES = "stripe_writes"
# Write requests issued for a partition's own products (retries inside the Stripe client excluded):
# the part of the run's Stripe traffic that can be attributed to a day. State reads serve many days.
STRIPE_WRITE_ATTEMPTS = "stripe_write_attempts"
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
QUARANTINED = "quarantined"
STRIPE_PRODUCT_COUNT = "stripe_products"
EDITED_IN_STRIPE = "edited_in_stripe"
CHECKPOINT = "checkpoint"
CHECKPOINT_DONE = "checkpoint_done"
# Applying a reviewed plan (`cms-stripe apply`, the apply_plan job).
APPLY_REPORT = "apply_report"
APPLY_REFUSED = "refused"
PLAN_REFUSED = "plan_refused"

# Asset check metadata (besides FAILED, DRIFT, ORPHANS, DUPLICATES above).
CHECK_RATE = "rate"
CHECK_THRESHOLD = "threshold"
CHECK_VALID = "valid"
CHECK_CHECKED = "checked"
CHECK_SAMPLE = "sample"
# The Stripe write journal (assets/journal.py): observations of this asset key, one per batch.
JOURNAL_ASSET = "stripe_write_journal"
JOURNAL_RUN = "journal_run_id"
JOURNAL_ENTRIES = "journal_entries"
JOURNAL_PHASE = "journal_phase"
ROLLBACK_JOB_CONFIG_RUN = "run_id"

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

# Errors of a run, for the run report: the first ones with their CMS ids (JSON list of
# {cms_id, code, severity, reason}) and counts by operator code and severity.
ERRORS = "errors"
ERRORS_BY_CODE = "errors_by_code"
ERRORS_BY_SEVERITY = "errors_by_severity"
# Rows the plan refused (e.g. two rows naming one Stripe product): core.plan counts them as "quarantined".
PLAN_QUARANTINED = "plan_quarantined"
RUN_REPORT_PATH = "run_report_path"
LOG_PATH = "log_path"

# What a materialization of one partition says. Each partition of a run gets its own dict with every
# key of its asset (zeros for a day without rows), in a single-partition run and a range run alike:
# Dagster fills a key missing from a partition's dict with the run-level value, so the assets give the
# range's MaterializeResult no metadata at all (assets/common.py). Three kinds of keys:
#
# Counts of the partition's own rows: a run's total is their sum (the run report adds them up).
PER_PARTITION_KEYS = frozenset(
    {
        ROWS,
        ROWS_BEFORE_START,
        ROWS_UNDATED,
        ROWS_IN_FUTURE,
        UNREADABLE_ROWS,
        VALID_ROWS,
        QUARANTINED_ROWS,
        QUARANTINE_BY_CODE,
        PLANNED,
        *PLAN_COUNT_KEYS,
        SKIPPED_EXISTING,
        RESUMED,
        STRIPE_WRITE_ATTEMPTS,
        *OUTCOMES,
        MATCHED,
        MISSING,
        DRIFT,
        DUPLICATES,
        ORPHANS,
        QUARANTINED,
        EDITED_IN_STRIPE,
        ERRORS,
        ERRORS_BY_CODE,
        ERRORS_BY_SEVERITY,
    }
)
# The partition's own view that does not add up: its rates, newest row, and tables of its own rows.
PARTITION_DETAIL_KEYS = frozenset(
    {MAX_UPDATED_AT, VALIDATION_RATE, SUCCESS_RATE, QUARANTINE_TABLE, PLAN_SUMMARY, FAILURES_TABLE, REPORT_TABLE}
)
# Facts about the run that made the partition, true of each of its partitions: dry run or not, and
# links to the run's plan, report, log and reconciliation file (they cover the partition's rows).
RUN_LINK_KEYS = frozenset({DRY_RUN, PLAN_PATH, RUN_REPORT_PATH, LOG_PATH, REPORT_PATH})
# Figures of the whole run: never on a partition. Each asset step records them once per run as an
# observation of the asset without a partition (in the run's event log, read back by the run report),
# together with the whole run's plan summary, failures and reconciliation tables.
RUN_WIDE_KEYS = frozenset(
    {
        PRODUCTS_PER_SECOND,
        STRIPE_CALLS,
        STRIPE_WRITES,
        RATE_LIMITED,
        DURATION_S,
        WRITTEN_BACK,
        WRITEBACK_CONFLICTS,
        WRITEBACK_FAILED,
        QUARANTINE_WRITTEN_BACK,
        QUARANTINE_WRITE_BACK_ERROR,
    }
)

# Run tag: checkpoints of this run recorded before this time (a float timestamp) are ignored
# (`cms-stripe reset`), so resuming it starts over instead of skipping what they list.
CHECKPOINTS_RESET_TAG = "cms_stripe/checkpoints_reset_at"
# Python logger the sync's progress, writes and row errors go to (console and log file listen).
RUN_LOGGER = "cms_stripe.run"
