"""Emulator configuration (all of it changeable at runtime through `EmulatorServer.configure`)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (0..1) of injected faults, drawn from one seeded RNG so runs are repeatable.

    One uniform draw per eligible request decides at most one fault. `rate_429` applies to every
    /v1 request; the others apply to writes (POST, DELETE), and with `reads=True` the "before"
    faults (500, dropped connection) hit GETs as well.
    """

    rate_429: float = 0.0
    lock_timeout_429: float = 0.0
    error_500_before: float = 0.0
    error_500_after: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    seed: int = 0
    reads: bool = False

    def total(self) -> float:
        return (
            self.rate_429
            + self.lock_timeout_429
            + self.error_500_before
            + self.error_500_after
            + self.drop_before
            + self.drop_after
        )


@dataclass(frozen=True)
class EmulatorConfig:
    global_rps: float = 100.0
    endpoint_rps: float = 25.0
    # With a test key (sk_test_/rk_test_) the global limit drops to Stripe's sandbox 25/s.
    test_mode_limits: bool = False
    concurrency_limit: int | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    search_lag_s: float = 0.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    state_file: str | None = None
    enforce_rate_limits: bool = True
    # Stripe documents a separate 20 read requests per second for the Search API.
    search_rps: float = 20.0
    # The account `GET /v1/account` names. None: derived from the state file, so an emulator
    # restarted on the same state is the same account and one on other state is another.
    account_id: str | None = None

    @property
    def effective_account_id(self) -> str:
        if self.account_id:
            return self.account_id
        basis = self.state_file or "cms-stripe-emulator"
        return "acct_" + hashlib.sha256(basis.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TEST_MODE_GLOBAL_RPS = 25.0
