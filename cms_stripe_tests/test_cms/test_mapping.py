"""Column mapping: loading from dict/YAML/JSON, identifier validation, and the one clear message for a
CMS schema that does not match (every missing table or column named at once, on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.schema import COLUMNS, create_schema, drop_schema
from cms_stripe.cms.source import CmsConfigError
from cms_stripe.cms.sql import SqlCatalogSource

CUSTOM = {
    "table": "items",
    "columns": {"title": "name", "price": "price_eur", "description": "body", "tax_code": None},
    "metadata_columns": ["brand", "sku"],
}


def test_default_mapping_is_the_standard_schema():
    m = ColumnMapping()
    assert m.table == "products"
    assert m.mapped_fields == {c: c for c in COLUMNS}
    assert m.metadata_columns == ()


def test_mapping_from_yaml_and_json_files(tmp_path):
    y = tmp_path / "m.yaml"
    y.write_text(
        "table: items\ncolumns:\n  title: name\n  price: price_eur\n  description: body\n  tax_code: null\n"
        "metadata_columns: [brand, sku]\n"
    )
    j = tmp_path / "m.json"
    j.write_text(json.dumps(CUSTOM))
    for m in (ColumnMapping.from_file(y), ColumnMapping.from_file(j), ColumnMapping.from_dict(CUSTOM)):
        assert m.table == "items"
        assert m.columns["title"] == "name" and m.columns["price"] == "price_eur"
        assert m.columns["currency"] == "currency"  # unmapped fields keep their default column
        assert "tax_code" not in m.mapped_fields
        assert m.metadata_columns == ("brand", "sku")
    assert ColumnMapping.load(str(j), table="items_v2").table == "items_v2"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"table": "products; drop table products"}, "invalid table name"),
        ({"columns": {"title": 'name"--'}}, "invalid column for 'title'"),
        ({"columns": {"colour": "c"}}, "unknown CMS field(s) in mapping: 'colour'"),
        ({"columns": {"id": None}}, "'id' is required"),
        ({"columns": {"title": "description"}}, "mapped to more than one field: 'description'"),
        ({"metadata_columns": ["ok", "1bad"]}, "invalid metadata column '1bad'"),
        ({"tabel": "x"}, "unknown key(s)"),
    ],
)
def test_bad_mapping_config_is_rejected(data, needle):
    with pytest.raises(CmsConfigError) as err:
        ColumnMapping.from_dict(data)
    assert needle in str(err.value)


def test_mapping_errors_are_reported_together():
    with pytest.raises(CmsConfigError) as err:
        ColumnMapping.from_dict({"table": "a b", "columns": {"colour": "c", "title": "x y"}})
    message = str(err.value)
    assert "invalid table name" in message and "'colour'" in message and "'title'" in message


def test_unreadable_mapping_file(tmp_path):
    with pytest.raises(CmsConfigError, match="cannot read"):
        ColumnMapping.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CmsConfigError, match="not valid"):
        ColumnMapping.from_file(bad)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, sqlite_url):
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_database")
    eng = sa.create_engine(url)
    drop_schema(eng, "items")
    yield eng
    drop_schema(eng, "items")
    eng.dispose()


def _create_items(engine: sa.engine.Engine, without: set[str]) -> None:
    """The standard table renamed to items with title->name, price->price_eur, description->body."""
    create_schema(engine, "items", with_trigger=False)
    renames = {"title": "name", "price": "price_eur", "description": "body"}
    with engine.begin() as conn:
        for old, new in renames.items():
            conn.exec_driver_sql(f"ALTER TABLE items RENAME COLUMN {old} TO {new}")
        for extra in ("brand", "sku"):
            conn.exec_driver_sql(f"ALTER TABLE items ADD COLUMN {extra} TEXT")
        for col in without:
            conn.exec_driver_sql(f"ALTER TABLE items DROP COLUMN {col}")


def test_bad_mapping_names_every_missing_piece(engine):
    _create_items(engine, without={"price_eur", "sku", "sync_hash"})
    src = SqlCatalogSource(engine, mapping=ColumnMapping.from_dict(CUSTOM))
    with pytest.raises(CmsConfigError) as err:
        src.check()
    assert str(err.value) == (
        "CMS schema does not match the mapping: table 'items' has no columns "
        "'price_eur', 'sync_hash', 'sku' (mapped to price, sync_hash, metadata)"
    )
    with pytest.raises(CmsConfigError):  # reads verify the schema first, too
        list(src.read_all())


def test_missing_table_is_one_clear_message(engine):
    src = SqlCatalogSource(engine, mapping=ColumnMapping.from_dict(CUSTOM))
    with pytest.raises(CmsConfigError, match=r"table 'items' does not exist \(needs columns 'id', 'name'"):
        src.check()


def test_custom_mapping_reads_renamed_columns_and_metadata(engine):
    _create_items(engine, without={"tax_code"})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO items (id, name, body, price_eur, currency, updated_at, brand, sku, sync_status) "
                "VALUES ('a1', 'Mug', 'Big mug', '12.50', 'EUR', '2026-01-02 03:04:05.000006+00:00', "
                "'Acme', NULL, 'pending')"
            )
        )
    src = SqlCatalogSource(engine, mapping=ColumnMapping.from_dict(CUSTOM))
    src.check()
    (p,) = src.read_all()
    assert (p.id, p.title, p.description, p.price, p.currency) == ("a1", "Mug", "Big mug", Decimal("12.5"), "eur")
    assert p.metadata == {"brand": "Acme"}  # NULL metadata columns are left out
    assert p.updated_at is not None and p.updated_at.microsecond == 6
