"""CMS products as pandas DataFrames (what flows between assets), and the pandera contract of the
validated frame. Money stays `Decimal` in object columns: a float column would round prices."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from cms_stripe.core.catalog import CmsProduct

PRODUCT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CmsProduct))
TIMESTAMP_COLUMNS = ("created_at", "updated_at", "deleted_at", "synced_at")
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def products_to_frame(products: Iterable[CmsProduct]) -> pd.DataFrame:
    rows = products if isinstance(products, list) else list(products)
    if rows:
        # Column by column: a list of references per column, not a dict per row (a dict per row
        # doubled the peak of turning a big catalog into a frame). Dtypes are inferred the same way.
        frame = pd.DataFrame({name: [getattr(p, name) for p in rows] for name in PRODUCT_COLUMNS})
    else:
        # No values to infer from: every column object, as a frame built from no records has.
        frame = pd.DataFrame([], columns=list(PRODUCT_COLUMNS))
    for column in TIMESTAMP_COLUMNS:
        # Microseconds, not pandas' default nanoseconds: a ns column ends in 2262 and starts in 1677,
        # and catalogs hold dates like 0001-01-01 and 9999-12-31.
        frame[column] = frame[column].astype(object).astype(TIMESTAMP_DTYPE)
    for column in ("id", "title", "currency", "status"):
        frame[column] = frame[column].astype(object)
    frame["recurring_interval_count"] = frame["recurring_interval_count"].astype("Int64")
    return frame


def _clean(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    return value


def _ts(value: Any) -> datetime | None:
    value = _clean(value)
    if value is None:
        return None
    return pd.Timestamp(value).to_pydatetime()


# Rows turned into products at a time, column by column: a slice's columns as lists, not a dict per
# row (to_dict("records") and a dict comprehension per row cost 3x as much), and never the whole big
# frame's columns at once.
ROWS_CHUNK = 1000


def _column_values(chunk: pd.DataFrame, name: str, size: int) -> list[Any]:
    if name not in chunk.columns:  # a frame stored before the column existed
        return [None] * size
    column = chunk[name]
    if name not in TIMESTAMP_COLUMNS:
        return [_clean(v) for v in column.tolist()]
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        # Whole column at once; NaT (no value) comes back as NaT.
        return [None if v is pd.NaT else v for v in column.array.to_pydatetime().tolist()]
    return [_ts(v) for v in column.tolist()]


def frame_to_products(frame: pd.DataFrame) -> list[CmsProduct]:
    products: list[CmsProduct] = []
    for start in range(0, len(frame), ROWS_CHUNK):
        # A slice keeps its columns' dtypes, so each value is what the whole frame's would be.
        chunk = frame.iloc[start : start + ROWS_CHUNK]
        size = len(chunk)
        columns = [_column_values(chunk, name, size) for name in PRODUCT_COLUMNS]
        for values in zip(*columns, strict=True):
            fields = dict(zip(PRODUCT_COLUMNS, values, strict=True))
            price = fields["price"]
            if price is not None and not isinstance(price, Decimal):
                fields["price"] = Decimal(str(price))
            if fields["recurring_interval_count"] is not None:
                fields["recurring_interval_count"] = int(fields["recurring_interval_count"])
            fields["images"] = tuple(fields["images"] or ())
            fields["metadata"] = dict(fields["metadata"] or {})
            fields["read_errors"] = tuple(fields["read_errors"] or ())
            products.append(CmsProduct(**fields))
    return products


def _is_decimal_or_null(series: pd.Series) -> pd.Series:
    return series.map(lambda v: v is None or isinstance(v, Decimal) or (isinstance(v, float) and math.isnan(v)))


class ValidatedProducts(pa.DataFrameModel):
    """Rows that may reach Stripe: published rows passed every Stripe rule, the rest will only be archived."""

    id: Series[str] = pa.Field(unique=True, nullable=False, str_length={"min_value": 1})
    title: Series[str] = pa.Field(nullable=True)
    price: Series[object] = pa.Field(nullable=True)
    currency: Series[str] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(nullable=True)
    # Null for rows without a readable updated_at (they belong to the first partition).
    updated_at: Series[Annotated[pd.DatetimeTZDtype, "us", "UTC"]] = pa.Field(nullable=True)
    sync_hash: Series[object] = pa.Field(nullable=True)

    @pa.check("price", name="price_is_decimal")
    def price_is_decimal(cls, series: pd.Series) -> pd.Series:
        return _is_decimal_or_null(series)

    @pa.dataframe_check(name="published_rows_are_complete")
    def published_rows_are_complete(cls, frame: pd.DataFrame) -> pd.Series:
        live = (frame["status"] == "published") & frame["deleted_at"].isna()
        complete = frame["title"].notna() & frame["price"].notna() & frame["currency"].notna()
        return ~live | complete

    @pa.dataframe_check(name="published_rows_have_iso_currency")
    def published_rows_have_iso_currency(cls, frame: pd.DataFrame) -> pd.Series:
        # Only live rows reach a price; a draft's leftover currency text is not Stripe's concern.
        live = (frame["status"] == "published") & frame["deleted_at"].isna()
        iso = frame["currency"].astype("string").str.fullmatch(r"[a-z]{3}").fillna(False).astype(bool)
        return ~live | iso

    class Config:
        strict = False
        coerce = False
