"""The orchestrator: emulator processes, a throw-away PostgreSQL database, one child process per scenario.

    python -m cms_stripe_tests.benchmarks            # full: issue 15's sizes (6,000 e2e, 3,000 test mode, ...)
    python -m cms_stripe_tests.benchmarks --quick    # routine: ~2,000 products, 100,000 rows

Every target of issue 15 it can measure is printed with its ratio to the ceiling, next to a naive
sequential baseline (stripe-python, one create at a time, no pacing model) measured in the same run.

A readable table goes to stderr; one JSON object is the last line of stdout (or `--json FILE`).
Nothing here asserts timings: the figures are reported next to their targets, gaps included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cms_stripe.cms.demo import default_anchor, write_catalog
from cms_stripe.emulator.bench import emulator_process
from cms_stripe_tests.benchmarks.common import (
    LIVE_KEY,
    TEST_KEY,
    bench_catalog,
    child_env,
    inspect_emulator,
    phases,
    run_child,
    traffic,
)

SCENARIO_KEYS = (
    "naive_sequential",
    "creates_live",
    "noop_rerun",
    "changed_1pct",
    "creates_live_e2e",
    "creates_test",
    "plan_rows",
    "sensor_first_sync",
    "emulator_capacity",
    "noop_partitions",
)
# Ceilings and targets (issue 15).
LIVE_CEILING_PPS = 50.0  # lane A (1 call) on POST /v1/products + lane B on two other 25/s endpoints
LIVE_TARGET_PPS = 45.0
TEST_CEILING_RPS = 25.0  # test mode: 25 requests/s overall = 25 products/s at one request each
TEST_TARGET_PPS = 21.0
PLAN_TARGET_S = 60.0
PLAN_TARGET_MB = 1024.0
NOOP_TARGET_S = 8.0
SENSOR_TARGET_RATIO = 1.5  # the sensor's first sync against one `cms-stripe migrate` of the same catalog
# A no-op `cms-stripe migrate` over ~700 daily partitions (10,000 rows updated over 700 days) and over
# ~4,000 (the partitions starting ten years back): issue 15's flat overhead per partition.
NOOP_PARTITION_DAYS = (700, 3650)
NOOP_PARTITIONS_TARGET_S = {700: 8.0, 3650: 12.0}
OLD_TOOL_PPS = (1.0, 5.0)
LIVE_EMULATOR = ("--latency-ms", "150", "--jitter-ms", "50", "--global-rps", "100", "--endpoint-rps", "25")
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cms_stripe_tests.benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="routine run: ~2,000 products, 100,000 planning rows")
    ap.add_argument("--products", type=int, default=None, help="new products for live-mode creates (default 10,000)")
    ap.add_argument("--e2e-products", type=int, default=None, help="products for the end-to-end run")
    ap.add_argument("--test-products", type=int, default=None, help="products for the test-mode creates")
    ap.add_argument("--naive-products", type=int, default=None, help="products for the naive sequential baseline")
    ap.add_argument("--plan-rows", type=int, default=None, help="rows to validate + plan (default 1,000,000)")
    ap.add_argument(
        "--sensor-products", type=int, default=None, help="products for the sensor's first sync (default 1,000)"
    )
    ap.add_argument(
        "--plan-page-size",
        type=int,
        default=None,
        help="rows per page for validate + plan (default CMS_PAGE_SIZE's default, 1,000; 0: all rows in one page)",
    )
    ap.add_argument("--capacity-seconds", type=float, default=None, help="emulator capacity load duration")
    ap.add_argument("--noop-rows", type=int, default=None, help="rows of the no-op-over-partitions catalog")
    ap.add_argument(
        "--noop-partition-days",
        default=",".join(str(d) for d in NOOP_PARTITION_DAYS),
        help="comma-separated: for each, a no-op migrate with the partitions starting that many days back",
    )
    ap.add_argument(
        "--only", default="", help="comma-separated subset of: " + ", ".join(SCENARIO_KEYS) + " (default: all)"
    )
    ap.add_argument(
        "--e2e-via",
        choices=("auto", "cli", "sync"),
        default="auto",
        help="end to end through `cms-stripe migrate` (cli), core.sync.run_sync on the SQL catalog without "
        "Dagster (sync), or the CLI with run_sync as fallback (auto)",
    )
    ap.add_argument(
        "--pg-admin-url",
        default=os.environ.get("CMS_STRIPE_BENCH_PG_URL")
        or os.environ.get("CMS_STRIPE_TEST_PG_URL")
        or DEFAULT_PG_ADMIN_URL,
        help="PostgreSQL server where a throw-away database is created (and dropped)",
    )
    ap.add_argument(
        "--safety",
        type=float,
        default=None,
        help="pace the engine scenarios at this share of each limit instead of the default (an A/B of the margin)",
    )
    ap.add_argument("--json", dest="json_path", default=None, help="also write the JSON object to this file")
    ap.add_argument("--verbose", action="store_true", help="show the scenario processes' logs")
    return ap


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.anchor = default_anchor()
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self._seq = 0

    # -- plumbing ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def child(self, name: str, params: dict[str, Any], timeout_s: float = 3600.0) -> tuple[dict[str, Any], Any]:
        self._seq += 1
        params = {"anchor": self.anchor.isoformat(), **params}
        run = run_child(
            [sys.executable, "-m", "cms_stripe_tests.benchmarks.scenarios", name, json.dumps(params)],
            env=child_env(),
            timeout_s=timeout_s,
            stderr_path=str(self.workdir / f"{self._seq:02d}-{name}.log"),
            echo_stderr=self.args.verbose,
        )
        if run.returncode != 0:
            raise RuntimeError(f"scenario process {name} failed (exit {run.returncode}):\n{run.stderr_tail}")
        out = run.last_json()
        if out.get("child_rss_mb"):
            run.peak_rss_mb = out["child_rss_mb"]
        return out, run

    # -- scenarios --------------------------------------------------------------------------

    def creates_live(self, n: int) -> None:
        """1 (engine), 3 and 4 share one emulator: create, then re-run unchanged, then 1 % changed."""
        with emulator_process(*LIVE_EMULATOR) as url:
            base = {
                "n": n,
                "seed": 7,
                "id_prefix": "bench-",
                "key": LIVE_KEY,
                "api_base": url,
                "safety": self.args.safety,
            }
            self.say(f"creates, live-mode limits, engine alone: {n} products")
            before = inspect_emulator(url)
            out, run = self.child("engine_creates", base)
            after = inspect_emulator(url)
            self.results["creates_live"] = self._creates_figures(
                out, run, traffic(before, after), after, ceiling_pps=LIVE_CEILING_PPS, target_pps=LIVE_TARGET_PPS
            )
            if self.wanted("noop_rerun"):
                self.say("no-op rerun of the same catalog")
                before = after
                out, run = self.child("engine_rerun", base)
                after = inspect_emulator(url)
                t = traffic(before, after)
                reads_goal = n // 100 + 1
                self.results["noop_rerun"] = {
                    "products": n,
                    "plan": out["plan"],
                    "stripe_reads": t["reads"],
                    "stripe_writes": t["writes"],
                    "reads_goal_max": reads_goal,
                    "wall_s": out["total_s"],
                    "process_wall_s": round(run.wall_s, 3),
                    "peak_rss_mb": run.peak_rss_mb,
                    "requests": t["requests"],
                    "meets_target": t["writes"] == 0 and t["reads"] <= reads_goal,
                }
            if self.wanted("changed_1pct"):
                self.say("1 % of the catalog changed (half field edits, half price changes)")
                before = after
                out, run = self.child("engine_changed", base)
                after = inspect_emulator(url)
                t = traffic(before, after)
                changed = out["changed"]
                self.results["changed_1pct"] = {
                    "products": n,
                    "changed": changed,
                    "field_edits": out["changed_fields"],
                    "price_changes": out["changed_prices"],
                    "plan": out["plan"],
                    "outcomes": out["outcomes"],
                    "stripe_writes": t["writes"],
                    "stripe_reads": t["reads"],
                    "writes_per_changed_product": round(t["writes"] / changed, 2) if changed else None,
                    "pacing_429s": t["pacing_429s"],
                    "wall_s": out["total_s"],
                    "process_wall_s": round(run.wall_s, 3),
                    "peak_rss_mb": run.peak_rss_mb,
                    "requests": t["requests"],
                }

    def _creates_figures(
        self,
        out: dict[str, Any],
        run: Any,
        t: dict[str, Any],
        after: dict[str, Any],
        *,
        ceiling_pps: float,
        target_pps: float,
        ceiling_rps: float | None = None,
    ) -> dict[str, Any]:
        created = t["products_created"]
        apply_s = out["apply_s"]
        pps = created / apply_s if apply_s else 0.0
        pps_total = created / out["total_s"] if out["total_s"] else 0.0
        total_requests = sum(t["requests"].values())
        fig: dict[str, Any] = {
            "products": out["rows"],
            "products_created": created,
            "outcomes": out["outcomes"],
            "failed_examples": out["failed_examples"],
            "apply_s": apply_s,
            "read_plan_apply_s": out["total_s"],
            "products_per_s": round(pps, 2),
            "products_per_s_incl_read_and_plan": round(pps_total, 2),
            "ceiling_products_per_s": ceiling_pps,
            "ratio_to_ceiling": round(pps / ceiling_pps, 3),
            "target_products_per_s": target_pps,
            "pacing_429s": t["pacing_429s"],
            "rate_limited": t["rate_limited"],
            "calls_per_product": round(total_requests / created, 3) if created else None,
            "requests_per_s": round(total_requests / out["total_s"], 2) if out["total_s"] else None,
            "peak_rss_mb": run.peak_rss_mb,
            "peak_rps": after.get("peak_rps"),
            "peak_admitted_rps": after.get("peak_admitted_rps"),
            "lanes": out["lanes"],
            "gateway_retries": out["gateway"].get("retries"),
            "late_reslots": out.get("late_reslots"),
            "limiter_safety": out.get("limiter_safety"),
            "requests": t["requests"],
        }
        if ceiling_rps is not None:
            fig["ceiling_requests_per_s"] = ceiling_rps
            fig["requests_ratio_to_ceiling"] = round((fig["requests_per_s"] or 0) / ceiling_rps, 3)
        fig["meets_target"] = pps >= target_pps and t["pacing_429s"] == 0 and created == out["rows"]
        return fig

    def naive_sequential(self, n: int) -> None:
        with emulator_process(*LIVE_EMULATOR) as url:
            self.say(f"naive sequential baseline: {n} products, one create at a time, no pacing")
            base = {"n": n, "seed": 17, "id_prefix": "naive-", "key": LIVE_KEY, "api_base": url}
            before = inspect_emulator(url)
            out, run = self.child("naive_sequential", base)
            t = traffic(before, inspect_emulator(url))
            created = t["products_created"]
            pps = created / out["apply_s"] if out["apply_s"] else 0.0
            self.results["naive_sequential"] = {
                "products": n,
                "products_created": created,
                "apply_s": out["apply_s"],
                "products_per_s": round(pps, 2),
                "ceiling_products_per_s": LIVE_CEILING_PPS,
                "ratio_to_ceiling": round(pps / LIVE_CEILING_PPS, 3),
                "pacing_429s": t["pacing_429s"],
                "failed": out["failed"],
                "process_wall_s": round(run.wall_s, 3),
            }

    def creates_test(self, n: int) -> None:
        with emulator_process(*LIVE_EMULATOR, "--test-mode-limits") as url:
            self.say(f"creates, test-mode limits (25/s global): {n} products")
            base = {
                "n": n,
                "seed": 13,
                "id_prefix": "test-",
                "key": TEST_KEY,
                "api_base": url,
                "safety": self.args.safety,
            }
            before = inspect_emulator(url)
            out, run = self.child("engine_creates", base)
            after = inspect_emulator(url)
            fig = self._creates_figures(
                out,
                run,
                traffic(before, after),
                after,
                ceiling_pps=TEST_CEILING_RPS,
                target_pps=TEST_TARGET_PPS,
                ceiling_rps=TEST_CEILING_RPS,
            )
            calls = fig["calls_per_product"] or 1.0
            fig["products_per_s_ceiling_at_measured_calls_per_product"] = round(TEST_CEILING_RPS / calls, 2)
            # Including the scenario process's start-up (interpreter, imports) and the state read.
            fig["products_per_s_incl_startup"] = round(fig["products_created"] / run.wall_s, 2) if run.wall_s else 0.0
            fig["ratio_to_ceiling_incl_startup"] = round(fig["products_per_s_incl_startup"] / TEST_CEILING_RPS, 3)
            # The target (issue 15) includes start-up.
            fig["meets_target"] = bool(fig["meets_target"]) and fig["products_per_s_incl_startup"] >= TEST_TARGET_PPS
            fig["late_reslots"] = out.get("late_reslots")
            self.results["creates_test"] = fig

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        admin = sa.create_engine(self.args.pg_admin_url, isolation_level="AUTOCOMMIT")
        name = f"cms_stripe_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(self.args.pg_admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

    def _load_catalog(self, url: str, n: int, days: int = 90) -> None:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS products CASCADE")
                conn.exec_driver_sql("DROP TABLE IF EXISTS cms_stripe_backups CASCADE")
            write_catalog(engine, bench_catalog(n, seed=11, anchor=self.anchor, id_prefix="e2e-", days=days))
        finally:
            engine.dispose()

    def _synced_rows(self, url: str) -> int:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                count = conn.exec_driver_sql("SELECT count(*) FROM products WHERE sync_status = 'synced'").scalar()
                return int(count or 0)
        finally:
            engine.dispose()

    def _migrate(
        self, db_url: str, api_url: str, tag: str, partition_start: str | None = None, folder: str = ""
    ) -> Any:
        # No DAGSTER_HOME: the CLI uses its embedded default instance (./.dagster_home in the working
        # directory, its dagster.yaml written by the CLI), as an operator's `cms-stripe migrate` does. A
        # scenario that needs a fresh instance runs in a folder of its own.
        env = self._cli_env(db_url, api_url, partition_start)
        cwd = self.workdir / folder
        cwd.mkdir(exist_ok=True)
        self._seq += 1
        rss_file = self.workdir / f"{self._seq:02d}-migrate-{tag}.rss.json"
        env["BENCH_RSS_FILE"] = str(rss_file)
        # `cms-stripe migrate --confirm-live` in a process that reports its own peak RSS; cwd = the work
        # directory so no developer .env is read.
        run = run_child(
            [sys.executable, "-m", "cms_stripe_tests.benchmarks.cli_rss", "migrate", "--confirm-live"],
            env=env,
            cwd=str(cwd),
            stderr_path=str(self.workdir / f"{self._seq:02d}-migrate-{tag}.log"),
            echo_stderr=self.args.verbose,
        )
        if rss_file.exists():
            run.peak_rss_mb = json.loads(rss_file.read_text())["peak_rss_mb"]
        return run

    def _cli_env(self, db_url: str, api_url: str, partition_start: str | None = None) -> dict[str, str]:
        """What `cms-stripe migrate` and a deployed code location read: a live key allowed to write, the
        PostgreSQL CMS and the emulator."""
        return child_env(
            {
                "CMS_DATABASE_URL": db_url,
                "STRIPE_SECRET_KEY": LIVE_KEY,
                "STRIPE_API_BASE": api_url,
                "MIGRATION_DRY_RUN": "false",
                "MIGRATION_STRATEGY": "full",
                "MIGRATION_ALLOW_LIVE": "true",
                "MIGRATION_REPORTS_DIR": str(self.workdir / "reports"),
                "MIGRATION_PARTITION_START": partition_start or (self.anchor - timedelta(days=92)).date().isoformat(),
            }
        )

    def creates_live_e2e(self, n: int) -> None:
        with self.database() as db_url:
            via = self.args.e2e_via
            if via in ("auto", "cli"):
                fig = self._e2e_cli(db_url, n)
                if fig.get("error") and via == "auto":
                    self.notes.append(f"end to end through `cms-stripe migrate` failed: {fig['error'][:300]}")
                    self.results["creates_live_e2e_cli_failure"] = fig
                    via = "sync"
                else:
                    self.results["creates_live_e2e"] = fig
            if via == "sync":
                self.results["creates_live_e2e"] = self._e2e_sync(db_url, n)

    def _e2e_cli(self, db_url: str, n: int) -> dict[str, Any]:
        self._load_catalog(db_url, n)
        with emulator_process(*LIVE_EMULATOR) as url:
            self.say(f"creates, live-mode limits, end to end through `cms-stripe migrate`: {n} products")
            before = inspect_emulator(url)
            run = self._migrate(db_url, url, "creates")
            after = inspect_emulator(url)
            t = traffic(before, after)
            synced = self._synced_rows(db_url)
            created = t["products_created"]
            fig: dict[str, Any] = {
                "via": "cms-stripe migrate (Dagster sync job, in-process executor, PostgreSQL CMS)",
                "products": n,
                "products_created": created,
                "cms_rows_synced": synced,
                "wall_s": round(run.wall_s, 3),
                "products_per_s": round(created / run.wall_s, 2) if run.wall_s else 0.0,
                "ceiling_products_per_s": LIVE_CEILING_PPS,
                "ratio_to_ceiling": round(created / run.wall_s / LIVE_CEILING_PPS, 3) if run.wall_s else 0.0,
                "target_products_per_s": LIVE_TARGET_PPS,
                "pacing_429s": t["pacing_429s"],
                "rate_limited": t["rate_limited"],
                "calls_per_product": round(sum(t["requests"].values()) / created, 3) if created else None,
                "peak_rss_mb": run.peak_rss_mb,
                "peak_rps": after.get("peak_rps"),
                "peak_admitted_rps": after.get("peak_admitted_rps"),
                "exit_code": run.returncode,
                "requests": t["requests"],
            }
            if run.returncode != 0 or created < n or synced < n:
                lines = [ln.strip() for ln in (run.stderr_tail or run.stdout).splitlines() if ln.strip()]
                fig["error"] = f"exit {run.returncode}, {created}/{n} created, {synced}/{n} rows written back" + (
                    f"; last line: {lines[-1][:300]}" if lines else ""
                )
                fig["stdout_tail"] = run.stdout[-2000:]
                fig["stderr_tail"] = run.stderr_tail[-2000:]
                fig["meets_target"] = False
                return fig
            fig["meets_target"] = fig["products_per_s"] >= LIVE_TARGET_PPS and t["pacing_429s"] == 0
            self._add_write_phase(fig, url, created, run)
            if self.wanted("noop_rerun") and not self.args.quick:
                self.say("no-op rerun end to end through `cms-stripe migrate`")
                before = after
                rerun = self._migrate(db_url, url, "rerun")
                t2 = traffic(before, inspect_emulator(url))
                fig["noop_rerun"] = {
                    "exit_code": rerun.returncode,
                    "stripe_reads": t2["reads"],
                    "stripe_writes": t2["writes"],
                    "reads_goal_max": n // 100 + 1,
                    "wall_s": round(rerun.wall_s, 3),
                    "target_s": NOOP_TARGET_S,
                    "meets_target": rerun.returncode == 0
                    and t2["writes"] == 0
                    and t2["reads"] <= n // 100 + 1
                    and rerun.wall_s <= NOOP_TARGET_S,
                    "requests": t2["requests"],
                }
            return fig

    @staticmethod
    def _add_write_phase(fig: dict[str, Any], url: str, created: int, run: Any) -> None:
        """Split the end-to-end wall time: before Stripe, reads, Stripe write phase, after the last write."""
        split = phases(url, run.started, run.ended)
        if split:
            fig["phases"] = split
            fig["write_phase_s"] = split["write_phase_s"]
            fig["products_per_s_write_phase"] = round(created / split["write_phase_s"], 2)

    def _e2e_sync(self, db_url: str, n: int) -> dict[str, Any]:
        self._load_catalog(db_url, n)
        with emulator_process(*LIVE_EMULATOR) as url:
            self.say(f"creates, live-mode limits, engine + CMS write-back (not through Dagster): {n} products")
            params = {"database_url": db_url, "key": LIVE_KEY, "api_base": url}
            before = inspect_emulator(url)
            out, run = self.child("sync_e2e", params)
            after = inspect_emulator(url)
            t = traffic(before, after)
            created = t["products_created"]
            synced = self._synced_rows(db_url)
            pps = created / run.wall_s if run.wall_s else 0.0
            fig = {
                "via": "engine + CMS write-back (not through Dagster): core.sync.run_sync on SqlCatalogSource",
                "products": n,
                "products_created": created,
                "cms_rows_synced": synced,
                "outcomes": out["outcomes"],
                "wall_s": round(run.wall_s, 3),
                "products_per_s": round(pps, 2),
                "ceiling_products_per_s": LIVE_CEILING_PPS,
                "ratio_to_ceiling": round(pps / LIVE_CEILING_PPS, 3),
                "target_products_per_s": LIVE_TARGET_PPS,
                "pacing_429s": t["pacing_429s"],
                "rate_limited": t["rate_limited"],
                "calls_per_product": round(sum(t["requests"].values()) / created, 3) if created else None,
                "peak_rss_mb": run.peak_rss_mb,
                "peak_rps": after.get("peak_rps"),
                "requests": t["requests"],
                "meets_target": pps >= LIVE_TARGET_PPS and t["pacing_429s"] == 0 and synced >= n,
            }
            self._add_write_phase(fig, url, created, run)
            return fig

    def sensor_first_sync(self, n: int) -> None:
        """The change sensor's first tick over a never-synced catalog spread over 90 days, then the runs it
        requests, against one `cms-stripe migrate` of the same catalog (each on a fresh emulator, CMS and
        Dagster home). Both figures include their process's start-up; a daemon-launched run also starts a
        process of its own, which this measures once for both."""
        with self.database() as db_url:
            self._load_catalog(db_url, n)
            with emulator_process(*LIVE_EMULATOR) as url:
                self.say(f"sensor first sync: `cms-stripe migrate` of {n} products over 90 days, for comparison")
                migrate = self._migrate(db_url, url, "sensor-baseline", folder="sensor-migrate")
                migrated = traffic({"objects": {"products": 0, "prices": 0}}, inspect_emulator(url))
            self._load_catalog(db_url, n)
            with emulator_process(*LIVE_EMULATOR) as url:
                self.say(f"sensor first sync: the change sensor's first tick and its runs, {n} products")
                # A fresh embedded default instance, as the migrate above had.
                cwd = self.workdir / "sensor-tick"
                cwd.mkdir(exist_ok=True)
                self._seq += 1
                run = run_child(
                    [sys.executable, "-m", "cms_stripe_tests.benchmarks.scenarios", "sensor_first_sync", "{}"],
                    env=self._cli_env(db_url, url),
                    cwd=str(cwd),
                    stderr_path=str(self.workdir / f"{self._seq:02d}-sensor_first_sync.log"),
                    echo_stderr=self.args.verbose,
                )
                created = traffic({"objects": {"products": 0, "prices": 0}}, inspect_emulator(url))
            synced = self._synced_rows(db_url)
        out = run.last_json() if run.returncode == 0 else {}
        ratio = round(run.wall_s / migrate.wall_s, 2) if migrate.wall_s else None
        self.results["sensor_first_sync"] = {
            **out,
            "products": n,
            "products_created": created["products_created"],
            "cms_rows_synced": synced,
            "wall_s": round(run.wall_s, 3),
            "migrate_wall_s": round(migrate.wall_s, 3),
            "migrate_products_created": migrated["products_created"],
            "vs_migrate": ratio,
            "target_vs_migrate": SENSOR_TARGET_RATIO,
            "exit_code": run.returncode,
            "migrate_exit_code": migrate.returncode,
            "meets_target": run.returncode == 0
            and out.get("runs_requested") == 1
            and created["products_created"] == n
            and ratio is not None
            and ratio <= SENSOR_TARGET_RATIO,
            **({"stderr_tail": run.stderr_tail[-2000:]} if run.returncode else {}),
        }

    def _updated_at(self, url: str, *, keep: bool) -> None:
        """Keep every row's updated_at aside, or put it back without firing the table's trigger."""
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                if keep:
                    conn.exec_driver_sql("CREATE TABLE bench_updated_at AS SELECT id, updated_at FROM products")
                else:
                    conn.exec_driver_sql("ALTER TABLE products DISABLE TRIGGER USER")
                    conn.exec_driver_sql(
                        "UPDATE products p SET updated_at = b.updated_at FROM bench_updated_at b WHERE p.id = b.id"
                    )
                    conn.exec_driver_sql("ALTER TABLE products ENABLE TRIGGER USER")
                    conn.exec_driver_sql("ANALYZE products")
        finally:
            engine.dispose()

    def _partitions_run(self) -> int | None:
        """How many daily partitions the newest `cms-stripe migrate` covered (its report's range)."""
        reports = list((self.workdir / "reports").glob("migration-report-*.json"))
        if not reports:
            return None
        scope = json.loads(max(reports, key=lambda p: p.stat().st_mtime).read_text()).get("partitions") or ""
        first, _, last = str(scope).partition("..")
        try:
            start, end = date.fromisoformat(first), date.fromisoformat(last or first)
        except ValueError:
            return None
        return (end - start).days + 1

    def noop_partitions(self, n: int, partition_days: list[int]) -> None:
        """A no-op `cms-stripe migrate` end to end over many daily partitions (issue 15: ~700 and ~4,000),
        on the embedded default instance: rows updated over the first span's days, synced once for
        real, then the same command again (nothing to write) for each partition start.

        The write-back fires the table's `updated_at` trigger, which would stamp every row today and
        make the next full runs one partition long: the rows get their spread back before the no-op
        runs, as on a table without that trigger. A full run starts at the oldest row's day, so
        `partitions_run` (from its report) is about the spread whatever the partition start."""
        spread = min(partition_days)
        starts = {days: (self.anchor - timedelta(days=days)).date().isoformat() for days in partition_days}
        with self.database() as db_url:
            self._load_catalog(db_url, n, days=spread)
            self._updated_at(db_url, keep=True)
            with emulator_process(*LIVE_EMULATOR) as url:
                self.say(f"no-op over partitions: first sync of {n} rows updated over {spread} days")
                first = self._migrate(db_url, url, "partitions-sync", starts[spread], folder="partitions")
                self._updated_at(db_url, keep=False)
                fig: dict[str, Any] = {
                    "rows": n,
                    "rows_spread_over_days": spread,
                    "first_sync_s": round(first.wall_s, 1),
                }
                if first.returncode != 0:
                    fig["error"] = f"first sync exit {first.returncode}: {first.stderr_tail[-300:]}"
                    self.results["noop_partitions"] = fig
                    return
                runs = []
                for days in partition_days:
                    self.say(f"no-op migrate over {days + 1} daily partitions (start {starts[days]})")
                    before = inspect_emulator(url)
                    run = self._migrate(db_url, url, f"noop-{days}", starts[days], folder="partitions")
                    t = traffic(before, inspect_emulator(url))
                    target = NOOP_PARTITIONS_TARGET_S.get(days)
                    runs.append(
                        {
                            # Daily partitions from the start to today, both included.
                            "partitions": days + 1,
                            "partitions_run": self._partitions_run(),
                            "exit_code": run.returncode,
                            "wall_s": round(run.wall_s, 2),
                            "target_s": target,
                            "stripe_reads": t["reads"],
                            "stripe_writes": t["writes"],
                            "peak_rss_mb": run.peak_rss_mb,
                            "meets_target": (run.returncode == 0 and t["writes"] == 0 and run.wall_s <= target)
                            if target is not None
                            else None,
                        }
                    )
                fig["runs"] = runs
                self.results["noop_partitions"] = fig

    def plan_rows(self, n: int) -> None:
        self.say(f"validate + plan {n:,} rows (no Stripe)")
        params: dict[str, Any] = {"n": n, "seed": 7}
        if self.args.plan_page_size is not None:
            params["page_size"] = self.args.plan_page_size
        out, run = self.child("plan_rows", params)
        self.results["plan_rows"] = {
            **out,
            "process_wall_s": round(run.wall_s, 3),
            "peak_rss_mb": run.peak_rss_mb,
            "target_s": PLAN_TARGET_S,
            "target_rss_mb": PLAN_TARGET_MB,
            # The targets are stated for 1,000,000 rows; smaller runs are reported without a verdict.
            "meets_target": (out["validate_plan_s"] <= PLAN_TARGET_S and run.peak_rss_mb <= PLAN_TARGET_MB)
            if n >= 1_000_000
            else None,
        }

    def emulator_capacity(self, seconds: float) -> None:
        self.say(f"emulator capacity at zero latency, rate limits off ({seconds:g} s of load)")
        out, run = self.child("emulator_capacity", {"seconds": seconds, "connections": 32})
        out["load_generator_peak_rss_mb"] = run.peak_rss_mb
        out["needed_requests_per_s"] = 100
        self.results["emulator_capacity"] = out

    # -- all --------------------------------------------------------------------------------

    def wanted(self, key: str) -> bool:
        only = [s.strip() for s in self.args.only.split(",") if s.strip()]
        return not only or key in only


def sizes(args: argparse.Namespace) -> dict[str, Any]:
    products = args.products or (2_000 if args.quick else 10_000)
    return {
        "products": products,
        "e2e_products": args.e2e_products or (min(products, 400) if args.quick else min(products, 6_000)),
        "test_products": args.test_products or (min(products, 240) if args.quick else min(products, 3_000)),
        "naive_products": args.naive_products or (min(products, 60) if args.quick else min(products, 600)),
        "plan_rows": args.plan_rows or (100_000 if args.quick else 1_000_000),
        "sensor_products": args.sensor_products or (min(products, 200) if args.quick else min(products, 1_000)),
        "capacity_seconds": args.capacity_seconds or (1.0 if args.quick else 5.0),
        "noop_rows": args.noop_rows or (400 if args.quick else 10_000),
        "noop_partition_days": [int(d) for d in args.noop_partition_days.split(",") if d.strip()],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for key in [s.strip() for s in args.only.split(",") if s.strip()]:
        if key not in SCENARIO_KEYS:
            build_parser().error(f"unknown scenario {key!r}")
    size = sizes(args)
    workdir = Path(tempfile.mkdtemp(prefix="cms-stripe-bench-"))
    bench = Bench(args, workdir)
    started = time.monotonic()
    error: str | None = None
    try:
        if bench.wanted("naive_sequential"):
            bench.naive_sequential(size["naive_products"])
        if any(bench.wanted(k) for k in ("creates_live", "noop_rerun", "changed_1pct")):
            bench.creates_live(size["products"])
        if bench.wanted("creates_live_e2e"):
            bench.creates_live_e2e(size["e2e_products"])
        if bench.wanted("creates_test"):
            bench.creates_test(size["test_products"])
        if bench.wanted("plan_rows"):
            bench.plan_rows(size["plan_rows"])
        if bench.wanted("sensor_first_sync"):
            bench.sensor_first_sync(size["sensor_products"])
        if bench.wanted("emulator_capacity"):
            bench.emulator_capacity(size["capacity_seconds"])
        if bench.wanted("noop_partitions"):
            bench.noop_partitions(size["noop_rows"], size["noop_partition_days"])
    except Exception as exc:  # report what was measured before the failure
        error = f"{type(exc).__name__}: {exc}"
        bench.say(f"FAILED: {error}")
    finally:
        keep = error is not None or args.verbose
        if keep:
            bench.say(f"scenario logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report = build_report(args, size, bench, time.monotonic() - started, error)
    from cms_stripe_tests.benchmarks.table import render_table

    print(render_table(report), file=sys.stderr, flush=True)
    text = json.dumps(report, default=str)
    if args.json_path:
        Path(args.json_path).write_text(text + "\n")
    print(text, flush=True)
    return 1 if error else 0


def build_report(
    args: argparse.Namespace, size: dict[str, Any], bench: Bench, elapsed: float, error: str | None
) -> dict[str, Any]:
    notes = list(bench.notes)
    if args.quick:
        notes.append(
            f"quick mode: {size['products']} live-mode creates, {size['e2e_products']} end to end, "
            f"{size['test_products']} test-mode creates, {size['plan_rows']:,} planning rows; "
            "no end-to-end no-op rerun"
        )
    elif size["test_products"] < size["products"]:
        notes.append(
            f"test-mode creates measured on {size['test_products']} products (steady state; at 25 requests/s "
            f"{size['products']} would take {math.ceil(size['products'] / 24 / 60)} minutes)"
        )
    return {
        "gaps": gaps(bench.results),
        "benchmark": "cms-stripe",
        "mode": "quick" if args.quick else "full",
        "sizes": size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "emulator": {"global_rps": 100, "endpoint_rps": 25, "latency_ms": 150, "jitter_ms": 50},
        "headline": headline(bench.results),
        "targets": {
            "creates_live_e2e_products_per_s": LIVE_TARGET_PPS,
            "creates_live_ceiling_products_per_s": LIVE_CEILING_PPS,
            "creates_test_ceiling_products_per_s": TEST_CEILING_RPS,
            "noop_rerun_e2e_s": NOOP_TARGET_S,
            "noop_partitions_e2e_s": {str(k): v for k, v in NOOP_PARTITIONS_TARGET_S.items()},
            "creates_live_pacing_429s": 0,
            "creates_test_products_per_s": TEST_TARGET_PPS,
            "noop_rerun_writes": 0,
            "plan_1m_rows_s": PLAN_TARGET_S,
            "plan_1m_rows_rss_mb": PLAN_TARGET_MB,
            "sensor_first_sync_runs": 1,
            "sensor_first_sync_vs_migrate": SENSOR_TARGET_RATIO,
            "old_tool_products_per_s": list(OLD_TOOL_PPS),
        },
        "scenarios": bench.results,
        "notes": notes,
        "elapsed_s": round(elapsed, 1),
        "error": error,
    }


def headline(results: dict[str, Any]) -> dict[str, Any] | None:
    """Our creates against the naive sequential baseline measured in the same run."""
    naive = results.get("naive_sequential")
    if not naive or not naive.get("products_per_s"):
        return None
    out: dict[str, Any] = {"naive_products_per_s": naive["products_per_s"]}
    for key in ("creates_live", "creates_live_e2e"):
        c = results.get(key)
        if c and not c.get("error") and c.get("products_per_s"):
            out[f"{key}_products_per_s"] = c["products_per_s"]
            out[f"{key}_vs_naive"] = round(c["products_per_s"] / naive["products_per_s"], 2)
    return out


def gaps(results: dict[str, Any]) -> list[str]:
    """The closing note: every target not reached, with the measured gap and what the figures say about why."""
    out: list[str] = []
    for key in ("creates_live", "creates_live_e2e", "creates_test"):
        c = results.get(key)
        if c and c.get("pacing_429s"):
            out.append(f"{key}: {c['pacing_429s']} 429s from our own pacing (target 0): {c['rate_limited']}")
        if c and c.get("products_created", 0) < c.get("products", 0):
            out.append(f"{key}: only {c['products_created']} of {c['products']} products created")
    e = results.get("creates_live_e2e")
    if e and not e.get("error") and e["products_per_s"] < LIVE_TARGET_PPS:
        ph = e.get("phases") or {}
        outside = e["wall_s"] - ph.get("write_phase_s", 0.0)
        text = (
            f"creates end to end: {e['products_per_s']:.1f} products/s vs ≥ {LIVE_TARGET_PPS:g} "
            f"({e['ratio_to_ceiling']:.2f} of the 50/s ceiling). "
        )
        if ph:
            text += (
                f"Stripe write phase {e['products_per_s_write_phase']:.1f}/s over {ph['write_phase_s']:.0f} s; "
                f"{outside:.0f} s of the {e['wall_s']:.0f} s run is outside it: start-up + CMS read + validation "
                f"{ph['until_first_stripe_request_s']:.1f} s, "
                f"Stripe state reads {ph['reads_before_first_write_s']:.1f} s, "
                "after the last write (write-back tail, reconciliation reads, Dagster) "
                f"{ph['after_last_write_s']:.1f} s. "
            )
        text += (
            "The write phase itself is capped by the limiter's pacing (0.97 x 25/s = 24 requests/s per "
            "endpoint → 48 products/s over lanes A and B)."
        )
        out.append(text)
    t = results.get("creates_test")
    if t and t["products_per_s"] < TEST_TARGET_PPS:
        out.append(
            f"creates in test mode: {t['products_per_s']:.1f} products/s vs ≥ {TEST_TARGET_PPS:g}: a create is "
            f"{t['calls_per_product']:.2f} requests, so 25 requests/s allow at most "
            f"{t['products_per_s_ceiling_at_measured_calls_per_product']:g} products/s (24/s paced); "
            f"requests/s {t['requests_per_s']:.1f} = {t['requests_ratio_to_ceiling']:.2f} of 25/s"
        )
    e2n = (results.get("creates_live_e2e") or {}).get("noop_rerun")
    if e2n and not e2n.get("meets_target"):
        out.append(
            f"no-op rerun end to end: {e2n['wall_s']:.1f} s (target ≤ {NOOP_TARGET_S:g} s), "
            f"{e2n['stripe_writes']} writes, {e2n['stripe_reads']} reads (≤ {e2n['reads_goal_max']})"
        )
    n = results.get("noop_rerun")
    if n and not n["meets_target"]:
        out.append(
            f"no-op rerun: {n['stripe_writes']} writes (target 0), {n['stripe_reads']} reads "
            f"(target ≤ {n['reads_goal_max']})"
        )
    np_ = results.get("noop_partitions") or {}
    for r in np_.get("runs", []):
        if r["meets_target"] is False:
            out.append(
                f"no-op migrate over {r['partitions']:,} daily partitions"
                + (
                    f" (ran {r['partitions_run']:,}: from the oldest row)"
                    if r.get("partitions_run") != r["partitions"]
                    else ""
                )
                + f" ({np_['rows']:,} rows): {r['wall_s']:.1f} s "
                f"(target ≤ {r['target_s']:g} s), {r['stripe_writes']} writes: Dagster records 4 planned and 4 "
                "materialization events per partition, and the IO manager writes one file per partition and asset"
            )
    p = results.get("plan_rows")
    if p and p["meets_target"] is False:
        out.append(
            f"validate + plan {p['rows']:,} rows: {p['validate_plan_s']:.1f} s (target ≤ {PLAN_TARGET_S:g} s), "
            f"peak RSS {p['peak_rss_mb']:,.0f} MB (target ≤ {PLAN_TARGET_MB:,.0f} MB), "
            f"{p['pages']:,} pages of {p['page_size']:,} rows"
        )
    return out
