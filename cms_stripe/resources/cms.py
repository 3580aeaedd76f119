"""The CMS catalog as Dagster resources: SQL (CMS_DATABASE_URL) or Supabase REST, one interface.

Both hand runs the backend itself (`create_resource`), so assets and sensors take
`dg.ResourceParam[CatalogSource]` and never see which backend runs. Addresses and secrets are read
from the settings, never from config (see `_CatalogResource`); the backend object is built in
`setup_for_execution` (or lazily via `source()` for the CLI). Every write passes the live-key guard
and every exception is scrubbed of secrets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from cms_stripe.cms.errors import CmsConfigError
from cms_stripe.cms.mapping import ColumnMapping
from cms_stripe.cms.source import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_WRITE_BATCH_SIZE,
    CatalogSource,
    backend_for,
)
from cms_stripe.core.catalog import SyncUpdate, WriteBackResult
from cms_stripe.core.settings import LiveKeyRefused, Settings, scrub, scrubbed_exception
from cms_stripe.loggers import attach_to_run
from cms_stripe.resources.settings import refuse_live_writes

BACKUP_DIR_TAG = "cms_stripe/backup_dir"


def _scrub_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Exceptions from SQLAlchemy, psycopg, httpx or supabase-py can quote URLs, headers and keys:
    re-raise them scrubbed before Dagster stores them (event log) or anything prints them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            # Paged reads are generators: read them here so errors raised while paging are scrubbed too.
            return iter(list(result)) if isinstance(result, Iterator) else result
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
        refuse_live_writes("write back to the CMS", self._allow_live)
        return self._inner.write_back([_scrub_update(u) for u in updates], run_id=run_id)

    @_scrub_errors
    def restore_backup(self, run_id: str) -> WriteBackResult:
        refuse_live_writes("restore CMS rows from a backup", self._allow_live)
        return self._inner.restore_backup(run_id)


def guarded_writer(catalog: Any, allow_live: bool) -> Any:
    """What a run hands to code that writes to the CMS: the catalog with its writes guarded, the
    allowance stated explicitly (a run passes its SyncSettingsResource.live_allowed)."""
    if isinstance(catalog, _CatalogResource):
        return catalog.writer(allow_live)
    if isinstance(catalog, _Guarded):  # what a run's `catalog` is: re-guard its source
        return _Guarded(catalog._inner, allow_live)
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
    def _mapping(settings: Settings) -> ColumnMapping:
        return ColumnMapping.load(settings.cms_mapping_file, table=settings.cms_table)

    def _build(self, settings: Settings) -> CatalogSource:
        raise NotImplementedError

    @_scrub_errors
    def _backend(self) -> CatalogSource:
        if self._source is None:
            self._source = self._build(Settings.from_env())
        return self._source

    def source(self) -> Any:
        """The backend (built once; its schema check runs on first use), its writes guarded like the
        resource's own: with a live key they need `writer(allow_live=True)`."""
        return _Guarded(self._backend(), allow_live=False)

    def writer(self, allow_live: bool) -> Any:
        """The catalog for a run that writes: writes pass the live-key guard with this allowance."""
        return _Guarded(self._backend(), allow_live)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every asset step uses the catalog: the run's events reach the log file however it was launched.
        attach_to_run(context)
        self._source = None
        self._backend()

    def create_resource(self, context: dg.InitResourceContext) -> Any:
        """What assets, ops and sensors receive as `catalog`: the source itself (see `source()`)."""
        return self.source()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class SqlCatalogResource(_CatalogResource):
    """CMS catalog over SQL (CMS_DATABASE_URL): Supabase Postgres (direct or pooled) or SQLite;
    backups in cms_stripe_backups."""

    def _build(self, settings: Settings) -> CatalogSource:
        from cms_stripe.cms.sql import SqlCatalogSource

        if not settings.cms_database_url:
            # Say what is missing in the words of the environment variables.
            backend_for(settings)
            raise CmsConfigError("CMS_DATABASE_URL is not set in the code location's environment")
        return SqlCatalogSource(
            settings.cms_database_url,
            mapping=self._mapping(settings),
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
        )


class SupabaseCatalogResource(_CatalogResource):
    """CMS catalog over Supabase's REST API (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY); backups as JSON
    files under CMS_BACKUP_DIR."""

    def _build(self, settings: Settings) -> CatalogSource:
        from cms_stripe.cms.rest import RestCatalogSource

        if not (settings.supabase_url and settings.supabase_service_role_key):
            backend_for(settings)
        return RestCatalogSource(
            settings.supabase_url or "",
            settings.supabase_service_role_key or "",
            mapping=self._mapping(settings),
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
            backup_dir=settings.cms_backup_dir,
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


def backend_is_rest(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment configures the Supabase REST backend (CMS_DATABASE_URL unset)."""
    try:
        return backend_for(Settings.from_env(env)) == "rest"
    except CmsConfigError:
        return False


def catalog_resource_from_env(
    env: Mapping[str, str] | None = None, *, strict: bool = False
) -> SqlCatalogResource | SupabaseCatalogResource:
    """The resource the environment configures: CMS_DATABASE_URL wins, else SUPABASE_URL + key.

    With neither set, `strict=True` raises the CmsConfigError now; otherwise the code location still
    loads and the same message is raised when a run or sensor first uses the catalog.
    """
    settings = Settings.from_env(env)
    options: dict[str, Any] = {"page_size": settings.cms_page_size, "write_batch_size": settings.cms_write_batch_size}
    try:
        kind = backend_for(settings)
    except CmsConfigError:
        if strict:
            raise
        return SqlCatalogResource(**options)
    if kind == "sql":
        return SqlCatalogResource(**options)
    return SupabaseCatalogResource(**options)
