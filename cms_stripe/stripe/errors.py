"""Reading stripe-python's exceptions: error codes, rate-limit reasons and their severity."""

from __future__ import annotations

from collections.abc import Mapping

import stripe

from cms_stripe.core import errors as core_errors
from cms_stripe.core.errors import Severity


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


def _error_field(exc: stripe.StripeError, name: str) -> str | None:
    """`exc.<name>`, else the field of the error body: RateLimitError copies neither code nor param."""
    value = getattr(exc, name, None)
    if isinstance(value, str) and value:
        return value
    body = exc.json_body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get(name), str):
            return str(err[name])
    return None


def error_code(exc: stripe.StripeError) -> str | None:
    """The Stripe error code, read from the body too when the exception does not carry it."""
    return _error_field(exc, "code")


def error_param(exc: stripe.StripeError) -> str | None:
    return _error_field(exc, "param")


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
    return core_errors.classify(exc)
