"""Error severities and the exceptions the gateway raises, classified as the tool we replace did.

LOW      log and continue (e.g. the object already exists: the caller verifies and moves on)
MEDIUM   transient: retry with backoff (429, 409, 5xx, dropped connection)
HIGH     this product cannot be synced as sent: skip it, report it, keep the run going
CRITICAL the run cannot make progress (bad key, missing permission, Stripe unreachable): stop it
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import stripe
from pybreaker import CircuitBreakerError

RESUME_HINT = (
    "nothing is lost — re-run `cms-stripe migrate` (or re-execute the Dagster run) to resume from the last checkpoint"
)


class Severity(StrEnum):  # a (str, Enum): compares and serialises as its value
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class StripeSyncError(Exception):
    """An error from a Stripe call, with everything a run report needs and nothing secret."""

    default_severity: Severity = Severity.HIGH

    def __init__(
        self,
        message: str,
        *,
        severity: Severity | None = None,
        code: str | None = None,
        http_status: int | None = None,
        param: str | None = None,
        endpoint: str | None = None,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.severity = severity if severity is not None else self.default_severity
        self.code = code
        self.http_status = http_status
        self.param = param
        self.endpoint = endpoint
        self.idempotency_key = idempotency_key
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        details = [
            f"{name}={value}"
            for name, value in (
                ("endpoint", self.endpoint),
                ("status", self.http_status),
                ("code", self.code),
                ("param", self.param),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for run reports."""
        return {
            "type": type(self).__name__,
            "severity": self.severity.value,
            "message": self.message,
            "code": self.code,
            "http_status": self.http_status,
            "param": self.param,
            "endpoint": self.endpoint,
            "idempotency_key": self.idempotency_key,
            "request_id": self.request_id,
        }


class AlreadyExistsError(StripeSyncError):
    """`resource_already_exists` on a create: the work is already done; the caller verifies it."""

    default_severity = Severity.LOW


class AmbiguousWriteError(StripeSyncError):
    """A write got a 5xx: it may or may not have been applied.

    Stripe stores the 5xx under the idempotency key and replays it, so retrying with the same key
    can never succeed. The caller looks the object up (deterministic product id; a price by its
    content and metadata among the product's prices) and, only if it is absent, retries with a new key.
    """

    default_severity = Severity.MEDIUM


class RetriesExhaustedError(StripeSyncError):
    """A transient error (429, 409, lock timeout) persisted through every attempt of one call.

    Stripe is answering, so the run goes on; this product is skipped and retried by the next run.
    """

    default_severity = Severity.HIGH


class CircuitOpenError(StripeSyncError):
    """Stripe looks down (sustained connection errors / 5xx / rate limits): stop the run."""

    default_severity = Severity.CRITICAL


# -- reading stripe-python exceptions -----------------------------------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    # stripe-python hands over requests' CaseInsensitiveDict, other HTTP clients a plain dict.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def error_code(exc: stripe.StripeError) -> str | None:
    """The Stripe error code; RateLimitError does not copy it onto `.code`, so read the body too."""
    if exc.code:
        return exc.code
    body = exc.json_body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return err["code"]
    return None


def error_param(exc: stripe.StripeError) -> str | None:
    param = getattr(exc, "param", None)
    if isinstance(param, str):
        return param
    body = exc.json_body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("param"), str):
            return err["param"]
    return None


def rate_limited_reason(exc: stripe.StripeError) -> str:
    """Why a 429 happened: 'lock_timeout', a Stripe-Rate-Limited-Reason value, or 'unknown'."""
    if error_code(exc) == "lock_timeout":
        return "lock_timeout"
    reason = _header(exc.headers, "Stripe-Rate-Limited-Reason")
    return reason.strip().lower() if reason else "unknown"


def is_rate_limit(exc: BaseException) -> bool:
    return isinstance(exc, stripe.RateLimitError) or (isinstance(exc, stripe.StripeError) and exc.http_status == 429)


def is_server_error(exc: BaseException) -> bool:
    return (
        isinstance(exc, stripe.StripeError)
        and not isinstance(exc, stripe.APIConnectionError)
        and exc.http_status is not None
        and exc.http_status >= 500
    )


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, stripe.StripeError) and exc.http_status == 409


def classify(exc: BaseException) -> Severity:
    """Severity of any exception a Stripe call can produce (ours or stripe-python's)."""
    if isinstance(exc, StripeSyncError):
        return exc.severity
    if isinstance(exc, CircuitBreakerError):
        return Severity.CRITICAL
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return Severity.CRITICAL
    if isinstance(exc, stripe.APIConnectionError):
        return Severity.MEDIUM
    if is_rate_limit(exc) or is_conflict(exc) or is_server_error(exc):
        return Severity.MEDIUM
    if isinstance(exc, stripe.InvalidRequestError):
        if error_code(exc) == "resource_already_exists":
            return Severity.LOW
        return Severity.HIGH
    if isinstance(exc, stripe.APIError) and exc.http_status is None:
        # No status: the response could not be read at all, a transient failure.
        return Severity.MEDIUM
    if isinstance(exc, stripe.StripeError):
        return Severity.HIGH
    if isinstance(exc, ConnectionError | TimeoutError):
        return Severity.MEDIUM
    if isinstance(exc, Exception):
        # A bug or unexpected data on one product should be reported against it, not kill the run.
        return Severity.HIGH
    # KeyboardInterrupt, SystemExit, ...
    return Severity.CRITICAL
