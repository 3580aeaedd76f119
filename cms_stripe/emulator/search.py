"""A subset of Stripe's Search Query Language: `field:'v'`, `field~'v'`, `-field:'v'`,
`metadata['k']:'v'`, `metadata['k']:null`, numeric `created>N`, joined by AND or by OR (not both);
and the lagging view of the objects that search reads (Stripe's search is eventually consistent)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .errors import invalid

_CLAUSE_RE = re.compile(
    r"""\s*(?P<neg>-)?
    (?P<field>metadata\[(?P<q1>['"])(?P<mkey>.*?)(?P=q1)\]|[a-z_]+)
    \s*(?P<op>:|~|>=|<=|>|<)\s*
    (?:(?P<q2>['"])(?P<sval>(?:\\.|(?!(?P=q2)).)*)(?P=q2)|(?P<bare>null|-?\d+))\s*""",
    re.VERBOSE,
)
_JOIN_RE = re.compile(r"(AND|OR)\s+")

Predicate = Callable[[dict[str, Any]], bool]
Json = dict[str, Any]


class LaggedIndex:
    """What search sees: each write becomes visible only `lag` seconds after it is made.

    Objects are replaced on every write, never mutated in place, so keeping references is enough
    for snapshots. With no lag nothing is recorded and search reads the live objects.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # (kind, id) -> [(visible_from_clock_time, snapshot or None when deleted)], only while lag > 0
        self.versions: dict[tuple[str, str], list[tuple[float, Json | None]]] = {}

    def record(self, kind: str, oid: str, prev: Json | None, obj: Json | None, lag: float) -> None:
        key = (kind, oid)
        versions = self.versions.get(key)
        if versions is None:
            if lag <= 0:
                return
            versions = self.versions[key] = [(0.0, prev)] if prev is not None else []
        versions.append((self.clock() + max(lag, 0.0), obj))

    def view(self, kind: str, objects: dict[str, Json], seq: dict[str, int]) -> list[Json]:
        """The objects of `kind` as search sees them now, newest first."""
        now = self.clock()
        out: list[tuple[int, Json]] = []
        seen: set[str] = set()
        for key, versions in list(self.versions.items()):
            if key[0] != kind:
                continue
            oid = key[1]
            seen.add(oid)
            n_visible = sum(1 for t, _ in versions if t <= now)
            if n_visible == 0:
                continue
            del versions[: n_visible - 1]
            snap = versions[0][1]
            if len(versions) == 1 and snap is objects.get(oid):
                # Caught up with the live object: back to the fast path.
                del self.versions[key]
                seen.discard(oid)
                continue
            if snap is not None:
                out.append((seq.get(oid, 0), snap))
        for oid, obj in objects.items():
            if oid not in seen:
                out.append((seq[oid], obj))
        out.sort(key=lambda t: -t[0])
        return [o for _, o in out]


def _field_value(obj: dict[str, Any], field: str, mkey: str | None) -> Any:
    if mkey is not None:
        return obj.get("metadata", {}).get(mkey)
    return obj.get(field)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_query(query: str, fields: frozenset[str]) -> Predicate:
    text = query.strip()
    if not text:
        raise invalid("The query is empty.", param="query")
    clauses: list[Predicate] = []
    joins: set[str] = set()
    pos = 0
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if m is None:
            raise invalid(
                f"We were unable to parse your search query. Error at position {pos}: {text[pos : pos + 20]!r}",
                param="query",
            )
        clauses.append(_clause(m, fields))
        pos = m.end()
        if pos >= len(text):
            break
        j = _JOIN_RE.match(text, pos)
        if j is None:
            raise invalid(
                f"We were unable to parse your search query. Expected AND or OR at position {pos}.",
                param="query",
            )
        joins.add(j.group(1))
        pos = j.end()
    if len(joins) > 1:
        raise invalid("Search queries cannot combine AND and OR.", param="query")
    if joins == {"OR"}:
        return lambda obj: any(c(obj) for c in clauses)
    return lambda obj: all(c(obj) for c in clauses)


def _clause(m: re.Match[str], fields: frozenset[str]) -> Predicate:
    field = m.group("field")
    mkey = m.group("mkey")
    if mkey is None and field not in fields:
        raise invalid(f"Field `{field}` is not supported in search queries on this resource.", param="query")
    op = m.group("op")
    neg = m.group("neg") == "-"
    bare = m.group("bare")
    sval = m.group("sval")
    if sval is not None:
        sval = re.sub(r"\\(.)", r"\1", sval)

    if op in (">", "<", ">=", "<="):
        if mkey is not None or field != "created" or bare is None or bare == "null":
            raise invalid("Numeric comparisons are only supported on `created` with a number.", param="query")
        bound = int(bare)
        cmp: dict[str, Callable[[int], bool]] = {
            ">": lambda v: v > bound,
            "<": lambda v: v < bound,
            ">=": lambda v: v >= bound,
            "<=": lambda v: v <= bound,
        }
        pred: Predicate = lambda obj: cmp[op](int(obj.get("created", 0)))  # noqa: E731
    elif bare == "null":
        if op != ":":
            raise invalid("`null` can only be used with `:`.", param="query")
        pred = lambda obj: _field_value(obj, field, mkey) in (None, "")  # noqa: E731
    else:
        want = sval if sval is not None else bare
        assert want is not None
        if op == "~":
            if len(want) < 3:
                raise invalid("Substring matches need at least 3 characters.", param="query")
            low = want.lower()
            pred = lambda obj: low in (_as_text(_field_value(obj, field, mkey)) or "").lower()  # noqa: E731
        elif mkey is not None:
            pred = lambda obj: _as_text(_field_value(obj, field, mkey)) == want  # noqa: E731
        else:
            # Stripe matches token fields exactly and text fields case-insensitively.
            low = want.lower()
            pred = lambda obj: (_as_text(_field_value(obj, field, mkey)) or "").lower() == low  # noqa: E731
    if neg:
        inner = pred
        return lambda obj: not inner(obj)
    return pred
