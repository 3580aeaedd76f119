"""`python -m cms_stripe.emulator --port 0 ...`: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .config import EmulatorConfig, FaultConfig
from .server import EmulatorServer


def build_parser() -> argparse.ArgumentParser:
    d = EmulatorConfig()
    f = FaultConfig()
    ap = argparse.ArgumentParser(prog="python -m cms_stripe.emulator", description="Local Stripe API emulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    ap.add_argument("--global-rps", type=float, default=d.global_rps)
    ap.add_argument("--endpoint-rps", type=float, default=d.endpoint_rps)
    ap.add_argument("--search-rps", type=float, default=d.search_rps)
    ap.add_argument("--test-mode-limits", action="store_true", help="25/s global limit for test keys")
    ap.add_argument("--no-rate-limits", action="store_true", help="do not enforce rate limits")
    ap.add_argument("--concurrency-limit", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=d.latency_ms)
    ap.add_argument("--jitter-ms", type=float, default=d.jitter_ms)
    ap.add_argument("--search-lag-s", type=float, default=d.search_lag_s)
    ap.add_argument("--state-file", default=None)
    ap.add_argument("--fault-rate-429", type=float, default=f.rate_429)
    ap.add_argument("--fault-lock-timeout", type=float, default=f.lock_timeout_429)
    ap.add_argument("--fault-500-before", type=float, default=f.error_500_before)
    ap.add_argument("--fault-500-after", type=float, default=f.error_500_after)
    ap.add_argument("--fault-drop-before", type=float, default=f.drop_before)
    ap.add_argument("--fault-drop-after", type=float, default=f.drop_after)
    ap.add_argument("--fault-reads", action="store_true", help="500/drop 'before' faults also hit GETs")
    ap.add_argument("--fault-seed", type=int, default=f.seed)
    return ap


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        global_rps=args.global_rps,
        endpoint_rps=args.endpoint_rps,
        search_rps=args.search_rps,
        test_mode_limits=args.test_mode_limits,
        concurrency_limit=args.concurrency_limit,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        search_lag_s=args.search_lag_s,
        state_file=args.state_file,
        enforce_rate_limits=not args.no_rate_limits,
        faults=FaultConfig(
            rate_429=args.fault_rate_429,
            lock_timeout_429=args.fault_lock_timeout,
            error_500_before=args.fault_500_before,
            error_500_after=args.fault_500_after,
            drop_before=args.fault_drop_before,
            drop_after=args.fault_drop_after,
            reads=args.fault_reads,
            seed=args.fault_seed,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = EmulatorServer(config_from_args(args), port=args.port, host=args.host).start()
    print(f"cms-stripe emulator listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
