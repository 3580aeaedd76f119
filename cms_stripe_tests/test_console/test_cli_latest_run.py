"""rollback, reset and resume without --run-id act on the newest run that wrote: not a dry run or a
`plan` run made after it, and a selective or apply run newer than a full sync wins; each says which
run it chose."""

from __future__ import annotations

import json
import re

import dagster as dg
import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, run_cli
from cms_stripe_tests.test_console.test_cli_console import fresh_env

CHOSEN = re.compile(r"using run ([0-9a-f-]{36}) \((\w+), started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)")


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _newest_run_id(env, work) -> str:
    return json.loads(_ok(run_cli(["report", "--json"], env, cwd=work)))["run_id"]


def _working_dir_and_catalog(tmp_path):
    """A fresh working directory and a 20-row SQLite CMS (one of them invalid, hence the 0.5 threshold below)."""
    work = tmp_path / "work"
    work.mkdir()
    catalog = generate_catalog(20, seed=4, anchor=ANCHOR, days=3)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    write_catalog(sa.create_engine(cms_url), catalog.products)
    return work, cms_url, catalog


def test_rollback_without_run_id_skips_the_dry_run_and_plan_after_a_migrate(tmp_path):
    work, cms_url, _ = _working_dir_and_catalog(tmp_path)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(tmp_path, cms_url, emulator.url, MIGRATION_VALIDATION_THRESHOLD="0.5")
        _ok(run_cli(["migrate"], env, cwd=work))
        migrate_run = _newest_run_id(env, work)
        _ok(run_cli(["dry-run"], env, cwd=work))
        _ok(run_cli(["plan", "--out", str(tmp_path / "p.json")], env, cwd=work))
        assert _newest_run_id(env, work) != migrate_run

        cms_only = _ok(run_cli(["rollback", "--dry-run"], env, cwd=work))
        assert CHOSEN.findall(cms_only) == [(migrate_run, "cms_stripe_sync")]
        assert f"dry run: would restore the sync columns of 20 CMS rows written by run {migrate_run}" in cms_only

        in_stripe = _ok(run_cli(["rollback", "--stripe", "--dry-run"], env, cwd=work))
        assert CHOSEN.findall(in_stripe) == [(migrate_run, "cms_stripe_sync")]
        assert "journaled=16, to_undo=16," in in_stripe, in_stripe
        assert emulator.inspect()["writes_total"] == 16

        # status: the last run that wrote is the migrate, not the plan or dry run after it.
        shown = _ok(run_cli(["status"], env, cwd=work))
        assert f"last run: {migrate_run} (cms_stripe_sync)" in shown, shown
        rows = re.findall(r"^(synced|archived|quarantined|pending|failed)\s+(\d+)$", shown, re.MULTILINE)
        assert rows == [("synced", "16"), ("archived", "3"), ("quarantined", "1")], shown
        assert "oldest pending row updated at: -" in shown


def test_resume_and_reset_without_run_id_pick_a_newer_selective_then_apply_run(tmp_path):
    work, cms_url, catalog = _working_dir_and_catalog(tmp_path)
    ids = ",".join(p.id for p in catalog.products[:2])
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(tmp_path, cms_url, emulator.url, MIGRATION_VALIDATION_THRESHOLD="0.5")
        _ok(run_cli(["migrate"], env, cwd=work))
        full_run = _newest_run_id(env, work)
        selective_env = {**env, "MIGRATION_STRATEGY": "selective", "MIGRATION_PRODUCT_IDS": ids}
        _ok(run_cli(["migrate"], selective_env, cwd=work))
        selective_run = _newest_run_id(env, work)
        assert selective_run != full_run
        _ok(run_cli(["dry-run"], env, cwd=work))

        resumed = _ok(run_cli(["resume"], env, cwd=work))
        assert CHOSEN.findall(resumed) == [(selective_run, "selective_sync")]
        assert f"run {selective_run} finished successfully: nothing to resume" in resumed
        reset = _ok(run_cli(["reset", "--yes"], env, cwd=work))
        assert CHOSEN.findall(reset) == [(selective_run, "selective_sync")]

        plan_file = tmp_path / "p.json"
        _ok(run_cli(["plan", "--out", str(plan_file)], env, cwd=work))
        applied = _ok(run_cli(["apply", str(plan_file)], env, cwd=work))
        (apply_run,) = re.findall(r"^run ([0-9a-f-]{36}): success$", applied, re.MULTILINE)
        resumed = _ok(run_cli(["resume"], env, cwd=work))
        assert CHOSEN.findall(resumed) == [(apply_run, "apply_plan")]
        assert f"run {apply_run} finished successfully: nothing to resume" in resumed
        assert emulator.inspect()["writes_total"] > 0


def test_rollback_stripe_says_when_a_run_has_no_journal_and_fails_when_it_wrote(tmp_path):
    work, cms_url, _ = _working_dir_and_catalog(tmp_path)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(tmp_path, cms_url, emulator.url, MIGRATION_VALIDATION_THRESHOLD="0.5")
        _ok(run_cli(["migrate"], env, cwd=work))
        migrate_run = _newest_run_id(env, work)
        _ok(run_cli(["dry-run"], env, cwd=work))
        dry_run = _newest_run_id(env, work)

        # A dry run wrote nothing: the rollback says so, and that is no failure.
        nothing = _ok(run_cli(["rollback", "--stripe", "--dry-run", "--run-id", dry_run], env, cwd=work))
        assert f"run {dry_run} journaled no Stripe write and recorded none: nothing to undo in Stripe" in nothing

        # The migrate wrote 16 products; with its journal gone the rollback cannot undo them: exit 1.
        with dg.DagsterInstance.from_config(str(work / ".dagster_home")) as instance:
            instance.wipe_assets([dg.AssetKey("stripe_write_journal")])
        lost = run_cli(["rollback", "--stripe", "--yes"], env, cwd=work)
        assert lost.returncode == 1, lost.stdout[-3000:] + lost.stderr[-3000:]
        assert CHOSEN.findall(lost.stdout) == [(migrate_run, "cms_stripe_sync")]
        assert f"run {migrate_run} recorded 16 Stripe writes but its journal holds none" in lost.stdout
        assert f"Stripe rollback of run {migrate_run} failed" in lost.stderr
        assert emulator.inspect()["writes_total"] == 16
        assert sum(p["active"] for p in emulator.objects()["products"]) == 16
