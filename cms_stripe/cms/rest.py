"""The Supabase REST catalog backend, through supabase-py (PostgREST).

Reads are keyset-paginated with an `or=(updated_at.gt.U,and(updated_at.eq.U,id.gt.I))` filter so
rows sharing one `updated_at` are neither skipped nor repeated. Prices are selected as `price::text`
because PostgREST renders numeric as a JSON number, which would put money through a float.

Write-back is one PATCH per row by id (PostgREST has no bulk UPDATE with per-row values, and an
upsert fails NOT NULL on columns the sync does not know and would recreate deleted rows), a few in
flight at once, filtered on the link columns read just before (compare-and-set). Backups live in a
JSON file per run under `backup_dir` (PostgREST cannot create a table for them); the resource records
the file's folder on the Dagster run so `cms-stripe rollback` finds it from any working directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod

from cms_stripe.cms._util import chunks, dedupe, retrying
from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.mapping import ColumnMapping, split_table_name
from cms_stripe.cms.schema import from_db_timestamp
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
from cms_stripe.core.settings import DEFAULT_BACKUP_DIR
from cms_stripe.core.status import SyncState, status_of, summarize

T = TypeVar("T")

# Kept well under the URL limits of Supabase's gateway: ids travel in the query string.
DEFAULT_REST_ID_CHUNK_SIZE = 200

# PostgREST connection/pool errors, statement timeout, admin shutdown, serialization/deadlock, and
# gateway statuses (postgrest-py uses the HTTP status as code when the body is not PostgREST JSON).
_TRANSIENT_CODES = frozenset(
    {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "57014", "57P01", "08006", "08003", "40001", "40P01"}
    | {"500", "502", "503", "504", "520", "522", "524"}
)
_MISSING_TABLE_CODES = frozenset({"PGRST205", "42P01", "PGRST200"})
_MISSING_COLUMN_CODES = frozenset({"42703", "PGRST204"})
# invalid_datetime_format, datetime_field_overflow: what PostgreSQL answers when a filter value is
# not a timestamp, for timestamp (and date) columns only; a text column takes any value.
_NOT_A_TIMESTAMP_CODES = frozenset({"22007", "22008"})
_NOT_A_TIMESTAMP = "not-a-timestamp"


def is_transient_rest_error(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, APIError) and str(exc.code or "") in _TRANSIENT_CODES


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _tree_value(value: str) -> str:
    """A value inside an or=(...) logic tree: always double-quoted, so commas, dots and parens are data."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _safe_name(run_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:80]
    if cleaned != run_id:
        cleaned += "-" + hashlib.sha256(run_id.encode()).hexdigest()[:12]
    return cleaned


class RestCatalogSource:
    """CatalogSource over Supabase's REST API (PostgREST) via supabase-py."""

    def __init__(
        self,
        url: str,
        service_role_key: str,
        *,
        mapping: ColumnMapping | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        write_batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
        id_chunk_size: int = DEFAULT_REST_ID_CHUNK_SIZE,
        backup_dir: str | Path = DEFAULT_BACKUP_DIR,
        write_concurrency: int = 8,
        timeout: float = 30.0,
        retry_attempts: int = 5,
        retry_wait: float = 0.5,
        retry_max_wait: float = 10.0,
    ) -> None:
        if not re.match(r"^https?://", url or ""):
            raise CmsConfigError("SUPABASE_URL must be an http(s) URL, e.g. https://<project>.supabase.co")
        if not (service_role_key or "").strip():
            raise CmsConfigError("SUPABASE_SERVICE_ROLE_KEY is empty")
        if min(page_size, write_batch_size, id_chunk_size) < 1:
            raise CmsConfigError("page_size, write_batch_size and id_chunk_size must be positive")
        if write_concurrency < 1:
            raise CmsConfigError("write_concurrency must be positive")
        from supabase import create_client
        from supabase.lib.client_options import SyncClientOptions

        # Our own retry (bounded, jittered, covering writes too) replaces postgrest-py's GET-only one.
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        options = SyncClientOptions(httpx_client=self._http, postgrest_client_retry=False)
        try:
            self.client = create_client(url.rstrip("/"), service_role_key, options=options)
        except Exception as exc:  # supabase raises its own exception type for a malformed URL or key
            raise CmsConfigError(f"cannot create the Supabase client: {exc}") from exc
        self.mapping = mapping or ColumnMapping()
        self.page_size = page_size
        self.write_batch_size = write_batch_size
        self.id_chunk_size = id_chunk_size
        # Absolute, so a rollback started from another working directory finds the run's backups
        # (the resource records this path on the run).
        self.backup_dir = Path(backup_dir).resolve()
        self.write_concurrency = write_concurrency
        self._retry_args = {"attempts": retry_attempts, "wait": retry_wait, "max_wait": retry_max_wait}
        self._checked = False
        m = self.mapping
        self._id = m.column("id")
        self._u = m.column("updated_at")
        self._select = ",".join(
            f"{alias}:{col}::text" if alias == "f_price" else f"{alias}:{col}" for col, alias in m.select_aliases()
        )
        self._sync_select = ",".join([f"f_id:{self._id}"] + [f"f_{c}:{m.column(c)}" for c in SYNC_COLUMNS])

    # -- plumbing -----------------------------------------------------------------------------

    def _table(self) -> Any:
        schema, table = split_table_name(self.mapping.table)
        if schema:
            # Accept-Profile / Content-Profile: the schema must be exposed in the project's API settings.
            return self.client.schema(schema).from_(table)
        return self.client.table(table)

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in retrying(is_transient_rest_error, **self._retry_args):  # type: ignore[arg-type]
            with attempt:
                return fn()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _rows(self, build: Callable[[], Any]) -> list[dict[str, Any]]:
        data = self._retry(lambda: build().execute()).data
        if not isinstance(data, list):
            raise RuntimeError(f"unexpected PostgREST response: {data!r:.200}")
        return data

    def _ensure_checked(self) -> None:
        if not self._checked:
            self.check()

    def close(self) -> None:
        self._http.close()

    # -- check --------------------------------------------------------------------------------

    def _probe(self, columns: str) -> str | None:
        """None if `select=columns` works, else the PostgREST error code."""
        try:
            self._retry(lambda: self._table().select(columns).limit(0).execute())
        except APIError as exc:
            code = str(exc.code or "")
            if code == "401" or "Invalid API key" in str(exc.message):
                raise CmsConfigError("Supabase rejected SUPABASE_SERVICE_ROLE_KEY (401)") from exc
            if code in _MISSING_TABLE_CODES | _MISSING_COLUMN_CODES:
                return code
            raise
        return None

    def check(self) -> None:
        """One probe when the schema fits; on a mismatch one probe per column, to name every missing one."""
        needed = list(self.mapping.required_columns())
        try:
            code = self._probe(",".join(needed))
            if code is None:
                self._checked = True
                return
            if code in _MISSING_TABLE_CODES or self._probe(self._id) in _MISSING_TABLE_CODES:
                message = self.mapping.missing_message(False, [])
            else:
                present = [c for c in needed if self._probe(c) is None]
                message = self.mapping.missing_message(True, present)
        except httpx.TransportError as exc:
            raise CmsConfigError(f"cannot reach Supabase REST API: {exc}") from exc
        if message is None:  # pragma: no cover - a column probe disagreed with the combined probe
            raise CmsConfigError(f"CMS schema check failed on table {self.mapping.table!r} (PostgREST {code})")
        raise CmsConfigError(message)

    # -- reads --------------------------------------------------------------------------------

    def _keyset(
        self, apply: Callable[[Any], Any], page_size: int, select: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw rows ordered by (updated_at, id); nulls sort last, so a null updated_at ends the walk."""
        if page_size < 1:
            raise ValueError(f"page_size must be positive, got {page_size}")
        u, i = self._u, self._id
        cursor: tuple[str, str] | None = None
        while True:

            def build(cursor: tuple[str, str] | None = cursor) -> Any:
                query = apply(self._table().select(select or self._select))
                if cursor is not None:
                    cu, ci = _tree_value(cursor[0]), _tree_value(cursor[1])
                    query = query.or_(f"{u}.gt.{cu},and({u}.eq.{cu},{i}.gt.{ci})")
                return query.order(u).order(i).limit(page_size)

            rows = self._rows(build)
            yield from rows
            # Only an empty page ends the walk: PostgREST caps pages at its max-rows (1,000 on
            # Supabase) without saying so, so a short page does not mean the last one.
            if not rows:
                return
            raw = rows[-1]["f_updated_at"]
            if raw is None:
                return
            try:
                parsed = from_db_timestamp(raw)
                last = _ts(parsed) if parsed else str(raw)
            except ValueError:
                # 'infinity' and the like: PostgreSQL compares its own text form exactly.
                last = str(raw)
            cursor = (last, str(rows[-1]["f_id"]))

    def read_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        include_undated: bool = False,
        page_size: int | None = None,
    ) -> Iterator[CmsProduct]:
        lo = _ts(require_aware(start, "start")) if start is not None else None
        hi = _ts(require_aware(end, "end")) if end is not None else None
        self._ensure_checked()

        def bounded(query: Any) -> Any:
            # Undated rows (null, or ±infinity that no datetime holds) are read by the first
            # partition's pass below, never here: PostgREST sorts them last in this walk.
            query = query.not_.is_(self._u, "null").neq(self._u, "infinity").neq(self._u, "-infinity")
            if lo is not None:
                query = query.gte(self._u, lo)
            if hi is not None:
                query = query.lt(self._u, hi)
            return query

        for row in self._keyset(bounded, page_size or self.page_size):
            yield self.mapping.product_from_row(row)
        if include_undated:
            u = self._u
            yield from self._by_id(lambda q: q.or_(f"{u}.is.null,{u}.eq.infinity,{u}.eq.-infinity"))

    def _by_id(self, apply: Callable[[Any], Any]) -> Iterator[CmsProduct]:
        last: str | None = None
        while True:

            def build(last: str | None = last) -> Any:
                query = apply(self._table().select(self._select))
                if last is not None:
                    query = query.gt(self._id, last)
                return query.order(self._id).limit(self.page_size)

            rows = self._rows(build)
            for row in rows:
                yield self.mapping.product_from_row(row)
            if not rows:  # a short page may be PostgREST's max-rows cap, not the end
                return
            last = str(rows[-1]["f_id"])

    def read_all(self) -> Iterator[CmsProduct]:
        self._ensure_checked()
        yield from self._by_id(lambda q: q)

    def sync_summary(self) -> SyncState:
        """Counted from a paged read of three columns only (PostgREST groups nothing without a view
        or function in the CMS, which the sync does not create)."""
        self._ensure_checked()
        select = f"f_id:{self._id},f_sync_status:{self.mapping.column('sync_status')},f_updated_at:{self._u}"
        counts: Counter[str] = Counter()
        oldest: datetime | None = None
        last: str | None = None
        while True:

            def build(last: str | None = last) -> Any:
                query = self._table().select(select)
                if last is not None:
                    query = query.gt(self._id, last)
                return query.order(self._id).limit(self.page_size)

            rows = self._rows(build)
            if not rows:  # a short page may be PostgREST's max-rows cap, not the end
                break
            for row in rows:
                status = status_of(row["f_sync_status"])
                counts[status] += 1
                if status == SYNC_PENDING:
                    try:
                        updated = from_db_timestamp(row["f_updated_at"])
                    except ValueError:  # 'infinity' and the like: undated, as the row reader has it
                        updated = None
                    if updated is not None and (oldest is None or updated < oldest):
                        oldest = updated
            last = str(rows[-1]["f_id"])
        return summarize(counts, oldest)

    def oldest_row(self) -> OldestRow:
        """Three small requests. The first row by `updated_at` ascending, nulls first (an empty
        answer: no rows; null or -infinity: undated); a filter on a value no timestamp column accepts
        (only an error proves the column is a timestamp: a text column sorts as text); and whether any
        row is undated as `read_window` has it (null or ±infinity)."""
        self._ensure_checked()
        u = self._u

        def first() -> Any:
            return self._table().select(f"f_updated_at:{u}").order(u, nullsfirst=True).limit(1)

        rows = self._rows(first)
        if not rows:
            return OldestRow(empty=True)
        raw = rows[0].get("f_updated_at")
        if raw is None or raw in ("infinity", "-infinity"):
            return OldestRow(undated=True)
        try:
            self._rows(lambda: self._table().select(f"f_id:{self._id}").eq(u, _NOT_A_TIMESTAMP).limit(1))
        except APIError as exc:
            if str(exc.code or "") not in _NOT_A_TIMESTAMP_CODES:
                raise
        else:
            return OldestRow(unknown=f"column {u!r} is not a timestamp (it accepts any text)")
        undated = self._rows(
            lambda: (
                self._table().select(f"f_id:{self._id}").or_(f"{u}.is.null,{u}.eq.infinity,{u}.eq.-infinity").limit(1)
            )
        )
        if undated:
            return OldestRow(undated=True)
        try:
            oldest = from_db_timestamp(raw)
        except ValueError:
            # A BC date or the like: the bounded reads would not reach it from the oldest day.
            return OldestRow(unknown=f"the smallest {u!r} is not a readable timestamp: {str(raw)[:40]!r}")
        if oldest is None:  # pragma: no cover - raw is not None here
            return OldestRow(unknown=f"the smallest {u!r} could not be read")
        return OldestRow(updated_at=oldest)

    def _fetch_ids(self, ids: Sequence[str], select: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(ids), self.id_chunk_size):

            def build(chunk: Sequence[str] = chunk) -> Any:
                return self._table().select(select).in_(self._id, list(chunk))

            rows = self._rows(build)
            for row in rows:
                found[str(row["f_id"])] = row
        return found

    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        wanted = dedupe(ids)
        if not wanted:
            return []
        self._ensure_checked()
        found = self._fetch_ids(wanted, self._select)
        return [self.mapping.product_from_row(found[i]) for i in wanted if i in found]

    def read_by_stripe_product_ids(
        self, stripe_product_ids: Sequence[str], *, exclude_ids: Collection[str] = ()
    ) -> list[CmsProduct]:
        wanted = dedupe(stripe_product_ids)
        if not wanted:
            return []
        self._ensure_checked()
        column = self.mapping.column("stripe_product_id")
        out: list[CmsProduct] = []
        for chunk in chunks(wanted, self.id_chunk_size):

            def build(chunk: Sequence[str] = chunk) -> Any:
                return self._table().select(self._select).in_(column, list(chunk))

            out += [self.mapping.product_from_row(row) for row in self._rows(build)]
        # Filtered here: a `not.in` list of the caller's ids would not fit a URL.
        return [p for p in out if p.id not in exclude_ids]

    def changed_days_since(self, cursor: datetime | None, *, lookback: timedelta = timedelta(0)) -> ChangedDays:
        self._ensure_checked()
        since = None
        if cursor is not None:
            require_aware(cursor, "cursor")
            since = _ts(cursor - lookback)
        rows = self._keyset(lambda q: q.gt(self._u, since) if since else q, self.page_size)
        return summarize_changes((self.mapping.product_from_row(row) for row in rows), cursor)

    # -- backup file --------------------------------------------------------------------------

    def _backup_path(self, run_id: str) -> Path:
        return self.backup_dir / self.mapping.table / f"{_safe_name(run_id)}.json"

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_backup(self, path: Path, run_id: str) -> dict[str, dict[str, Any]]:
        if not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("run_id") != run_id or data.get("table") != self.mapping.table:
            raise RuntimeError(f"backup file {path} belongs to another run or table")
        rows: dict[str, dict[str, Any]] = data["rows"]
        return rows

    def _add_to_backup(self, run_id: str, current: dict[str, dict[str, Any]], written: Mapping[str, SyncLink]) -> None:
        """First backup of a row in a run wins, so re-running a write keeps the pre-run values; what the
        run last wrote is kept beside it, so rollback can tell whether an editor changed the row since."""
        path = self._backup_path(run_id)
        with self._locked(path):
            rows = self._read_backup(path, run_id)
            for product_id, row in current.items():
                if product_id not in rows:
                    rows[product_id] = {c: row.get(f"f_{c}") for c in SYNC_COLUMNS}
                rows[product_id]["written"] = link_json(written[product_id])
            payload = {"run_id": run_id, "table": self.mapping.table, "rows": rows}
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)

    # -- write-back, restore ------------------------------------------------------------------

    def _values(self, u: SyncUpdate) -> dict[str, Any]:
        m = self.mapping
        return {
            m.column("stripe_product_id"): u.stripe_product_id,
            m.column("stripe_price_id"): u.stripe_price_id,
            m.column("sync_status"): u.sync_status,
            m.column("sync_error"): u.sync_error,
            m.column("synced_at"): _ts(u.synced_at) if u.synced_at else None,
            m.column("sync_hash"): u.sync_hash,
        }

    def _patch(self, u: SyncUpdate, have: SyncLink) -> bool:
        """PATCH one row by id, only while its link columns hold `have` (read just before): True when
        it matched. An UPDATE never creates a row (an upsert would insert a deleted one again, and fails
        NOT NULL on any column the sync does not know, which PostgreSQL checks before ON CONFLICT)."""
        m = self.mapping

        def patch() -> Any:
            query = self._table().update(self._values(u), returning=ReturnMethod.representation).eq(self._id, u.id)
            for name, value in zip(
                LINK_COLUMNS, (have.stripe_product_id, have.stripe_price_id, have.sync_hash), strict=True
            ):
                column = m.column(name)
                query = query.is_(column, "null") if value is None else query.eq(column, value)
            return query.execute()

        data = self._retry(patch).data
        return bool(data)

    def _write_batch(self, batch: Sequence[SyncUpdate], run_id: str, *, backup: bool) -> WriteBackResult:
        # Reading first tells us which rows exist and what their link columns hold, and gives the
        # values to back up before anything is written.
        current_rows = self._fetch_ids([u.id for u in batch], self._sync_select)
        current = {i: _link_of(row) for i, row in current_rows.items()}
        write, conflicts, missing = partition_updates(batch, current)
        if backup and write:
            self._add_to_backup(run_id, {u.id: current_rows[u.id] for u in write}, {u.id: u.link for u in write})
        with ThreadPoolExecutor(max_workers=min(self.write_concurrency, max(1, len(write)))) as pool:
            matched = list(pool.map(lambda u: self._patch(u, current[u.id]), write))
        # A row whose link changed between our read and its PATCH: the editor wins, as in SQL.
        raced = tuple(u.id for u, ok in zip(write, matched, strict=True) if not ok)
        return WriteBackResult(sum(matched), conflicts + raced, missing)

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        """Safe to re-run: the backup keeps a row's first previous values per run, the write is absolute,
        and rows an editor re-linked (or deleted) since the run read them are left alone."""
        validate_run_id(run_id)
        todo = validate_updates(updates)
        if not todo:
            return WriteBackResult()
        self._ensure_checked()
        total = WriteBackResult()
        for batch in chunks(todo, self.write_batch_size):
            total += self._write_batch(batch, run_id, backup=True)
        return total

    def _backup_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        validate_run_id(run_id)
        path = self._backup_path(run_id)
        with self._locked(path):
            return self._read_backup(path, run_id)

    def backup_for_run(self, run_id: str) -> list[BackupRow]:
        rows = self._backup_rows(run_id)
        return [
            BackupRow(
                run_id=run_id,
                id=product_id,
                stripe_product_id=v["stripe_product_id"],
                stripe_price_id=v["stripe_price_id"],
                sync_status=v["sync_status"],
                sync_error=v["sync_error"],
                synced_at=from_db_timestamp(v["synced_at"]),
                sync_hash=v["sync_hash"],
                written=parse_link_json(v.get("written")),
            )
            for product_id, v in sorted(rows.items())
        ]

    def restore_backup(self, run_id: str) -> WriteBackResult:
        """Rollback in batches, only on rows that still hold what the run wrote; running it twice
        restores the same values. Rows deleted since are skipped, never recreated."""
        updates = restore_updates(self.backup_for_run(run_id))
        if not updates:
            return WriteBackResult()
        self._ensure_checked()
        total = WriteBackResult()
        for batch in chunks(updates, self.write_batch_size):
            total += self._write_batch(batch, run_id, backup=False)
        return total


def _link_of(row: Mapping[str, Any]) -> SyncLink:
    return SyncLink(row.get("f_stripe_product_id"), row.get("f_stripe_price_id"), row.get("f_sync_hash"))
