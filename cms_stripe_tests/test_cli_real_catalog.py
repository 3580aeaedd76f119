"""`cms-stripe migrate` with MIGRATION_STRATEGY=full on a catalog that looks like a real shop's.

The PostgreSQL table (the project's schema) holds good rows last updated in 2016 and 2019, with a
null and a future (2099) `updated_at`, and today; two rows whose only fault is formatting (currency
"USD ", status " Published "), which must be normalised and synced; a draft; and rows with one
malformed stored value each, on the same days as good rows. The rows are written with plain SQL.

Expectations are written out literally below: which CMS ids end up as Stripe products (each exactly
once, with its name, amount in minor units and currency), which are quarantined (with a reason naming
the column), and that a second run writes nothing to Stripe.

Exit code: both runs must exit 0. The catalog is half bad by construction, so the validation-rate
check's threshold (MIGRATION_VALIDATION_THRESHOLD, default 0.95) is set to 0.5 here: that check is
the alarm for a catalog that is mostly unreadable, and with it out of the way any non-zero exit
means a failed step or another failed check, which quarantining bad rows must never cause.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cms_stripe.cms.schema import create_schema
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import cli_env, run_cli

pytestmark = pytest.mark.slow

D2016 = datetime(2016, 4, 5, 10, 0, tzinfo=UTC)
D2019 = datetime(2019, 8, 9, 15, 30, tzinfo=UTC)
D2099 = datetime(2099, 1, 1, 0, 0, tzinfo=UTC)
TODAY = datetime.now(UTC).replace(microsecond=0)

GOOD_ROW: dict[str, Any] = {
    "description": None,
    "recurring_interval": None,
    "recurring_interval_count": None,
    "images": None,
    "metadata": None,
    "status": "published",
}

# CMS id -> stored values; None in updated_at is a null timestamp.
GOOD: dict[str, dict[str, Any]] = {
    "g2016": {"title": "Old Tee 2016", "price": "19.99", "currency": "usd", "updated_at": D2016},
    "g2019": {"title": "Mug 2019", "price": "9.50", "currency": "eur", "updated_at": D2019},
    "gnull": {"title": "Poster without date", "price": "1200", "currency": "jpy", "updated_at": None},
    "gfuture": {"title": "Hat from the future", "price": "25.00", "currency": "usd", "updated_at": D2099},
    "gtoday": {"title": "Sock today", "price": "4.99", "currency": "usd", "updated_at": TODAY},
    "gsub2019": {
        "title": "Club quarterly",
        "price": "15.00",
        "currency": "usd",
        "recurring_interval": "month",
        "recurring_interval_count": 3,
        "updated_at": D2019,
        "images": json.dumps(["https://img.example.com/club.png"]),
        "metadata": json.dumps({"sku": "CLUB-3"}),
    },
    # Only formatting is wrong: normalised, then synced.
    "gcurrency": {"title": "Spaced currency", "price": "7.00", "currency": "USD ", "updated_at": D2016},
    "gstatus": {
        "title": "Spaced status",
        "price": "3.00",
        "currency": "usd",
        "status": " Published ",
        "updated_at": D2019,
    },
}

# What Stripe must hold for each good row: (name, unit_amount in minor units, currency, recurring).
EXPECTED_STRIPE = {
    "g2016": ("Old Tee 2016", 1999, "usd", None),
    "g2019": ("Mug 2019", 950, "eur", None),
    "gnull": ("Poster without date", 1200, "jpy", None),
    "gfuture": ("Hat from the future", 2500, "usd", None),
    "gtoday": ("Sock today", 499, "usd", None),
    "gsub2019": ("Club quarterly", 1500, "usd", ("month", 3)),
    "gcurrency": ("Spaced currency", 700, "usd", None),
    "gstatus": ("Spaced status", 300, "usd", None),
}

# CMS id -> (stored values, the column its quarantine reason must name).
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "bmeta_array": ({"metadata": "[1, 2]", "updated_at": D2016}, "metadata"),
    "bimages_object": ({"images": '{"url": "https://img.example.com/a.png"}', "updated_at": D2019}, "images"),
    "bprice_nan": ({"price": "NaN", "updated_at": D2016}, "price"),
    "binterval_huge": (
        {"recurring_interval": "month", "recurring_interval_count": 2147483647, "updated_at": D2019},
        "recurring_interval_count",
    ),
    "btitle_control": ({"title": "Bell\x07title", "updated_at": None}, "title"),
    "bjs_image": ({"images": json.dumps(["javascript:alert(1)"]), "updated_at": D2099}, "images"),
    "bmeta_long": ({"metadata": json.dumps({"note": "x" * 600}), "updated_at": TODAY}, "metadata"),
}

DRAFT: dict[str, dict[str, Any]] = {
    "d2016": {"title": "Draft 2016", "price": "1.00", "currency": "usd", "status": "draft", "updated_at": D2016}
}

INSERT = sa.text(
    "INSERT INTO products (id, title, description, price, currency, recurring_interval, "
    "recurring_interval_count, images, metadata, status, updated_at) VALUES (:id, :title, :description, "
    "CAST(:price AS numeric), :currency, :recurring_interval, :recurring_interval_count, "
    "CAST(:images AS jsonb), CAST(:metadata AS jsonb), :status, :updated_at)"
)


def stored_rows() -> list[dict[str, Any]]:
    rows = []
    for cms_id, values in GOOD.items():
        rows.append({**GOOD_ROW, "id": cms_id, **values})
    for cms_id, (values, _) in BAD.items():
        base = {**GOOD_ROW, "title": f"Bad {cms_id}", "price": "10.00", "currency": "usd"}
        rows.append({**base, "id": cms_id, **values})
    for cms_id, values in DRAFT.items():
        rows.append({**GOOD_ROW, "id": cms_id, **values})
    return rows


def stripe_by_cms_id(emulator: EmulatorServer) -> dict[str, list[dict[str, Any]]]:
    objects = emulator.objects()
    prices = {p["id"]: p for p in objects["prices"]}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for product in objects["products"]:
        cms_id = (product.get("metadata") or {}).get("cms_id")
        price = prices.get(product.get("default_price") or "")
        out[str(cms_id)].append({**product, "_price": price})
    return dict(out)


def test_full_migration_of_a_real_catalog_syncs_every_good_row_once_and_quarantines_the_rest(
    tmp_path, pg_engine, pg_database
):
    create_schema(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(INSERT, stored_rows())

    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(
            tmp_path,
            pg_database,
            emulator.url,
            MIGRATION_STRATEGY="full",
            MIGRATION_DRY_RUN="false",
            MIGRATION_VALIDATION_THRESHOLD="0.5",
            # Ten daily partitions keep the run quick; the 2016 and 2019 rows lie before them all and
            # must still be reached (through the open first partition).
            MIGRATION_PARTITION_START=(TODAY - timedelta(days=10)).strftime("%Y-%m-%d"),
        )
        for key in ("MIGRATION_START_DATE", "MIGRATION_END_DATE"):
            env.pop(key)

        first = run_cli(["migrate"], env)
        out = first.stdout + first.stderr
        assert first.returncode == 0, out[-4000:]

        by_cms = stripe_by_cms_id(emulator)
        assert set(by_cms) == set(EXPECTED_STRIPE), (
            f"missing from Stripe: {sorted(set(EXPECTED_STRIPE) - set(by_cms))}; "
            f"unexpected in Stripe: {sorted(set(by_cms) - set(EXPECTED_STRIPE))}"
        )
        duplicates = {k: len(v) for k, v in by_cms.items() if len(v) != 1}
        assert not duplicates, f"Stripe products per CMS id: {duplicates}"
        for cms_id, (name, amount, currency, recurring) in EXPECTED_STRIPE.items():
            product = by_cms[cms_id][0]
            price = product["_price"]
            assert product["active"], cms_id
            assert product["name"] == name, cms_id
            assert price is not None and (price["unit_amount"], price["currency"]) == (amount, currency), cms_id
            got_recurring = price.get("recurring")
            if recurring is None:
                assert not got_recurring, cms_id
            else:
                assert (got_recurring["interval"], got_recurring["interval_count"]) == recurring, cms_id

        with pg_engine.connect() as conn:
            rows = {
                r.id: r
                for r in conn.exec_driver_sql(
                    "SELECT id, stripe_product_id, stripe_price_id, sync_status, sync_error FROM products"
                )
            }
        for cms_id in EXPECTED_STRIPE:
            row = rows[cms_id]
            assert row.sync_status == "synced", (cms_id, row.sync_status, row.sync_error)
            assert row.stripe_product_id == by_cms[cms_id][0]["id"], cms_id
            assert row.stripe_price_id == by_cms[cms_id][0]["default_price"], cms_id
        for cms_id, (_, column) in BAD.items():
            row = rows[cms_id]
            assert row.sync_status == "quarantined", (cms_id, row.sync_status)
            assert row.sync_error and column in row.sync_error, (cms_id, row.sync_error)
        assert rows["d2016"].sync_status != "quarantined" and "d2016" not in by_cms

        writes_before = emulator.inspect()["writes_total"]
        products_before = emulator.objects()["products"]
        second = run_cli(["migrate"], env)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        assert emulator.inspect()["writes_total"] == writes_before, "the rerun wrote to Stripe"
        assert emulator.objects()["products"] == products_before
