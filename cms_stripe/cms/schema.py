"""The default CMS schema (a Supabase `products` table) for PostgreSQL and SQLite.

PostgreSQL gets the exact Supabase types plus the `moddatetime`-style trigger that bumps
`updated_at` on every UPDATE, including our own write-back: the rest of the code must cope with it.
SQLite has no jsonb/timestamptz/numeric(14,4): JSON is stored as TEXT, timestamps as ISO-8601 UTC
TEXT in one fixed format (so they sort as text), and prices as TEXT decimals (never REAL: money
must not pass through a float).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

DEFAULT_TABLE = "products"

# One fixed, sortable text form for timestamps stored in SQLite.
SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"

POSTGRES_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id text PRIMARY KEY,
    title text,
    description text,
    price numeric(14,4),
    currency text,
    recurring_interval text,
    recurring_interval_count integer,
    images jsonb,
    metadata jsonb,
    status text,
    tax_code text,
    unit_label text,
    statement_descriptor text,
    url text,
    shippable boolean,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz,
    stripe_product_id text,
    stripe_price_id text,
    sync_status text DEFAULT 'pending',
    sync_error text,
    synced_at timestamptz,
    sync_hash text
)
"""

POSTGRES_INDEX = "CREATE INDEX IF NOT EXISTS {index} ON {table} (updated_at, id)"

# The Supabase `moddatetime` extension's behaviour, written as plain plpgsql so it needs no extension.
POSTGRES_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION cms_stripe_moddatetime() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$
"""

POSTGRES_TRIGGER = """
CREATE OR REPLACE TRIGGER {trigger}
BEFORE UPDATE ON {table}
FOR EACH ROW EXECUTE FUNCTION cms_stripe_moddatetime()
"""

SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    title TEXT,
    description TEXT,
    price TEXT,
    currency TEXT,
    recurring_interval TEXT,
    recurring_interval_count INTEGER,
    images TEXT,
    metadata TEXT,
    status TEXT,
    tax_code TEXT,
    unit_label TEXT,
    statement_descriptor TEXT,
    url TEXT,
    shippable INTEGER,
    created_at TEXT,
    updated_at TEXT,
    deleted_at TEXT,
    stripe_product_id TEXT,
    stripe_price_id TEXT,
    sync_status TEXT DEFAULT 'pending',
    sync_error TEXT,
    synced_at TEXT,
    sync_hash TEXT
)
"""

SQLITE_INDEX = "CREATE INDEX IF NOT EXISTS {index} ON {table} (updated_at, id)"

COLUMNS = (
    "id",
    "title",
    "description",
    "price",
    "currency",
    "recurring_interval",
    "recurring_interval_count",
    "images",
    "metadata",
    "status",
    "tax_code",
    "unit_label",
    "statement_descriptor",
    "url",
    "shippable",
    "created_at",
    "updated_at",
    "deleted_at",
    "stripe_product_id",
    "stripe_price_id",
    "sync_status",
    "sync_error",
    "synced_at",
    "sync_hash",
)


def quote_identifier(engine: sa.engine.Engine, name: str) -> str:
    """Quote a table/column name for this dialect; names come from config, so never splice them raw.
    A schema-qualified table (`cms.products`) is quoted part by part."""
    return ".".join(engine.dialect.identifier_preparer.quote(part) for part in name.split("."))


def create_schema(engine: sa.engine.Engine, table: str = DEFAULT_TABLE, *, with_trigger: bool = True) -> None:
    """Create the products table (idempotent); on PostgreSQL also the updated_at trigger."""
    q = quote_identifier(engine, table)
    bare = table.rsplit(".", 1)[-1]  # an index or trigger lives in its table's schema: unqualified name
    index = quote_identifier(engine, f"{bare}_updated_at_id_idx")
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(POSTGRES_DDL.format(table=q))
            conn.exec_driver_sql(POSTGRES_INDEX.format(index=index, table=q))
            if with_trigger:
                conn.exec_driver_sql(POSTGRES_TRIGGER_FUNCTION)
                trigger = quote_identifier(engine, f"{bare}_moddatetime")
                conn.exec_driver_sql(POSTGRES_TRIGGER.format(trigger=trigger, table=q))
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql(SQLITE_DDL.format(table=q))
            conn.exec_driver_sql(SQLITE_INDEX.format(index=index, table=q))
        else:
            raise ValueError(f"unsupported CMS database dialect: {engine.dialect.name}")


def drop_schema(engine: sa.engine.Engine, table: str = DEFAULT_TABLE) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote_identifier(engine, table)}")


def to_sqlite_timestamp(value: datetime | None) -> str | None:
    """The one text form of a timestamp in SQLite (UTC, microseconds, sortable)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: CMS timestamps must carry a timezone")
    return value.astimezone(UTC).strftime(SQLITE_TS_FORMAT)


def from_db_timestamp(value: object) -> datetime | None:
    """Parse a timestamp read from either backend into an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
