"""The one settings model: every environment variable the project reads is read here, with the names
users of the tool we replace already know. The CLI, the resources, the limits, the partitions, the
schedule and the sensor all take their values from `Settings.from_env()`.

A typed dataclass with hand-written parsers rather than pydantic-settings: the old tool's spellings
(blank means unset, strict booleans for the switches that guard writes, errors that name the
variable) would each need a custom validator there, and the pure core keeps no extra dependency.

Secrets (STRIPE_SECRET_KEY, SUPABASE_SERVICE_ROLE_KEY, passwords in CMS_DATABASE_URL) are read only
from the environment and never rendered: `describe()` masks them.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import quote, quote_plus, unquote

STRATEGIES = ("incremental", "full", "selective")

# Spellings accepted, in any case, trimmed; blank means "not set" (the default), so an empty
# `MIGRATION_DRY_RUN=` in a .env file keeps the dry run instead of silently applying. The switches
# that guard writes accept only true/false/1/0/yes/no; on/off is kept for the automation switch.
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
_ON_OFF = {"on": True, "off": False}
STRICT_BOOLEANS = frozenset({"MIGRATION_DRY_RUN", "MIGRATION_ALLOW_LIVE"})


# Put a lookup key on every price the sync creates (`cms:<id>:<fingerprint>`). Off by default: it
# costs a second request per new product (`POST /v1/prices/:id`), which halves test-mode throughput,
# and exactly-once does not need it (the product's own prices are listed instead; see executor.py).
ENV_PRICE_LOOKUP_KEYS = "STRIPE_PRICE_LOOKUP_KEYS"
DEFAULT_PRICE_LOOKUP_KEYS = False
# How old a reviewed plan may be when `cms-stripe apply` runs it. 24 h is the lifetime of Stripe's
# idempotency keys: every (re-)apply of a plan then happens within a day of its first apply, so the
# keys that make a retried or repeated apply exactly-once are still stored when it runs.
ENV_PLAN_MAX_AGE_HOURS = "MIGRATION_PLAN_MAX_AGE_HOURS"
DEFAULT_PLAN_MAX_AGE_HOURS = 24.0


DEFAULT_PARTITION_START = date(2025, 1, 1)
DEFAULT_SYNC_CRON = "*/30 * * * *"
DEFAULT_BACKUP_DIR = ".cms_stripe/backups"

# What a sync does to a product edited in the Stripe Dashboard since its last sync (core/plan.py):
# "overwrite" (default: the CMS is the source of truth, a hand-changed price is a wrong price) or
# "keep" (leave it until its CMS row changes; the reconciliation reports it as drift either way).
ENV_DASHBOARD_EDITS = "STRIPE_DASHBOARD_EDITS"
DASHBOARD_OVERWRITE, DASHBOARD_KEEP = "overwrite", "keep"
DASHBOARD_EDITS = (DASHBOARD_OVERWRITE, DASHBOARD_KEEP)


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


class LiveKeyRefused(RuntimeError):
    """A write (to Stripe or to the CMS) refused because the Stripe key is live and nobody allowed it."""


LIVE_REFUSAL_HINT = "set MIGRATION_ALLOW_LIVE=true or pass `cms-stripe migrate --confirm-live` (run a dry-run first)"


def live_write_refusal(what: str, live: bool, allow_live: bool) -> str | None:
    """The live-key guard every writer applies (the Stripe gateway, the CMS write-back, the assets'
    early check): None when the write may go, else why not. `live` is `is_live_key` of the key the
    writes would use, so a missing or unexpected key is refused too."""
    if allow_live or not live:
        return None
    return (
        f"refusing to {what}: STRIPE_SECRET_KEY is not a test key (or is not set) and live writes were "
        f"not allowed; {LIVE_REFUSAL_HINT}"
    )


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    """Unset or blank → `default`; a recognised spelling → its value; anything else → SettingsError."""
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value in _ON_OFF and name not in STRICT_BOOLEANS:
        return _ON_OFF[value]
    raise SettingsError(f"{name} must be one of true/false/1/0/yes/no (any case), not {raw!r}")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    return parse_bool(name, env.get(name), default)


def env_text(env: Mapping[str, str], name: str) -> str | None:
    """A text setting, trimmed (a pasted value often carries a space or newline); blank is unset."""
    return clean_key(env.get(name))


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


def dashboard_edits(env: Mapping[str, str] | None = None) -> str:
    """STRIPE_DASHBOARD_EDITS: overwrite (default) or keep."""
    raw = ((os.environ if env is None else env).get(ENV_DASHBOARD_EDITS) or DASHBOARD_OVERWRITE).strip().lower()
    if raw not in DASHBOARD_EDITS:
        raise SettingsError(f"{ENV_DASHBOARD_EDITS} must be one of {', '.join(DASHBOARD_EDITS)}, not {raw!r}")
    return raw


DEFAULT_LOGS_DIR = "logs"


def logs_dir(env: Mapping[str, str] | None = None) -> str:
    """The daily log file's folder alone: a log handler needs it even when another setting is invalid."""
    return env_text(os.environ if env is None else env, "MIGRATION_LOGS_DIR") or DEFAULT_LOGS_DIR


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


# --- Stripe keys: one rule for "live" -------------------------------------------------------------

TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


def clean_key(value: str | None) -> str | None:
    """A key as read from the environment, trimmed (a pasted key often carries a space or newline)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def key_mode(key: str | None) -> str:
    """`test`, `live` or `unknown` by the key's prefix, after trimming."""
    key = clean_key(key) or ""
    if key.startswith(TEST_KEY_PREFIXES):
        return "test"
    if key.startswith(LIVE_KEY_PREFIXES):
        return "live"
    return "unknown"


def is_live_key(key: str | None) -> bool:
    """The one live-key rule: any key that is not clearly a test key counts as live, so the live-key
    guard also stops a key with an unexpected prefix (a typo, a new Stripe key format)."""
    return key_mode(key) != "test"


# --- masking: one function for everything shown ---------------------------------------------------

HIDDEN = "(hidden)"
_PUBLIC_PREFIXES = (
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "pk_test_",
    "sb_secret_",
    "sb_publishable_",
    "whsec_",
)
_MIN_TAIL = 16  # below this, even four characters are a real share of the secret
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_ROLE = re.compile(r"^[a-z][a-z_]{0,30}$")


def _jwt_role(token: str) -> str | None:
    """The `role` claim of a JWT payload (Supabase: anon / service_role), if it reads cleanly."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) and _ROLE.match(role) else None


def mask_secret(value: str | None) -> str:
    """A key shown as its public prefix and last four characters (`sk_live_…9f3a`,
    `eyJ…(service role)…x_Q2`): enough to tell two keys apart, never enough to use one."""
    if value is None or not value.strip():
        return "(not set)"
    v = value.strip()
    if _JWT.fullmatch(v):
        role = _jwt_role(v)
        label = f"({role.replace('_', ' ')})" if role else "(JWT)"
        return f"eyJ…{label}…{v[-4:]}"
    for prefix in _PUBLIC_PREFIXES:
        if v.startswith(prefix):
            return f"{prefix}…{v[-4:]}" if len(v) - len(prefix) >= _MIN_TAIL else f"{prefix}…"
    return f"…{v[-4:]}" if len(v) >= _MIN_TAIL else HIDDEN


_KV_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|sslpassword|apikey|api_key|token|access_token|secret|key)(\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s]*)@")


# SQLAlchemy and libpq URL schemes (a driver may follow a "+"), whose userinfo without ':' is a user name.
_DATABASE_SCHEMES = frozenset(
    {"postgresql", "postgres", "mysql", "mariadb", "sqlite", "mssql", "oracle", "cockroachdb"}
)


def _url_parts(url: str) -> tuple[str, str | None, str | None, str] | None:
    """(scheme://, user, password, rest after the userinfo) — the userinfo ends at the LAST `@`, so a
    password holding an unencoded `@` (or `/`) is still taken whole."""
    if "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        return None
    at = rest.rfind("@")
    if at < 0:
        return scheme + "://", None, None, rest
    userinfo, after = rest[:at], rest[at + 1 :]
    user, sep, password = userinfo.partition(":")
    return scheme + "://", user, (password if sep else None), after


def url_password(url: str | None) -> str | None:
    parts = _url_parts(url.strip()) if url else None
    if parts is None:
        return None
    scheme, user, password, _ = parts
    if password is not None:
        return password
    # A userinfo without ':' can be a bare token (https://TOKEN@host): treat it as the secret. In a
    # database URL it is the user name (postgresql://postgres@host, trust or peer auth): hiding it
    # would also hide it inside every other word ("postgresql" printed as "(hidden)ql").
    return None if scheme.split("+", 1)[0].lower() in _DATABASE_SCHEMES else user


def mask_url(url: str | None) -> str:
    """A URL (or libpq keyword DSN) without its password; "(hidden)" when it cannot be read."""
    if url is None or not url.strip():
        return "(not set)"
    u = url.strip()
    parts = _url_parts(u)
    if parts is None:
        if "=" in u and "://" not in u:  # libpq keyword DSN: host=… user=… password=…
            return _KV_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", u)
        return HIDDEN
    scheme, user, password, rest = parts
    if user is None:
        shown = scheme + rest
    elif password is None:
        shown = f"{scheme}***@{rest}"
    else:
        safe_user = user if re.fullmatch(r"[A-Za-z0-9._\-]{0,63}", user) else "***"
        shown = f"{scheme}{safe_user}:***@{rest}"
    return _KV_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", shown)


# --- scrubbing exception text ------------------------------------------------------------------------

SECRET_ENV_VARS = ("STRIPE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY")
URL_ENV_VARS = ("CMS_DATABASE_URL", "SUPABASE_URL", "STRIPE_API_BASE")
_STRIPE_KEY = re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]+")
_SB_KEY = re.compile(r"\bsb_(?:secret|publishable)_[0-9A-Za-z_-]+")
_BEARER = re.compile(r"(?i)\b(Bearer|Basic)\s+[^\s'\",}]+")
_HEADER = re.compile(
    r"(?i)([\"']?(?:apikey|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)([^\s\"',}]+(?: [^\s\"',}]+)?)"
)


def known_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values the process holds: the keys, and the passwords of its URLs."""
    env = os.environ if env is None else env
    out: list[str] = []
    for name in SECRET_ENV_VARS:
        value = clean_key(env.get(name))
        if value:
            out.append(value)
    for name in URL_ENV_VARS:
        raw = env.get(name)
        password = url_password(raw)
        if password:
            out.append(password)
        if raw and "://" not in raw:
            out += [m.group(3).strip("'\"") for m in _KV_SECRET.finditer(raw)]
    return out


def _forms_of(values: Iterable[str]) -> list[str]:
    """Every form a secret value can take in text, longest first (so a longer form is replaced before
    a shorter one inside it)."""
    forms: set[str] = set()
    for value in values:
        value = value.strip()
        if len(value) < 6:
            continue  # too short to replace without mangling ordinary words; patterns still apply
        plain = unquote(value)  # a URL's password is stored encoded; drivers quote it decoded
        forms |= {value, plain, quote(plain, safe=""), quote(plain, safe="@:/"), quote_plus(plain)}
        if _JWT.fullmatch(value):
            # A token's payload and signature are long enough to be found (and used) on their own.
            forms |= {part for part in value.split(".")[1:] if len(part) >= _MIN_TAIL}
    return sorted(forms, key=len, reverse=True)


_SECRET_SOURCES = SECRET_ENV_VARS + URL_ENV_VARS


@functools.lru_cache(maxsize=64)
def _secret_forms(env_values: tuple[str | None, ...], extra: frozenset[str]) -> tuple[str, ...]:
    # Keyed by the environment's values themselves, so a changed variable is seen on the next call.
    env = {name: value for name, value in zip(_SECRET_SOURCES, env_values, strict=True) if value is not None}
    return tuple(_forms_of(set(known_secrets(env)) | extra))


# Each pattern below can only match text holding these (lower-cased for the case-insensitive ones):
# a line without them skips that pattern's scan, the cost of scrubbing every log line. Lower-casing
# mirrors IGNORECASE only for ASCII text, so other text is always scanned in full.
_KV_WORDS = ("pass", "pwd", "key", "token", "secret")
_HEADER_WORDS = ("apikey", "x-api-key", "authorization")


def scrub(text: object, secrets: Iterable[str] | None = None) -> str:
    """Text (an exception message, a log line) with every secret taken out: the known secret values
    (plain and URL-encoded), URL passwords, `Bearer …`, `apikey` headers and anything shaped like a
    Stripe key or a JWT. Used on every exception text before it is logged, stored or shown."""
    out = str(text)
    extra = frozenset(s for s in (secrets or ()) if s)
    for form in _secret_forms(tuple(os.environ.get(name) for name in _SECRET_SOURCES), extra):
        out = out.replace(form, HIDDEN)
    full = not out.isascii()
    if full or ("://" in out and "@" in out):
        out = _URL_USERINFO.sub(lambda m: m.group(1) + (_masked_userinfo(m.group(2))) + "@", out)
    low = out.lower()
    if full or ("=" in out and any(w in low for w in _KV_WORDS)):
        out = _KV_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
        low = out.lower()
    if full or "bearer" in low or "basic" in low:
        out = _BEARER.sub(lambda m: f"{m.group(1)} {HIDDEN}", out)
        low = out.lower()
    if full or ((":" in out or "=" in out) and any(w in low for w in _HEADER_WORDS)):
        out = _HEADER.sub(lambda m: m.group(1) + HIDDEN, out)
    if "eyJ" in out:
        out = _JWT.sub(lambda m: mask_secret(m.group(0)), out)
    if "_live_" in out or "_test_" in out:
        out = _STRIPE_KEY.sub(lambda m: mask_secret(m.group(0)), out)
    if "sb_" in out:
        out = _SB_KEY.sub(lambda m: mask_secret(m.group(0)), out)
    return out


class ScrubbedError(RuntimeError):
    """An exception whose text held a secret, re-raised with the text scrubbed (and its chain cut)."""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < 20:
        out.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return out


def scrubbed_exception(exc: BaseException) -> BaseException:
    """`exc` itself when nothing in it (or its causes) needs scrubbing; otherwise one exception of the
    same class when it takes a message (else ScrubbedError) whose text is the scrubbed chain."""
    chain = _chain(exc)
    texts = [str(e) for e in chain]
    if all(scrub(t) == t for t in texts):
        return exc
    message = scrub(texts[0])
    for cause, text in zip(chain[1:], texts[1:], strict=True):
        message += f" (caused by {type(cause).__name__}: {scrub(text)})"
    try:
        clean = type(exc)(message)
        if str(clean) == message:
            return clean
    except Exception:  # noqa: S110 - a class that needs other arguments: use the generic one
        pass
    return ScrubbedError(f"{type(exc).__name__}: {message}")


def _masked_userinfo(userinfo: str) -> str:
    user, sep, _ = userinfo.partition(":")
    if not sep:
        return "***"
    return (user if re.fullmatch(r"[A-Za-z0-9._\-]{0,63}", user) else "***") + ":***"


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
    # MIGRATION_BATCH_SIZE, the old tool's "products per batch": the CMS page and write-back batch below.
    batch_size: int | None = None
    max_concurrency: int | None = None
    checkpoint_interval: int = 100
    allow_live: bool = False
    validation_threshold: float = 0.95
    reports_dir: str = "reports"
    # The daily log files (logs/migration-YYYY-MM-DD.log); like the reports folder, environment only.
    logs_dir: str = DEFAULT_LOGS_DIR
    price_lookup_keys: bool = DEFAULT_PRICE_LOOKUP_KEYS
    # From the environment only: a limit that run config (the Launchpad) could raise would not be one.
    plan_max_age_hours: float = DEFAULT_PLAN_MAX_AGE_HOURS
    stripe_tax_behavior: str | None = None
    # Where the CMS catalog lives besides its URL: table, column mapping, REST backups, paging.
    cms_table: str | None = None
    cms_mapping_file: str | None = None
    cms_backup_dir: str = DEFAULT_BACKUP_DIR
    cms_page_size: int = 1000
    cms_write_batch_size: int = 500
    # Orchestration: the partitions' first day, the schedule, the change sensor, the frames folder.
    partition_start: date = DEFAULT_PARTITION_START
    automation: bool = False
    sync_cron: str = DEFAULT_SYNC_CRON
    sensor_lookback_s: int = 120
    frames_dir: str | None = None
    dashboard_edits: str = DASHBOARD_OVERWRITE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        batch = env_int(env, "MIGRATION_BATCH_SIZE", None)
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
            stripe_secret_key=clean_key(env.get("STRIPE_SECRET_KEY")),
            stripe_api_base=clean_key(env.get("STRIPE_API_BASE")),
            stripe_max_rps=env_float(env, "STRIPE_MAX_RPS", None),
            stripe_endpoint_rps=env_float(env, "STRIPE_ENDPOINT_RPS", None),
            supabase_url=clean_key(env.get("SUPABASE_URL")),
            supabase_service_role_key=clean_key(env.get("SUPABASE_SERVICE_ROLE_KEY")),
            cms_database_url=clean_key(env.get("CMS_DATABASE_URL")),
            dry_run=env_bool(env, "MIGRATION_DRY_RUN", True),
            strategy=strategy,
            start_date=start,
            end_date=end,
            product_ids=ids,
            skip_existing=env_bool(env, "MIGRATION_SKIP_EXISTING", True),
            batch_size=batch,
            max_concurrency=env_int(env, "MIGRATION_MAX_CONCURRENCY", None),
            checkpoint_interval=env_int(env, "MIGRATION_CHECKPOINT_INTERVAL", 100) or 100,
            allow_live=env_bool(env, "MIGRATION_ALLOW_LIVE", False),
            validation_threshold=threshold,
            reports_dir=env_text(env, "MIGRATION_REPORTS_DIR") or "reports",
            logs_dir=logs_dir(env),
            price_lookup_keys=price_lookup_keys(env),
            plan_max_age_hours=env_float(env, ENV_PLAN_MAX_AGE_HOURS, DEFAULT_PLAN_MAX_AGE_HOURS)
            or DEFAULT_PLAN_MAX_AGE_HOURS,
            stripe_tax_behavior=env_text(env, "STRIPE_TAX_BEHAVIOR"),
            cms_table=env_text(env, "CMS_TABLE"),
            cms_mapping_file=env_text(env, "CMS_MAPPING_FILE"),
            cms_backup_dir=env_text(env, "CMS_BACKUP_DIR") or DEFAULT_BACKUP_DIR,
            # MIGRATION_BATCH_SIZE sets both; CMS_PAGE_SIZE / CMS_WRITE_BATCH_SIZE refine one.
            cms_page_size=env_int(env, "CMS_PAGE_SIZE", batch or 1000) or 1000,
            cms_write_batch_size=env_int(env, "CMS_WRITE_BATCH_SIZE", batch or 500) or 500,
            partition_start=parse_day("MIGRATION_PARTITION_START", env.get("MIGRATION_PARTITION_START"))
            or DEFAULT_PARTITION_START,
            automation=env_bool(env, "CMS_STRIPE_AUTOMATION", False),
            sync_cron=env_text(env, "CMS_STRIPE_SYNC_CRON") or DEFAULT_SYNC_CRON,
            sensor_lookback_s=env_int(env, "CMS_STRIPE_SENSOR_LOOKBACK_S", 120, minimum=0) or 0,
            frames_dir=env_text(env, "CMS_STRIPE_FRAMES_DIR"),
            dashboard_edits=dashboard_edits(env),
        )

    @property
    def live_key(self) -> bool:
        """Whether the live-key guard applies (see `is_live_key`): also with no key at all, since the
        guard cannot tell what key the writes would use."""
        return is_live_key(self.stripe_secret_key)

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print and to put in run metadata."""
        return {
            "STRIPE_SECRET_KEY": mask_secret(self.stripe_secret_key),
            "STRIPE_API_BASE": mask_url(self.stripe_api_base) if self.stripe_api_base else "(Stripe)",
            "STRIPE_MAX_RPS": str(self.stripe_max_rps or "(by key mode)"),
            "STRIPE_ENDPOINT_RPS": str(self.stripe_endpoint_rps or 25),
            "CMS_DATABASE_URL": mask_url(self.cms_database_url),
            "SUPABASE_URL": mask_url(self.supabase_url),
            "SUPABASE_SERVICE_ROLE_KEY": mask_secret(self.supabase_service_role_key),
            "MIGRATION_DRY_RUN": str(self.dry_run).lower(),
            "MIGRATION_STRATEGY": self.strategy,
            "MIGRATION_START_DATE": str(self.start_date or "(partition start)"),
            "MIGRATION_END_DATE": str(self.end_date or "(today)"),
            "MIGRATION_PRODUCT_IDS": ",".join(self.product_ids) or "(none)",
            "MIGRATION_SKIP_EXISTING": str(self.skip_existing).lower(),
            "MIGRATION_BATCH_SIZE": str(self.batch_size or "(unset)"),
            "MIGRATION_MAX_CONCURRENCY": str(self.max_concurrency or "(from latency)"),
            "MIGRATION_CHECKPOINT_INTERVAL": str(self.checkpoint_interval),
            "MIGRATION_ALLOW_LIVE": str(self.allow_live).lower(),
            "MIGRATION_REPORTS_DIR": self.reports_dir,
            "MIGRATION_LOGS_DIR": self.logs_dir,
            ENV_PRICE_LOOKUP_KEYS: str(self.price_lookup_keys).lower(),
            ENV_PLAN_MAX_AGE_HOURS: f"{self.plan_max_age_hours:g}",
            "STRIPE_TAX_BEHAVIOR": self.stripe_tax_behavior or "(unspecified)",
            "CMS_TABLE": self.cms_table or "(from the mapping, else products)",
            "CMS_MAPPING_FILE": self.cms_mapping_file or "(none)",
            "CMS_BACKUP_DIR": self.cms_backup_dir,
            "CMS_PAGE_SIZE": str(self.cms_page_size),
            "CMS_WRITE_BATCH_SIZE": str(self.cms_write_batch_size),
            "MIGRATION_PARTITION_START": self.partition_start.isoformat(),
            "CMS_STRIPE_AUTOMATION": "on" if self.automation else "off",
            "CMS_STRIPE_SYNC_CRON": self.sync_cron,
            "CMS_STRIPE_SENSOR_LOOKBACK_S": str(self.sensor_lookback_s),
            "CMS_STRIPE_FRAMES_DIR": self.frames_dir or "(the instance's storage folder)",
            ENV_DASHBOARD_EDITS: self.dashboard_edits,
        }
