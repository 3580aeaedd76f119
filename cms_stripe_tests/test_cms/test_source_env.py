"""Which backend the environment names: CMS_DATABASE_URL wins over Supabase, neither (or half of
Supabase) is one clear CmsConfigError, and a mapping file named by CMS_MAPPING_FILE is applied."""

from __future__ import annotations

import json

import pytest

from cms_stripe.cms.source import CmsConfigError, backend_for
from cms_stripe.core.settings import Settings
from cms_stripe.resources.cms import SqlCatalogResource


def backend_for_env(env: dict[str, str]) -> str:
    return backend_for(Settings.from_env(env))


SUPABASE = {"SUPABASE_URL": "https://project.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": "service-key"}


def test_database_url_wins():
    assert backend_for_env({"CMS_DATABASE_URL": "sqlite:///c.db", **SUPABASE}) == "sql"


def test_supabase_alone():
    assert backend_for_env(SUPABASE) == "rest"


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
        backend_for_env(env)
    assert needle in str(err.value)


def test_mapping_file_from_env(tmp_path, monkeypatch):
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"table": "items", "columns": {"title": "name"}}))
    monkeypatch.setenv("CMS_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("CMS_MAPPING_FILE", str(mapping))
    resource = SqlCatalogResource()
    with pytest.raises(CmsConfigError, match="table 'items' does not exist"):
        resource.source().check()
    resource.close()
