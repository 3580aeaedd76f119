"""The frame that flows between assets is built column by column (issue 15: a dict per row doubled the
peak of a big catalog); it must be the frame a record-per-row construction gives, dtypes included."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pandas as pd
import pytest

from cms_stripe.cms.demo import generate_catalog
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.frames import PRODUCT_COLUMNS, frame_to_products, products_to_frame

DEMO = generate_catalog(300, 5).products


def from_records(products: list[CmsProduct]) -> pd.DataFrame:
    """The construction the frame had before: one record per row, then the same normalisations."""
    frame = pd.DataFrame([{n: getattr(p, n) for n in PRODUCT_COLUMNS} for p in products], columns=list(PRODUCT_COLUMNS))
    for column in ("created_at", "updated_at", "deleted_at", "synced_at"):
        frame[column] = frame[column].astype(object).astype("datetime64[us, UTC]")
    for column in ("id", "title", "currency", "status"):
        frame[column] = frame[column].astype(object)
    frame["recurring_interval_count"] = frame["recurring_interval_count"].astype("Int64")
    return frame


CASES = {
    "demo": DEMO,
    "empty": [],
    "one": DEMO[:1],
    "edge dates": [
        dataclasses.replace(DEMO[0], created_at=datetime(1, 1, 1, tzinfo=UTC), updated_at=None, shippable=None),
        dataclasses.replace(DEMO[1], updated_at=datetime(9999, 12, 31, tzinfo=UTC)),
    ],
    "all bool": [dataclasses.replace(p, shippable=True) for p in DEMO[:5]],
    "all empty": [
        dataclasses.replace(p, title=None, price=None, currency=None, updated_at=None, recurring_interval_count=None)
        for p in DEMO[:5]
    ],
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_frame_is_the_record_built_frame_and_round_trips(name: str) -> None:
    rows = CASES[name]
    frame = products_to_frame(rows)
    pd.testing.assert_frame_equal(frame, from_records(rows))
    pd.testing.assert_frame_equal(products_to_frame(iter(rows)), frame)
    assert frame_to_products(frame) == rows


def test_rows_read_back_in_chunks_are_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from cms_stripe.core import frames

    monkeypatch.setattr(frames, "ROWS_CHUNK", 7)  # 300 rows: 43 chunks, the last one short
    rows = [*CASES["edge dates"], *DEMO]
    assert frame_to_products(products_to_frame(rows)) == rows
