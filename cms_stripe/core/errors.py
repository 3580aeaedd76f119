"""Error severities and the errors of a Stripe sync, classified as the tool we replace did.

LOW      log and continue (e.g. the object already exists: the caller verifies and moves on)
MEDIUM   transient: retry with backoff (429, 409, 5xx, dropped connection)
HIGH     this product cannot be synced as sent: skip it, report it, keep the run going
CRITICAL the run cannot make progress (bad key, missing permission, Stripe unreachable): stop it
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

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


def classify(exc: BaseException) -> Severity:
    """Severity of an exception met while syncing a product. The Stripe adapter raises only
    StripeSyncError (see `cms_stripe.stripe.errors.classify` for how it reads stripe-python's)."""
    if isinstance(exc, StripeSyncError):
        return exc.severity
    if isinstance(exc, ConnectionError | TimeoutError):
        return Severity.MEDIUM
    if isinstance(exc, Exception):
        # A bug or unexpected data on one product should be reported against it, not kill the run.
        return Severity.HIGH
    # KeyboardInterrupt, SystemExit, ...
    return Severity.CRITICAL
