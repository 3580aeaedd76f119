"""Severity classification of every error a Stripe call can raise."""

from __future__ import annotations

import json

import pytest
import stripe

from cms_stripe.core.errors import (
    AlreadyExistsError,
    AmbiguousWriteError,
    CircuitOpenError,
    RetriesExhaustedError,
    Severity,
    StripeSyncError,
)
from cms_stripe.stripe.errors import classify, error_code, rate_limited_reason
from cms_stripe_tests.test_core.conftest import api_error

CASES = [
    (
        "429 endpoint rate",
        api_error(429, code="rate_limit", headers={"Stripe-Rate-Limited-Reason": "endpoint-rate"}),
        Severity.MEDIUM,
    ),
    ("429 lock_timeout", api_error(429, code="lock_timeout"), Severity.MEDIUM),
    ("500", api_error(500, type_="api_error"), Severity.MEDIUM),
    ("503", api_error(503, type_="api_error"), Severity.MEDIUM),
    ("409 key in use", api_error(409, type_="idempotency_error"), Severity.MEDIUM),
    ("connection", stripe.APIConnectionError("Connection refused"), Severity.MEDIUM),
    ("already exists", api_error(400, code="resource_already_exists", param="id"), Severity.LOW),
    ("validation", api_error(400, code="parameter_invalid_integer", param="unit_amount"), Severity.HIGH),
    ("404 product", api_error(404, code="resource_missing", param="id"), Severity.HIGH),
    ("idempotency params differ", api_error(400, type_="idempotency_error"), Severity.HIGH),
    ("401", api_error(401, type_="invalid_request_error"), Severity.CRITICAL),
    ("403", api_error(403, type_="invalid_request_error"), Severity.CRITICAL),
    ("ours: already exists", AlreadyExistsError("exists"), Severity.LOW),
    ("ours: ambiguous", AmbiguousWriteError("maybe", idempotency_key="k"), Severity.MEDIUM),
    ("ours: exhausted", RetriesExhaustedError("tired"), Severity.HIGH),
    ("ours: circuit", CircuitOpenError("down"), Severity.CRITICAL),
    ("ours: explicit", StripeSyncError("x", severity=Severity.CRITICAL), Severity.CRITICAL),
    ("python bug", KeyError("title"), Severity.HIGH),
    ("socket", ConnectionResetError(), Severity.MEDIUM),
    ("ctrl-c", KeyboardInterrupt(), Severity.CRITICAL),
]


@pytest.mark.parametrize(("name", "exc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classify_table(name: str, exc: BaseException, expected: Severity) -> None:
    assert classify(exc) is expected


def test_stripe_python_builds_the_types_we_expect() -> None:
    """The table above relies on these stripe-python 16.1 mappings."""
    assert isinstance(api_error(429), stripe.RateLimitError)
    assert isinstance(api_error(409, type_="idempotency_error"), stripe.APIError)
    assert isinstance(api_error(400, type_="idempotency_error"), stripe.IdempotencyError)
    assert isinstance(api_error(404, code="resource_missing"), stripe.InvalidRequestError)
    assert isinstance(api_error(401), stripe.AuthenticationError)
    assert isinstance(api_error(403), stripe.PermissionError)
    assert isinstance(api_error(502, type_="api_error"), stripe.APIError)


def test_rate_limited_reason_reads_header_and_body() -> None:
    assert rate_limited_reason(api_error(429, headers={"Stripe-Rate-Limited-Reason": "global-rate"})) == "global-rate"
    # Header names arrive in any case; requests gives a CaseInsensitiveDict, other clients a dict.
    exc = api_error(429)
    exc.headers = {"stripe-rate-limited-reason": "Endpoint-Concurrency"}
    assert rate_limited_reason(exc) == "endpoint-concurrency"
    # RateLimitError does not copy the body's code onto .code: a lock timeout is found in the body.
    lock = api_error(429, code="lock_timeout", headers={"Stripe-Rate-Limited-Reason": "resource-specific"})
    assert lock.code is None
    assert error_code(lock) == "lock_timeout"
    assert rate_limited_reason(lock) == "lock_timeout"
    assert rate_limited_reason(api_error(429)) == "unknown"


def test_sync_error_carries_report_fields() -> None:
    err = AmbiguousWriteError(
        "Stripe answered 500",
        code=None,
        http_status=500,
        endpoint="POST /v1/products",
        idempotency_key="cms:create-product:p1:abc",
        request_id="req_1",
    )
    assert err.severity is Severity.MEDIUM
    assert err.idempotency_key == "cms:create-product:p1:abc"
    text = str(err)
    assert "POST /v1/products" in text and "status=500" in text and "req_1" in text
    d = err.to_dict()
    assert d["type"] == "AmbiguousWriteError" and d["severity"] == "MEDIUM"
    json.dumps(d)
