"""A PostgREST-compatible test server: only the subset supabase-py sends for the CMS REST backend.

It listens on 127.0.0.1, checks `apikey` and `Authorization: Bearer` like Supabase's gateway, and
translates the requests below into parameterised SQL on a real PostgreSQL database. Results are
serialised by PostgreSQL's own `json_agg`, as PostgREST does (numeric as JSON numbers, timestamptz
as ISO text). Anything outside the subset gets a 400 (or 405/406), so tests prove the subset.

Supported (public schema only):
  GET   /rest/v1/<table>?select=...&<col>=<op>.<value>&or=(...)&order=...&limit=N&offset=N
        select: `*` or items `[alias:]column[::text]`
        ops: eq, neq, gt, gte, lt, lte, in.(v1,"v,2",...), is.(null|not_null|true|false|unknown),
             and any of them negated with `not.` (`col=not.eq.x`, `col.not.is.null` in a tree);
             `or`/`and` logic trees of those ops with double-quoted values (backslash escapes)
        order: `col.asc|desc[.nullsfirst|.nullslast][,...]`
  POST  /rest/v1/<table>?on_conflict=<col>&columns="a","b"   with Prefer resolution=merge-duplicates
        (upsert of a JSON array; only the listed columns are set on conflict)
  PATCH /rest/v1/<table>?<filters>   (update with at least one filter)
  Prefer: return=minimal|representation, resolution=merge-duplicates
Errors use PostgREST's shapes: 404 PGRST205 (unknown table), 400 42703 (unknown column), 401.
Test hooks: `set_max_rows(n)` caps every GET like PostgREST's db-max-rows (Supabase: 1,000);
`fail_next(n, status, code)` answers the next n requests with an error; `requests` records them all;
`set_before_write(fn)` calls fn(method, params) before each non-GET request is executed (to make an
editor's change land between a client's read and its write).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SIMPLE_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
PREFER_ALLOWED = {"return=minimal", "return=representation", "resolution=merge-duplicates"}
SELECT_CASTS = {"text"}
# PostgREST's `is` operator takes only these values (docs: "Operators", `is`); `not_null` since v12.
IS_VALUES = {"null": "NULL", "not_null": "NOT NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}


class RestError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details, "hint": None}


def bad(message: str, code: str = "PGRST100") -> RestError:
    return RestError(400, code, message)


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    status: int = 0


@dataclass
class _Query:
    """SQL pieces and bound values accumulated from one request."""

    table: str
    columns: dict[str, str]  # column -> SQL type from the catalog
    where: list[str] = field(default_factory=list)
    binds: dict[str, Any] = field(default_factory=dict)

    def col(self, name: str) -> str:
        if not IDENT.fullmatch(name):
            raise bad(f"'{name}' is not a column name this server understands")
        if name not in self.columns:
            raise RestError(400, "42703", f"column {self.table}.{name} does not exist")
        return f'_src."{name}"'

    def bind(self, column: str, value: str) -> str:
        key = f"p{len(self.binds)}"
        self.binds[key] = value
        return f"CAST(:{key} AS {self.columns[column]})"

    def condition(self, column: str, op: str, value: str, *, in_tree: bool) -> str:
        ref = self.col(column)
        if op in SIMPLE_OPS:
            if in_tree:
                value = unquote_tree_value(value)
            return f"{ref} {SIMPLE_OPS[op]} {self.bind(column, value)}"
        if op == "not":
            # PostgREST negates any operator with a `not.` prefix: `col=not.eq.x` is NOT (col = x).
            op2, dot, rest = value.partition(".")
            if not dot:
                raise bad(f"cannot parse negated filter not.{value!r}")
            return "NOT (" + self.condition(column, op2, rest, in_tree=in_tree) + ")"
        if op == "is":
            if value not in IS_VALUES:
                raise bad(f"is. accepts only {sorted(IS_VALUES)}, got {value!r}")
            return f"{ref} IS {IS_VALUES[value]}"
        if op == "in":
            items = split_list(value)
            if not items:
                return "false"
            return f"{ref} IN (" + ", ".join(self.bind(column, v) for v in items) + ")"
        raise bad(f"operator '{op}' is not supported by this test server")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts, depth, quoted, escaped, cur = [], 0, False, False, []
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise bad("unbalanced parentheses")
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quoted or depth:
        raise bad("unbalanced quotes or parentheses")
    parts.append("".join(cur))
    return parts


def unquote_tree_value(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if any(c in value for c in ',()"'):
        raise bad(f"value {value!r} must be double-quoted")
    return value


def split_list(value: str) -> list[str]:
    if not (value.startswith("(") and value.endswith(")")):
        raise bad("in. expects a parenthesised list")
    inner = value[1:-1]
    if inner == "":
        return []
    return [unquote_tree_value(v) for v in _split_top(inner)]


def parse_tree(q: _Query, op: str, body: str) -> str:
    if not (body.startswith("(") and body.endswith(")")):
        raise bad(f"{op} expects a parenthesised list of conditions")
    joiner = " OR " if op == "or" else " AND "
    parts = []
    for item in _split_top(body[1:-1]):
        m = re.fullmatch(r"(and|or)(\(.*\))", item, flags=re.S)
        if m:
            parts.append(parse_tree(q, m.group(1), m.group(2)))
            continue
        column, _, rest = item.partition(".")
        op2, _, value = rest.partition(".")
        if not column or not op2:
            raise bad(f"cannot parse condition {item!r}")
        parts.append(q.condition(column, op2, value, in_tree=True))
    if not parts:
        raise bad("empty logic tree")
    return "(" + joiner.join(parts) + ")"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; avoid the 40 ms ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        params = parse_qsl(split.query, keep_blank_values=True)
        rec = RecordedRequest(method, split.path, params, {k.lower(): v for k, v in self.headers.items()})
        self.server.record(rec)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            injected = self.server.take_fault()
            if injected is not None:
                raise injected
            self._authorize()
            hook = self.server.before_write
            if method != "GET" and hook is not None:
                hook(method, params)
            status, body = self._dispatch(method, split.path, params, raw)
        except RestError as err:
            status, body = err.status, err.body()
        except sa.exc.DBAPIError as err:
            code = getattr(err.orig, "sqlstate", None) or "XX000"
            status, body = 400, {"code": code, "message": str(err.orig).strip(), "details": None, "hint": None}
        rec.status = status
        self._send(status, body)

    def _authorize(self) -> None:
        key = self.server.key
        if self.headers.get("apikey") != key or self.headers.get("Authorization") != f"Bearer {key}":
            raise RestError(401, "401", "Invalid API key")

    def _prefer(self) -> set[str]:
        tokens = {t.strip() for t in (self.headers.get("Prefer") or "").split(",") if t.strip()}
        unknown = tokens - PREFER_ALLOWED
        if unknown:
            raise bad(f"Prefer {sorted(unknown)} is not supported by this test server")
        return tokens

    def _profile(self, header: str) -> None:
        profile = self.headers.get(header)
        if profile not in (None, "public"):
            raise RestError(406, "PGRST106", f"The schema must be one of the following: public (got {profile})")

    def _table(self, path: str) -> _Query:
        m = re.fullmatch(r"/rest/v1/([A-Za-z_][A-Za-z0-9_]{0,62})", path)
        if not m:
            raise RestError(404, "PGRST125", f"Invalid path specified in request URL: {path}")
        table = m.group(1)
        columns = self.server.table_columns(table)
        if not columns:
            raise RestError(404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache")
        return _Query(table, columns)

    # -- verbs ----------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, params: list[tuple[str, str]], raw: bytes) -> tuple[int, Any]:
        if method == "GET":
            self._profile("Accept-Profile")
            return self._get(self._table(path), params)
        if method == "POST":
            self._profile("Content-Profile")
            return self._upsert(self._table(path), params, raw)
        if method == "PATCH":
            self._profile("Content-Profile")
            return self._patch(self._table(path), params, raw)
        raise RestError(405, "PGRST117", f"method {method} is not supported by this test server")

    def _filters(self, q: _Query, params: list[tuple[str, str]], allowed_extra: set[str]) -> dict[str, str]:
        """Turn filter params into WHERE clauses; return the non-filter params (each at most once)."""
        extra: dict[str, str] = {}
        for key, value in params:
            if key in allowed_extra:
                if key in extra:
                    raise bad(f"parameter {key!r} given twice")
                extra[key] = value
            elif key in ("or", "and"):
                q.where.append(parse_tree(q, key, value))
            else:
                op, dot, rest = value.partition(".")
                if not dot:
                    raise bad(f"cannot parse filter {key}={value!r}")
                q.where.append(q.condition(key, op, rest, in_tree=False))
        return extra

    def _get(self, q: _Query, params: list[tuple[str, str]]) -> tuple[int, Any]:
        extra = self._filters(q, params, {"select", "order", "limit", "offset"})
        self._prefer()
        select = self._select_list(q, extra.get("select", "*"))
        order = self._order(q, extra.get("order"))
        limit = self._nonneg(extra, "limit")
        if self.server.max_rows is not None:
            limit = min(limit, self.server.max_rows) if limit is not None else self.server.max_rows
        offset = self._nonneg(extra, "offset")
        sql = f'SELECT {select} FROM "{q.table}" AS _src'
        if q.where:
            sql += " WHERE " + " AND ".join(q.where)
        if order:
            sql += " ORDER BY " + order
        if limit is not None:
            sql += f" LIMIT {limit}"
        if offset is not None:
            sql += f" OFFSET {offset}"
        return 200, self.server.query_json(f"SELECT coalesce(json_agg(_r), '[]'::json)::text FROM ({sql}) _r", q.binds)

    def _select_list(self, q: _Query, text: str) -> str:
        if text == "*":
            return "_src.*"
        out = []
        for item in text.split(","):
            m = re.fullmatch(r"(?:([A-Za-z_][A-Za-z0-9_]*):)?([A-Za-z_][A-Za-z0-9_]*)(?:::([a-z]+))?", item)
            if not m:
                raise bad(f"select item {item!r} is not supported by this test server")
            alias, column, cast = m.groups()
            ref = q.col(column)
            if cast is not None:
                if cast not in SELECT_CASTS:
                    raise bad(f"cast {cast!r} is not supported by this test server")
                ref = f"CAST({ref} AS {cast})"
            out.append(f'{ref} AS "{alias or column}"')
        return ", ".join(out)

    def _order(self, q: _Query, text: str | None) -> str:
        if not text:
            return ""
        parts = []
        nulls = {"": "", "nullsfirst": " NULLS FIRST", "nullslast": " NULLS LAST"}
        for item in text.split(","):
            column, _, modifiers = item.partition(".")
            direction, _, null_order = modifiers.partition(".")
            if direction not in ("asc", "desc") or null_order not in nulls:
                raise bad(f"order {item!r} is not supported by this test server")
            parts.append(f"{q.col(column)} {direction.upper()}{nulls[null_order]}")
        return ", ".join(parts)

    @staticmethod
    def _nonneg(extra: dict[str, str], key: str) -> int | None:
        if key not in extra:
            return None
        if not extra[key].isdigit():
            raise bad(f"{key} must be a non-negative integer")
        return int(extra[key])

    def _body(self, raw: bytes) -> Any:
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise RestError(415, "PGRST102", "Content-Type must be application/json")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RestError(400, "PGRST102", "Empty or invalid json") from exc

    def _returning(self, q: _Query, prefer: set[str], sql: str) -> tuple[int, Any]:
        if "return=representation" in prefer:
            rows = self.server.query_json(
                f"WITH _w AS ({sql} RETURNING _src.*) SELECT coalesce(json_agg(_w), '[]'::json)::text FROM _w",
                q.binds,
                write=True,
            )
            return 0, rows
        self.server.execute(sql, q.binds)
        return 0, None

    def _upsert(self, q: _Query, params: list[tuple[str, str]], raw: bytes) -> tuple[int, Any]:
        extra = dict(params)
        if len(params) != len(extra) or set(extra) - {"on_conflict", "columns"}:
            raise bad("POST accepts only on_conflict and columns in this test server")
        prefer = self._prefer()
        if "resolution=merge-duplicates" not in prefer or "on_conflict" not in extra:
            raise bad("only upserts (on_conflict + Prefer resolution=merge-duplicates) are supported")
        conflict = extra["on_conflict"]
        q.col(conflict)
        body = self._body(raw)
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise bad("upsert body must be a JSON array of objects")
        if "columns" in extra:
            columns = [c.strip().strip('"') for c in extra["columns"].split(",")]
        else:
            columns = sorted({k for r in body for k in r})
        for c in columns:
            q.col(c)
        if conflict not in columns:
            raise bad(f"on_conflict column {conflict!r} missing from the payload")
        if not body:
            return 201, [] if "return=representation" in prefer else None
        q.binds["body"] = json.dumps(body)
        cols = ", ".join(f'"{c}"' for c in columns)
        sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c != conflict)
        sql = (
            f'INSERT INTO "{q.table}" AS _src ({cols}) SELECT {cols} '
            f'FROM json_populate_recordset(NULL::"{q.table}", CAST(:body AS json)) '
            f'ON CONFLICT ("{conflict}") DO ' + (f"UPDATE SET {sets}" if sets else "NOTHING")
        )
        _, rows = self._returning(q, prefer, sql)
        return 201, rows

    def _patch(self, q: _Query, params: list[tuple[str, str]], raw: bytes) -> tuple[int, Any]:
        self._filters(q, params, set())
        prefer = self._prefer()
        if not q.where:
            raise bad("PATCH without a filter is refused by this test server")
        body = self._body(raw)
        if not isinstance(body, dict) or not body:
            raise bad("PATCH body must be a non-empty JSON object")
        for c in body:
            q.col(c)
        q.binds["body"] = json.dumps(body)
        sets = ", ".join(f'"{c}" = _b."{c}"' for c in body)
        sql = (
            f'UPDATE "{q.table}" AS _src SET {sets} '
            f'FROM json_populate_record(NULL::"{q.table}", CAST(:body AS json)) AS _b '
            "WHERE " + " AND ".join(q.where)
        )
        _, rows = self._returning(q, prefer, sql)
        return (200, rows) if rows is not None else (204, None)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, engine: sa.engine.Engine, key: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.engine = engine
        self.key = key
        self.requests: list[RecordedRequest] = []
        self.max_rows: int | None = None  # PostgREST's db-max-rows: silently caps every GET
        self._faults: list[RestError] = []
        self._lock = threading.Lock()
        self.before_write: Callable[[str, list[tuple[str, str]]], None] | None = None

    def record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def take_fault(self) -> RestError | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def table_columns(self, table: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relname = :t AND c.relkind IN ('r', 'v', 'p') "
                    "AND a.attnum > 0 AND NOT a.attisdropped"
                ),
                {"t": table},
            )
            return {name: typ for name, typ in rows}

    def query_json(self, sql: str, binds: dict[str, Any], *, write: bool = False) -> bytes:
        with self.engine.begin() if write else self.engine.connect() as conn:
            return str(conn.execute(sa.text(sql), binds).scalar_one()).encode()

    def execute(self, sql: str, binds: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), binds)


class PostgrestTestServer:
    """Start with `with PostgrestTestServer(db_url, key) as srv:`; `srv.url` is the SUPABASE_URL."""

    def __init__(self, database_url: str, key: str) -> None:
        engine = sa.create_engine(database_url, pool_size=8, connect_args={"options": "-c timezone=UTC"})
        self._server = _Server(engine, key)
        self._thread = threading.Thread(target=self._server.serve_forever, name="postgrest-test", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._server.requests

    def set_max_rows(self, max_rows: int | None) -> None:
        """Cap GET results like PostgREST's `db-max-rows` (Supabase's default is 1,000)."""
        self._server.max_rows = max_rows

    def fail_next(self, count: int, status: int = 503, code: str = "PGRST001") -> None:
        """Answer the next `count` requests with an error, as a gateway or a saturated pool would."""
        with self._server._lock:
            self._server._faults.extend(RestError(status, code, "injected failure") for _ in range(count))

    def set_before_write(self, hook: Callable[[str, list[tuple[str, str]]], None] | None) -> None:
        """Run `hook(method, params)` before each write request is executed (None removes it)."""
        self._server.before_write = hook

    def start(self) -> PostgrestTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.engine.dispose()

    def __enter__(self) -> PostgrestTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
