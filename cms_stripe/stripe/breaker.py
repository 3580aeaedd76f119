"""The gateway's circuit breaker: consecutive failures across every call and thread open it.

Not a wrapper around the call (a breaker that holds a lock while the guarded call runs would
serialise every request): the gateway asks `allow()` before an attempt and reports how the attempt
went. Time comes from the gateway's clock, so tests drive the reset timeout without sleeping.

closed    attempts go through; `fail_max` consecutive failures open the circuit
open      attempts are refused until `reset_s` has passed since it opened
half-open one trial attempt was let through after the timeout; its success closes the circuit, its
          failure opens it again (a trial that never reports back is replaced after another `reset_s`)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        fail_max: int,
        reset_s: float,
        clock: Callable[[], float],
        on_open: Callable[[int], None] = lambda failures: None,
    ) -> None:
        if fail_max < 1:
            raise ValueError("fail_max must be >= 1")
        self.fail_max = fail_max
        self.reset_s = reset_s
        self._clock = clock
        self._on_open = on_open
        self._lock = threading.Lock()
        self._state = CLOSED
        self._since = 0.0  # when the circuit opened, or when the current trial was let through
        self.failures = 0  # consecutive failures, across calls
        self.opened_after = 0  # the consecutive failures that opened the circuit last

    @property
    def state(self) -> str:
        return self._state

    def allow(self) -> bool:
        """May an attempt go to Stripe now? After the timeout one attempt goes through as the trial."""
        with self._lock:
            if self._state == CLOSED:
                return True
            now = self._clock()
            if now - self._since < self.reset_s:
                return False
            self._state, self._since = HALF_OPEN, now
            return True

    def success(self) -> None:
        """Stripe answered (a definite answer, even a refusal, shows it is up)."""
        with self._lock:
            if self._state != OPEN:  # an attempt that started before the circuit opened proves little
                self._state = CLOSED
                self.failures = 0

    def failure(self) -> bool:
        """An attempt failed the way a Stripe outage does; True when the circuit is open now."""
        with self._lock:
            self.failures += 1
            if self._state == OPEN:
                return True
            if self._state == CLOSED and self.failures < self.fail_max:
                return False
            opened = self._open()
        self._on_open(opened)
        return True

    def open_if_failing(self, failures: int) -> bool:
        """Open the circuit when the last `failures` attempts (one call's every attempt) all failed:
        no call anywhere succeeded meanwhile, so Stripe is down, not this request, and the other
        workers need not each find that out alone. True when the circuit is open now."""
        with self._lock:
            if self._state == OPEN:
                return True
            if self.failures < failures:
                return False
            opened = self._open()
        self._on_open(opened)
        return True

    def _open(self) -> int:
        self._state, self._since = OPEN, self._clock()
        self.opened_after = self.failures
        return self.failures
