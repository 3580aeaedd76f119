"""The CMS catalog as Dagster resources: SQL (CMS_DATABASE_URL) or Supabase REST, one interface.

Both expose the CatalogSource methods, so assets and sensors take `dg.ResourceParam[CatalogSource]`
and never see which backend runs. Secrets stay `EnvVar`s, resolved at launch and never shown in the
UI; the backend object is built in `setup_for_execution` (or lazily via `source()` for the CLI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
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

ENV_TABLE = "CMS_TABLE"
BACKUP_DIR_TAG = "cms_stripe/backup_dir"
ENV_PAGE_SIZE = "CMS_PAGE_SIZE"
ENV_WRITE_BATCH_SIZE = "CMS_WRITE_BATCH_SIZE"


def _resolved(value: str | None) -> str | None:
    """A field's value; outside a run an EnvVar field is still the EnvVar and must be read explicitly."""
    if isinstance(value, dg.EnvVar):
        return value.get_value()
    return value


class _CatalogResource(dg.ConfigurableResource):
    table: str | None = None
    mapping_file: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    write_batch_size: int = DEFAULT_WRITE_BATCH_SIZE

    _source: CatalogSource | None = PrivateAttr(default=None)

    def _mapping(self) -> ColumnMapping:
        return ColumnMapping.load(self.mapping_file, table=self.table)

    def _build(self) -> CatalogSource:
        raise NotImplementedError

    def source(self) -> CatalogSource:
        """The backend object (built once); its schema check runs on first use."""
        if self._source is None:
            self._source = self._build()
        return self._source

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._source = self._build()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    # CatalogSource, delegated.
    def check(self) -> None:
        self.source().check()

    def read_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        include_undated: bool = False,
        page_size: int | None = None,
    ) -> Iterator[CmsProduct]:
        return self.source().read_window(start, end, include_undated=include_undated, page_size=page_size)

    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        return self.source().read_ids(ids)

    def read_all(self) -> Iterator[CmsProduct]:
        return self.source().read_all()

    def read_by_stripe_product_ids(self, stripe_product_ids: Sequence[str]) -> list[CmsProduct]:
        return self.source().read_by_stripe_product_ids(stripe_product_ids)

    def changed_days_since(self, cursor: datetime | None, *, lookback: timedelta = timedelta(0)) -> ChangedDays:
        return self.source().changed_days_since(cursor, lookback=lookback)

    def write_back(self, updates: Sequence[SyncUpdate], *, run_id: str) -> WriteBackResult:
        return self.source().write_back(updates, run_id=run_id)

    def backup_for_run(self, run_id: str) -> list[BackupRow]:
        return self.source().backup_for_run(run_id)

    def restore_backup(self, run_id: str) -> WriteBackResult:
        return self.source().restore_backup(run_id)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class SqlCatalogResource(_CatalogResource):
    """CMS catalog over SQL: Supabase Postgres (direct or pooled) or SQLite; backups in cms_stripe_backups."""

    database_url: str

    def _build(self) -> CatalogSource:
        from cms_stripe.cms.sql import SqlCatalogSource

        url = _resolved(self.database_url)
        if not url:
            # Neither backend was configured when the code location loaded (catalog_resource_from_env):
            # say what is missing now, in the words of the environment variables.
            backend_from_env(os.environ)
            raise CmsConfigError(
                f"{ENV_DATABASE_URL} or {ENV_SUPABASE_URL} was not set when the code location loaded; reload it"
            )
        return SqlCatalogSource(
            url, mapping=self._mapping(), page_size=self.page_size, write_batch_size=self.write_batch_size
        )


class SupabaseCatalogResource(_CatalogResource):
    """CMS catalog over Supabase's REST API (supabase-py); backups as JSON files under backup_dir."""

    url: str
    service_role_key: str
    backup_dir: str = DEFAULT_BACKUP_DIR

    def _build(self) -> CatalogSource:
        from cms_stripe.cms.rest import RestCatalogSource

        return RestCatalogSource(
            _resolved(self.url) or "",
            _resolved(self.service_role_key) or "",
            mapping=self._mapping(),
            page_size=self.page_size,
            write_batch_size=self.write_batch_size,
            backup_dir=self.backup_dir,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        run = context.dagster_run
        if run is not None and context.instance is not None and self._source is not None:
            # The backups of a REST CMS are files: record where, so `cms-stripe rollback` finds them
            # from any working directory (and says where to look when the folder is elsewhere).
            folder = str(getattr(self._source, "backup_dir", ""))
            if folder and run.tags.get(BACKUP_DIR_TAG) != folder:
                context.instance.add_run_tags(run.run_id, {BACKUP_DIR_TAG: folder})


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


def catalog_resource_from_env(
    env: Mapping[str, str] | None = None, *, strict: bool = False
) -> SqlCatalogResource | SupabaseCatalogResource:
    """The resource the environment configures: CMS_DATABASE_URL wins, else SUPABASE_URL + key.

    With neither set, `strict=True` raises the CmsConfigError now; otherwise the code location still
    loads and the same message is raised when a run or sensor first uses the catalog.
    """
    env = os.environ if env is None else env
    options: dict[str, Any] = {
        "table": env.get(ENV_TABLE) or None,
        "mapping_file": env.get(ENV_MAPPING_FILE) or None,
        "page_size": _env_int(env, ENV_PAGE_SIZE, DEFAULT_PAGE_SIZE),
        "write_batch_size": _env_int(env, ENV_WRITE_BATCH_SIZE, DEFAULT_WRITE_BATCH_SIZE),
    }
    try:
        kind = backend_from_env(env)
    except CmsConfigError:
        if strict:
            raise
        return SqlCatalogResource(database_url="", **options)
    if kind == "sql":
        return SqlCatalogResource(database_url=dg.EnvVar(ENV_DATABASE_URL), **options)
    return SupabaseCatalogResource(
        url=dg.EnvVar(ENV_SUPABASE_URL),
        service_role_key=dg.EnvVar(ENV_SUPABASE_KEY),
        backup_dir=env.get(ENV_BACKUP_DIR) or DEFAULT_BACKUP_DIR,
        **options,
    )
