"""Error codes in the terms of the tool we replace (`STRIPE_RATE_LIMIT`, `SUPABASE_TIMEOUT`,
`VALIDATION_ERROR`, ...): one mapping from our exceptions and quarantine reasons to a code, used in
console messages, the log file, the run report and the CMS's `sync_error`, so an operator can look a
code up in the README's troubleshooting table whatever surface showed it.

No Dagster, SQLAlchemy or postgrest import: CMS exceptions are recognised by their module, so this
module stays importable from the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import stripe

from cms_stripe.core.errors import (
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
)
from cms_stripe.core.settings import LiveKeyRefused, SettingsError


class ErrorCode(StrEnum):
    STRIPE_RATE_LIMIT = "STRIPE_RATE_LIMIT"
    STRIPE_AUTH = "STRIPE_AUTH"
    STRIPE_INVALID_REQUEST = "STRIPE_INVALID_REQUEST"
    STRIPE_IDEMPOTENCY = "STRIPE_IDEMPOTENCY"
    STRIPE_CONNECTION = "STRIPE_CONNECTION"
    STRIPE_UNAVAILABLE = "STRIPE_UNAVAILABLE"
    STRIPE_API_ERROR = "STRIPE_API_ERROR"
    LIVE_KEY_REFUSED = "LIVE_KEY_REFUSED"
    SUPABASE_TIMEOUT = "SUPABASE_TIMEOUT"
    CMS_UNAVAILABLE = "CMS_UNAVAILABLE"
    CMS_WRITE_BACK = "CMS_WRITE_BACK"
    CONFIG_ERROR = "CONFIG_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True)
class Troubleshooting:
    meaning: str
    severity: Severity
    action: str


# The README's troubleshooting table is this mapping, in this order.
TROUBLESHOOTING: dict[ErrorCode, Troubleshooting] = {
    ErrorCode.STRIPE_RATE_LIMIT: Troubleshooting(
        "Stripe answered 429 (rate limit or object lock) through every retry of one call",
        Severity.HIGH,
        "Lower STRIPE_MAX_RPS (or stop other clients of the account), then `cms-stripe resume`",
    ),
    ErrorCode.STRIPE_AUTH: Troubleshooting(
        "Stripe refused the key (401) or its permissions (403); the run stops",
        Severity.CRITICAL,
        "Check STRIPE_SECRET_KEY (a restricted key needs write access to Products and Prices)",
    ),
    ErrorCode.STRIPE_INVALID_REQUEST: Troubleshooting(
        "Stripe rejected this product's parameters (400/404)",
        Severity.HIGH,
        "Read the reason (param=...) in the log, fix the CMS row, run again",
    ),
    ErrorCode.STRIPE_IDEMPOTENCY: Troubleshooting(
        "An idempotency key was reused with other parameters (the row changed within 24 h of a failed write)",
        Severity.HIGH,
        "Run again after 24 h, or clear the row's sync columns; nothing was duplicated",
    ),
    ErrorCode.STRIPE_CONNECTION: Troubleshooting(
        "The connection to Stripe dropped through every retry",
        Severity.HIGH,
        "Check the network or STRIPE_API_BASE, then `cms-stripe resume`",
    ),
    ErrorCode.STRIPE_UNAVAILABLE: Troubleshooting(
        "Stripe kept failing (5xx, timeouts, 429s): the circuit breaker stopped the run",
        Severity.CRITICAL,
        "Wait for https://status.stripe.com, then `cms-stripe resume` (checkpoints skip finished products)",
    ),
    ErrorCode.STRIPE_API_ERROR: Troubleshooting(
        "Any other Stripe error (5xx, 409 conflict) that persisted",
        Severity.HIGH,
        "Run again; if it repeats, send the request_id from the log to Stripe support",
    ),
    ErrorCode.LIVE_KEY_REFUSED: Troubleshooting(
        "A write with a live key was refused: live writes must be allowed explicitly",
        Severity.CRITICAL,
        "Run `cms-stripe dry-run` first, then `cms-stripe migrate --confirm-live`",
    ),
    ErrorCode.SUPABASE_TIMEOUT: Troubleshooting(
        "A CMS query or write timed out",
        Severity.HIGH,
        "Reduce MIGRATION_BATCH_SIZE or raise the database's statement timeout, then resume",
    ),
    ErrorCode.CMS_UNAVAILABLE: Troubleshooting(
        "The CMS (database or Supabase REST) could not be reached or refused the request",
        Severity.CRITICAL,
        "Check CMS_DATABASE_URL / SUPABASE_URL and the service-role key with `cms-stripe validate`",
    ),
    ErrorCode.CMS_WRITE_BACK: Troubleshooting(
        "Stripe was written but the CMS write-back of these rows failed",
        Severity.HIGH,
        "Run again: the next run finds the products by their ids and repairs the rows without a Stripe write",
    ),
    ErrorCode.CONFIG_ERROR: Troubleshooting(
        "A setting is missing or malformed",
        Severity.CRITICAL,
        "Fix the environment variable the message names (`cms-stripe validate` lists them, masked)",
    ),
    ErrorCode.VALIDATION_ERROR: Troubleshooting(
        "The CMS row cannot become a Stripe product as it stands (sub-reason in brackets, e.g. title_missing)",
        Severity.HIGH,
        "Fix the row in the CMS (the quarantine table names the field); the next run syncs it",
    ),
    ErrorCode.INTERNAL_ERROR: Troubleshooting(
        "An unexpected error on one product (a bug)",
        Severity.HIGH,
        "Report it with the log lines of that CMS id",
    ),
}


def _module_of(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _is_timeout(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, TimeoutError) or "timeout" in text or "timed out" in text or "57014" in text


def _stripe_status_code(status: int | None, code: str | None) -> ErrorCode | None:
    # `code` is Stripe's error code, or for exhausted retries the gateway's kind of transient error.
    if status == 429 or code in ("rate_limit", "lock_timeout", "rate", "lock"):
        return ErrorCode.STRIPE_RATE_LIMIT
    if status in (401, 403):
        return ErrorCode.STRIPE_AUTH
    if code == "idempotency_error":
        return ErrorCode.STRIPE_IDEMPOTENCY
    if code == "connection":
        return ErrorCode.STRIPE_CONNECTION
    if status in (400, 404):
        return ErrorCode.STRIPE_INVALID_REQUEST
    return None


def code_for_exception(exc: BaseException) -> ErrorCode:
    """The code of any exception a sync can raise (Stripe, CMS, settings), looking through causes
    our own wrappers add (RetriesExhaustedError wraps the last 429 or 409)."""
    if isinstance(exc, LiveKeyRefused):
        return ErrorCode.LIVE_KEY_REFUSED
    if isinstance(exc, CircuitOpenError):
        return ErrorCode.STRIPE_UNAVAILABLE
    if isinstance(exc, SettingsError):
        return ErrorCode.CONFIG_ERROR
    if isinstance(exc, StripeSyncError):
        cause = exc.__cause__
        if isinstance(cause, stripe.StripeError):
            return code_for_exception(cause)
        found = _stripe_status_code(exc.http_status, exc.code)
        if found is not None:
            return found
        if isinstance(exc, AmbiguousWriteError | RetriesExhaustedError):
            return ErrorCode.STRIPE_API_ERROR
        return ErrorCode.STRIPE_API_ERROR if exc.http_status else ErrorCode.INTERNAL_ERROR
    if isinstance(exc, stripe.StripeError):
        if isinstance(exc, stripe.RateLimitError):
            return ErrorCode.STRIPE_RATE_LIMIT
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
            return ErrorCode.STRIPE_AUTH
        if isinstance(exc, stripe.IdempotencyError):
            return ErrorCode.STRIPE_IDEMPOTENCY
        if isinstance(exc, stripe.APIConnectionError):
            return ErrorCode.STRIPE_CONNECTION
        return _stripe_status_code(exc.http_status, exc.code) or ErrorCode.STRIPE_API_ERROR
    module = _module_of(exc)
    if type(exc).__name__ == "CmsConfigError":
        return ErrorCode.CONFIG_ERROR
    if module.startswith(("sqlalchemy", "psycopg", "postgrest", "httpx", "supabase", "sqlite3")) or isinstance(
        exc, ConnectionError | TimeoutError
    ):
        return ErrorCode.SUPABASE_TIMEOUT if _is_timeout(exc) else ErrorCode.CMS_UNAVAILABLE
    return ErrorCode.INTERNAL_ERROR


def validation_code(sub_reason: str) -> str:
    """`VALIDATION_ERROR[title_missing]`: the old tool's code with our quarantine reason."""
    return f"{ErrorCode.VALIDATION_ERROR}[{sub_reason}]"


def base_code(code: str) -> str:
    """`VALIDATION_ERROR[title_missing]` → `VALIDATION_ERROR` (the row of the troubleshooting table)."""
    return code.split("[", 1)[0]


def troubleshooting_markdown() -> str:
    lines = ["| Code | Meaning | Severity | What to do |", "|---|---|---|---|"]
    for code, t in TROUBLESHOOTING.items():
        lines.append(f"| `{code}` | {t.meaning} | {t.severity.value} | {t.action} |")
    return "\n".join(lines)
