"""Stripe's rate-limit model and the limiter that schedules every request against it.

Stripe enforces a global budget per account (100 req/s live, 25 req/s test) *and* a budget per
endpoint (method + path template, 25 req/s by default). A single RPS knob either wastes the global
budget (everything at 25) or trips endpoint limits (everything at 100 on one endpoint), so the
limiter tracks both and admits a request only when both allow it.

Scheduling is by reservation: a caller takes the earliest slot that keeps a minimum spacing of
1/rate on its endpoint and globally, then sleeps until that slot. Even spacing (no bursts) is the
most conservative shape for an account we must not get throttled on, and it makes the guarantee
easy to state: points at least 1/r apart can never put more than r into any 1-second window.
Endpoint slots are handed out in arrival order (FIFO, so no request starves); global slots fill the
earliest free gap, so a backlog on one endpoint never blocks a different endpoint that has room.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cms_stripe.core.settings import Settings, is_live_key, key_mode

LIVE_GLOBAL_RPS = 100.0
TEST_GLOBAL_RPS = 25.0
DEFAULT_ENDPOINT_RPS = 25.0

# "Is this key live?" has one answer, `cms_stripe.core.settings.is_live_key`, used here as everywhere.

_EPS = 1e-9

# Rate-limited reasons that say "this endpoint is too busy" (any other: the whole account is).
ENDPOINT_REASONS = frozenset({"endpoint-rate", "endpoint-concurrency", "resource-specific"})


@dataclass(frozen=True)
class LimitModel:
    """The request budget we schedule against: requests/second globally and per endpoint."""

    global_rps: float
    endpoint_rps: float
    max_concurrency: int | None = None
    live: bool = False

    def __post_init__(self) -> None:
        if not (self.global_rps > 0 and self.endpoint_rps > 0):
            raise ValueError("global_rps and endpoint_rps must be positive")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")

    @classmethod
    def for_key(cls, api_key: str, settings: Settings | None = None) -> LimitModel:
        """Stripe's published limits for the key's mode, capped (never raised) by the settings
        (STRIPE_MAX_RPS, STRIPE_ENDPOINT_RPS, MIGRATION_MAX_CONCURRENCY).

        A key with an unknown prefix gets the test-mode budget: being too slow is recoverable,
        a 429 storm on a live account is not.
        """
        live = is_live_key(api_key)
        # The budget follows the key's known mode; "live" for the guard (anything not clearly a test
        # key) must not raise the pace of a key we cannot place.
        global_rps = LIVE_GLOBAL_RPS if key_mode(api_key) == "live" else TEST_GLOBAL_RPS
        endpoint_rps = DEFAULT_ENDPOINT_RPS
        settings = settings or Settings()
        cap_global = settings.stripe_max_rps
        cap_endpoint = settings.stripe_endpoint_rps
        if cap_global is not None:
            global_rps = min(global_rps, cap_global)
        if cap_endpoint is not None:
            endpoint_rps = min(endpoint_rps, cap_endpoint)
        # One endpoint can never use more than the whole account's budget.
        endpoint_rps = min(endpoint_rps, global_rps)
        return cls(
            global_rps=global_rps,
            endpoint_rps=endpoint_rps,
            max_concurrency=settings.max_concurrency,
            live=live,
        )


def _spacing(rate: float) -> float:
    """Minimum gap between two requests so that no 1 s window ever holds more than `rate`.

    Points spaced s apart put ceil(1/s) into a 1 s window, so a fractional rate is rounded down
    (22.5/s -> 22 per window); the epsilon keeps float rounding from fitting one point too many.
    """
    whole = math.floor(rate) if rate >= 1.0 else rate
    return 1.0 / whole + _EPS


class _Budget:
    """Adaptive share (AIMD) of one rate: cut multiplicatively on a 429, regrow linearly with time."""

    __slots__ = ("_factor", "_last_cut", "_since")

    def __init__(self) -> None:
        self._factor = 1.0
        self._since = 0.0
        self._last_cut = -math.inf

    def factor(self, now: float, recovery_per_s: float) -> float:
        if self._factor >= 1.0:
            return 1.0
        return min(1.0, self._factor + recovery_per_s * max(0.0, now - self._since))

    def cut(self, now: float, decrease: float, floor: float, recovery_per_s: float, cooldown_s: float) -> bool:
        # Many in-flight requests see the same overload at once; one cut per cooldown (as TCP
        # does once per RTT) keeps a single burst of 429s from collapsing the rate to the floor.
        if now - self._last_cut < cooldown_s:
            return False
        current = self.factor(now, recovery_per_s)
        self._factor = max(floor, current * decrease)
        self._since = now
        self._last_cut = now
        return True


# Share of each published limit the limiter schedules against. After `_spacing` rounds down to whole
# requests per second, 0.97 gives 24/s on a 25/s endpoint or test-mode account and 97/s on the live
# 100/s global budget. Evenly spaced sends then tolerate this much extra delay of one request
# relative to the 25 (or 100) sent after it before Stripe's one-second window could count one too
# many: 25/24 - 1 = 42 ms on endpoints and in test mode, 100/97 - 1 = 31 ms globally (where live
# creates without lookup keys use at most 3 x 24 = 72/s). 0.9 (the earlier value) gave 22/s and
# 90/s: 4 products/s of the live 50/s ceiling and 2/s of test mode's 25/s. acquire() itself keeps the
# first half of the tolerance (a late thread takes a new slot); README "Performance" has the measured
# A/B, including the few 429s seen when the host was 3x oversubscribed.
DEFAULT_SAFETY = 0.97
# A request whose thread woke later than max_late() after its slot takes a new slot (up to this many
# times; then it goes, and a 429 would be retried and slow the limiter down as any other).
MAX_RESLOTS = 8
MIN_LATE_CHECK_S = 0.002


class RateLimiter:
    """Thread-safe scheduler enforcing the global and per-endpoint budgets of a LimitModel.

    `safety` scales both budgets below the published limits: the limiter spaces *send* times, but
    thread wake-up jitter and the network can bunch requests up on arrival at Stripe (DEFAULT_SAFETY
    says how much of that the default leaves room for).
    """

    def __init__(
        self,
        model: LimitModel,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        safety: float = DEFAULT_SAFETY,
        decrease: float = 0.5,
        floor: float = 0.1,
        recovery_per_s: float = 0.05,
        cooldown_s: float = 1.0,
        observer: Callable[[str, float], None] | None = None,
    ) -> None:
        if not 0 < safety <= 1:
            raise ValueError("safety must be in (0, 1]")
        if not 0 < decrease < 1 or not 0 < floor <= 1:
            raise ValueError("decrease must be in (0, 1) and floor in (0, 1]")
        self.model = model
        self._clock = clock
        self._sleep = sleep
        self._safety = safety
        self._decrease = decrease
        self._floor = floor
        self._recovery = recovery_per_s
        self._cooldown = cooldown_s
        self._lock = threading.Lock()
        # Sorted reservation times on the global budget (past ones pruned).
        self._global_slots: list[float] = []
        self._global_budget = _Budget()
        # Per endpoint: the earliest time its next request may go (FIFO reservations).
        self._endpoint_next: dict[str, float] = {}
        self._endpoint_budget: dict[str, _Budget] = {}
        self.penalties: dict[str, int] = {}
        # Slots given up because the thread woke too late to use them (see acquire).
        self.late_reslots = 0
        # Sees every reserved slot (endpoint, time) under the lock: lets tests check the schedule
        # itself rather than when threads happened to wake up.
        self._observer = observer

    # -- rates -----------------------------------------------------------------------------------

    @property
    def safety(self) -> float:
        return self._safety

    def global_rate(self, now: float | None = None) -> float:
        """Current global rate (req/s) after safety and any 429 penalty."""
        t = self._clock() if now is None else now
        return self.model.global_rps * self._safety * self._global_budget.factor(t, self._recovery)

    def endpoint_rate(self, endpoint: str, now: float | None = None) -> float:
        t = self._clock() if now is None else now
        budget = self._endpoint_budget.get(endpoint)
        factor = budget.factor(t, self._recovery) if budget else 1.0
        return min(self.model.endpoint_rps * self._safety * factor, self.global_rate(t))

    # -- scheduling ------------------------------------------------------------------------------

    def _earliest(self, endpoint: str, now: float) -> tuple[float, float]:
        """Earliest admissible time for `endpoint` at or after `now`, and its spacing (lock held)."""
        g_spacing = _spacing(self.global_rate(now))
        e_spacing = _spacing(self.endpoint_rate(endpoint, now))
        slots = self._global_slots
        # Drop reservations too old to constrain anything from now on.
        cut = bisect.bisect_left(slots, now - g_spacing)
        if cut:
            del slots[:cut]
        t = max(now, self._endpoint_next.get(endpoint, now))
        # First gap of width g_spacing on each side of t among the global reservations.
        i = bisect.bisect_left(slots, t - g_spacing)
        while i < len(slots):
            if slots[i] <= t - g_spacing:
                i += 1
                continue
            if slots[i] >= t + g_spacing:
                break
            t = slots[i] + g_spacing
            i += 1
        return t, e_spacing

    def _reserve(self, endpoint: str, t: float, e_spacing: float) -> None:
        bisect.insort(self._global_slots, t)
        self._endpoint_next[endpoint] = t + e_spacing
        if self._observer is not None:
            self._observer(endpoint, t)

    def wait_time(self, endpoint: str) -> float:
        """Seconds until a request on `endpoint` could be sent (0.0 if it could go now)."""
        with self._lock:
            now = self._clock()
            t, _ = self._earliest(endpoint, now)
        return max(0.0, t - now)

    def try_acquire(self, endpoint: str) -> bool:
        """Take a slot only if one is free right now."""
        with self._lock:
            now = self._clock()
            t, e_spacing = self._earliest(endpoint, now)
            if t > now:
                return False
            self._reserve(endpoint, t, e_spacing)
            return True

    def max_late(self, endpoint: str, now: float | None = None) -> float:
        """How late after its slot a request may leave and keep every 1 s window within the limits.

        Slots s apart put at most L (the published limit) into any window even when each request
        arrives up to L*s - 1 seconds after its slot (25 x 1/24 - 1 = 42 ms at 24/s on a 25/s
        endpoint); half of that is allowed here, the other half is left for the client's own work
        and the network between this check and Stripe.
        """
        t = self._clock() if now is None else now
        g = self.model.global_rps * _spacing(self.global_rate(t)) - 1.0
        e = self.model.endpoint_rps * _spacing(self.endpoint_rate(endpoint, t)) - 1.0
        return max(0.0, min(g, e)) / 2

    def acquire(self, endpoint: str) -> None:
        """Reserve the earliest slot allowed by both budgets and block until it comes.

        A thread that wakes too late for its slot (a busy machine: the GIL, the scheduler) does not
        send then, which could put one request too many into Stripe's window: it leaves the slot
        unused and reserves a new one. Below MIN_LATE_CHECK_S of margin (safety 1.0) there is
        nothing to protect and no check is made.
        """
        for attempt in range(MAX_RESLOTS + 1):
            with self._lock:
                now = self._clock()
                t, e_spacing = self._earliest(endpoint, now)
                self._reserve(endpoint, t, e_spacing)
                late_ok = self.max_late(endpoint, now)
            # Sleep outside the lock; loop because sleep() may return early (or be a test fake).
            while True:
                remaining = t - self._clock()
                if remaining <= 0:
                    break
                self._sleep(remaining)
            if late_ok < MIN_LATE_CHECK_S or attempt == MAX_RESLOTS or self._clock() - t <= late_ok:
                return
            with self._lock:
                self.late_reslots += 1

    def penalize(self, endpoint: str, reason: str) -> None:
        """Slow down after a rate-limit 429: cut the budget Stripe says we exceeded.

        An unknown reason cuts the global budget, the conservative choice.
        """
        with self._lock:
            now = self._clock()
            if reason in ENDPOINT_REASONS:
                budget = self._endpoint_budget.setdefault(endpoint, _Budget())
                key = endpoint
            else:
                budget = self._global_budget
                key = "global"
            if budget.cut(now, self._decrease, self._floor, self._recovery, self._cooldown):
                self.penalties[key] = self.penalties.get(key, 0) + 1
