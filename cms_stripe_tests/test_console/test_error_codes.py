"""Operators look codes up in the README's troubleshooting table: every exception a sync can meet
maps to the code the tool we replace used for it (STRIPE_RATE_LIMIT, SUPABASE_TIMEOUT, ...)."""

from __future__ import annotations

import pytest
import stripe

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.core.error_codes import (
    TROUBLESHOOTING,
    ErrorCode,
    base_code,
    code_for_exception,
    troubleshooting_markdown,
    validation_code,
)
from cms_stripe.core.errors import (
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
)
from cms_stripe.core.mapping import RowIssue
from cms_stripe.core.settings import LiveKeyRefused, SettingsError
from cms_stripe.core.validation import quarantine_reason


def _with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


class OperationalError(Exception):
    """Stands for sqlalchemy.exc.OperationalError: recognised by its module, as in production."""


OperationalError.__module__ = "sqlalchemy.exc"


class APIError(Exception):
    """postgrest.exceptions.APIError, as supabase-py raises it."""


APIError.__module__ = "postgrest.exceptions"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (stripe.RateLimitError("slow down", http_status=429), "STRIPE_RATE_LIMIT"),
        (stripe.AuthenticationError("bad key", http_status=401), "STRIPE_AUTH"),
        (stripe.PermissionError("no", http_status=403), "STRIPE_AUTH"),
        (stripe.InvalidRequestError("bad param", param="name", http_status=400), "STRIPE_INVALID_REQUEST"),
        (stripe.IdempotencyError("reused", http_status=400), "STRIPE_IDEMPOTENCY"),
        (stripe.APIConnectionError("reset"), "STRIPE_CONNECTION"),
        (stripe.APIError("boom", http_status=500), "STRIPE_API_ERROR"),
        (RetriesExhaustedError("429 x5", code="rate", http_status=429), "STRIPE_RATE_LIMIT"),
        (RetriesExhaustedError("locked", code="lock_timeout", http_status=429), "STRIPE_RATE_LIMIT"),
        (RetriesExhaustedError("gone", code="connection"), "STRIPE_CONNECTION"),
        (RetriesExhaustedError("conflict", code="conflict", http_status=409), "STRIPE_API_ERROR"),
        (
            _with_cause(StripeSyncError("wrapped"), stripe.InvalidRequestError("x", param="p", http_status=400)),
            "STRIPE_INVALID_REQUEST",
        ),
        (StripeSyncError("key", http_status=401, severity=Severity.CRITICAL), "STRIPE_AUTH"),
        (AmbiguousWriteError("maybe", http_status=500), "STRIPE_API_ERROR"),
        (CircuitOpenError("down"), "STRIPE_UNAVAILABLE"),
        (LiveKeyRefused("live"), "LIVE_KEY_REFUSED"),
        (SettingsError("MIGRATION_STRATEGY"), "CONFIG_ERROR"),
        (CmsConfigError("no url"), "CONFIG_ERROR"),
        (OperationalError("canceling statement due to statement timeout"), "SUPABASE_TIMEOUT"),
        (OperationalError("could not connect to server"), "CMS_UNAVAILABLE"),
        (APIError("57014 canceling statement"), "SUPABASE_TIMEOUT"),
        (APIError("permission denied for table products"), "CMS_UNAVAILABLE"),
        (TimeoutError("read timed out"), "SUPABASE_TIMEOUT"),
        (ConnectionRefusedError("refused"), "CMS_UNAVAILABLE"),
        (KeyError("title"), "INTERNAL_ERROR"),
    ],
)
def test_exception_codes(exc, code):
    assert code_for_exception(exc) == code


def test_quarantine_reason_names_the_validation_code_and_its_sub_reason():
    issues = [
        RowIssue("title_missing", "title", "title is missing or blank"),
        RowIssue("price_negative", "price", "price -5.00 is negative"),
    ]
    assert quarantine_reason(issues) == (
        "HIGH VALIDATION_ERROR[title_missing] (title): title is missing or blank; "
        "HIGH VALIDATION_ERROR[price_negative] (price): price -5.00 is negative"
    )
    assert validation_code("title_missing") == "VALIDATION_ERROR[title_missing]"
    assert base_code("VALIDATION_ERROR[title_missing]") == "VALIDATION_ERROR"


def test_troubleshooting_table_covers_every_code_with_the_old_tools_severities():
    assert set(TROUBLESHOOTING) == set(ErrorCode)
    severities = {code.value: t.severity.value for code, t in TROUBLESHOOTING.items()}
    assert severities == {
        "STRIPE_RATE_LIMIT": "HIGH",
        "STRIPE_AUTH": "CRITICAL",
        "STRIPE_INVALID_REQUEST": "HIGH",
        "STRIPE_IDEMPOTENCY": "HIGH",
        "STRIPE_CONNECTION": "HIGH",
        "STRIPE_UNAVAILABLE": "CRITICAL",
        "STRIPE_API_ERROR": "HIGH",
        "LIVE_KEY_REFUSED": "CRITICAL",
        "SUPABASE_TIMEOUT": "HIGH",
        "CMS_UNAVAILABLE": "CRITICAL",
        "CMS_WRITE_BACK": "HIGH",
        "CONFIG_ERROR": "CRITICAL",
        "VALIDATION_ERROR": "HIGH",
        "INTERNAL_ERROR": "HIGH",
    }
    table = troubleshooting_markdown().splitlines()
    assert table[0] == "| Code | Meaning | Severity | What to do |"
    assert len(table) == 2 + len(ErrorCode)


def test_readme_troubleshooting_table_is_the_one_the_code_defines():
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert troubleshooting_markdown() in readme
