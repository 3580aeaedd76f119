"""Three live rows a minute apart, shared by the REST review tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cms_stripe.core.catalog import CmsProduct

KEY = "service-role-test-key"
T = datetime(2026, 2, 1, 12, tzinfo=UTC)
ROWS = [
    CmsProduct(
        id=f"r{i}",
        title=f"Row {i}",
        price=Decimal("5.00"),
        currency="usd",
        status="published",
        updated_at=T + timedelta(minutes=i),
    )
    for i in range(3)
]
