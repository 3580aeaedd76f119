"""Which CMS column feeds which CmsProduct field, and turning a fetched row into a CmsProduct.

A CMS that names things differently is described by a mapping (dict, YAML or JSON file):

    table: items
    columns: {title: name, price: price_eur, tax_code: null}
    metadata_columns: [brand, sku]

Fields left out keep the default column of the same name; a field mapped to null is absent from
this CMS and gets the CmsProduct default. The fields the sync cannot work without cannot be null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.schema import DEFAULT_TABLE, from_db_timestamp
from cms_stripe.core.catalog import SYNC_COLUMNS, CmsProduct

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

CMS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CmsProduct))

# Without these the rows cannot be read in order, synced or written back.
REQUIRED_FIELDS: frozenset[str] = frozenset({"id", "updated_at", *SYNC_COLUMNS})

_TIMESTAMP_FIELDS = frozenset({"created_at", "updated_at", "deleted_at", "synced_at"})
_INT_FIELDS = frozenset({"recurring_interval_count"})


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
            validate_identifier(self.table, "table name")
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
        """Build a CmsProduct from a row keyed by the aliases of select_aliases()."""
        values: dict[str, Any] = {}
        for cms_field in self.mapped_fields:
            values[cms_field] = _convert(cms_field, row.get(f"f_{cms_field}"))
        if values.get("id") is None:
            raise ValueError("CMS row without id")
        metadata = dict(values.get("metadata") or {})
        for i, column in enumerate(self.metadata_columns):
            value = row.get(f"m_{i}")
            if value is not None:
                metadata[column] = metadata_value(value)
        if "metadata" in values or self.metadata_columns:
            values["metadata"] = metadata
        if "images" in values and values["images"] is None:
            values["images"] = ()
        return CmsProduct(**values)


def _json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    try:
        # str() first: a float from JSON must not carry its binary noise into a price.
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal price: {value!r}") from exc


def _convert(cms_field: str, value: Any) -> Any:
    if value is None:
        return None
    if cms_field == "id":
        return str(value)
    if cms_field in _TIMESTAMP_FIELDS:
        return from_db_timestamp(value)
    if cms_field == "price":
        return _decimal(value)
    if cms_field == "currency":
        return str(value).lower()
    if cms_field in _INT_FIELDS:
        return int(value)
    if cms_field == "shippable":
        if isinstance(value, str):
            return value.strip().lower() in {"1", "t", "true", "yes"}
        return bool(value)
    if cms_field == "images":
        images = _json(value)
        if images is None:
            return ()
        if not isinstance(images, list):
            raise ValueError(f"images must be a JSON array, got {type(images).__name__}")
        return tuple(str(i) for i in images)
    if cms_field == "metadata":
        meta = _json(value)
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            raise ValueError(f"metadata must be a JSON object, got {type(meta).__name__}")
        return meta
    return value


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
