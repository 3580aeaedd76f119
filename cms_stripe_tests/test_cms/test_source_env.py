"""catalog_source_from_env: CMS_DATABASE_URL wins over Supabase, neither (or half of Supabase) is one
clear CmsConfigError, and a mapping file named by CMS_MAPPING_FILE is applied."""

from __future__ import annotations

import json

import pytest

from cms_stripe.cms.rest import RestCatalogSource
from cms_stripe.cms.source import CmsConfigError, catalog_source_from_env
from cms_stripe.cms.sql import SqlCatalogSource

SUPABASE = {"SUPABASE_URL": "https://project.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": "service-key"}


def test_database_url_wins(tmp_path):
    src = catalog_source_from_env({"CMS_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", **SUPABASE})
    assert isinstance(src, SqlCatalogSource)
    src.close()


def test_supabase_alone(tmp_path):
    src = catalog_source_from_env({**SUPABASE, "CMS_BACKUP_DIR": str(tmp_path)})
    assert isinstance(src, RestCatalogSource) and src.backup_dir == tmp_path
    src.close()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "no CMS source configured: set CMS_DATABASE_URL"),
        ({"CMS_DATABASE_URL": "  "}, "no CMS source configured"),
        ({"SUPABASE_URL": "https://p.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY is not set"),
        ({"SUPABASE_SERVICE_ROLE_KEY": "k"}, "SUPABASE_URL is not set"),
    ],
)
def test_missing_configuration_is_one_clear_error(env, needle):
    with pytest.raises(CmsConfigError) as err:
        catalog_source_from_env(env)
    assert needle in str(err.value)


def test_mapping_file_from_env(tmp_path):
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"table": "items", "columns": {"title": "name"}}))
    src = catalog_source_from_env(
        {"CMS_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "CMS_MAPPING_FILE": str(mapping)}
    )
    assert src.mapping.table == "items" and src.mapping.columns["title"] == "name"  # type: ignore[attr-defined]
    with pytest.raises(CmsConfigError, match="table 'items' does not exist"):
        src.check()
    src.close()
