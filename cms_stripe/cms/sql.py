"""The SQL catalog backend: Supabase Postgres (direct or pooled) or SQLite, through SQLAlchemy Core.

Identifiers come from the mapping (validated, then quoted by the dialect); every value is a bound
parameter. Backups of the sync columns live in a `cms_stripe_backups` table in the same database,
written in the same transaction as the write-back batch they protect.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cms_stripe.cms._util import chunks, dedupe, retrying
from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.mapping import ColumnMapping, split_table_name, validate_identifier
from cms_stripe.cms.schema import DEFAULT_TABLE, from_db_timestamp, to_sqlite_timestamp
from cms_stripe.cms.source import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_WRITE_BATCH_SIZE,
    LINK_COLUMNS,
    BackupRow,
    link_json,
    parse_link_json,
    partition_updates,
    require_aware,
    restore_updates,
    validate_run_id,
    validate_updates,
)
from cms_stripe.core.catalog import SYNC_COLUMNS, SYNC_PENDING, CmsProduct, SyncLink, SyncUpdate, WriteBackResult
from cms_stripe.core.changes import ChangedDays, summarize_changes
from cms_stripe.core.days import OldestRow
from cms_stripe.core.status import SyncState, summarize

T = TypeVar("T")

DEFAULT_BACKUP_TABLE = "cms_stripe_backups"
DEFAULT_ID_CHUNK_SIZE = 1000
_TIMESTAMP_ALIASES = frozenset({"created_at", "updated_at", "deleted_at", "synced_at"})

# The timestamps psycopg can load into a datetime; the rest ('infinity', BC, year > 9999) read as undated.
_PG_LOADABLE_FROM, _PG_LOADABLE_TO = "'0001-01-02'", "'9999-12-30'"

_SUPPORTED_DRIVERS = {"postgresql", "postgresql+psycopg", "postgresql+psycopg2", "sqlite", "sqlite+pysqlite"}

_BACKUP_DDL = {
    "postgresql": """
CREATE TABLE IF NOT EXISTS {table} (
    source_table text NOT NULL,
    run_id text NOT NULL,
    product_id text NOT NULL,
    stripe_product_id text,
    stripe_price_id text,
    sync_status text,
    sync_error text,
    synced_at timestamptz,
    sync_hash text,
    backed_up_at timestamptz NOT NULL,
    written text,
    PRIMARY KEY (source_table, run_id, product_id)
);
-- Supabase exposes public tables through its REST API: with RLS on and no policy, only the owner
-- and the service role can read what the sync columns held.
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY""",
    "sqlite": """
CREATE TABLE IF NOT EXISTS {table} (
    source_table TEXT NOT NULL,
    run_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    stripe_product_id TEXT,
    stripe_price_id TEXT,
    sync_status TEXT,
    sync_error TEXT,
    synced_at TEXT,
    sync_hash TEXT,
    backed_up_at TEXT NOT NULL,
    written TEXT,
    PRIMARY KEY (source_table, run_id, product_id)
)""",
}


def is_transient_db_error(exc: BaseException) -> bool:
    """Timeouts, dropped connections, a locked SQLite file: worth another try. Bad SQL or data is not."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.TimeoutError))


def create_cms_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a CMS URL; refuses drivers we have not tested rather than failing mid-run."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise CmsConfigError("CMS_DATABASE_URL is not a valid SQLAlchemy URL") from exc
    if parsed.drivername not in _SUPPORTED_DRIVERS:
        raise CmsConfigError(
            f"CMS_DATABASE_URL driver {parsed.drivername!r} is not supported; "
            "use postgresql+psycopg://... (Supabase direct or pooled) or sqlite:///... (demo)"
        )
    options: dict[str, Any] = {"pool_pre_ping": True}
    safe_loaders = parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg"
    if parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": 10, "application_name": "cms-stripe"}
        if parsed.get_driver_name() == "psycopg":
            # Supabase's pooler in transaction mode (port 6543) cannot keep prepared statements,
            # which psycopg 3 creates after a few executions of the same query.
            connect_args["prepare_threshold"] = None
        options["connect_args"] = connect_args
    else:
        options["connect_args"] = {"timeout": 30}
    options.update(kwargs)
    engine = sa.create_engine(parsed, **options)
    if safe_loaders:
        sa.event.listen(engine, "connect", _register_safe_loaders)
    return engine


def _register_safe_loaders(dbapi_connection: Any, _record: Any) -> None:
    """psycopg refuses to load 'infinity', BC dates or years past 9999 into a datetime, and the error
    ends the whole page. Such a value in any column (a metadata column, say) comes back as its text,
    so the row converter quarantines that row, or keeps the text as metadata, and the page reads on."""
    from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

    for name, base in (("date", DateLoader), ("timestamp", TimestampLoader), ("timestamptz", TimestamptzLoader)):
        dbapi_connection.adapters.register_loader(name, _safe_loader(base))


def _safe_loader(base: Any) -> Any:
    class SafeLoader(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except Exception:  # psycopg.DataError: a value Python's datetime cannot hold
                return bytes(data).decode("utf-8", "replace")

    return SafeLoader


class SqlCatalogSource:
    """CatalogSource over SQLAlchemy (PostgreSQL or SQLite)."""

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        mapping: ColumnMapping | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        write_batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
        id_chunk_size: int = DEFAULT_ID_CHUNK_SIZE,
        backup_table: str = DEFAULT_BACKUP_TABLE,
        retry_attempts: int = 5,
        retry_wait: float = 0.5,
        retry_max_wait: float = 10.0,
    ) -> None:
        if min(page_size, write_batch_size, id_chunk_size) < 1:
            raise CmsConfigError("page_size, write_batch_size and id_chunk_size must be positive")
        self.mapping = mapping or ColumnMapping()
        self.page_size = page_size
        self.write_batch_size = write_batch_size
        self.id_chunk_size = id_chunk_size
        validate_identifier(backup_table, "backup table name")
        schema, table = split_table_name(self.mapping.table)
        if backup_table == table:
            raise CmsConfigError("the backup table cannot be the products table")
        # Backups sit beside the products table, in its schema.
        self.backup_table = f"{schema}.{backup_table}" if schema else backup_table
        self._owns_engine = isinstance(url_or_engine, str)
        self.engine = create_cms_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.dialect = self.engine.dialect.name
        if self.dialect not in _BACKUP_DDL:
            raise CmsConfigError(f"unsupported CMS database dialect: {self.dialect}")
        self._retry_args = {"attempts": retry_attempts, "wait": retry_wait, "max_wait": retry_max_wait}
        self._checked = False
        self._backup_ready = False
        self._naive_fields: set[str] = set()
        self._updated_at_type: Any = None
        self._build_statements()

    # -- plumbing -----------------------------------------------------------------------------

    def _q(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def _qt(self, name: str) -> str:
        """A possibly schema-qualified table name, each part quoted."""
        return ".".join(self._q(part) for part in name.split("."))

    def _column_sql(self, column: str, alias: str, *, text_timestamps: bool) -> str:
        expr = self._q(column)
        if self.dialect == "postgresql" and alias[2:] in _TIMESTAMP_ALIASES and text_timestamps:
            # psycopg refuses to load 'infinity' or a BC date as a datetime, which would end the page
            # loop; as text they reach the row converter, which quarantines just that row.
            expr = f"CAST({expr} AS text)"
        return f"{expr} AS {self._q(alias)}"

    def _build_statements(self) -> None:
        m = self.mapping
        q = self._q
        self._t = self._qt(m.table)
        self._bt = self._qt(self.backup_table)
        self._id = q(m.column("id"))
        self._u = q(m.column("updated_at"))
        pairs = m.select_aliases()
        # Keyset walks need updated_at as the database compares it; every other timestamp is read as text.
        self._select = ", ".join(
            self._column_sql(col, alias, text_timestamps=alias != "f_updated_at") for col, alias in pairs
        )
        self._select_text = ", ".join(self._column_sql(col, alias, text_timestamps=True) for col, alias in pairs)
        if self.dialect == "postgresql":
            # Row comparison lets PostgreSQL walk the (updated_at, id) index directly.
            self._after_key = f"({self._u}, {self._id}) > (:cu, :ci)"
            self._loadable = f"{self._u} >= {_PG_LOADABLE_FROM} AND {self._u} <= {_PG_LOADABLE_TO}"
            self._undated_parts: tuple[str, ...] = (
                f"{self._u} IS NULL",
                f"{self._u} < {_PG_LOADABLE_FROM}",
                f"{self._u} > {_PG_LOADABLE_TO}",
            )
        else:
            self._after_key = f"({self._u} > :cu OR ({self._u} = :cu AND {self._id} > :ci))"
            # SQLite stores any text: what does not start like a timestamp is undated, like NULL.
            stamp = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"
            self._loadable = f"{self._u} GLOB {stamp}"
            self._undated_parts = (f"{self._u} IS NULL", f"{self._u} NOT GLOB {stamp}")
        self._undated = "(" + " OR ".join(self._undated_parts) + ")"
        sync = [(c, q(m.column(c))) for c in SYNC_COLUMNS]
        self._link_cols = [q(m.column(c)) for c in LINK_COLUMNS]
        self._update_sql = sa.text(
            f"UPDATE {self._t} SET " + ", ".join(f"{qc} = :{c}" for c, qc in sync) + f" WHERE {self._id} = :id"
        )
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        self._current_sql = sa.text(
            f"SELECT {self._id} AS id, "
            + ", ".join(f"{qc} AS {c}" for c, qc in zip(LINK_COLUMNS, self._link_cols, strict=True))
            + f" FROM {self._t} WHERE {self._id} IN :ids{lock}"
        ).bindparams(sa.bindparam("ids", expanding=True))
        self._backup_insert_sql = sa.text(
            f"INSERT INTO {self._bt} (source_table, run_id, product_id, "
            + ", ".join(SYNC_COLUMNS)
            + ", backed_up_at) SELECT :source_table, :run_id, "
            + f"{self._id}, "
            + ", ".join(qc for _, qc in sync)
            + f", :now FROM {self._t} WHERE {self._id} IN :ids "
            "ON CONFLICT (source_table, run_id, product_id) DO NOTHING"
        ).bindparams(sa.bindparam("ids", expanding=True))
        self._backup_written_sql = sa.text(
            f"UPDATE {self._bt} SET written = :written "
            "WHERE source_table = :source_table AND run_id = :run_id AND product_id = :id"
        )
        self._backup_select_sql = sa.text(
            "SELECT product_id, "
            + ", ".join(SYNC_COLUMNS)
            + f", written FROM {self._bt} WHERE source_table = :source_table AND run_id = :run_id ORDER BY product_id"
        )

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in retrying(is_transient_db_error, **self._retry_args):  # type: ignore[arg-type]
            with attempt:
                return fn()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _ts(self, value: datetime | None, cms_field: str = "updated_at") -> Any:
        """A timestamp as this dialect compares it: aware datetime for Postgres (naive UTC for a
        `timestamp without time zone` column, which the reader takes as UTC too: an aware value would
        be shifted by the session's TimeZone), fixed-format text for SQLite."""
        if value is None:
            return None
        if self.dialect == "sqlite":
            return to_sqlite_timestamp(value)
        if cms_field in self._naive_fields:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value.astimezone(UTC)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A read connection that loads any stored timestamp, even one Python's datetime cannot hold."""
        with self.engine.connect() as conn:
            if self.engine.dialect.driver == "psycopg":
                _register_safe_loaders(conn.connection.dbapi_connection, None)
            yield conn

    def _ensure_checked(self) -> None:
        if not self._checked:
            self.check()

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- check --------------------------------------------------------------------------------

    def check(self) -> None:
        schema, table = split_table_name(self.mapping.table)

        def inspect() -> tuple[bool, list[Any]]:
            insp = sa.inspect(self.engine)
            if not insp.has_table(table, schema=schema):
                return False, []
            return True, list(insp.get_columns(table, schema=schema))

        try:
            exists, described = self._retry(inspect)
        except sa.exc.OperationalError as exc:
            raise CmsConfigError(f"cannot reach the CMS database: {type(exc.orig).__name__}") from exc
        columns = [c["name"] for c in described]
        message = self.mapping.missing_message(exists, columns)
        if message:
            raise CmsConfigError(message)
        naive = {c["name"] for c in described if isinstance(c["type"], sa.DateTime) and not c["type"].timezone}
        self._naive_fields = {f for f, col in self.mapping.mapped_fields.items() if col in naive}
        wanted = self.mapping.column("updated_at")
        # The schema check matches column names without case, as PostgreSQL folds unquoted names.
        self._updated_at_type = next(
            (c["type"] for c in described if c["name"] == wanted),
            next((c["type"] for c in described if c["name"].lower() == wanted.lower()), None),
        )
        self._checked = True

    # -- reads --------------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[sa.Row[Any]]:
        def run() -> list[sa.Row[Any]]:
            with self._connect() as conn:
                return list(conn.execute(sa.text(sql), dict(params)))

        return self._retry(run)

    def _keyset(self, where: list[str], params: dict[str, Any], page_size: int) -> Iterator[CmsProduct]:
        """Pages ordered by (updated_at, id); the cursor is the raw DB value so ties compare exactly."""
        if page_size < 1:
            raise ValueError(f"page_size must be positive, got {page_size}")
        where = [*where, f"{self._u} IS NOT NULL"] + ([self._loadable] if self._loadable else [])
        cursor: tuple[Any, Any] | None = None
        while True:
            clauses = list(where)
            page_params = dict(params, n=page_size)
            if cursor is not None:
                clauses.append(self._after_key)
                page_params.update(cu=cursor[0], ci=cursor[1])
            sql = (
                f"SELECT {self._select} FROM {self._t} WHERE "
                + " AND ".join(clauses)
                + f" ORDER BY {self._u}, {self._id} LIMIT :n"
            )
            rows = self._fetch(sql, page_params)
            for row in rows:
                yield self.mapping.product_from_row(row._mapping)
            if len(rows) < page_size:
                return
            last = rows[-1]._mapping
            cursor = (last["f_updated_at"], last["f_id"])

    def _by_id(self, where: str) -> Iterator[CmsProduct]:
        """Rows matching `where` (or all), keyset-paginated on id, every timestamp read as text."""
        last_id: Any = None
        while True:
            clauses = [where] if where else []
            if last_id is not None:
                clauses.append(f"{self._id} > :ci")
            rows = self._fetch(
                f"SELECT {self._select_text} FROM {self._t}"
                + (" WHERE " + " AND ".join(clauses) if clauses else "")
                + f" ORDER BY {self._id} LIMIT :n",
                {"ci": last_id, "n": self.page_size},
            )
            for row in rows:
                yield self.mapping.product_from_row(row._mapping)
            if len(rows) < self.page_size:
                return
            last_id = rows[-1]._mapping["f_id"]

    def read_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        include_undated: bool = False,
        page_size: int | None = None,
    ) -> Iterator[CmsProduct]:
        self._ensure_checked()
        where: list[str] = []
        params: dict[str, Any] = {}
        if start is not None:
            where.append(f"{self._u} >= :start")
            params["start"] = self._ts(require_aware(start, "start"))
        if end is not None:
            where.append(f"{self._u} < :end")
            params["end"] = self._ts(require_aware(end, "end"))
        yield from self._keyset(where, params, page_size or self.page_size)
        if include_undated:
            yield from self._by_id(self._undated)

    def read_all(self) -> Iterator[CmsProduct]:
        self._ensure_checked()
        yield from self._by_id("")

    def sync_summary(self) -> SyncState:
        """Two aggregate queries: counts GROUP BY status, and MIN(updated_at) of the pending rows
        whose timestamp the driver can load (as the row reader, which reads the others as undated)."""
        self._ensure_checked()
        column = self._q(self.mapping.column("sync_status"))
        status = f"COALESCE(NULLIF({column}, ''), :pending)"
        # GROUP BY 1: a bound parameter repeated in GROUP BY is a different parameter to PostgreSQL.
        rows = self._fetch(f"SELECT {status} AS s, COUNT(*) AS n FROM {self._t} GROUP BY 1", {"pending": SYNC_PENDING})
        counts = {str(r._mapping["s"]): int(r._mapping["n"]) for r in rows}
        oldest = self._fetch(
            f"SELECT MIN({self._u}) AS u FROM {self._t} WHERE {status} = :pending "
            f"AND {self._u} IS NOT NULL AND {self._loadable}",
            {"pending": SYNC_PENDING},
        )[0]._mapping["u"]
        return summarize(counts, from_db_timestamp(oldest))

    def oldest_row(self) -> OldestRow:
        """One statement (one snapshot): whether any row is undated as `read_window` has it, the
        smallest loadable updated_at, and whether the table has a row at all. Only a PostgreSQL
        timestamp column qualifies: SQLite, or a text column, compares the stored text, whose order
        need not be time order ('2026-01-05T23:00-05:00' sorts before '2026-01-06 01:00+00')."""
        self._ensure_checked()
        column = self.mapping.column("updated_at")
        if self.dialect != "postgresql":
            return OldestRow(unknown=f"{self.dialect} stores {column!r} as text, which sorts as text, not as time")
        kind = self._updated_at_type
        if not isinstance(kind, sa.DateTime):
            return OldestRow(unknown=f"column {column!r} is {kind}, not a timestamp")
        # `_undated` as three EXISTS, so each probes the (updated_at, id) index instead of one scan of the table.
        undated = " OR ".join(f"EXISTS (SELECT 1 FROM {self._t} WHERE {part})" for part in self._undated_parts)
        row = self._fetch(
            f"SELECT ({undated}) AS undated, EXISTS (SELECT 1 FROM {self._t}) AS any_row, "
            f"(SELECT MIN({self._u}) FROM {self._t} WHERE {self._u} IS NOT NULL AND {self._loadable}) AS oldest",
            {},
        )[0]._mapping
        if row["undated"]:
            return OldestRow(undated=True)
        if not row["any_row"]:
            return OldestRow(empty=True)
        try:
            oldest = from_db_timestamp(row["oldest"])
        except ValueError:
            oldest = None
        if oldest is None:  # rows, none undated, yet no loadable minimum: do not guess
            return OldestRow(unknown=f"the smallest {column!r} could not be read: {row['oldest']!r:.40}")
        return OldestRow(updated_at=oldest)

    def _read_in(self, column: str, values: Sequence[str]) -> Iterator[CmsProduct]:
        sql = sa.text(f"SELECT {self._select_text} FROM {self._t} WHERE {column} IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        for chunk in chunks(list(values), self.id_chunk_size):

            def run(chunk: Sequence[str] = chunk) -> list[sa.Row[Any]]:
                with self._connect() as conn:
                    return list(conn.execute(sql, {"ids": list(chunk)}))

            for row in self._retry(run):
                yield self.mapping.product_from_row(row._mapping)

    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        wanted = dedupe(ids)
        if not wanted:
            return []
        self._ensure_checked()
        found = {p.id: p for p in self._read_in(self._id, wanted)}
        return [found[i] for i in wanted if i in found]

    def read_by_stripe_product_ids(
        self, stripe_product_ids: Sequence[str], *, exclude_ids: Collection[str] = ()
    ) -> list[CmsProduct]:
        """Rows whose stripe_product_id, trimmed as the planner trims it, is one of these."""
        wanted = dedupe(stripe_product_ids)
        if not wanted:
            return []
        self._ensure_checked()
        column = f"TRIM({self._q(self.mapping.column('stripe_product_id'))})"
        if self.dialect == "postgresql":
            # One hash join over the table however many ids a full run brings (the column has no index),
            # and one hash anti-join leaving out the rows the caller holds: in a full run that is every
            # row, which would otherwise all be read and converted a second time.
            sql = sa.text(
                f"SELECT {self._select_text} FROM {self._t} JOIN unnest(CAST(:ids AS text[])) AS _w(v) "
                f"ON {column} = _w.v WHERE NOT EXISTS "
                f"(SELECT 1 FROM unnest(CAST(:exclude AS text[])) AS _x(v) "
                f"WHERE _x.v = CAST({self._t}.{self._id} AS text))"
            )

            def run() -> list[sa.Row[Any]]:
                with self._connect() as conn:
                    return list(conn.execute(sql, {"ids": wanted, "exclude": sorted(set(exclude_ids))}))

            return [self.mapping.product_from_row(r._mapping) for r in self._retry(run)]
        return [p for p in self._read_in(column, wanted) if p.id not in exclude_ids]

    def changed_days_since(self, cursor: datetime | None, *, lookback: timedelta = timedelta(0)) -> ChangedDays:
        self._ensure_checked()
        where: list[str] = []
        params: dict[str, Any] = {}
        if cursor is not None:
            require_aware(cursor, "cursor")
            where.append(f"{self._u} > :since")
            params["since"] = self._ts(cursor - lookback)
        return summarize_changes(self._keyset(where, params, self.page_size), cursor)

    # -- write-back, backup, restore ------------------------------------------------------------

    def _ensure_backup_table(self) -> None:
        if self._backup_ready:
            return

        def create() -> None:
            schema, table = split_table_name(self.backup_table)
            with self.engine.begin() as conn:
                for statement in _BACKUP_DDL[self.dialect].format(table=self._bt).split(";"):
                    conn.exec_driver_sql(statement)
                # Backup tables made by earlier versions lack the column that makes rollback compare-and-set.
                columns = {c["name"] for c in sa.inspect(conn).get_columns(table, schema=schema)}
                if "written" not in columns:
                    conn.exec_driver_sql(f"ALTER TABLE {self._bt} ADD COLUMN written text")

        self._retry(create)
        self._backup_ready = True

    def _update_params(self, update: SyncUpdate) -> dict[str, Any]:
        return {
            "id": update.id,
            "stripe_product_id": update.stripe_product_id,
            "stripe_price_id": update.stripe_price_id,
            "sync_status": update.sync_status,
            "sync_error": update.sync_error,
            "synced_at": self._ts(update.synced_at, "synced_at"),
            "sync_hash": update.sync_hash,
        }

    def _write_batch(self, batch: Sequence[SyncUpdate], run_id: str, *, backup: bool) -> WriteBackResult:
        """One transaction: lock the rows, keep those whose link still holds what the run read, back
        them up (first values per run win) and remember what the run wrote, then UPDATE by id."""
        with self.engine.begin() as conn:
            current = {
                str(r.id): SyncLink(r.stripe_product_id, r.stripe_price_id, r.sync_hash)
                for r in conn.execute(self._current_sql, {"ids": [u.id for u in batch]})
            }
            write, conflicts, missing = partition_updates(batch, current)
            if not write:
                return WriteBackResult(0, conflicts, missing)
            if backup:
                conn.execute(
                    self._backup_insert_sql,
                    {
                        "source_table": self.mapping.table,
                        "run_id": run_id,
                        "now": self._ts(datetime.now(UTC), "backed_up_at"),
                        "ids": [u.id for u in write],
                    },
                )
                conn.execute(
                    self._backup_written_sql,
                    [
                        {"source_table": self.mapping.table, "run_id": run_id, "id": u.id, "written": link_json(u.link)}
                        for u in write
                    ],
                )
            conn.execute(self._update_sql, [self._update_params(u) for u in write])
        return WriteBackResult(len(write), conflicts, missing)

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        """Safe to re-run: the backup keeps the first previous values of a row per run, the UPDATE is
        absolute, and rows an editor re-linked (or deleted) since the run read them are left alone."""
        validate_run_id(run_id)
        todo = validate_updates(updates)
        if not todo:
            return WriteBackResult()
        self._ensure_checked()
        self._ensure_backup_table()
        total = WriteBackResult()
        for batch in chunks(todo, self.write_batch_size):
            total += self._retry(functools.partial(self._write_batch, batch, run_id, backup=True))
        return total

    def _backup_rows(self, run_id: str) -> list[sa.Row[Any]]:
        validate_run_id(run_id)
        self._ensure_backup_table()

        def run() -> list[sa.Row[Any]]:
            with self._connect() as conn:
                return list(
                    conn.execute(self._backup_select_sql, {"source_table": self.mapping.table, "run_id": run_id})
                )

        return self._retry(run)

    def backup_for_run(self, run_id: str) -> list[BackupRow]:
        return [
            BackupRow(
                run_id=run_id,
                id=str(r.product_id),
                stripe_product_id=r.stripe_product_id,
                stripe_price_id=r.stripe_price_id,
                sync_status=r.sync_status,
                sync_error=r.sync_error,
                synced_at=from_db_timestamp(r.synced_at),
                sync_hash=r.sync_hash,
                written=parse_link_json(r.written),
            )
            for r in self._backup_rows(run_id)
        ]

    def restore_backup(self, run_id: str) -> WriteBackResult:
        """Puts back the values a run overwrote, only on rows that still hold what that run wrote (an
        editor's later change wins); running it twice restores the same values."""
        self._ensure_checked()
        updates = restore_updates(self.backup_for_run(run_id))
        total = WriteBackResult()
        for batch in chunks(updates, self.write_batch_size):
            total += self._retry(functools.partial(self._write_batch, batch, run_id, backup=False))
        return total


# -- inserting products (tests, demo data) ---------------------------------------------------------


def _sqlite_value(cms_field: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_sqlite_timestamp(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if cms_field in {"images", "metadata"}:
        return json.dumps(list(value) if cms_field == "images" else dict(value), sort_keys=True)
    return value


def _postgres_value(cms_field: str, value: Any) -> Any:
    if cms_field == "images":
        return list(value) if value is not None else None
    if cms_field == "metadata":
        return dict(value) if value is not None else None
    return value


def insert_products(
    engine: Engine,
    products: Sequence[CmsProduct],
    table: str = DEFAULT_TABLE,
    *,
    mapping: ColumnMapping | None = None,
    batch_size: int = 1000,
) -> int:
    """Bulk-insert CmsProduct rows into an existing table (default schema, or through a mapping)."""
    mapping = mapping or ColumnMapping(table=table)
    schema, name = split_table_name(mapping.table)
    reflected = sa.Table(name, sa.MetaData(), autoload_with=engine, schema=schema)
    convert = _sqlite_value if engine.dialect.name == "sqlite" else _postgres_value
    fields = mapping.mapped_fields
    rows = [
        {column: convert(cms_field, getattr(p, cms_field)) for cms_field, column in fields.items()} for p in products
    ]
    with engine.begin() as conn:
        for batch in chunks(rows, batch_size):
            conn.execute(reflected.insert(), list(batch))
    return len(rows)
