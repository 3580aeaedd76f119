"""Helpers shared by the orchestrator and the scenario processes (no Dagster imported here)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cms_stripe.cms.demo import generate_catalog
from cms_stripe.core.catalog import STATUS_PUBLISHED, CmsProduct

# Keys for the local emulator only: they authenticate nothing anywhere else. The engine takes the
# rate-limit model (live 100/s or test 25/s) from the prefix.
LIVE_KEY = "sk_live_bench_cms_stripe_0000"
TEST_KEY = "sk_test_bench_cms_stripe_0000"

# Settings a developer may have exported that would change what is measured.
SCRUBBED_ENV_PREFIXES = ("STRIPE_", "MIGRATION_", "CMS_", "SUPABASE_", "DAGSTER_")

# The Stripe reasons that mean "you sent too fast" (as opposed to injected faults or object locks).
PACING_REASONS = ("global-rate", "endpoint-rate", "global-concurrency", "endpoint-concurrency")


def bench_catalog(n: int, *, seed: int, anchor: datetime, id_prefix: str, days: int = 90) -> list[CmsProduct]:
    """n valid, published, live rows of the demo catalog, updated over the `days` days before `anchor`:
    every one of them is a Stripe create."""
    extra = n // 20 + 10
    catalog = generate_catalog(n + extra, seed, anchor=anchor, id_prefix=id_prefix, days=days)
    rows = [
        dataclasses.replace(p, status=STATUS_PUBLISHED, deleted_at=None)
        for p in catalog.products
        if p.id not in catalog.invalid
    ]
    return rows[:n]


def changed_catalog(products: Sequence[CmsProduct], share: float = 0.01) -> tuple[list[CmsProduct], dict[str, str]]:
    """The same rows with `share` of them (at least 2) changed: alternately a field edit and a price change."""
    count = min(len(products), max(2, round(len(products) * share)))
    at = {int((k + 0.5) * len(products) / count) for k in range(count)} if count else set()
    out: list[CmsProduct] = []
    changed: dict[str, str] = {}
    for i, p in enumerate(products):
        if i in at:
            if len(changed) % 2 == 0:
                p = dataclasses.replace(p, title=f"{p.title} (edited)")
                changed[p.id] = "field"
            else:
                # +1 major unit keeps the amount valid in every currency (JPY integers, KWD's last digit 0).
                p = dataclasses.replace(p, price=(p.price or Decimal(0)) + 1)
                changed[p.id] = "price"
        out.append(p)
    return out, changed


def inspect_emulator(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/inspect", timeout=30) as resp:  # noqa: S310 - 127.0.0.1 only
        return json.load(resp)


def counter_delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    out = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in keys}
    return {k: v for k, v in sorted(out.items()) if v}


def traffic(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What the emulator saw between two inspections."""
    requests = counter_delta(after.get("requests", {}), before.get("requests", {}))
    limited = counter_delta(after.get("rate_limited", {}), before.get("rate_limited", {}))
    return {
        "requests": requests,
        "reads": sum(v for k, v in requests.items() if k.startswith("GET")),
        "writes": sum(v for k, v in requests.items() if not k.startswith("GET")),
        "rate_limited": limited,
        "pacing_429s": sum(v for k, v in limited.items() if k in PACING_REASONS),
        "status_codes": counter_delta(after.get("status_codes", {}), before.get("status_codes", {})),
        "products_created": after["objects"]["products"] - before["objects"]["products"],
        "prices_created": after["objects"]["prices"] - before["objects"]["prices"],
    }


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment minus any sync setting, plus the repository on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass
class ChildRun:
    returncode: int
    stdout: str
    stderr_tail: str
    wall_s: float
    peak_rss_mb: float
    timed_out: bool = False
    started: float = 0.0  # time.monotonic() at launch and after exit
    ended: float = 0.0

    def last_json(self) -> dict[str, Any]:
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise ValueError("no JSON line in the child's output")


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    timeout_s: float = 3600.0,
    stderr_path: str,
    echo_stderr: bool = False,
) -> ChildRun:
    """Run one process to the end; its own peak RSS comes from wait4 (not shared with other children)."""
    started = time.monotonic()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=None if echo_stderr else err, env=dict(env), cwd=cwd, text=True
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            out = proc.stdout.read()
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    ended = time.monotonic()
    wall = ended - started
    rss_kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    tail = ""
    if not echo_stderr:
        with open(stderr_path) as f:
            tail = f.read()[-4000:]
    return ChildRun(proc.returncode, out, tail, wall, round(rss_kb / 1024, 1), killed.is_set(), started, ended)


def phases(url: str, started: float, ended: float) -> dict[str, float]:
    """Where a process's wall time went, from the emulator's request log (same monotonic clock on one host):
    start → first Stripe request → first write → last write answered → process exit."""
    with urllib.request.urlopen(f"{url}/_emulator/requests?since=0", timeout=60) as resp:  # noqa: S310
        entries = [e for e in json.load(resp)["requests"] if started <= e["start"] <= ended]
    writes = [e for e in entries if e.get("method") == "POST"]
    if not writes:
        return {}
    first = min(e["start"] for e in entries)
    w0, w1 = min(e["start"] for e in writes), max(e["end"] for e in writes)
    return {
        "until_first_stripe_request_s": round(first - started, 3),
        "reads_before_first_write_s": round(w0 - first, 3),
        "write_phase_s": round(w1 - w0, 3),
        "after_last_write_s": round(ended - w1, 3),
    }
