"""`oldest_row()`: where a `full` run may start, on PostgreSQL (SQL and REST) and SQLite.

Each case stores rows with plain SQL and states the answer literally: the oldest `updated_at`; or
undated (a null, or a value the readers treat as undated: ±infinity); or empty; or unknown (the
column is text, or the database is SQLite, which both compare stored text). Then `full_range` turns
the answer into the partitions a run covers, also stated literally.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.schema import create_schema
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.days import OldestRow, PartitionSpan, full_range
from cms_stripe_tests.postgrest_server import PostgrestTestServer

KEY = "service-role-oldest-row-test"
SPAN = PartitionSpan("2020-01-01", "2026-12-01")

# A row written late in a UTC day from a UTC-5 editor: its UTC day is the next one.
OLDEST = datetime(2025, 1, 1, 1, 30, tzinfo=UTC)
DATED: list[str | None] = ["2024-12-31 20:30:00-05", "2025-03-01 00:00:00+00", "2026-11-30 12:00:00+00"]


def _insert(engine: sa.engine.Engine, stamps: Sequence[str | None], *, table: str = "products") -> None:
    with engine.begin() as conn:
        for i, stamp in enumerate(stamps):
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (id, title, price, currency, updated_at) VALUES (:id, 't', 1, 'usd', :u)"
                ),
                {"id": f"row-{i:02d}", "u": stamp},
            )


# name -> (stored updated_at values, the answer)
CASES: dict[str, tuple[list[str | None], OldestRow]] = {
    "dated rows only": (DATED, OldestRow(updated_at=OLDEST)),
    "a null updated_at": ([*DATED, None], OldestRow(undated=True)),
    "older than the partition start": (
        [*DATED, "2016-04-05 10:00:00+00"],
        OldestRow(updated_at=datetime(2016, 4, 5, 10, tzinfo=UTC)),
    ),
    "an infinite updated_at": ([*DATED, "infinity"], OldestRow(undated=True)),
    "a minus-infinite updated_at": ([*DATED, "-infinity"], OldestRow(undated=True)),
    "an empty table": ([], OldestRow(empty=True)),
}

# The partitions of a full run for each case, with SPAN as the partitions.
RANGES = {
    "dated rows only": ("2025-01-01", "2026-12-01"),
    "a null updated_at": ("2020-01-01", "2026-12-01"),
    "older than the partition start": ("2020-01-01", "2026-12-01"),
    "an infinite updated_at": ("2020-01-01", "2026-12-01"),
    "a minus-infinite updated_at": ("2020-01-01", "2026-12-01"),
    "an empty table": ("2026-12-01", "2026-12-01"),
}


@pytest.fixture()
def rest(
    pg_database: str, pg_engine: sa.engine.Engine, tmp_path: Any
) -> Iterator[tuple[RestCatalogSource, PostgrestTestServer]]:
    with PostgrestTestServer(pg_database, KEY) as server:
        source = RestCatalogSource(server.url, KEY, backup_dir=tmp_path / "backups")
        try:
            yield source, server
        finally:
            source.close()


@pytest.mark.parametrize("case", list(CASES))
def test_sql_oldest_row(pg_engine, case):
    create_schema(pg_engine)
    stamps, expected = CASES[case]
    _insert(pg_engine, stamps)
    answer = SqlCatalogSource(pg_engine).oldest_row()
    assert answer == expected
    assert full_range(SPAN, answer)[:2] == RANGES[case]


@pytest.mark.parametrize("case", list(CASES))
def test_rest_oldest_row(pg_engine, rest, case):
    create_schema(pg_engine)
    stamps, expected = CASES[case]
    _insert(pg_engine, stamps)
    source, _ = rest
    answer = source.oldest_row()
    assert answer == expected
    assert full_range(SPAN, answer)[:2] == RANGES[case]


def test_rest_asks_for_the_first_row_with_nulls_first(pg_engine, rest):
    create_schema(pg_engine)
    _insert(pg_engine, DATED)
    source, server = rest
    source.check()
    before = len(server.requests)
    assert source.oldest_row() == OldestRow(updated_at=OLDEST)
    first = dict(server.requests[before].params)
    assert (first["select"], first["order"], first["limit"]) == (
        "f_updated_at:updated_at",
        "updated_at.asc.nullsfirst",
        "1",
    )
    # The type probe is refused by PostgreSQL: the column is a timestamp.
    assert [r.status for r in server.requests[before:]] == [200, 400, 200]


def _text_column(engine: sa.engine.Engine) -> None:
    create_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE products ALTER COLUMN updated_at TYPE text USING updated_at::text")
    # As text, '2024-12-31 18:30:00-05' sorts before '2024-12-31 20:00:00+00' though it is later.
    _insert(engine, ["2024-12-31 20:00:00+00", "2024-12-31 18:30:00-05"])


def test_sql_text_updated_at_is_unknown(pg_engine):
    _text_column(pg_engine)
    answer = SqlCatalogSource(pg_engine).oldest_row()
    assert answer.unknown == "column 'updated_at' is TEXT, not a timestamp"
    assert full_range(SPAN, answer)[:2] == ("2020-01-01", "2026-12-01")


def test_rest_text_updated_at_is_unknown(pg_engine, rest):
    _text_column(pg_engine)
    source, _ = rest
    answer = source.oldest_row()
    assert answer.unknown == "column 'updated_at' is not a timestamp (it accepts any text)"
    assert full_range(SPAN, answer)[:2] == ("2020-01-01", "2026-12-01")


def test_sqlite_is_unknown(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_schema(engine)
    _insert(engine, ["2025-03-01 00:00:00.000000+00:00"])
    answer = SqlCatalogSource(engine).oldest_row()
    assert answer.unknown == "sqlite stores 'updated_at' as text, which sorts as text, not as time"
    engine.dispose()


# A shop's own table: other column names (through a mapping), a NOT NULL column the sync does not
# know, a naive `timestamp` column (read as UTC), defaults, triggers, and row level security with no
# policy, read through REST by a BYPASSRLS role (what Supabase's service role is).
SHOP_DDL = """
CREATE TABLE shop_items (
    item_id text PRIMARY KEY,
    sku text NOT NULL,
    name text,
    price numeric(14,4),
    currency text,
    modified timestamp DEFAULT now(),
    stripe_product_id text,
    stripe_price_id text,
    sync_status text DEFAULT 'pending',
    sync_error text,
    synced_at timestamptz,
    sync_hash text
);
CREATE FUNCTION shop_items_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.modified := now(); RETURN NEW; END $$;
CREATE TRIGGER shop_items_moddatetime BEFORE UPDATE ON shop_items FOR EACH ROW EXECUTE FUNCTION shop_items_touch();
ALTER TABLE shop_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop_items FORCE ROW LEVEL SECURITY
"""
SHOP_MAPPING = ColumnMapping.from_dict(
    {
        "table": "shop_items",
        "columns": {
            "id": "item_id",
            "title": "name",
            "updated_at": "modified",
            **{f: None for f in ("description", "recurring_interval", "recurring_interval_count", "images")},
            **{f: None for f in ("metadata", "status", "tax_code", "unit_label", "statement_descriptor", "url")},
            **{f: None for f in ("shippable", "created_at", "deleted_at")},
        },
    }
)


@pytest.fixture()
def shop(pg_database: str, pg_engine: sa.engine.Engine) -> Iterator[str]:
    """The shop table, and the URL of a BYPASSRLS login role for the REST server."""
    role = f"svc_{uuid.uuid4().hex[:10]}"
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS shop_items CASCADE")
        conn.exec_driver_sql(SHOP_DDL)
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN BYPASSRLS")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT SELECT ON shop_items TO {role}")
        conn.exec_driver_sql(
            "INSERT INTO shop_items (item_id, sku, name, modified) VALUES "
            "('b', 'SKU-B', 'B', '2025-06-02 08:00:00'), ('a', 'SKU-A', 'A', '2025-06-01 23:59:59.5')"
        )
    try:
        yield sa.engine.make_url(pg_database).set(username=role).render_as_string(hide_password=False)
    finally:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS shop_items CASCADE")
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def test_shop_table_through_a_mapping_on_both_backends(shop, pg_engine, tmp_path):
    expected = OldestRow(updated_at=datetime(2025, 6, 1, 23, 59, 59, 500000, tzinfo=UTC))
    assert SqlCatalogSource(pg_engine, mapping=SHOP_MAPPING).oldest_row() == expected
    with PostgrestTestServer(shop, KEY) as server:
        source = RestCatalogSource(server.url, KEY, mapping=SHOP_MAPPING, backup_dir=tmp_path / "backups")
        try:
            assert source.oldest_row() == expected
        finally:
            source.close()
    assert full_range(SPAN, expected) == (
        "2025-06-01",
        "2026-12-01",
        "the oldest row was updated on 2025-06-01; earlier days hold no row",
    )


def test_full_range_edges():
    assert full_range(SPAN, OldestRow(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))[:2] == ("2020-01-01", "2026-12-01")
    assert full_range(SPAN, OldestRow(updated_at=datetime(2099, 1, 1, tzinfo=UTC))) == (
        "2026-12-01",
        "2026-12-01",
        "the oldest row is stamped 2099-01-01, after today, and today's partition holds it",
    )
    assert full_range(SPAN, OldestRow(unknown="boom")) == (
        "2020-01-01",
        "2026-12-01",
        "the oldest row's day is not known (boom), so every partition runs",
    )
    assert full_range(SPAN, OldestRow())[:2] == ("2020-01-01", "2026-12-01")
