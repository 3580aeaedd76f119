"""Scenario bodies, each run in its own process: `python -m cms_stripe_tests.benchmarks.scenarios NAME JSON`.

Each prints one JSON object as its last stdout line. Stripe traffic is counted by the orchestrator
from the emulator's own counters; what is reported here is what only the engine knows (timings,
outcomes, the gateway's view).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cms_stripe_tests.benchmarks.common import bench_catalog, changed_catalog
from cms_stripe_tests.benchmarks.rss import own_peak_rss_mb


def _rss_mb() -> float:
    return own_peak_rss_mb()


def _catalog(p: dict[str, Any]) -> list[Any]:
    return bench_catalog(p["n"], seed=p["seed"], anchor=datetime.fromisoformat(p["anchor"]), id_prefix=p["id_prefix"])


def _sync_once(products: list[Any], p: dict[str, Any]) -> dict[str, Any]:
    """Read Stripe state, plan, apply: the engine's part of a sync, without CMS or Dagster."""
    from cms_stripe.core.executor import apply_plan
    from cms_stripe.core.plan import build_plan
    from cms_stripe.core.state import read_state
    from cms_stripe.stripe.gateway import StripeGateway
    from cms_stripe.stripe.limits import LimitModel, RateLimiter

    kw: dict[str, Any] = {}
    if p.get("safety"):  # an A/B of the limiter's pacing (--safety); otherwise the engine's default
        kw["limiter"] = RateLimiter(LimitModel.for_key(p["key"]), safety=float(p["safety"]))
    gateway = StripeGateway.from_settings(p["key"], p["api_base"], allow_live=True, **kw)
    t0 = time.monotonic()
    state = read_state(gateway, products)
    t1 = time.monotonic()
    plan = build_plan(products, state)
    t2 = time.monotonic()
    result = apply_plan(plan, gateway)
    t3 = time.monotonic()
    failed = result.failed
    return {
        "rows": len(products),
        "plan": plan.counts(),
        "outcomes": result.counts(),
        "failed_examples": [f"{r.cms_id}: {r.error_class}: {r.error}" for r in failed[:5]],
        "critical": result.critical,
        "read_state_s": round(t1 - t0, 3),
        "plan_s": round(t2 - t1, 3),
        "apply_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "lanes": _lanes(result.results),
        "gateway": result.stats,
        "late_reslots": gateway.limiter.late_reslots,
        "limiter_safety": gateway.limiter.safety,
    }


def _lanes(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        if r.lane:
            out[r.lane] = out.get(r.lane, 0) + 1
    return out


def engine_creates(p: dict[str, Any]) -> dict[str, Any]:
    return _sync_once(_catalog(p), p)


def engine_rerun(p: dict[str, Any]) -> dict[str, Any]:
    return _sync_once(_catalog(p), p)


def engine_changed(p: dict[str, Any]) -> dict[str, Any]:
    products, changed = changed_catalog(_catalog(p), p.get("share", 0.01))
    out = _sync_once(products, p)
    out["changed"] = len(changed)
    out["changed_fields"] = sum(1 for v in changed.values() if v == "field")
    out["changed_prices"] = sum(1 for v in changed.values() if v == "price")
    return out


def plan_rows(p: dict[str, Any]) -> dict[str, Any]:
    """Validate + plan n demo rows against an empty Stripe (all creates): no network, no latency.

    The path a sync takes through the core (`core.stream.plan_pages`): the rows come from a generator
    one page at a time (as the CMS adapters page: CMS_PAGE_SIZE / MIGRATION_BATCH_SIZE rows), each
    page is validated, then planned, then handed on and dropped, so the peak RSS is that of the
    stream, not of a list of every row. `page_size` 0: every row in one page (the old, unbounded path).
    """
    from cms_stripe.cms.demo import iter_catalog
    from cms_stripe.core.plan import PlanStream
    from cms_stripe.core.settings import Settings
    from cms_stripe.core.stream import ValidationStream, pages, plan_pages

    asked = p.get("page_size")
    size = Settings.from_env().cms_page_size if asked is None else (int(asked) or max(1, p["n"]))
    rss_start = _rss_mb()
    generate_s = generate_cpu_s = 0.0

    def source() -> Any:
        """The catalog's pages, timing what producing them costs (the CMS read, here a generator)."""
        nonlocal generate_s, generate_cpu_s
        it = pages(iter_catalog(p["n"], p["seed"], anchor=datetime.fromisoformat(p["anchor"])), size)
        while True:
            t, c = time.monotonic(), time.process_time()
            page = next(it, None)
            generate_s += time.monotonic() - t
            generate_cpu_s += time.process_time() - c
            if page is None:
                return
            yield page

    validation, planner = ValidationStream(), PlanStream()
    writes = page_count = 0
    cpu0 = time.process_time()
    t0 = time.monotonic()
    for done in plan_pages(source(), validation=validation, planner=planner):
        # What the apply would take from this page; the page is dropped after it.
        writes += sum(1 for op in done.plan.operations if op.is_write)
        page_count += 1
    total = time.monotonic() - t0
    # CPU seconds too: on a shared 2-core host the wall time also measures the neighbours.
    cpu = time.process_time() - cpu0
    counts = planner.counts()
    counts["quarantined"] += validation.quarantined
    return {
        "rows": validation.rows,
        "page_size": size,
        "pages": page_count,
        "generate_s": round(generate_s, 3),
        "validate_plan_s": round(total - generate_s, 3),
        "total_s": round(total, 3),
        "cpu_s": round(cpu, 3),
        "validate_plan_cpu_s": round(cpu - generate_cpu_s, 3),
        "invalid_rows": validation.quarantined,
        "writes": writes,
        "plan": counts,
        "rss_start_mb": rss_start,
        "rss_peak_mb": _rss_mb(),
    }


def emulator_capacity(p: dict[str, Any]) -> dict[str, Any]:
    """The emulator's own benchmark: a lean asyncio client against a separate emulator process."""
    from cms_stripe.emulator.bench import emulator_process, run_load

    with emulator_process("--no-rate-limits") as url:
        result = run_load(url, p.get("seconds", 3.0), p.get("connections", 32))
    return {
        "requests": result.requests,
        "errors": result.errors,
        "seconds": round(result.seconds, 3),
        "requests_per_s": round(result.rps, 1),
        "connections": p.get("connections", 32),
    }


def sync_e2e(p: dict[str, Any]) -> dict[str, Any]:
    """Fallback end to end without Dagster: SQL catalog → run_sync (skip-existing, plan, apply, write-back)."""
    import tempfile
    import uuid

    from cms_stripe.cms.sql import SqlCatalogSource
    from cms_stripe.core.sync import SyncOptions, run_sync
    from cms_stripe.stripe.gateway import StripeGateway

    t0 = time.monotonic()
    source = SqlCatalogSource(p["database_url"])
    try:
        products = list(source.read_all())
        gateway = StripeGateway.from_settings(p["key"], p["api_base"], allow_live=True)
        with tempfile.TemporaryDirectory() as reports:
            outcome = run_sync(
                products,
                gateway,
                source,
                SyncOptions(run_id=uuid.uuid4().hex, label="bench", dry_run=False, reports_dir=reports),
                log=lambda _msg: None,
            )
    finally:
        source.close()
    return {
        "rows": len(products),
        "outcomes": outcome.counts,
        "written_back": outcome.written_back,
        "skipped_existing": outcome.skipped_existing,
        "total_s": round(time.monotonic() - t0, 3),
    }


def sensor_first_sync(p: dict[str, Any]) -> dict[str, Any]:
    """What the daemon does on the change sensor's first tick over a catalog never synced: evaluate the
    sensor of the code location, then run every run it requests (on the instance in DAGSTER_HOME, the
    CMS and Stripe from the environment, as `cms-stripe migrate` reads them)."""
    import dagster as dg

    from cms_stripe.cli import DEFAULT_DAGSTER_HOME, _embedded_home
    from cms_stripe.constants import RANGE_END_TAG, RANGE_START_TAG
    from cms_stripe.definitions import defs
    from cms_stripe.jobs import SYNC_JOB

    # The instance a `cms-stripe migrate` in this folder would use (the embedded default).
    if "DAGSTER_HOME" not in os.environ:
        _embedded_home(Path(DEFAULT_DAGSTER_HOME).resolve())
    instance = dg.DagsterInstance.get()
    sensor = defs.resolve_sensor_def("cms_change_sensor")
    t0 = time.monotonic()
    # The daemon hands the sensor the code location's resources; a context manager sets them up and down.
    resources = {"catalog": (defs.resources or {})["catalog"]}
    with dg.build_sensor_context(instance=instance, cursor=None, resources=resources) as ctx:
        result = sensor(ctx)
    t1 = time.monotonic()
    requests = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
    job = defs.resolve_job_def(SYNC_JOB)
    statuses = []
    for request in requests:
        tags = {**request.tags, "dagster/sensor_name": sensor.name}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        run = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        statuses.append("success" if run.success else "failure")
    return {
        "runs_requested": len(requests),
        "run_statuses": statuses,
        "ranges": [[r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)] for r in requests],
        "sensor_tick_s": round(t1 - t0, 3),
        "runs_s": round(time.monotonic() - t1, 3),
    }


def naive_sequential(p: dict[str, Any]) -> dict[str, Any]:
    """The baseline: what a straightforward script does — stripe-python, one create after another,
    no pacing model, no concurrency (one request per product, the same params the engine sends)."""
    import stripe

    from cms_stripe.core.mapping import target_for

    products = _catalog(p)
    client = stripe.StripeClient(p["key"], base_addresses={"api": p["api_base"]}, max_network_retries=0)
    t0 = time.monotonic()
    created = failed = 0
    for row in products:
        params = target_for(row, lookup_keys=False).create_product_params()
        try:
            client.v1.products.create(params=params)  # type: ignore[arg-type]
            created += 1
        except stripe.StripeError:
            failed += 1
    elapsed = time.monotonic() - t0
    return {"rows": len(products), "created": created, "failed": failed, "apply_s": round(elapsed, 3)}


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "naive_sequential": naive_sequential,
    "engine_creates": engine_creates,
    "engine_rerun": engine_rerun,
    "engine_changed": engine_changed,
    "plan_rows": plan_rows,
    "emulator_capacity": emulator_capacity,
    "sync_e2e": sync_e2e,
    "sensor_first_sync": sensor_first_sync,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    name, params = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    out = SCENARIOS[name](params)
    out["child_rss_mb"] = _rss_mb()
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
