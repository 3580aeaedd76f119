"""The emulator is never the bottleneck: it must serve well over 10x the 100/s global limit.

No time or rate is asserted (machines differ and CI shares cores): the figures are printed, see them
with `pytest -s`. On the 2-core development machine the raw figure was about 7,000-9,000 req/s.
"""

from __future__ import annotations

import threading
import time

import stripe

from cms_stripe.emulator.bench import emulator_process, run_load


def test_zero_latency_throughput_with_many_keep_alive_clients() -> None:
    with emulator_process("--no-rate-limits") as url:
        result = run_load(url, seconds=3.0, connections=64)
        print(
            f"\nemulator throughput (raw HTTP, 64 keep-alive connections): {result.rps:.0f} req/s "
            f"({result.requests} OK, {result.errors} errors)"
        )
        assert result.errors == 0
        assert result.requests > 0

        # Same server, driven by the real stripe-python client from 8 threads (client-bound figure).
        done = [0]
        lock = threading.Lock()
        deadline = time.monotonic() + 2.0

        def worker() -> None:
            client = stripe.StripeClient("sk_test_bench", base_addresses={"api": url})
            n = 0
            while time.monotonic() < deadline:
                client.v1.products.list(params={"limit": 1})
                n += 1
            with lock:
                done[0] += n

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"stripe-python client, 8 threads, same process as pytest: {done[0] / (time.monotonic() - t0):.0f} req/s")
    assert done[0] > 0
