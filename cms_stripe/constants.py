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
EDITED_IN_STRIPE = "edited_in_stripe"
CHECKPOINT = "checkpoint"
CHECKPOINT_DONE = "checkpoint_done"
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
