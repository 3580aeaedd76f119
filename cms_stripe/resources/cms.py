"""The CMS catalog as Dagster resources: SQL (CMS_DATABASE_URL) or Supabase REST, one interface.

Both expose the CatalogSource methods, so assets and sensors take `dg.ResourceParam[CatalogSource]`
and never see which backend runs. Addresses and secrets are read from the code location's
environment, never from config (see `_CatalogResource`); the backend object is built in
`setup_for_execution` (or lazily via `source()` for the CLI). Every write passes the live-key guard.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.source import (
    DEFAULT_BACKUP_DIR,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WRITE_BATCH_SIZE,
    ENV_BACKUP_DIR,
    ENV_DATABASE_URL,
    ENV_MAPPING_FILE,
    ENV_SUPABASE_KEY,
    ENV_SUPABASE_URL,
    BackupRow,
    CatalogSource,
    ChangedDays,
    backend_from_env,
)
from cms_stripe.core.catalog import CmsProduct, SyncUpdate, WriteBackResult
from cms_stripe.core.settings import (
    LIVE_REFUSAL_HINT,
    LiveKeyRefused,
    clean_key,
    is_live_key,
    scrub,
    scrubbed_exception,
)

ENV_TABLE = "CMS_TABLE"
BACKUP_DIR_TAG = "cms_stripe/backup_dir"
ENV_PAGE_SIZE = "CMS_PAGE_SIZE"
ENV_WRITE_BATCH_SIZE = "CMS_WRITE_BATCH_SIZE"
ENV_BATCH_SIZE = "MIGRATION_BATCH_SIZE"


ENV_STRIPE_KEY = "STRIPE_SECRET_KEY"
ENV_ALLOW_LIVE = "MIGRATION_ALLOW_LIVE"


class CmsLiveWriteRefused(dg.Failure, LiveKeyRefused):
    """A CMS write refused by the live-key guard. Not retried: the same key would be refused again."""

    def __init__(self, what: str) -> None:
        super().__init__(
            description=(
                f"refusing to {what}: {ENV_STRIPE_KEY} is not a test key (or is not set) and live writes "
                f"were not allowed; {LIVE_REFUSAL_HINT}"
            ),
            allow_retries=False,
        )


def check_live_write(what: str, allow_live: bool, env: Mapping[str, str] | None = None) -> None:
    """The CMS half of the live-key guard: a write-back belongs to a sync against the Stripe account of
    STRIPE_SECRET_KEY, so with a live key (anything not clearly a test key) it needs the same
    explicit allowance as the Stripe writes."""
    env = os.environ if env is None else env
    if not allow_live and is_live_key(env.get(ENV_STRIPE_KEY)):
        raise CmsLiveWriteRefused(what)


def _scrub_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Exceptions from SQLAlchemy, psycopg, httpx or supabase-py can quote URLs, headers and keys:
    re-raise them scrubbed before Dagster stores them (event log) or anything prints them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LiveKeyRefused, dg.Failure):
            raise
        except Exception as exc:
            clean = scrubbed_exception(exc)
            if clean is exc:
                raise
            raise clean from None

    return wrapper


class _Guarded:
    """A CatalogSource whose writes pass the live-key guard (reads are forwarded unchanged)."""

    def __init__(self, source: Any, allow_live: bool) -> None:
        self._inner = source
        self._allow_live = bool(allow_live)

    @property
    def backend_name(self) -> str:
        return type(self._inner).__name__

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        return _scrub_errors(value) if callable(value) else value

    @_scrub_errors
    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        check_live_write("write back to the CMS", self._allow_live)
        return self._inner.write_back([_scrub_update(u) for u in updates], run_id=run_id)

    @_scrub_errors
    def restore_backup(self, run_id: str) -> WriteBackResult:
        check_live_write("restore CMS rows from a backup", self._allow_live)
        return self._inner.restore_backup(run_id)


def guarded_writer(catalog: Any, allow_live: bool) -> Any:
    """What a run hands to code that writes to the CMS: the catalog with its writes guarded, the
    allowance stated explicitly (a run passes its SyncSettingsResource.live_allowed)."""
    if isinstance(catalog, _CatalogResource):
        return catalog.writer(allow_live)
    return _Guarded(catalog, allow_live)


def _scrub_update(update: SyncUpdate) -> SyncUpdate:
    """sync_error carries exception text from Stripe calls: never store a secret in the CMS."""
    if update.sync_error:
        clean = scrub(update.sync_error)
        if clean != update.sync_error:
            return replace(update, sync_error=clean)
    return update


class _CatalogResource(dg.ConfigurableResource):
    """Only pacing is config. Where the catalog lives (URL, key, table, mapping file, backup folder) is
    read from the code location's environment: run config set from the Launchpad could otherwise
    point a run, with the service-role key or database password, at another host or folder."""

    page_size: int = DEFAULT_PAGE_SIZE
    write_batch_size: int = DEFAULT_WRITE_BATCH_SIZE

    _source: CatalogSource | None = PrivateAttr(default=None)

    @staticmethod
    def _mapping(env: Mapping[str, str]) -> ColumnMapping:
        return ColumnMapping.load(_env_text(env, ENV_MAPPING_FILE), table=_env_text(env, ENV_TABLE))

    def _build(self, env: Mapping[str, str]) -> CatalogSource:
        raise NotImplementedError

    @_scrub_errors
    def _backend(self) -> CatalogSource:
        if self._source is None:
            self._source = self._build(os.environ)
        return self._source

    def source(self) -> Any:
        """The backend (built once; its schema check runs on first use), its writes guarded like the
        resource's own: with a live key they need `writer(allow_live=True)`."""
        return _Guarded(self._backend(), allow_live=False)

    def writer(self, allow_live: bool) -> Any:
        """The catalog for a run that writes: writes pass the live-key guard with this allowance."""
        return _Guarded(self._backend(), allow_live)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._source = None
        self._backend()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    # CatalogSource, delegated; exceptions scrubbed.
    @_scrub_errors
    def check(self) -> None:
        self._backend().check()

    @_scrub_errors
    def read_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        include_undated: bool = False,
        page_size: int | None = None,
    ) -> Iterator[CmsProduct]:
        # Materialised here so that errors raised while paging are scrubbed too.
        return iter(list(self._backend().read_window(start, end, include_undated=include_undated, page_size=page_size)))

    @_scrub_errors
    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        return self._backend().read_ids(ids)

    @_scrub_errors
    def read_all(self) -> Iterator[CmsProduct]:
        return iter(list(self._backend().read_all()))

    @_scrub_errors
    def read_by_stripe_product_ids(self, stripe_product_ids: Sequence[str]) -> list[CmsProduct]:
        return self._backend().read_by_stripe_product_ids(stripe_product_ids)

    @_scrub_errors
    def changed_days_since(self, cursor: datetime | None, *, lookback: timedelta = timedelta(0)) -> ChangedDays:
        return self._backend().changed_days_since(cursor, lookback=lookback)

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str, allow_live: bool = False) -> WriteBackResult:
        """Write sync results to the CMS; with a live Stripe key refused unless `allow_live=True`."""
        return self.writer(allow_live).write_back(updates, run_id=run_id)

    @_scrub_errors
    def backup_for_run(self, run_id: str) -> list[BackupRow]:
        return self._backend().backup_for_run(run_id)

    def restore_backup(self, run_id: str, *, allow_live: bool = False) -> WriteBackResult:
        """Undo a run's write-back; with a live Stripe key refused unless `allow_live=True`."""
        return self.writer(allow_live).restore_backup(run_id)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class SqlCatalogResource(_CatalogResource):
    """CMS catalog over SQL (CMS_DATABASE_URL): Supabase Postgres (direct or pooled) or SQLite;
    backups in cms_stripe_backups."""

    def _build(self, env: Mapping[str, str]) -> CatalogSource:
        from cms_stripe.cms.sql import SqlCatalogSource

        url = _env_text(env, ENV_DATABASE_URL)
        if not url:
            # Say what is missing in the words of the environment variables.
            backend_from_env(env)
            raise CmsConfigError(f"{ENV_DATABASE_URL} is not set in the code location's environment")
        return SqlCatalogSource(
            url, mapping=self._mapping(env), page_size=self.page_size, write_batch_size=self.write_batch_size
        )


class SupabaseCatalogResource(_CatalogResource):
    """CMS catalog over Supabase's REST API (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY); backups as JSON
    files under CMS_BACKUP_DIR."""

    def _build(self, env: Mapping[str, str]) -> CatalogSource:
        from cms_stripe.cms.rest import RestCatalogSource

        url, key = _env_text(env, ENV_SUPABASE_URL), _env_text(env, ENV_SUPABASE_KEY)
        if not (url and key):
            backend_from_env(env)
        return RestCatalogSource(
            url or "",
            key or "",
            mapping=self._mapping(env),
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
            backup_dir=backup_dir_from_env(env),
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        run = context.run
        if run is not None and context.instance is not None and self._source is not None:
            # The backups of a REST CMS are files: record where, so `cms-stripe rollback` finds them
            # from any working directory (and says where to look when the folder is elsewhere).
            folder = str(getattr(self._source, "backup_dir", ""))
            if folder and run.tags.get(BACKUP_DIR_TAG) != folder:
                context.instance.add_run_tags(run.run_id, {BACKUP_DIR_TAG: folder})


def _env_text(env: Mapping[str, str], name: str) -> str | None:
    return clean_key(env.get(name))


def backup_dir_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return _env_text(env, ENV_BACKUP_DIR) or DEFAULT_BACKUP_DIR


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CmsConfigError(f"{name} must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise CmsConfigError(f"{name} must be a positive integer, not {raw!r}")
    return value


def backend_is_rest(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment configures the Supabase REST backend (CMS_DATABASE_URL unset)."""
    try:
        return backend_from_env(os.environ if env is None else env) == "rest"
    except CmsConfigError:
        return False


def catalog_resource_from_env(
    env: Mapping[str, str] | None = None, *, strict: bool = False
) -> SqlCatalogResource | SupabaseCatalogResource:
    """The resource the environment configures: CMS_DATABASE_URL wins, else SUPABASE_URL + key.

    With neither set, `strict=True` raises the CmsConfigError now; otherwise the code location still
    loads and the same message is raised when a run or sensor first uses the catalog.
    """
    env = os.environ if env is None else env
    # MIGRATION_BATCH_SIZE (the old tool's "products per batch") sets both the rows read per CMS
    # page and the rows written back per statement; CMS_PAGE_SIZE / CMS_WRITE_BATCH_SIZE refine one.
    batch = _env_int(env, ENV_BATCH_SIZE, 0) or None
    options: dict[str, Any] = {
        "page_size": _env_int(env, ENV_PAGE_SIZE, batch or DEFAULT_PAGE_SIZE),
        "write_batch_size": _env_int(env, ENV_WRITE_BATCH_SIZE, batch or DEFAULT_WRITE_BATCH_SIZE),
    }
    try:
        kind = backend_from_env(env)
    except CmsConfigError:
        if strict:
            raise
        return SqlCatalogResource(**options)
    if kind == "sql":
        return SqlCatalogResource(**options)
    return SupabaseCatalogResource(**options)
