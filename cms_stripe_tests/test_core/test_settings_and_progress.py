"""Settings keep the old tool's variable names and defaults that matter for safety (dry-run on), never
render a secret, and the progress line is byte-for-byte the format its users grep for."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime

import pytest

from cms_stripe.core.progress import ProgressTracker, format_progress
from cms_stripe.core.settings import Settings, SettingsError, mask_secret


def test_defaults_are_safe():
    s = Settings.from_env({})
    assert s.dry_run is True
    assert s.strategy == "incremental"
    assert s.skip_existing is True
    assert s.allow_live is False
    assert s.checkpoint_interval == 100


def test_old_tool_variables_are_read():
    s = Settings.from_env(
        {
            "MIGRATION_DRY_RUN": "false",
            "MIGRATION_STRATEGY": "selective",
            "MIGRATION_PRODUCT_IDS": "prod1, prod2,prod3",
            "MIGRATION_START_DATE": "2024-01-01T00:00:00Z",
            "MIGRATION_END_DATE": "2024-12-31T23:59:59Z",
            "MIGRATION_MAX_CONCURRENCY": "3",
            "MIGRATION_CHECKPOINT_INTERVAL": "50",
            "STRIPE_MAX_RPS": "80",
        }
    )
    assert s.dry_run is False
    assert s.product_ids == ("prod1", "prod2", "prod3")
    assert s.start_date == date(2024, 1, 1) and s.end_date == date(2024, 12, 31)
    assert (s.max_concurrency, s.checkpoint_interval, s.stripe_max_rps) == (3, 50, 80.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MIGRATION_DRY_RUN": "maybe"}, "MIGRATION_DRY_RUN"),
        ({"MIGRATION_STRATEGY": "everything"}, "MIGRATION_STRATEGY"),
        ({"MIGRATION_STRATEGY": "selective"}, "MIGRATION_PRODUCT_IDS"),
        ({"MIGRATION_START_DATE": "yesterday"}, "MIGRATION_START_DATE"),
        ({"MIGRATION_START_DATE": "2024-02-01", "MIGRATION_END_DATE": "2024-01-01"}, "before"),
        ({"MIGRATION_MAX_CONCURRENCY": "0"}, "MIGRATION_MAX_CONCURRENCY"),
        ({"STRIPE_MAX_RPS": "-1"}, "STRIPE_MAX_RPS"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_describe_never_shows_secrets():
    key = "sk_live_" + "A1b2C3d4E5f6G7h8I9j0" * 2
    s = Settings.from_env(
        {
            "STRIPE_SECRET_KEY": key,
            # Built at run time: the tree holds nothing shaped like a real token.
            "SUPABASE_SERVICE_ROLE_KEY": ".".join(
                base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")
                for part in ('{"alg":"HS256"}', "secret-service-role", "signature-bytes")
            ),
            "CMS_DATABASE_URL": "postgresql+psycopg://user:hunter2@db.example.com:5432/postgres",
        }
    )
    text = repr(s) + str(s.describe())
    assert key not in text and key[8:-4] not in text
    assert "hunter2" not in text and "c2VjcmV0" not in text
    assert s.describe()["STRIPE_SECRET_KEY"].startswith("sk_live_…")
    assert s.live_key
    assert mask_secret(None) == "(not set)"


def test_progress_line_format():
    line = format_progress(452, 1000, 448, 4, 2.3, datetime(2026, 1, 15, 14, 30, tzinfo=UTC))
    assert line == "Progress: 45.2% (452/1000) | Success: 448 | Failed: 4 | Rate: 2.3/s | ETA: 2026-01-15T14:30:00Z"


def test_tracker_emits_every_n_and_at_the_end():
    lines: list[str] = []
    ticks = iter(range(1000))
    tracker = ProgressTracker(
        total=25,
        emit=lines.append,
        every=10,
        clock=lambda: float(next(ticks)),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    for i in range(25):
        tracker.record(ok=i % 5 != 0)
    assert len(lines) == 3
    assert lines[-1].startswith("Progress: 100.0% (25/25) | Success: 20 | Failed: 5 | Rate: ")
    assert re.match(
        r"Progress: 40\.0% \(10/25\) \| Success: 8 \| Failed: 2 \| Rate: [\d.]+/s \| ETA: 2026-01-01T", lines[0]
    )
