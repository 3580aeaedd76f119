"""The CLI's safety switches as users set them: a blank or whitespace MIGRATION_DRY_RUN is a dry run
(it used to mean apply), an unreadable one is a configuration error (exit 2), a live key with
whitespace around it is still recognised and refused (exit 3) by `migrate` and `rollback`, and
`demo-data --replace` drops nothing but a SQLite table unless told so explicitly."""

from __future__ import annotations

import secrets
import string

import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, cli_env, run_cli

FAKE_LIVE_KEY = "sk_" + "live_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def rows(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM products ORDER BY id").all()]
    finally:
        engine.dispose()


def test_dry_run_switch_and_live_key_through_the_cli(tmp_path):
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, generate_catalog(40, seed=8, anchor=ANCHOR, days=3).products)
    engine.dispose()
    before = rows(cms_url)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)

        for blank in ("", "  \t"):
            out = run_cli(["migrate"], {**env, "MIGRATION_DRY_RUN": blank})
            assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
            assert "planning only" in out.stdout + out.stderr
            assert "(dry run)" in out.stdout
        assert emulator.inspect()["writes_total"] == 0

        bad = run_cli(["migrate"], {**env, "MIGRATION_DRY_RUN": "maybe"})
        assert bad.returncode == 2 and "MIGRATION_DRY_RUN" in bad.stderr

        live_env = {**env, "STRIPE_SECRET_KEY": f" \t{FAKE_LIVE_KEY}\n", "MIGRATION_DRY_RUN": " False "}
        refused = run_cli(["migrate"], live_env)
        assert refused.returncode == 3, (refused.stdout + refused.stderr)[-3000:]
        assert "live Stripe key" in refused.stderr
        assert FAKE_LIVE_KEY[10:20] not in refused.stdout + refused.stderr

        rollback = run_cli(["rollback", "--yes"], live_env)
        assert rollback.returncode == 3 and "--confirm-live" in rollback.stderr
        assert emulator.inspect()["writes_total"] == 0
    assert rows(cms_url) == before


def test_demo_data_replace_drops_only_sqlite_tables_unless_told(tmp_path, pg_database, pg_engine):
    write_catalog(pg_engine, generate_catalog(10, seed=1, anchor=ANCHOR, days=1).products)
    before = rows(pg_database)
    env = cli_env(tmp_path, "sqlite:///unused.sqlite", "http://127.0.0.1:1")

    refused = run_cli(["demo-data", "--url", pg_database, "--products", "5", "--replace"], env)
    assert refused.returncode == 3 and "--yes-drop-table" in refused.stderr
    assert rows(pg_database) == before

    sqlite_url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    for _ in range(2):  # the second --replace drops the SQLite table the first wrote, unasked
        ok = run_cli(["demo-data", "--url", sqlite_url, "--products", "5", "--replace"], env)
        assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(rows(sqlite_url)) == 5

    told = run_cli(["demo-data", "--url", pg_database, "--products", "5", "--replace", "--yes-drop-table"], env)
    assert told.returncode == 0, told.stderr[-2000:]
    assert len(rows(pg_database)) == 5

    helped = run_cli(["demo-data", "--help"], env)
    assert "--yes-drop-table" in helped.stdout and "SQLite" in helped.stdout


def test_a_dagster_home_that_does_not_exist_is_a_configuration_error_not_a_traceback(tmp_path):
    missing = tmp_path / "no-such-home"
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'cms.sqlite'}", "http://127.0.0.1:1", DAGSTER_HOME=str(missing))
    result = run_cli(["dry-run"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"DAGSTER_HOME={missing} is not a directory" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not missing.exists()
