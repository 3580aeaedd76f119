"""A process applying a plan is SIGKILLed at every request boundary (including between the reprice
steps); re-reading, re-planning and re-applying must leave Stripe equal to the CMS with no duplicates
and no old price left live — with price lookup keys off (a half-done reprice's new price is found by
listing the product's prices) and on (found by its lookup key).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.expected import assert_stripe_matches
from cms_stripe_tests.test_core.conftest import LOOKUP_KEYS, make_gateway, sync
from cms_stripe_tests.test_core.crash_driver import catalog

DRIVER = "cms_stripe_tests.test_core.crash_driver"


def run_driver(url: str, emu: EmulatorServer, kill_after: int | None, lookup_keys: bool) -> tuple[int, int]:
    """Run the driver; SIGKILL it once `kill_after` more requests reached Stripe. Returns (rc, requests seen)."""
    base = emu.inspect()["requests_total"]
    proc = subprocess.Popen(
        [sys.executable, "-m", DRIVER, url, "1", "1" if lookup_keys else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if kill_after is not None and emu.inspect()["requests_total"] - base >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, emu.inspect()["requests_total"] - base


@pytest.fixture(scope="module")
def crash_emulator():
    # Latency makes each request last long enough for the watcher to kill between two of them.
    with EmulatorServer(EmulatorConfig(latency_ms=40, jitter_ms=0)) as emu:
        yield emu


def prepare(emu: EmulatorServer, lookup_keys: bool) -> None:
    emu.reset()
    gw = make_gateway(emu.url)
    _plan, result = sync(gw, catalog(0), lookup_keys=lookup_keys)
    assert all(r.ok for r in result.results)


@LOOKUP_KEYS
def test_sigkill_at_every_step_then_replan_converges(crash_emulator: EmulatorServer, lookup_keys: bool) -> None:
    emu = crash_emulator
    prepare(emu, lookup_keys)
    seq_before = emu.requests_log()[-1]["seq"]
    rc, total = run_driver(emu.url, emu, None, lookup_keys)
    assert rc == 0 and total >= 12, total
    steps = [f"{e['method']} {e['route']}" for e in emu.requests_log(seq_before)]
    # State read: the product list, then the prices of the two rows whose default price is wrong:
    # by lookup key (one call for both) or the live prices of each product.
    reads = ["GET /v1/products", "GET /v1/prices"] if lookup_keys else ["GET /v1/products"] + ["GET /v1/prices"] * 2
    assert steps[: len(reads)] == reads, steps
    # The first product's reprice, step by step: every boundary below is a kill point.
    assert steps[len(reads) : len(reads) + 5] == [
        "POST /v1/prices",  # 1. new price (cms_id + fingerprint metadata; lookup key when on)
        "POST /v1/products/:id",  # 2. default_price switch + cms_prev_price marker
        "GET /v1/prices",  # orphans of earlier interrupted reprices
        "POST /v1/prices/:id",  # 3. archive the old price
        "POST /v1/products/:id",  # 4. clear the marker
    ], steps
    # The two creates close the run: one request each without lookup keys, two with.
    creates = ["POST /v1/products", "POST /v1/prices/:id"] * 2 if lookup_keys else ["POST /v1/products"] * 2
    assert steps[-len(creates) :] == creates, steps
    assert_stripe_matches(emu.objects(), catalog(1), lookup_keys=lookup_keys)

    kill_points = list(range(1, total))
    assert len(kill_points) >= 10
    seen: list[tuple[int, int]] = []
    for k in kill_points:
        prepare(emu, lookup_keys)
        rc, _requests = run_driver(emu.url, emu, k, lookup_keys)
        seen.append((k, rc))
        gw = make_gateway(emu.url)
        _plan, result = sync(gw, catalog(1), lookup_keys=lookup_keys)
        assert all(r.ok for r in result.results), (k, [r.error for r in result.results if not r.ok])
        assert_stripe_matches(emu.objects(), catalog(1), lookup_keys=lookup_keys)
        assert sync(gw, catalog(1), lookup_keys=lookup_keys)[0].writes == [], f"not converged after kill at {k}"
    killed = [k for k, rc in seen if rc == -signal.SIGKILL]
    print(f"\nkilled at {len(killed)} points: {killed} (of {total} requests)")
    assert len(killed) >= 10
