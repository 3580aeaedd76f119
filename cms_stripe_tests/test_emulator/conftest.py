"""Fixtures for the Stripe emulator: one server per test module, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from cms_stripe.emulator import EmulatorConfig, EmulatorServer

# Rule tests make many calls back to back; rate limits get their own tests with small limits.
BASE_CONFIG = EmulatorConfig(enforce_rate_limits=False)


class ManualClock:
    """The emulator's clock for rate windows and search lag: it moves only when a test advances it,
    so a burst is one instant and a window slides exactly when the test says, on any machine."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def emulator_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def emulator_server(emulator_clock: ManualClock) -> Iterator[EmulatorServer]:
    with EmulatorServer(BASE_CONFIG, clock=emulator_clock) as server:
        yield server


@pytest.fixture()
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, emptied and back on the base configuration."""
    emulator_server.configure(**{k: getattr(BASE_CONFIG, k) for k in BASE_CONFIG.__dataclass_fields__})
    emulator_server.reset()
    return emulator_server


@pytest.fixture()
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": emulator.url})
