"""Stripe v1 wire parameters: form decoding into nested values, and checking them against the typed
request params that stripe-python generates from Stripe's OpenAPI spec.

Deriving the allowed keys from stripe-python (rather than a hand-written list) is what makes the
emulator as strict as Stripe: a price's `unit_amount` is not in `PriceUpdateParams`, so updating it
is a 400 `parameter_unknown`, exactly as in production.
"""

from __future__ import annotations

import decimal
import importlib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import parse_qsl

import typing_extensions

from .errors import ApiError, invalid

# Parsed wire values are strings at the leaves; brackets make dicts (`a[b]`) or lists (`a[]`).
Wire = Union[str, dict[str, "Wire"], list["Wire"]]  # noqa: UP007 - recursive alias needs Union


# ---------------------------------------------------------------------------------------------
# Decoding


_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_pairs(raw: bytes | str) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True)


def decode(pairs: list[tuple[str, str]]) -> dict[str, Wire]:
    """Turn `a[b][c]=v`, `a[0]=v`, `a[]=v` pairs into nested dicts/lists (numeric keys stay dict keys
    until validation knows whether the parameter is a list or a free-form map such as metadata)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY_RE.match(key)
        parts = [key] if m is None else [m.group(1), *_PART_RE.findall(m.group(2))]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if part != "":
                    raise invalid(f"Invalid array: {key}", param=key)
                if last:
                    node.append(value)
                else:
                    child: Any = [] if parts[i + 1] == "" else {}
                    node.append(child)
                    node = child
                continue
            if last:
                if isinstance(node.get(part), dict | list):
                    raise invalid(f"Invalid hash or array given for {key}", param=key)
                node[part] = value
                continue
            nxt = parts[i + 1]
            existing = node.get(part)
            if existing is None:
                existing = [] if nxt == "" else {}
                node[part] = existing
            elif isinstance(existing, str):
                raise invalid(f"Invalid string given for {key}", param=key)
            elif isinstance(existing, list) and nxt != "":
                raise invalid(f"Invalid array: {key}", param=key)
            node = existing
    return root


# ---------------------------------------------------------------------------------------------
# Specs derived from stripe-python's TypedDicts


@dataclass(frozen=True)
class Scalar:
    kind: str  # str | int | bool | decimal | float | any


@dataclass(frozen=True)
class Empty:
    """`Literal['']`: Stripe's way of saying an empty string unsets the field."""


@dataclass(frozen=True)
class ListOf:
    item: tuple[Any, ...]


@dataclass(frozen=True)
class MapOf:
    value: tuple[Any, ...]


@dataclass
class Obj:
    name: str
    fields: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


_SCALARS: dict[Any, str] = {
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    decimal.Decimal: "decimal",
}

# Request options are merged into some params TypedDicts; they travel as headers, never as params.
_REQUEST_OPTION_KEYS = frozenset(
    {
        "api_key",
        "idempotency_key",
        "stripe_account",
        "stripe_version",
        "stripe_context",
        "headers",
        "max_network_retries",
        "content_type",
        "api_mode",
        "api_base",
    }
)

_obj_cache: dict[type, Obj] = {}


def _resolve(ann: Any, module: types.ModuleType) -> Any:
    if isinstance(ann, typing.ForwardRef):
        ann = ann.__forward_arg__
    if isinstance(ann, str):
        # The annotation strings are stripe-python's own generated source, evaluated in the
        # namespace of the module that declares them; no outside input reaches this eval.
        return eval(ann, vars(module))  # noqa: S307
    return ann


def _convert(ann: Any, module: types.ModuleType) -> tuple[Any, ...]:
    ann = _resolve(ann, module)
    origin = typing_extensions.get_origin(ann)
    args = typing_extensions.get_args(ann)
    if origin in (typing_extensions.NotRequired, typing_extensions.Required):
        return _convert(args[0], module)
    if origin is Union or isinstance(ann, types.UnionType):
        out: list[Any] = []
        for a in args:
            out.extend(_convert(a, module))
        return tuple(out)
    if origin is typing_extensions.Literal or origin is typing.Literal:
        if all(a == "" for a in args):
            return (Empty(),)
        return (Scalar("str") if all(isinstance(a, str) for a in args) else Scalar("any"),)
    if origin in (list, typing.List):  # noqa: UP006
        return (ListOf(_convert(args[0], module) if args else (Scalar("any"),)),)
    if origin in (dict, typing.Dict):  # noqa: UP006
        return (MapOf(_convert(args[1], module) if len(args) > 1 else (Scalar("any"),)),)
    if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
        return (MapOf(_convert(args[0], module) if args else (Scalar("any"),)),)
    if ann is type(None):
        return ()
    if typing_extensions.is_typeddict(ann):
        return (typeddict_spec(ann),)
    if ann in _SCALARS:
        return (Scalar(_SCALARS[ann]),)
    return (Scalar("any"),)


def typeddict_spec(cls: type) -> Obj:
    cached = _obj_cache.get(cls)
    if cached is not None:
        return cached
    obj = Obj(cls.__name__)
    _obj_cache[cls] = obj  # before recursing, so self-referencing TypedDicts terminate
    required: set[str] = set(getattr(cls, "__required_keys__", frozenset()))
    # __annotations__ of a TypedDict holds inherited keys too; each class's own module resolves names.
    for klass in reversed(cls.__mro__):
        module = importlib.import_module(klass.__module__)
        for name, ann in vars(klass).get("__annotations__", {}).items():
            if name in _REQUEST_OPTION_KEYS:
                continue
            obj.fields[name] = _convert(ann, module)
    obj.required = frozenset(required - _REQUEST_OPTION_KEYS)
    return obj


def spec_for(module_name: str, class_name: str) -> Obj:
    module = importlib.import_module(f"stripe.params.{module_name}")
    return typeddict_spec(getattr(module, class_name))


# ---------------------------------------------------------------------------------------------
# Validation


def _sub(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if path else str(key)


def _empty_error(path: str) -> ApiError:
    return ApiError(
        400,
        f"You passed an empty string for '{path}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{path}' cannot be unset. You should remove '{path}' from your request or "
        "supply a non-empty value.",
        code="parameter_invalid_empty",
        param=path,
    )


_INT_RE = re.compile(r"^-?\d+$")


def _scalar(value: str, kind: str, path: str) -> Any:
    if kind in ("str", "any"):
        return value
    if kind == "int":
        if not _INT_RE.match(value):
            raise ApiError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=path)
        return int(value)
    if kind == "bool":
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=path)
        return value == "true"
    if kind == "decimal":
        try:
            d = decimal.Decimal(value)
        except decimal.InvalidOperation:
            raise invalid(f"Invalid decimal: {value}", param=path) from None
        if not d.is_finite():
            raise invalid(f"Invalid decimal: {value}", param=path)
        return d
    if kind == "float":
        try:
            f = float(value)
        except ValueError:
            raise invalid(f"Invalid float: {value}", param=path) from None
        return f
    return value


class _Unset:
    """Result of `field=""` where the spec allows unsetting."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _as_list(value: dict[str, Wire]) -> list[Wire] | None:
    if value and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return None


def _kind_name(alts: tuple[Any, ...]) -> str:
    for a in alts:
        if isinstance(a, Scalar):
            return {"str": "string", "any": "string", "decimal": "decimal"}.get(a.kind, a.kind)
    for a in alts:
        if isinstance(a, ListOf):
            return "array"
    return "hash"


def check(value: Wire, alts: tuple[Any, ...], path: str) -> Any:
    """Validate one wire value against its alternatives; return it converted to Python types."""
    if isinstance(value, str):
        if value == "":
            if any(isinstance(a, Empty) for a in alts):
                return UNSET
            # An empty hash or array (`metadata=`) means "clear it" only where the spec allows ''.
            raise _empty_error(path)
        scalars = [a for a in alts if isinstance(a, Scalar)]
        if not scalars:
            raise invalid(f"Invalid {_kind_name(alts)}: {value}", param=path)
        if any(a.kind in ("str", "any") for a in scalars):
            return value
        err: ApiError | None = None
        for a in scalars:
            try:
                return _scalar(value, a.kind, path)
            except ApiError as e:
                err = err or e
        assert err is not None
        raise err
    if isinstance(value, list):
        for a in alts:
            if isinstance(a, ListOf):
                return [check(v, a.item, _sub(path, i)) for i, v in enumerate(value)]
        raise invalid(f"Invalid {_kind_name(alts)}", param=path)
    # dict
    for a in alts:
        if isinstance(a, Obj):
            return check_object(value, a, path)
    for a in alts:
        if isinstance(a, MapOf):
            return {k: ("" if v == "" else check(v, a.value, _sub(path, k))) for k, v in value.items()}
    for a in alts:
        if isinstance(a, ListOf):
            as_list = _as_list(value)
            if as_list is not None:
                return [check(v, a.item, _sub(path, i)) for i, v in enumerate(as_list)]
    raise invalid(f"Invalid {_kind_name(alts)}", param=path)


def check_object(value: dict[str, Wire], spec: Obj, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in value.items():
        alts = spec.fields.get(key)
        if alts is None:
            p = _sub(path, key)
            raise ApiError(400, f"Received unknown parameter: {p}", code="parameter_unknown", param=p)
        out[key] = check(v, alts, _sub(path, key))
    for key in sorted(spec.required):
        if key not in out:
            p = _sub(path, key)
            raise ApiError(400, f"Missing required param: {p}.", code="parameter_missing", param=p)
    return out


# Operation name -> (stripe.params module, class). These are the exact TypedDicts that
# stripe-python's v1 services accept for each call.
OPERATIONS: dict[str, tuple[str, str]] = {
    "product.create": ("_product_create_params", "ProductCreateParams"),
    "product.retrieve": ("_product_retrieve_params", "ProductRetrieveParams"),
    "product.update": ("_product_update_params", "ProductUpdateParams"),
    "product.list": ("_product_list_params", "ProductListParams"),
    "product.delete": ("_product_delete_params", "ProductDeleteParams"),
    "product.search": ("_product_search_params", "ProductSearchParams"),
    "price.create": ("_price_create_params", "PriceCreateParams"),
    "price.retrieve": ("_price_retrieve_params", "PriceRetrieveParams"),
    "price.update": ("_price_update_params", "PriceUpdateParams"),
    "price.list": ("_price_list_params", "PriceListParams"),
    "price.search": ("_price_search_params", "PriceSearchParams"),
    "account.retrieve": ("_account_retrieve_current_params", "AccountRetrieveCurrentParams"),
}

_specs: dict[str, Obj] = {}


def operation_spec(op: str) -> Obj:
    spec = _specs.get(op)
    if spec is None:
        spec = spec_for(*OPERATIONS[op])
        _specs[op] = spec
    return spec


def validate(op: str, raw: dict[str, Wire]) -> dict[str, Any]:
    return check_object(raw, operation_spec(op))


def preload() -> None:
    """Build every spec up front so the first request of each kind is not slower than the rest."""
    for op in OPERATIONS:
        operation_spec(op)
