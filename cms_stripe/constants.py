"""Names shared by writers and readers: asset group, pools, metadata keys, environment variables."""

from __future__ import annotations

GROUP = "cms_stripe"

# Concurrency pools. Stripe's limits are account-wide, so every Stripe-writing step shares one pool
# whose limit (1 in dagster.yaml) keeps overlapping runs from exceeding them together.
STRIPE_POOL = "stripe_api"
CMS_POOL = "cms_database"

DEFAULT_PARTITION_START = "2025-01-01"
