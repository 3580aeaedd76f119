"""Settings from the environment, with the names users of the tool we replace already know.

Secrets (STRIPE_SECRET_KEY, SUPABASE_SERVICE_ROLE_KEY, passwords in CMS_DATABASE_URL) are read only
from the environment and never rendered: `describe()` masks them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

STRATEGIES = ("incremental", "full", "selective")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


# Put a lookup key on every price the sync creates (`cms:<id>:<fingerprint>`). Off by default: it
# costs a second request per new product (`POST /v1/prices/:id`), which halves test-mode throughput,
# and exactly-once does not need it (the product's own prices are listed instead; see executor.py).
ENV_PRICE_LOOKUP_KEYS = "STRIPE_PRICE_LOOKUP_KEYS"
DEFAULT_PRICE_LOOKUP_KEYS = False


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def env_int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name} must be a positive number, not {raw!r}")
    return value


def price_lookup_keys(env: Mapping[str, str] | None = None) -> bool:
    """STRIPE_PRICE_LOOKUP_KEYS: the engine's default when no caller passes `lookup_keys` explicitly."""
    return env_bool(os.environ if env is None else env, ENV_PRICE_LOOKUP_KEYS, DEFAULT_PRICE_LOOKUP_KEYS)


def parse_day(name: str, raw: str | None) -> date | None:
    """A date or ISO timestamp (`2024-01-01` or `2024-01-01T00:00:00Z`) → its UTC day."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip().replace("Z", "+00:00")
    try:
        if "T" in text or " " in text:
            parsed = datetime.fromisoformat(text)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).date()
        return date.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"{name} must be a date like 2024-01-31, not {raw!r}") from None


def mask_secret(value: str | None) -> str:
    """`sk_live_…abcd` style: enough to tell keys apart, never enough to use one."""
    if not value:
        return "(not set)"
    prefix = value.split("_", 2)
    head = "_".join(prefix[:2]) + "_" if len(prefix) > 2 else ""
    return f"{head}…{value[-4:]}" if len(value) > 12 else "…"


def mask_url(url: str | None) -> str:
    if not url:
        return "(not set)"
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL (e.g. https://…supabase.co): nothing secret in it
        return url


@dataclass(frozen=True)
class Settings:
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    stripe_max_rps: float | None = None
    stripe_endpoint_rps: float | None = None
    supabase_url: str | None = None
    supabase_service_role_key: str | None = field(default=None, repr=False)
    cms_database_url: str | None = field(default=None, repr=False)
    dry_run: bool = True
    strategy: str = "incremental"
    start_date: date | None = None
    end_date: date | None = None
    product_ids: tuple[str, ...] = ()
    skip_existing: bool = True
    batch_size: int = 500
    max_concurrency: int | None = None
    checkpoint_interval: int = 100
    allow_live: bool = False
    validation_threshold: float = 0.95
    reports_dir: str = "reports"
    price_lookup_keys: bool = DEFAULT_PRICE_LOOKUP_KEYS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        strategy = (env.get("MIGRATION_STRATEGY") or "incremental").strip().lower()
        if strategy not in STRATEGIES:
            raise SettingsError(f"MIGRATION_STRATEGY must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        ids = tuple(i.strip() for i in (env.get("MIGRATION_PRODUCT_IDS") or "").split(",") if i.strip())
        if strategy == "selective" and not ids:
            raise SettingsError("MIGRATION_STRATEGY=selective needs MIGRATION_PRODUCT_IDS (comma-separated CMS ids)")
        start = parse_day("MIGRATION_START_DATE", env.get("MIGRATION_START_DATE"))
        end = parse_day("MIGRATION_END_DATE", env.get("MIGRATION_END_DATE"))
        if start and end and end < start:
            raise SettingsError(f"MIGRATION_END_DATE ({end}) is before MIGRATION_START_DATE ({start})")
        threshold = env_float(env, "MIGRATION_VALIDATION_THRESHOLD", 0.95) or 0.95
        if threshold > 1:
            raise SettingsError("MIGRATION_VALIDATION_THRESHOLD is a fraction between 0 and 1, e.g. 0.95")
        return cls(
            stripe_secret_key=env.get("STRIPE_SECRET_KEY") or None,
            stripe_api_base=env.get("STRIPE_API_BASE") or None,
            stripe_max_rps=env_float(env, "STRIPE_MAX_RPS", None),
            stripe_endpoint_rps=env_float(env, "STRIPE_ENDPOINT_RPS", None),
            supabase_url=env.get("SUPABASE_URL") or None,
            supabase_service_role_key=env.get("SUPABASE_SERVICE_ROLE_KEY") or None,
            cms_database_url=env.get("CMS_DATABASE_URL") or None,
            dry_run=env_bool(env, "MIGRATION_DRY_RUN", True),
            strategy=strategy,
            start_date=start,
            end_date=end,
            product_ids=ids,
            skip_existing=env_bool(env, "MIGRATION_SKIP_EXISTING", True),
            batch_size=env_int(env, "MIGRATION_BATCH_SIZE", 500) or 500,
            max_concurrency=env_int(env, "MIGRATION_MAX_CONCURRENCY", None),
            checkpoint_interval=env_int(env, "MIGRATION_CHECKPOINT_INTERVAL", 100) or 100,
            allow_live=env_bool(env, "MIGRATION_ALLOW_LIVE", False),
            validation_threshold=threshold,
            reports_dir=env.get("MIGRATION_REPORTS_DIR") or "reports",
            price_lookup_keys=price_lookup_keys(env),
        )

    @property
    def live_key(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_secret_key.startswith(("sk_live_", "rk_live_")))

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print and to put in run metadata."""
        return {
            "STRIPE_SECRET_KEY": mask_secret(self.stripe_secret_key),
            "STRIPE_API_BASE": self.stripe_api_base or "(Stripe)",
            "STRIPE_MAX_RPS": str(self.stripe_max_rps or "(by key mode)"),
            "STRIPE_ENDPOINT_RPS": str(self.stripe_endpoint_rps or 25),
            "CMS_DATABASE_URL": mask_url(self.cms_database_url),
            "SUPABASE_URL": self.supabase_url or "(not set)",
            "SUPABASE_SERVICE_ROLE_KEY": mask_secret(self.supabase_service_role_key),
            "MIGRATION_DRY_RUN": str(self.dry_run).lower(),
            "MIGRATION_STRATEGY": self.strategy,
            "MIGRATION_START_DATE": str(self.start_date or "(partition start)"),
            "MIGRATION_END_DATE": str(self.end_date or "(today)"),
            "MIGRATION_PRODUCT_IDS": ",".join(self.product_ids) or "(none)",
            "MIGRATION_SKIP_EXISTING": str(self.skip_existing).lower(),
            "MIGRATION_BATCH_SIZE": str(self.batch_size),
            "MIGRATION_MAX_CONCURRENCY": str(self.max_concurrency or "(from latency)"),
            "MIGRATION_CHECKPOINT_INTERVAL": str(self.checkpoint_interval),
            "MIGRATION_ALLOW_LIVE": str(self.allow_live).lower(),
            ENV_PRICE_LOOKUP_KEYS: str(self.price_lookup_keys).lower(),
        }
