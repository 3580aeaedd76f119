"""CMS row → Stripe params, and the per-row checks that keep Stripe-invalid rows out of any request.

Every value Stripe would refuse is caught here and the row is quarantined with a reason; nothing
that can be known before the call is allowed to surface as a 400 at apply time.

Metadata ownership: the CMS owns the whole metadata of the products it syncs. Keys present in Stripe
but absent from the CMS row are cleared on update (sent as ""). Keeping foreign keys would make the
50-key limit depend on Stripe state this check cannot see, and a key the CMS dropped would linger.

Fields Stripe cannot unset (`statement_descriptor`, `shippable`) are left as they are when the CMS
row has no value for them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from cms_stripe.core.catalog import STATUS_ARCHIVED, STATUS_DRAFT, STATUS_PUBLISHED, CmsProduct, content_hash
from cms_stripe.core.currency import MoneyError, is_supported, normalize_currency, to_minor_units
from cms_stripe.core.errors import Severity
from cms_stripe.core.identity import is_valid_stripe_id, lookup_key_for, product_id_for
from cms_stripe.core.settings import price_lookup_keys

# Metadata keys the sync writes itself; a CMS row may not use them.
META_CMS_ID = "cms_id"
META_HASH = "cms_hash"
META_PRICE = "cms_price"
# Set while a reprice is between "switch default_price" and "archive the old price" (crash marker).
META_PREV_PRICE = "cms_prev_price"
RESERVED_METADATA = (META_CMS_ID, META_HASH, META_PRICE, META_PREV_PRICE)

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
IMAGES_MAX = 8
URL_MAX = 2048
NAME_MAX = 250
DESCRIPTION_MAX = 40_000
UNIT_LABEL_MAX = 12
DESCRIPTOR_MIN, DESCRIPTOR_MAX = 5, 22
_DESCRIPTOR_FORBIDDEN = set("<>\\'\"*")
_TAX_CODE = re.compile(r"^txcd_\d{8}$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
# Stripe's maximum billing period is three years.
INTERVAL_MAX_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}
TAX_BEHAVIORS = ("exclusive", "inclusive", "unspecified")
KNOWN_STATUSES = (STATUS_PUBLISHED, STATUS_DRAFT, STATUS_ARCHIVED)

# Product fields the sync manages (besides `active`, `metadata` and `default_price`).
PRODUCT_FIELDS = (
    "name",
    "description",
    "images",
    "url",
    "tax_code",
    "unit_label",
    "statement_descriptor",
    "shippable",
)
# Fields Stripe lets us clear with "".
CLEARABLE_FIELDS = frozenset({"description", "images", "url", "tax_code", "unit_label"})
# What `price_data[product_data]` accepts; the rest is set by a follow-up product update.
PRODUCT_DATA_FIELDS = frozenset({"name", "statement_descriptor", "tax_code", "unit_label"})


@dataclass(frozen=True, slots=True)
class RowIssue:
    """Why a row cannot be synced as it stands (quarantine reason)."""

    code: str
    field: str
    message: str
    severity: Severity = Severity.HIGH

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message, "severity": self.severity.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowIssue:
        return cls(data["code"], data["field"], data["message"], Severity(data["severity"]))


@dataclass(frozen=True, slots=True)
class PriceSpec:
    """The immutable part of a price: any difference means a new price."""

    currency: str
    unit_amount: int
    interval: str | None = None
    interval_count: int | None = None
    tax_behavior: str | None = None

    @property
    def effective_interval_count(self) -> int | None:
        return (self.interval_count or 1) if self.interval else None

    @property
    def effective_tax_behavior(self) -> str:
        return self.tax_behavior or "unspecified"

    @property
    def fingerprint(self) -> str:
        basis = json.dumps(
            [
                self.currency,
                self.unit_amount,
                self.interval,
                self.effective_interval_count,
                self.effective_tax_behavior,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    def params(self) -> dict[str, Any]:
        """`currency`, `unit_amount`, `recurring`, `tax_behavior` as price-create params."""
        out: dict[str, Any] = {"currency": self.currency, "unit_amount": self.unit_amount}
        if self.interval:
            out["recurring"] = {"interval": self.interval, "interval_count": self.effective_interval_count}
        if self.tax_behavior:
            out["tax_behavior"] = self.tax_behavior
        return out

    def matches(self, price: Mapping[str, Any] | None) -> bool:
        """True when a Stripe price object has exactly this amount, currency, recurrence and tax behavior."""
        if not price or not isinstance(price, Mapping):
            return False
        if price.get("currency") != self.currency or price.get("unit_amount") != self.unit_amount:
            return False
        if (price.get("tax_behavior") or "unspecified") != self.effective_tax_behavior:
            return False
        recurring = price.get("recurring")
        if not self.interval:
            return not recurring
        if not recurring:
            return False
        return bool(
            recurring.get("interval") == self.interval
            and (recurring.get("interval_count") or 1) == self.effective_interval_count
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceSpec:
        return cls(
            currency=data["currency"],
            unit_amount=int(data["unit_amount"]),
            interval=data.get("interval"),
            interval_count=data.get("interval_count"),
            tax_behavior=data.get("tax_behavior"),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """What Stripe should hold for one CMS row: a plan is computed by diffing this with Stripe state."""

    cms_id: str
    product_id: str
    adopted: bool  # product id came from the row's stripe_product_id
    active: bool
    content_hash: str
    fields: dict[str, Any] = field(default_factory=dict)  # PRODUCT_FIELDS; None = no value
    metadata: dict[str, str] = field(default_factory=dict)  # full desired metadata incl. ours
    price: PriceSpec | None = None
    # Set only with STRIPE_PRICE_LOOKUP_KEYS on; None = prices are created without one.
    lookup_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        price = data.get("price")
        return cls(
            cms_id=data["cms_id"],
            product_id=data["product_id"],
            adopted=bool(data.get("adopted")),
            active=bool(data["active"]),
            content_hash=data["content_hash"],
            fields=dict(data.get("fields") or {}),
            metadata=dict(data.get("metadata") or {}),
            price=PriceSpec.from_dict(price) if price else None,
            lookup_key=data.get("lookup_key"),
        )

    # -- request params ---------------------------------------------------------------------------

    def price_metadata(self) -> dict[str, str]:
        assert self.price is not None
        return {META_CMS_ID: self.cms_id, META_PRICE: self.price.fingerprint}

    def create_product_params(self) -> dict[str, Any]:
        """Lane A: one `POST /v1/products` with our id and the default price inline."""
        assert self.price is not None
        params: dict[str, Any] = {"id": self.product_id, "active": True}
        params.update({k: v for k, v in self.fields.items() if v is not None and v != [] and v != ""})
        params["metadata"] = dict(self.metadata)
        price = self.price.params()
        price["metadata"] = self.price_metadata()
        params["default_price_data"] = price
        return params

    def create_price_with_product_params(self) -> dict[str, Any]:
        """Lane B: `POST /v1/prices` creating the product through `product_data` (other endpoint budget).

        Only `cms_id` goes into the product's metadata here: the content hash is written by the
        follow-up update, so a crash in between leaves a visibly unfinished product.
        """
        assert self.price is not None
        product_data: dict[str, Any] = {"id": self.product_id, "active": True}
        product_data.update({k: v for k, v in self.fields.items() if k in PRODUCT_DATA_FIELDS and v not in (None, "")})
        product_data["metadata"] = {META_CMS_ID: self.cms_id}
        params = self.price.params()
        params.update(self._lookup_key_params())
        params.update({"metadata": self.price_metadata(), "product_data": product_data})
        return params

    def _lookup_key_params(self) -> dict[str, Any]:
        if not self.lookup_key:
            return {}
        return {"lookup_key": self.lookup_key, "transfer_lookup_key": True}

    def create_price_params(self) -> dict[str, Any]:
        """A new price on the existing product (taking the lookup key from any price that holds it, when on)."""
        assert self.price is not None
        params = self.price.params()
        params["product"] = self.product_id
        params.update(self._lookup_key_params())
        params["metadata"] = self.price_metadata()
        return params

    def is_reusable_price(self, price: Mapping[str, Any]) -> bool:
        """A live price of this product that the sync itself made for exactly this content.

        This is how a price from an interrupted or ambiguous create is recognised without a lookup
        key: same product, active, same amount/currency/recurrence/tax behavior, and the metadata
        the sync stamps on its prices (cms_id and the price fingerprint). Hand-made prices lack it.
        """
        if self.price is None or price.get("product") != self.product_id or not price.get("active"):
            return False
        meta = price.get("metadata") or {}
        return (
            meta.get(META_CMS_ID) == self.cms_id
            and meta.get(META_PRICE) == self.price.fingerprint
            and self.price.matches(price)
        )

    def product_diff(self, product: Mapping[str, Any]) -> dict[str, Any]:
        """Update params for the managed fields and metadata that differ from a Stripe product."""
        diff: dict[str, Any] = {}
        for name in PRODUCT_FIELDS:
            want = self.fields.get(name)
            have = product.get(name)
            if name == "images":
                want_list, have_list = list(want or []), list(have or [])
                if want_list != have_list:
                    diff[name] = want_list if want_list else ""
                continue
            if name == "tax_code" and isinstance(have, Mapping):
                have = have.get("id")
            if want in (None, ""):
                if name in CLEARABLE_FIELDS and have not in (None, ""):
                    diff[name] = ""
                continue
            if want != have:
                diff[name] = want
        meta = metadata_diff(self.metadata, product.get("metadata") or {})
        if meta:
            diff["metadata"] = meta
        return diff


def metadata_diff(want: Mapping[str, str], have: Mapping[str, Any]) -> dict[str, str]:
    """Keys to set plus keys to clear (""), so Stripe's merge leaves exactly `want`."""
    out = {k: v for k, v in want.items() if have.get(k) != v}
    out.update({k: "" for k in have if k not in want})
    return out


# -- metadata ----------------------------------------------------------------------------------


def metadata_value(value: Any) -> str | None:
    """CMS metadata values as Stripe strings; None drops the key (Stripe has no null values)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def cms_metadata(product: CmsProduct) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (product.metadata or {}).items():
        text = metadata_value(value)
        if text is not None and text != "":
            out[str(key)] = text
    return out


# -- validation ---------------------------------------------------------------------------------


def _issue(code: str, field_name: str, message: str) -> RowIssue:
    return RowIssue(code, field_name, message, Severity.HIGH)


def _check_url(value: str, field_name: str, issues: list[RowIssue]) -> None:
    if not isinstance(value, str) or not _URL.match(value):
        issues.append(_issue("invalid_url", field_name, f"{field_name} must be an http(s) URL: {value!r:.80}"))
    elif len(value) > URL_MAX:
        issues.append(_issue("url_too_long", field_name, f"{field_name} is {len(value)} chars (max {URL_MAX})"))


def _control_chars(text: str, *, allow_newlines: bool) -> str | None:
    """The first character Stripe would refuse or mangle: C0/C1 controls, DEL, lone surrogates."""
    if text.isprintable():
        # No Cc or Cs character is printable: the common case skips the per-character walk.
        return None
    for ch in text:
        if allow_newlines and ch in "\n\r\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"U+{ord(ch):04X}"
    return None


def _check_text(value: str | None, field_name: str, issues: list[RowIssue], *, allow_newlines: bool = False) -> None:
    if value is None:
        return
    bad = _control_chars(value, allow_newlines=allow_newlines)
    if bad:
        issues.append(_issue("control_character", field_name, f"{field_name} contains the control character {bad}"))


def _validate_identity(p: CmsProduct) -> list[RowIssue]:
    """What every row needs, live or not: an id the sync can name in Stripe, and readable values."""
    issues = [_issue(e.code, e.field, e.message) for e in p.read_errors]
    if not p.id or not str(p.id).strip():
        if not any(i.code == "missing_id" for i in issues):
            issues.append(_issue("missing_id", "id", "row has no id"))
        return issues
    if len(p.id) > METADATA_VALUE_MAX:
        # The id travels as the `cms_id` metadata value, which Stripe caps at 500 characters.
        issues.append(_issue("id_too_long", "id", f"id is {len(p.id)} chars (max {METADATA_VALUE_MAX})"))
    _check_text(p.id, "id", issues)
    if p.stripe_product_id and not is_valid_stripe_id(p.stripe_product_id.strip()):
        issues.append(
            _issue("invalid_stripe_product_id", "stripe_product_id", f"not a Stripe id: {p.stripe_product_id!r:.80}")
        )
    if p.stripe_price_id and not is_valid_stripe_id(p.stripe_price_id.strip()):
        issues.append(
            _issue("invalid_stripe_price_id", "stripe_price_id", f"not a Stripe id: {p.stripe_price_id!r:.80}")
        )
    if p.status is not None and p.status not in KNOWN_STATUSES:
        # Unknown is not "not published": archiving a live product on a typo is an incident too.
        issues.append(
            _issue("unknown_status", "status", f"status {p.status!r:.40} is not one of {', '.join(KNOWN_STATUSES)}")
        )
    return issues


def validate_product(p: CmsProduct, *, tax_behavior: str | None = None) -> list[RowIssue]:
    """Everything that would make Stripe refuse this row (or silently alter it). Empty list = valid.

    Never raises: a value no check foresaw quarantines the row (`unexpected_value`) instead of
    stopping the rows after it. Rows that should not be live in Stripe only need an identity (they
    are archived, never created), so their content is not checked.
    """
    try:
        return _validate(p, tax_behavior=tax_behavior)
    except Exception as exc:  # a bug here must cost one row, not the run
        return [_issue("unexpected_value", "row", f"validation failed on this row: {type(exc).__name__}: {exc}"[:300])]


def _validate(p: CmsProduct, *, tax_behavior: str | None = None) -> list[RowIssue]:
    issues = _validate_identity(p)
    if not p.id or not p.should_be_active:
        return issues

    if p.title is None or not p.title.strip():
        issues.append(_issue("title_missing", "title", "title is missing or blank"))
    elif len(p.title) > NAME_MAX:
        issues.append(_issue("title_too_long", "title", f"title is {len(p.title)} chars (max {NAME_MAX})"))
    _check_text(p.title, "title", issues)
    if p.description is not None and len(p.description) > DESCRIPTION_MAX:
        issues.append(_issue("description_too_long", "description", f"description is {len(p.description)} chars"))
    _check_text(p.description, "description", issues, allow_newlines=True)
    for name in ("unit_label", "statement_descriptor", "tax_code", "url"):
        _check_text(getattr(p, name), name, issues)

    currency = normalize_currency(p.currency)
    if not currency:
        issues.append(_issue("currency_missing", "currency", "currency is missing"))
    elif not is_supported(currency):
        issues.append(_issue("unknown_currency", "currency", f"currency {p.currency!r} is not supported by Stripe"))
    if p.price is None:
        issues.append(_issue("price_missing", "price", "price is missing"))
    elif currency and is_supported(currency):
        try:
            to_minor_units(p.price, currency)
        except MoneyError as exc:
            issues.append(_issue(exc.code, "price", str(exc)))
    elif isinstance(p.price, Decimal) and p.price < 0:
        issues.append(_issue("price_negative", "price", f"price {p.price} is negative"))

    if p.recurring_interval is not None or p.recurring_interval_count is not None:
        interval = p.recurring_interval
        if interval not in INTERVAL_MAX_COUNT:
            issues.append(
                _issue("invalid_interval", "recurring_interval", f"interval {interval!r} not in day/week/month/year")
            )
        else:
            count = p.recurring_interval_count if p.recurring_interval_count is not None else 1
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= INTERVAL_MAX_COUNT[interval]:
                issues.append(
                    _issue(
                        "invalid_interval_count",
                        "recurring_interval_count",
                        f"{count!r} {interval}(s) is outside 1..{INTERVAL_MAX_COUNT[interval]} (Stripe: max 3 years)",
                    )
                )
    if tax_behavior is not None and tax_behavior not in TAX_BEHAVIORS:
        issues.append(_issue("invalid_tax_behavior", "tax_behavior", f"tax behavior {tax_behavior!r}"))

    images = list(p.images or ())
    if len(images) > IMAGES_MAX:
        issues.append(_issue("too_many_images", "images", f"{len(images)} images (max {IMAGES_MAX})"))
    for i, url in enumerate(images):
        _check_url(url, f"images[{i}]", issues)
        _check_text(url, f"images[{i}]", issues)
    if p.url is not None and p.url != "":
        _check_url(p.url, "url", issues)

    if p.tax_code is not None and p.tax_code != "" and not _TAX_CODE.match(p.tax_code):
        issues.append(_issue("invalid_tax_code", "tax_code", f"tax code {p.tax_code!r} is not txcd_ + 8 digits"))
    if p.unit_label is not None and len(p.unit_label) > UNIT_LABEL_MAX:
        issues.append(
            _issue(
                "unit_label_too_long", "unit_label", f"unit label is {len(p.unit_label)} chars (max {UNIT_LABEL_MAX})"
            )
        )
    sd = p.statement_descriptor
    if sd is not None and sd != "":
        if not DESCRIPTOR_MIN <= len(sd) <= DESCRIPTOR_MAX:
            issues.append(_issue("statement_descriptor_length", "statement_descriptor", f"{len(sd)} chars (5-22)"))
        if not sd.isascii():
            # Stripe strips non-ASCII characters; the stored value would never match the CMS.
            issues.append(_issue("statement_descriptor_ascii", "statement_descriptor", "non-ASCII characters"))
        if not any(c.isascii() and c.isalpha() for c in sd):
            issues.append(_issue("statement_descriptor_letter", "statement_descriptor", "needs at least one letter"))
        if any(c in _DESCRIPTOR_FORBIDDEN for c in sd):
            issues.append(_issue("statement_descriptor_chars", "statement_descriptor", "contains one of < > \\ ' \" *"))

    meta = cms_metadata(p)
    for key in meta:
        if key in RESERVED_METADATA:
            issues.append(_issue("metadata_reserved_key", f"metadata.{key}", f"key {key!r} is reserved for the sync"))
        if not key or len(key) > METADATA_KEY_MAX:
            issues.append(
                _issue("metadata_key_length", f"metadata.{key[:40]}", f"key is {len(key)} chars (1-{METADATA_KEY_MAX})")
            )
        if "[" in key or "]" in key:
            issues.append(_issue("metadata_key_chars", f"metadata.{key[:40]}", "keys may not contain [ or ]"))
        _check_text(key, f"metadata.{key[:40]}", issues)
        _check_text(meta[key], f"metadata.{key[:40]}", issues, allow_newlines=True)
        if len(meta[key]) > METADATA_VALUE_MAX:
            issues.append(
                _issue(
                    "metadata_value_too_long",
                    f"metadata.{key[:40]}",
                    f"value is {len(meta[key])} chars (max {METADATA_VALUE_MAX})",
                )
            )
    own = len(set(meta) | set(RESERVED_METADATA))
    if own > METADATA_MAX_KEYS:
        issues.append(
            _issue(
                "metadata_too_many_keys",
                "metadata",
                f"{len(meta)} keys + {len(RESERVED_METADATA)} sync keys > {METADATA_MAX_KEYS}",
            )
        )
    return issues


# -- params -------------------------------------------------------------------------------------


def price_spec(p: CmsProduct, *, tax_behavior: str | None = None) -> PriceSpec:
    """The price of a valid row (call validate_product first)."""
    currency = normalize_currency(p.currency)
    assert currency and p.price is not None
    interval = p.recurring_interval or None
    return PriceSpec(
        currency=currency,
        unit_amount=to_minor_units(p.price, currency),
        interval=interval,
        interval_count=(p.recurring_interval_count or 1) if interval else None,
        tax_behavior=tax_behavior,
    )


def target_for(p: CmsProduct, *, tax_behavior: str | None = None, lookup_keys: bool | None = None) -> Target:
    """The desired Stripe state of a row that passed validate_product.

    `lookup_keys`: give the price a lookup key; None = the STRIPE_PRICE_LOOKUP_KEYS setting.
    """
    product_id = product_id_for(p)
    adopted = bool(p.stripe_product_id and p.stripe_product_id.strip())
    chash = content_hash(p)
    if not p.should_be_active:
        return Target(p.id, product_id, adopted, False, chash)
    spec = price_spec(p, tax_behavior=tax_behavior)
    fields = {
        "name": p.title,
        "description": p.description or None,
        "images": list(p.images or ()),
        "url": p.url or None,
        "tax_code": p.tax_code or None,
        "unit_label": p.unit_label or None,
        "statement_descriptor": p.statement_descriptor or None,
        "shippable": p.shippable,
    }
    metadata = cms_metadata(p)
    metadata.update({META_CMS_ID: p.id, META_HASH: chash, META_PRICE: spec.fingerprint})
    return Target(
        cms_id=p.id,
        product_id=product_id,
        adopted=adopted,
        active=True,
        content_hash=chash,
        fields=fields,
        metadata=metadata,
        price=spec,
        lookup_key=lookup_key_for(p.id, spec.fingerprint)
        if (price_lookup_keys() if lookup_keys is None else lookup_keys)
        else None,
    )
