"""A golden catalog through the real pipeline: `cms-stripe migrate` (a subprocess) from a SQLite CMS into
the Stripe emulator over HTTP, compared with expectations written out by hand.

Every kind of row a real catalog holds is here once: each currency class (two-decimal, zero-decimal JPY,
three-decimal KWD), recurring prices (monthly, quarterly, yearly), one-time prices, formatting-only
faults that are normalised, a row an earlier tool already synced (its Stripe ids are kept), drafts,
archived and soft-deleted rows (archived in Stripe when they were live there, absent otherwise), and
each kind of invalid value, quarantined with its reason. The expected Stripe objects and CMS
write-backs below are literal: nothing is derived from the mapping code, so a mapping bug fails here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from cms_stripe.cms.schema import SQLITE_DDL, to_sqlite_timestamp
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import KEY, cli_env, run_cli

pytestmark = pytest.mark.slow

STAMP = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

# Columns a row leaves out take these values.
BLANK: dict[str, Any] = {
    "description": None,
    "recurring_interval": None,
    "recurring_interval_count": None,
    "images": None,
    "metadata": None,
    "status": "published",
    "deleted_at": None,
    "stripe_product_id": None,
    "stripe_price_id": None,
    "updated_at": STAMP,
}

NINE_IMAGES = json.dumps([f"https://img.example.com/{i}.png" for i in range(9)])
KEY_41 = "k" * 41

# The CMS table as stored (SQLite keeps price, images and metadata as text, so malformed values fit).
ROWS: list[dict[str, Any]] = [
    # -- valid, live ------------------------------------------------------------------------------------
    {"id": "usd-tee", "title": "Cotton Tee", "price": "19.99", "currency": "usd"},
    {"id": "eur-cup", "title": "Espresso Cup", "price": "9.50", "currency": "eur"},
    {"id": "gbp-towel", "title": "Tea Towel", "price": "12", "currency": "gbp"},
    {"id": "jpy-tin", "title": "Matcha Tin", "price": "1200", "currency": "jpy"},
    {"id": "kwd-dates", "title": "Dates Box", "price": "5.250", "currency": "kwd"},
    {"id": "usd-max", "title": "Largest Price", "price": "999999.99", "currency": "usd"},
    {"id": "usd-free", "title": "Free Sample", "price": "0", "currency": "usd"},
    {
        "id": "sub-monthly",
        "title": "Coffee Club",
        "price": "15.00",
        "currency": "usd",
        "recurring_interval": "month",
    },
    {
        "id": "sub-quarterly",
        "title": "Wine Club Quarterly",
        "price": "45.00",
        "currency": "usd",
        "recurring_interval": "month",
        "recurring_interval_count": 3,
    },
    {
        "id": "sub-yearly",
        "title": "Annual Pass",
        "price": "120.00",
        "currency": "eur",
        "recurring_interval": "year",
        "recurring_interval_count": 1,
    },
    {
        "id": "bag-full",
        "title": "Canvas Bag",
        "description": "Heavy canvas.\nMade to last.",
        "price": "24.50",
        "currency": "usd",
        "images": json.dumps(["https://img.example.com/bag-1.png", "https://img.example.com/bag-2.png"]),
        "metadata": json.dumps({"sku": "BAG-1", "color": "natural"}),
    },
    {"id": "fmt-currency", "title": "Upper Currency", "price": "3.00", "currency": " USD "},
    {"id": "fmt-status", "title": "Spaced Status", "price": "4.00", "currency": "usd", "status": " Published "},
    {"id": "null-stamp", "title": "Undated Poster", "price": "7.00", "currency": "usd", "updated_at": None},
    {"id": "SKU-Upper", "title": "Upper Case Id", "price": "8.00", "currency": "usd"},
    # An earlier tool made this product (another name, a 5.00 price); the CMS names it: synced into it.
    {
        "id": "legacy-tee",
        "title": "Legacy Tee",
        "price": "25.00",
        "currency": "usd",
        "stripe_product_id": "prod_LegacyTee01",
    },
    # -- not live ---------------------------------------------------------------------------------------
    {"id": "draft-new", "title": "Draft Mug", "price": "6.00", "currency": "usd", "status": "draft"},
    {"id": "draft-empty", "title": None, "price": None, "currency": None, "status": "draft"},
    # Live in Stripe from an earlier sync, now archived / soft-deleted in the CMS: archived in Stripe.
    {"id": "was-live-archived", "title": "Old Lamp", "price": "30.00", "currency": "usd", "status": "archived"},
    {
        "id": "was-live-deleted",
        "title": "Old Chair",
        "price": "80.00",
        "currency": "usd",
        "deleted_at": STAMP - timedelta(days=1),
    },
    {
        "id": "deleted-never-live",
        "title": "Ghost",
        "price": "1.00",
        "currency": "usd",
        "deleted_at": STAMP - timedelta(days=1),
    },
    # -- invalid: quarantined ---------------------------------------------------------------------------
    {"id": "bad-title-missing", "title": "", "price": "5.00", "currency": "usd"},
    {"id": "bad-price-negative", "title": "Negative", "price": "-5.00", "currency": "usd"},
    {"id": "bad-currency", "title": "Unknown Money", "price": "5.00", "currency": "xyz"},
    {"id": "bad-metadata-json", "title": "Broken Meta", "price": "5.00", "currency": "usd", "metadata": '{"sku": '},
    {"id": "bad-images-count", "title": "Nine Images", "price": "5.00", "currency": "usd", "images": NINE_IMAGES},
    {
        "id": "bad-metadata-key",
        "title": "Long Key",
        "price": "5.00",
        "currency": "usd",
        "metadata": json.dumps({KEY_41: "v"}),
    },
    {"id": "bad-control-char", "title": "Bell\x07Title", "price": "5.00", "currency": "usd"},
    {"id": "dup-id", "title": "Duplicate One", "price": "5.00", "currency": "usd"},
    {"id": "dup-id", "title": "Duplicate Two", "price": "6.00", "currency": "usd"},
    {"id": "bad-price-overflow", "title": "Too Dear", "price": "1000000.00", "currency": "usd"},
    {"id": "bad-price-huge", "title": "Absurd", "price": "99999999999999999999999.99", "currency": "usd"},
    {"id": "bad-price-nan", "title": "Not A Number", "price": "NaN", "currency": "usd"},
    {"id": "bad-price-text", "title": "Wordy Price", "price": "ten", "currency": "usd"},
    {"id": "bad-jpy-fraction", "title": "Half Yen", "price": "1.5", "currency": "jpy"},
    {"id": "bad-kwd-last-digit", "title": "Fils", "price": "1.005", "currency": "kwd"},
    {
        "id": "bad-interval",
        "title": "Fortnightly",
        "price": "5.00",
        "currency": "usd",
        "recurring_interval": "fortnight",
    },
    {
        "id": "bad-interval-count",
        "title": "Forever Club",
        "price": "5.00",
        "currency": "usd",
        "recurring_interval": "month",
        "recurring_interval_count": 37,
    },
    {"id": "bad-status", "title": "Typo Status", "price": "5.00", "currency": "usd", "status": "publshed"},
    {
        "id": "bad-reserved-key",
        "title": "Reserved Key",
        "price": "5.00",
        "currency": "usd",
        "metadata": json.dumps({"cms_id": "other"}),
    },
]


def write_cms(url: str) -> None:
    engine = sa.create_engine(url)
    # No primary key: a view or an export without one is how a CMS id comes to be read twice.
    ddl = SQLITE_DDL.format(table="products").replace("id TEXT PRIMARY KEY", "id TEXT")
    assert ddl != SQLITE_DDL.format(table="products")
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl)
        for row in ROWS:
            values = {**BLANK, **row}
            values["updated_at"] = to_sqlite_timestamp(values["updated_at"])
            values["deleted_at"] = to_sqlite_timestamp(values["deleted_at"])
            columns = ", ".join(values)
            conn.execute(
                sa.text(f"INSERT INTO products ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values
            )
    engine.dispose()


def seed_stripe(url: str) -> None:
    """What earlier runs and tools left in Stripe."""
    client = stripe.StripeClient(KEY, base_addresses={"api": url})
    client.v1.products.create(
        params={
            "id": "prod_LegacyTee01",
            "name": "old name",
            "default_price_data": {"currency": "usd", "unit_amount": 500},
        }
    )
    for cms_id, name, amount in (("was-live-archived", "Old Lamp", 3000), ("was-live-deleted", "Old Chair", 8000)):
        client.v1.products.create(
            params={
                "id": f"prod_cms_{cms_id}",
                "name": name,
                "metadata": {"cms_id": cms_id},
                "default_price_data": {"currency": "usd", "unit_amount": amount},
            }
        )


def cms_rows(url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.exec_driver_sql(
                "SELECT id, stripe_product_id, stripe_price_id, sync_status, sync_error FROM products ORDER BY rowid"
            )
        ]
    engine.dispose()
    return rows


# What Stripe holds afterwards, by product id. `cms_hash` and `cms_price` are pinned too: a change to
# either changes what every existing product compares against, and rewrites every product on the next run.
EXPECTED_STRIPE: dict[str, dict[str, Any]] = {
    "prod_LegacyTee01": {
        "name": "Legacy Tee",
        "active": True,
        "metadata": {
            "cms_id": "legacy-tee",
            "cms_hash": "465cc21ac594c4bce0f08eb34df247bf",
            "cms_price": "065a9da212716962",
        },
        "default_price": (2500, "usd", None),
        "prices": [(500, False), (2500, True)],
    },
    "prod_cms_bag-full": {
        "name": "Canvas Bag",
        "active": True,
        "description": "Heavy canvas.\nMade to last.",
        "images": ["https://img.example.com/bag-1.png", "https://img.example.com/bag-2.png"],
        "metadata": {
            "sku": "BAG-1",
            "color": "natural",
            "cms_id": "bag-full",
            "cms_hash": "d67ff270ade0c93ade04dc0c46f725f1",
            "cms_price": "5fde02d7efc78c9f",
        },
        "default_price": (2450, "usd", None),
    },
    "prod_cms_eur-cup": {
        "name": "Espresso Cup",
        "active": True,
        "metadata": {
            "cms_id": "eur-cup",
            "cms_hash": "d23333f69c11e3f8b8837e6d9f1c9fcd",
            "cms_price": "9017005b764f09b7",
        },
        "default_price": (950, "eur", None),
    },
    "prod_cms_fmt-currency": {
        "name": "Upper Currency",
        "active": True,
        "metadata": {
            "cms_id": "fmt-currency",
            "cms_hash": "1c1275db25c4a8dbe0e4a9b211f9cdd5",
            "cms_price": "3561b73e471ae15b",
        },
        "default_price": (300, "usd", None),
    },
    "prod_cms_fmt-status": {
        "name": "Spaced Status",
        "active": True,
        "metadata": {
            "cms_id": "fmt-status",
            "cms_hash": "82957088ffc7da6368e7376c2d8b4a8b",
            "cms_price": "2b50856249f0ee8b",
        },
        "default_price": (400, "usd", None),
    },
    "prod_cms_gbp-towel": {
        "name": "Tea Towel",
        "active": True,
        "metadata": {
            "cms_id": "gbp-towel",
            "cms_hash": "1b48134c8e2b9b092de1889577db51ed",
            "cms_price": "3eb19fe5efa3cd05",
        },
        "default_price": (1200, "gbp", None),
    },
    "prod_cms_jpy-tin": {
        "name": "Matcha Tin",
        "active": True,
        "metadata": {
            "cms_id": "jpy-tin",
            "cms_hash": "23e242459c5a9d2c70b4bc18d91f8101",
            "cms_price": "6a5298904355fd56",
        },
        "default_price": (1200, "jpy", None),
    },
    "prod_cms_kwd-dates": {
        "name": "Dates Box",
        "active": True,
        "metadata": {
            "cms_id": "kwd-dates",
            "cms_hash": "4f55a3d1209b8903ac6a5de712e0d32b",
            "cms_price": "9fed32d65856ba24",
        },
        "default_price": (5250, "kwd", None),
    },
    "prod_cms_null-stamp": {
        "name": "Undated Poster",
        "active": True,
        "metadata": {
            "cms_id": "null-stamp",
            "cms_hash": "eee8ca6a4d1937806e0c8cd7d0613af1",
            "cms_price": "373eec5c1f55d559",
        },
        "default_price": (700, "usd", None),
    },
    "prod_cms_sub-monthly": {
        "name": "Coffee Club",
        "active": True,
        "metadata": {
            "cms_id": "sub-monthly",
            "cms_hash": "9f4697462f733a6fde441aac59b4886d",
            "cms_price": "3f106369aadca17a",
        },
        "default_price": (1500, "usd", ("month", 1)),
    },
    "prod_cms_sub-quarterly": {
        "name": "Wine Club Quarterly",
        "active": True,
        "metadata": {
            "cms_id": "sub-quarterly",
            "cms_hash": "c28374791ba1a3de6e2ebf834509d3db",
            "cms_price": "98e63de78b971814",
        },
        "default_price": (4500, "usd", ("month", 3)),
    },
    "prod_cms_sub-yearly": {
        "name": "Annual Pass",
        "active": True,
        "metadata": {
            "cms_id": "sub-yearly",
            "cms_hash": "a775a815e5db98f9539ef7d0b82688f3",
            "cms_price": "07b118a84284fb15",
        },
        "default_price": (12000, "eur", ("year", 1)),
    },
    "prod_cms_usd-free": {
        "name": "Free Sample",
        "active": True,
        "metadata": {
            "cms_id": "usd-free",
            "cms_hash": "3f75c37aea476738cdebba15a9026361",
            "cms_price": "76b09f8577913259",
        },
        "default_price": (0, "usd", None),
    },
    "prod_cms_usd-max": {
        "name": "Largest Price",
        "active": True,
        "metadata": {
            "cms_id": "usd-max",
            "cms_hash": "6d4c7e749e16801886e8d8cc03b4d02c",
            "cms_price": "052d620540c710fa",
        },
        "default_price": (99999999, "usd", None),
    },
    "prod_cms_usd-tee": {
        "name": "Cotton Tee",
        "active": True,
        "metadata": {
            "cms_id": "usd-tee",
            "cms_hash": "76f30d1c578a35e9b47a39fe516efa03",
            "cms_price": "e9b250726ced49b9",
        },
        "default_price": (1999, "usd", None),
    },
    "prod_cms_was-live-archived": {
        "name": "Old Lamp",
        "active": False,
        "metadata": {"cms_id": "was-live-archived"},
        "default_price": (3000, "usd", None),
    },
    "prod_cms_was-live-deleted": {
        "name": "Old Chair",
        "active": False,
        "metadata": {"cms_id": "was-live-deleted"},
        "default_price": (8000, "usd", None),
    },
    "prod_cmsh_de537ed492fb22690f9f8225c280c81d": {
        "name": "Upper Case Id",
        "active": True,
        "metadata": {
            "cms_id": "SKU-Upper",
            "cms_hash": "1c75a1006742b19e672ea4116d0d7bcf",
            "cms_price": "83efb566b6797ec8",
        },
        "default_price": (800, "usd", None),
    },
}

# The CMS write-back, in table order: (id, sync_status, stripe_product_id, sync_error).
EXPECTED_CMS: list[tuple[str, str, str | None, str | None]] = [
    ("usd-tee", "synced", "prod_cms_usd-tee", None),
    ("eur-cup", "synced", "prod_cms_eur-cup", None),
    ("gbp-towel", "synced", "prod_cms_gbp-towel", None),
    ("jpy-tin", "synced", "prod_cms_jpy-tin", None),
    ("kwd-dates", "synced", "prod_cms_kwd-dates", None),
    ("usd-max", "synced", "prod_cms_usd-max", None),
    ("usd-free", "synced", "prod_cms_usd-free", None),
    ("sub-monthly", "synced", "prod_cms_sub-monthly", None),
    ("sub-quarterly", "synced", "prod_cms_sub-quarterly", None),
    ("sub-yearly", "synced", "prod_cms_sub-yearly", None),
    ("bag-full", "synced", "prod_cms_bag-full", None),
    ("fmt-currency", "synced", "prod_cms_fmt-currency", None),
    ("fmt-status", "synced", "prod_cms_fmt-status", None),
    ("null-stamp", "synced", "prod_cms_null-stamp", None),
    ("SKU-Upper", "synced", "prod_cmsh_de537ed492fb22690f9f8225c280c81d", None),
    ("legacy-tee", "synced", "prod_LegacyTee01", None),
    ("draft-new", "archived", None, None),
    ("draft-empty", "archived", None, None),
    ("was-live-archived", "archived", "prod_cms_was-live-archived", None),
    ("was-live-deleted", "archived", "prod_cms_was-live-deleted", None),
    ("deleted-never-live", "archived", None, None),
    (
        "bad-title-missing",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[title_missing] (title): title is missing or blank",
    ),
    (
        "bad-price-negative",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_negative] (price): price -5.00 is negative",
    ),
    (
        "bad-currency",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[unknown_currency] (currency): currency 'xyz' is not supported by Stripe",
    ),
    (
        "bad-metadata-json",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[invalid_metadata] (metadata): column 'metadata': not valid JSON (Expecting value): '{\"sku\": '",
    ),
    ("bad-images-count", "quarantined", None, "HIGH VALIDATION_ERROR[too_many_images] (images): 9 images (max 8)"),
    (
        "bad-metadata-key",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[metadata_key_length] (metadata.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk): key is 41 chars (1-40)",
    ),
    (
        "bad-control-char",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[control_character] (title): title contains the control character U+0007",
    ),
    ("dup-id", "quarantined", None, "HIGH VALIDATION_ERROR[duplicate_cms_id] (id): 2 CMS rows share the id 'dup-id'"),
    ("dup-id", "quarantined", None, "HIGH VALIDATION_ERROR[duplicate_cms_id] (id): 2 CMS rows share the id 'dup-id'"),
    (
        "bad-price-overflow",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_too_large] (price): price 1000000.00 USD exceeds Stripe's maximum unit amount",
    ),
    (
        "bad-price-huge",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_too_large] (price): price 99999999999999999999999.99 USD exceeds Stripe's maximum unit amount",
    ),
    (
        "bad-price-nan",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_not_finite] (price): price NaN is not a finite number",
    ),
    (
        "bad-price-text",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[invalid_price] (price): column 'price': not a decimal price: 'ten'; "
        "HIGH VALIDATION_ERROR[price_missing] (price): price is missing",
    ),
    (
        "bad-jpy-fraction",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_not_representable] (price): price 1.5 JPY has more than 0 decimal(s); refusing to round",
    ),
    (
        "bad-kwd-last-digit",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[price_not_representable] (price): price 1.005 KWD: Stripe requires the third decimal to be 0",
    ),
    (
        "bad-interval",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[invalid_interval] (recurring_interval): interval 'fortnight' not in day/week/month/year",
    ),
    (
        "bad-interval-count",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[invalid_interval_count] (recurring_interval_count): 37 month(s) is outside 1..36 (Stripe: max 3 years)",
    ),
    (
        "bad-status",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[unknown_status] (status): status 'publshed' is not one of published, draft, archived",
    ),
    (
        "bad-reserved-key",
        "quarantined",
        None,
        "HIGH VALIDATION_ERROR[metadata_reserved_key] (metadata.cms_id): key 'cms_id' is reserved for the sync",
    ),
]


def stripe_state(objects: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The emulator's products in the shape of EXPECTED_STRIPE (the default price as a tuple)."""
    prices = {p["id"]: p for p in objects["prices"]}
    out: dict[str, dict[str, Any]] = {}
    for product in objects["products"]:
        default = prices[product["default_price"]]
        recurring = default["recurring"]
        state: dict[str, Any] = {
            "name": product["name"],
            "active": product["active"],
            "metadata": product["metadata"],
            "default_price": (
                default["unit_amount"],
                default["currency"],
                (recurring["interval"], recurring["interval_count"]) if recurring else None,
            ),
        }
        if product.get("description"):
            state["description"] = product["description"]
        if product.get("images"):
            state["images"] = product["images"]
        own = sorted((p["unit_amount"], p["active"]) for p in prices.values() if p["product"] == product["id"])
        if len(own) > 1:
            state["prices"] = own
        assert default["active"], f"{product['id']}: its default price is archived"
        out[product["id"]] = state
    return out


def test_golden_catalog_through_migrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    write_cms(url)
    with EmulatorServer(EmulatorConfig()) as emulator:
        seed_stripe(emulator.url)
        env = cli_env(
            tmp_path,
            url,
            emulator.url,
            MIGRATION_STRATEGY="full",
            # A third of the catalog is invalid by construction; the validation-rate alarm is not under test.
            MIGRATION_VALIDATION_THRESHOLD="0.3",
            # Two daily partitions keep the run short; every row lies before them (or has no updated_at)
            # and is reached through the open first partition, as a first full sync reaches old rows.
            MIGRATION_PARTITION_START=(TODAY - timedelta(days=1)).strftime("%Y-%m-%d"),
        )
        for key in ("MIGRATION_START_DATE", "MIGRATION_END_DATE"):
            env.pop(key)
        result = run_cli(["migrate"], env)
        # Exit 0: quarantined rows are reported, and no check (reconciliation included) fails on them.
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        objects = emulator.objects()

    got = stripe_state(objects)
    assert set(got) == set(EXPECTED_STRIPE), (
        f"missing from Stripe: {sorted(set(EXPECTED_STRIPE) - set(got))}; "
        f"unexpected in Stripe: {sorted(set(got) - set(EXPECTED_STRIPE))}"
    )
    for product_id, expected in EXPECTED_STRIPE.items():
        assert got[product_id] == expected, product_id

    rows = cms_rows(url)
    assert [(r["id"], r["sync_status"], r["stripe_product_id"], r["sync_error"]) for r in rows] == EXPECTED_CMS
    defaults = {p["id"]: p["default_price"] for p in objects["products"]}
    for r in rows:
        # The write-back names the product's current default price; rows never in Stripe name none.
        assert r["stripe_price_id"] == defaults.get(r["stripe_product_id"]), r["id"]
