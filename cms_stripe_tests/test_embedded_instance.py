"""One Stripe writer in every deployment: the embedded instance the CLI (and `make dev`) create carries
the `stripe_api` pool limit of 1 that the shared dagster.yaml sets, without touching a user's own file."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import dagster as dg
import sqlalchemy as sa
import yaml

from cms_stripe.cli import EARLIER_EMBEDDED_DAGSTER_YAMLS, _embedded_home, embedded_dagster_yaml
from cms_stripe.constants import STRIPE_POOL
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import valid_live_catalog

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_written_when_missing_or_empty_never_over_a_users_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    fresh = tmp_path / "fresh"
    _embedded_home(fresh)
    assert yaml.safe_load((fresh / "dagster.yaml").read_text()) == {
        "storage": {
            "custom": {
                "module": "cms_stripe.instance_storage",
                "class": "EmbeddedSqliteStorage",
                "config": {"base_dir": str(fresh)},
            }
        },
        "concurrency": {"pools": {"default_limit": 1}},
        "telemetry": {"enabled": False},
    }
    assert os.environ["DAGSTER_HOME"] == str(fresh)

    empty = tmp_path / "empty"  # what earlier versions left: an empty file
    empty.mkdir()
    (empty / "dagster.yaml").write_text("\n")
    _embedded_home(empty)
    assert (empty / "dagster.yaml").read_text() == embedded_dagster_yaml(empty)

    earlier = tmp_path / "earlier"  # exactly what the previous version wrote: never edited, so replaced
    earlier.mkdir()
    (earlier / "dagster.yaml").write_text(EARLIER_EMBEDDED_DAGSTER_YAMLS[0])
    _embedded_home(earlier)
    assert (earlier / "dagster.yaml").read_text() == embedded_dagster_yaml(earlier)
    moved = tmp_path / "moved"  # a home moved elsewhere: its storage follows it
    (earlier / "dagster.yaml").rename(moved.with_suffix(".yaml"))
    moved.mkdir()
    moved.with_suffix(".yaml").rename(moved / "dagster.yaml")
    _embedded_home(moved)
    assert yaml.safe_load((moved / "dagster.yaml").read_text())["storage"]["custom"]["config"] == {
        "base_dir": str(moved)
    }
    edited = tmp_path / "edited"  # the previous version's file with one line changed stays the user's
    edited.mkdir()
    text = EARLIER_EMBEDDED_DAGSTER_YAMLS[0].replace("default_limit: 1", "default_limit: 2")
    (edited / "dagster.yaml").write_text(text)
    _embedded_home(edited)
    assert (edited / "dagster.yaml").read_text() == text

    mine = tmp_path / "mine"
    mine.mkdir()
    users = "telemetry:\n  enabled: false\n"
    (mine / "dagster.yaml").write_text(users)
    _embedded_home(mine)
    assert (mine / "dagster.yaml").read_text() == users


def test_a_cli_run_on_the_embedded_instance_has_one_stripe_slot(tmp_path) -> None:
    products = valid_live_catalog(12, seed=3)[:5]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    from cms_stripe.cms.demo import write_catalog

    write_catalog(engine, products)
    engine.dispose()
    # No DAGSTER_HOME: the CLI makes ./.dagster_home in its working directory (the embedded default).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_", "DAGSTER_"))
    }
    with EmulatorServer(EmulatorConfig()) as emulator:
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
                "CMS_DATABASE_URL": cms_url,
                "STRIPE_SECRET_KEY": "sk_test_cms_stripe_embedded",
                "STRIPE_API_BASE": emulator.url,
                "MIGRATION_DRY_RUN": "false",
                # The days the catalog spans (see valid_live_catalog), not every partition since the start.
                "MIGRATION_STRATEGY": "incremental",
                "MIGRATION_START_DATE": "2026-03-01",
                "MIGRATION_END_DATE": "2026-03-10",
                "MIGRATION_REPORTS_DIR": str(tmp_path / "reports"),
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "cms_stripe", "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert len(emulator.objects()["products"]) == len(products)
    home = tmp_path / ".dagster_home"
    assert (home / "dagster.yaml").read_text() == embedded_dagster_yaml(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert runs, "the CLI ran nothing on the embedded instance"
        # The Stripe step claimed its pool during the run: the pool exists, with one slot.
        assert instance.event_log_storage.get_concurrency_info(STRIPE_POOL).slot_count == 1
        assert instance.global_op_concurrency_default_limit == 1
