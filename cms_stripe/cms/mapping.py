"""Which CMS column feeds which CmsProduct field, and turning a fetched row into a CmsProduct.

A CMS that names things differently is described by a mapping (dict, YAML or JSON file):

    table: items            # or schema-qualified: cms.items
    columns: {title: name, price: price_eur, tax_code: null}
    metadata_columns: [brand, sku]

Fields left out keep the default column of the same name; a field mapped to null is absent from
this CMS and gets the CmsProduct default. The fields the sync cannot work without cannot be null.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.schema import DEFAULT_TABLE, from_db_timestamp
from cms_stripe.core.catalog import SYNC_COLUMNS, CmsProduct, FieldError

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Every CmsProduct field a column can feed (read_errors is the reader's own finding, not a column).
CMS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CmsProduct) if f.name != "read_errors")

# Without these the rows cannot be read in order, synced or written back.
REQUIRED_FIELDS: frozenset[str] = frozenset({"id", "updated_at", *SYNC_COLUMNS})

_TIMESTAMP_FIELDS = frozenset({"created_at", "updated_at", "deleted_at", "synced_at"})
_INT_FIELDS = frozenset({"recurring_interval_count"})


def validate_table_name(name: object) -> str:
    """A table, optionally schema-qualified (`cms.products`): each part a plain identifier."""
    if isinstance(name, str) and name.count(".") == 1:
        schema, table = name.split(".")
        validate_identifier(schema, "schema name")
        validate_identifier(table, "table name")
        return name
    return validate_identifier(name, "table name")


def split_table_name(name: str) -> tuple[str | None, str]:
    """`cms.products` → ("cms", "products"); `products` → (None, "products")."""
    if "." in name:
        schema, table = name.split(".", 1)
        return schema, table
    return None, name


def validate_identifier(name: object, what: str) -> str:
    """Names from config end up in SQL and URLs: accept plain identifiers only (they are quoted too)."""
    if not isinstance(name, str) or not IDENTIFIER_RE.fullmatch(name):
        raise CmsConfigError(f"invalid {what} {name!r}: expected a plain identifier matching {IDENTIFIER_RE.pattern}")
    return name


@dataclass(frozen=True)
class ColumnMapping:
    """Table name, CmsProduct field -> column, and extra columns copied into product metadata."""

    table: str = DEFAULT_TABLE
    columns: Mapping[str, str | None] = field(default_factory=dict)
    metadata_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        try:
            validate_table_name(self.table)
        except CmsConfigError as exc:
            problems.append(str(exc))
        unknown = sorted(set(self.columns) - set(CMS_FIELDS))
        if unknown:
            problems.append(f"unknown CMS field(s) in mapping: {', '.join(map(repr, unknown))}")
        resolved: dict[str, str | None] = {name: name for name in CMS_FIELDS}
        for cms_field, column in self.columns.items():
            if cms_field not in resolved:
                continue
            if column is None:
                if cms_field in REQUIRED_FIELDS:
                    problems.append(f"field {cms_field!r} is required and cannot be mapped to null")
                resolved[cms_field] = None
                continue
            try:
                resolved[cms_field] = validate_identifier(column, f"column for {cms_field!r}")
            except CmsConfigError as exc:
                problems.append(str(exc))
        for column in self.metadata_columns:
            try:
                validate_identifier(column, "metadata column")
            except CmsConfigError as exc:
                problems.append(str(exc))
        used = [c for c in resolved.values() if c is not None]
        dupes = sorted({c for c in used if used.count(c) > 1})
        if dupes:
            problems.append(f"column(s) mapped to more than one field: {', '.join(map(repr, dupes))}")
        if problems:
            raise CmsConfigError("invalid CMS column mapping: " + "; ".join(problems))
        object.__setattr__(self, "columns", resolved)
        object.__setattr__(self, "metadata_columns", tuple(self.metadata_columns))
        # What product_from_row reads, worked out once, not for every row of a big catalog.
        reads = tuple((f, c, f"f_{f}") for f, c in resolved.items() if c is not None)
        object.__setattr__(self, "_reads", reads)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def default(cls, table: str = DEFAULT_TABLE) -> ColumnMapping:
        return cls(table=table)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnMapping:
        if not isinstance(data, Mapping):
            raise CmsConfigError(f"CMS column mapping must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"table", "columns", "metadata_columns"})
        if unknown:
            raise CmsConfigError(f"unknown key(s) in CMS column mapping: {', '.join(map(repr, unknown))}")
        columns = data.get("columns") or {}
        metadata_columns = data.get("metadata_columns") or ()
        if not isinstance(columns, Mapping):
            raise CmsConfigError("CMS column mapping: 'columns' must be a mapping of CMS field -> column")
        if isinstance(metadata_columns, str) or not isinstance(metadata_columns, Iterable):
            raise CmsConfigError("CMS column mapping: 'metadata_columns' must be a list of columns")
        return cls(
            table=data.get("table") or DEFAULT_TABLE,
            columns=dict(columns),
            metadata_columns=tuple(metadata_columns),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ColumnMapping:
        """Load a mapping from a .json, .yaml or .yml file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise CmsConfigError(f"cannot read CMS column mapping file {str(p)!r}: {exc}") from exc
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # json.JSONDecodeError and yaml.YAMLError share no useful base
            raise CmsConfigError(f"CMS column mapping file {str(p)!r} is not valid: {exc}") from exc
        return cls.from_dict(data or {})

    @classmethod
    def load(cls, mapping_file: str | None = None, table: str | None = None) -> ColumnMapping:
        """The mapping from a file if given, else the default; an explicit table overrides both."""
        mapping = cls.from_file(mapping_file) if mapping_file else cls()
        if table and table != mapping.table:
            mapping = cls(table=table, columns=dict(mapping.columns), metadata_columns=mapping.metadata_columns)
        return mapping

    # -- queries ------------------------------------------------------------------------------

    def column(self, cms_field: str) -> str:
        """The column of a field the caller needs (id, updated_at, sync columns are never absent)."""
        col = self.columns[cms_field]
        if col is None:
            raise CmsConfigError(f"CMS field {cms_field!r} is not mapped to a column")
        return col

    @property
    def mapped_fields(self) -> dict[str, str]:
        """CmsProduct field -> column, for the fields this CMS has."""
        return {f: c for f, c in self.columns.items() if c is not None}

    def required_columns(self) -> dict[str, str]:
        """Every column the mapping reads or writes -> what it feeds (for the schema check message)."""
        needed: dict[str, str] = {}
        for cms_field, column in self.mapped_fields.items():
            needed.setdefault(column, cms_field)
        for column in self.metadata_columns:
            needed.setdefault(column, "metadata")
        return needed

    def missing_message(self, table_exists: bool, existing_columns: Iterable[str]) -> str | None:
        """The one message naming every missing piece, or None when the schema fits."""
        if not table_exists:
            return (
                f"CMS schema does not match the mapping: table {self.table!r} does not exist "
                f"(needs columns {', '.join(map(repr, self.required_columns()))})"
            )
        have = {c.lower() for c in existing_columns}
        missing = {c: f for c, f in self.required_columns().items() if c.lower() not in have}
        if not missing:
            return None
        return (
            f"CMS schema does not match the mapping: table {self.table!r} has no columns "
            f"{', '.join(map(repr, missing))} (mapped to {', '.join(missing.values())})"
        )

    # -- row conversion -----------------------------------------------------------------------

    def select_aliases(self) -> list[tuple[str, str]]:
        """(column, alias) pairs to fetch; aliases are fixed identifiers so one column may feed two things."""
        pairs = [(column, f"f_{cms_field}") for cms_field, column in self.mapped_fields.items()]
        pairs += [(column, f"m_{i}") for i, column in enumerate(self.metadata_columns)]
        return pairs

    def product_from_row(self, row: Mapping[Any, Any]) -> CmsProduct:
        """Build a CmsProduct from a row keyed by the aliases of select_aliases().

        Never raises for a stored value: catalogs years old hold values no form would allow (JSON of
        the wrong shape, NaN, text where a number belongs). Such a field is left empty and the reason,
        naming the column, goes into `read_errors`, so that one row is quarantined and the rest read on.
        """
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        for cms_field, column, alias in self._reads:  # type: ignore[attr-defined]
            raw = row.get(alias)
            try:
                values[cms_field] = _convert(cms_field, raw)
            except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
                errors.append(FieldError(_error_code(cms_field), column, f"column {column!r}: {exc}"))
        if values.get("id") is None:
            # Without an id the row can be reported but never written back or given a Stripe product.
            values["id"] = ""
            if not any(e.field == self.columns["id"] for e in errors):
                errors.append(FieldError("missing_id", str(self.columns["id"]), "row has no id"))
        metadata = dict(values.get("metadata") or {})
        for i, column in enumerate(self.metadata_columns):
            value = row.get(f"m_{i}")
            if value is not None:
                try:
                    metadata[column] = metadata_value(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    errors.append(FieldError("invalid_metadata", column, f"column {column!r}: {exc}"))
        if "metadata" in values or self.metadata_columns:
            values["metadata"] = metadata
        if "images" in values and values["images"] is None:
            values["images"] = ()
        if errors:
            values["read_errors"] = tuple(errors)
        return CmsProduct(**values)


_ERROR_CODES = {
    "images": "invalid_images",
    "metadata": "invalid_metadata",
    "price": "invalid_price",
    "recurring_interval_count": "invalid_interval_count",
    "shippable": "invalid_boolean",
}


def _error_code(cms_field: str) -> str:
    if cms_field in _TIMESTAMP_FIELDS:
        return "invalid_timestamp"
    return _ERROR_CODES.get(cms_field, "invalid_text")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg}): {_short(value)}") from None
    return value


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a price: {value!r}")
    if isinstance(value, Decimal):
        number = value
    else:
        try:
            # str() first: a float from JSON must not carry its binary noise into a price.
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal price: {_short(value)}") from None
    if number.is_snan():
        # A signalling NaN raises on any arithmetic (even hashing the row); treat it as unreadable.
        raise ValueError(f"not a number: {_short(value)}")
    return number


def _text(value: Any) -> str:
    """Text columns: SQLite stores whatever it was given, so a title may come back as 42 or bytes."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("bytes that are not UTF-8 text") from None
    if isinstance(value, (bool, dict, list)):
        raise ValueError(f"expected text, got {type(value).__name__} {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected text, got {value!r}")
    if isinstance(value, (int, float, Decimal, uuid.UUID)):
        # A uuid or bigint id (a common Supabase layout) is text to us.
        return str(value)
    raise ValueError(f"expected text, got {type(value).__name__}")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        number = Decimal(value)
    else:
        if isinstance(value, str):
            value = value.strip()
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"not an integer: {_short(value)}") from None
    if not number.is_finite() or number != number.to_integral_value():
        # int(2.5) would silently bill every 2 months instead of failing the row.
        raise ValueError(f"not a whole number: {_short(value)}")
    if abs(number) > _INT_LIMIT:
        raise ValueError(f"{_short(value)} is out of range")
    return int(number)


# No count Stripe accepts comes near this; it keeps the value inside an int64 frame column.
_INT_LIMIT = 2**31

_TRUE_TEXT = frozenset({"1", "t", "true", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"0", "f", "false", "no", "n", "off"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise ValueError(f"not a boolean: {_short(value)}")


def _convert(cms_field: str, value: Any) -> Any:
    if value is None:
        return None
    if cms_field == "id":
        return _text(value)
    if cms_field in _TIMESTAMP_FIELDS:
        return from_db_timestamp(value)
    if cms_field == "price":
        return _decimal(value)
    if cms_field == "recurring_interval":
        # Old catalogs store '' (or spaces) for one-time prices.
        return _text(value).strip().lower() or None
    if cms_field in ("currency", "status"):
        # Whitespace and case are formatting, not content: "USD " is usd, " Published" is published.
        return _text(value).strip().lower()
    if cms_field in _INT_FIELDS:
        return _integer(value)
    if cms_field == "shippable":
        return _boolean(value)
    if cms_field == "images":
        images = _json(value)
        if images is None:
            return ()
        if not isinstance(images, list):
            raise ValueError(f"images must be a JSON array of URLs, got {type(images).__name__}")
        bad = [i for i in images if not isinstance(i, str)]
        if bad:
            raise ValueError(f"images must hold URL strings, got {_short(bad[0])}")
        return tuple(images)
    if cms_field == "metadata":
        meta = _json(value)
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            raise ValueError(f"metadata must be a JSON object, got {type(meta).__name__}")
        return meta
    return _text(value)


def metadata_value(value: Any) -> str:
    """Stripe metadata values are strings; render each type one way so every backend hashes alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Decimal, float)):
        return format(Decimal(str(value)).normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
