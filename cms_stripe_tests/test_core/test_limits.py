"""LimitModel and RateLimiter: the schedule never exceeds Stripe's global or per-endpoint budget."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cms_stripe.core.ports import ENDPOINTS, EP_CREATE_PRICE, EP_CREATE_PRODUCT, EP_UPDATE_PRODUCT
from cms_stripe.core.settings import Settings
from cms_stripe.stripe.limits import LimitModel, RateLimiter


class FakeClock:
    """A clock that only moves when slept on (or advanced) — the limiter's only notion of time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ThreadsClock:
    """Virtual time shared by threads: it stands still while any of them runs and jumps to the earliest
    wake-up once every one sleeps (or is done). No wall-clock time passes and no scheduler delay can
    leak in: lateness exists only where a test puts it, so the outcome is the limiter's arithmetic."""

    def __init__(self, threads: int, start: float = 1000.0) -> None:
        self.now = start
        self._cond = threading.Condition()
        self._running = threads
        self._wake_at: dict[int, float] = {}

    def __call__(self) -> float:
        with self._cond:
            return self.now

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        with self._cond:
            self._wake_at[me] = self.now + max(seconds, 0.0)
            self._running -= 1
            self._advance()
            while self.now < self._wake_at[me]:
                self._cond.wait()
            del self._wake_at[me]
            self._running += 1

    def done(self) -> None:
        """The calling thread will not sleep again."""
        with self._cond:
            self._running -= 1
            self._advance()

    def _advance(self) -> None:
        if self._running == 0 and self._wake_at:
            self.now = max(self.now, min(self._wake_at.values()))
            self._cond.notify_all()


def run_threads(clock: ThreadsClock, work: Callable[[int], None], n: int) -> None:
    def body(i: int) -> None:
        try:
            work(i)
        finally:
            clock.done()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """Most events in any half-open window (x - window, x] — the way Stripe's sliding window counts."""
    ts = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- LimitModel.for_key -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "live", "global_rps"),
    [
        ("sk_live_abc", True, 100.0),
        ("rk_live_abc", True, 100.0),
        ("sk_test_abc", False, 25.0),
        ("rk_test_abc", False, 25.0),
        (" sk_live_abc\n", True, 100.0),  # a pasted key is trimmed
        # Not clearly a test key: live for the guard, but paced with the cautious test budget.
        ("pk_live_abc", True, 25.0),
        ("sk_test", True, 25.0),
        ("", True, 25.0),
    ],
)
def test_for_key_mode_from_prefix(key: str, live: bool, global_rps: float) -> None:
    model = LimitModel.for_key(key)
    assert model.live is live
    assert model.global_rps == global_rps
    assert model.endpoint_rps == 25.0
    assert model.max_concurrency is None


def test_for_key_env_caps_lower_but_never_raise() -> None:
    env = {"STRIPE_MAX_RPS": "40", "STRIPE_ENDPOINT_RPS": "10", "MIGRATION_MAX_CONCURRENCY": "6"}
    model = LimitModel.for_key("sk_live_x", Settings.from_env(env))
    assert (model.global_rps, model.endpoint_rps, model.max_concurrency, model.live) == (40.0, 10.0, 6, True)

    raised = LimitModel.for_key("sk_test_x", Settings.from_env({"STRIPE_MAX_RPS": "500", "STRIPE_ENDPOINT_RPS": "90"}))
    assert (raised.global_rps, raised.endpoint_rps) == (25.0, 25.0)


def test_for_key_endpoint_budget_never_above_global() -> None:
    model = LimitModel.for_key("sk_live_x", Settings.from_env({"STRIPE_MAX_RPS": "8"}))
    assert (model.global_rps, model.endpoint_rps) == (8.0, 8.0)


def test_for_key_blank_env_values_are_ignored() -> None:
    model = LimitModel.for_key("sk_live_x", Settings.from_env({"STRIPE_MAX_RPS": " ", "MIGRATION_MAX_CONCURRENCY": ""}))
    assert (model.global_rps, model.max_concurrency) == (100.0, None)


@pytest.mark.parametrize(
    "env",
    [
        {"STRIPE_MAX_RPS": "fast"},
        {"STRIPE_MAX_RPS": "0"},
        {"STRIPE_ENDPOINT_RPS": "-3"},
        {"STRIPE_MAX_RPS": "nan"},
        {"MIGRATION_MAX_CONCURRENCY": "2.5"},
        {"MIGRATION_MAX_CONCURRENCY": "0"},
    ],
)
def test_for_key_rejects_bad_env(env: dict[str, str]) -> None:
    name = next(iter(env))
    with pytest.raises(ValueError, match=name):
        LimitModel.for_key("sk_live_x", Settings.from_env(env))


def test_model_validates_itself() -> None:
    with pytest.raises(ValueError):
        LimitModel(global_rps=0, endpoint_rps=25)
    with pytest.raises(ValueError):
        LimitModel(global_rps=100, endpoint_rps=25, max_concurrency=0)


# -- RateLimiter --------------------------------------------------------------------------------------


def test_single_endpoint_is_paced_at_its_budget() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0)
    times = []
    for _ in range(100):
        limiter.acquire(EP_CREATE_PRODUCT)
        times.append(clock())
    assert max_in_any_window(times) == 25
    # 100 requests at 25/s take ~4 s, not less (and not much more).
    assert 3.9 < times[-1] - times[0] < 4.0


def test_global_budget_binds_across_endpoints() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0)
    times: list[float] = []
    per_endpoint: dict[str, list[float]] = {ep: [] for ep in ENDPOINTS}
    for i in range(900):
        ep = ENDPOINTS[i % len(ENDPOINTS)]
        limiter.acquire(ep)
        times.append(clock())
        per_endpoint[ep].append(clock())
    assert max_in_any_window(times) == 100
    assert all(max_in_any_window(ts) <= 25 for ts in per_endpoint.values())


def test_safety_margin_keeps_below_the_published_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep)  # default safety 0.97
    times = []
    per_endpoint: dict[str, list[float]] = {}
    for i in range(500):
        ep = ENDPOINTS[i % 5]
        limiter.acquire(ep)
        times.append(clock())
        per_endpoint.setdefault(ep, []).append(clock())
    # 5 endpoints x 24/s would be 120/s: the global budget binds, at 97 (0.97 x 100), never more.
    assert max_in_any_window(times) == 97
    assert all(max_in_any_window(ts) <= 24 for ts in per_endpoint.values())
    one: list[float] = []
    for _ in range(200):
        limiter.acquire(EP_CREATE_PRODUCT)
        one.append(clock())
    assert max_in_any_window(one) == 24  # one endpoint alone: 0.97 x 25 = 24.25 → 24 a second


def _emulator_admits_all(arrivals: list[float], limit: int) -> bool:
    """Replays arrivals through the emulator's own sliding-window admission (as Stripe counts)."""
    from cms_stripe.emulator.stats import Stats

    stats = Stats()
    return all(stats.admit("POST /v1/products", t, limit, float("inf")) is None for t in sorted(arrivals))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.0415), min_size=120, max_size=120))
def test_default_pacing_tolerates_41ms_of_arrival_jitter(delays: list[float]) -> None:
    """Sends at the default pacing (24/s against a 25/s limit), each delayed on the way by up to 41.5 ms
    independently: Stripe's one-second window still never counts more than 25."""
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(25, 25), clock=clock, sleep=clock.sleep)
    sends = []
    for _ in delays:
        limiter.acquire(EP_CREATE_PRODUCT)
        sends.append(clock())
    arrivals = [t + d for t, d in zip(sends, delays, strict=True)]
    assert max_in_any_window(arrivals) <= 25
    assert _emulator_admits_all(arrivals, 25)


def test_more_jitter_than_the_margin_can_trip_the_window() -> None:
    """The tolerance is real, not infinite: two requests in a row held back 45 ms each, while the ones
    after them are not, put 26 into one window."""
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(25, 25), clock=clock, sleep=clock.sleep)
    sends = []
    for _ in range(60):
        limiter.acquire(EP_CREATE_PRODUCT)
        sends.append(clock())
    arrivals = [t + (0.045 if i in (10, 11) else 0.0) for i, t in enumerate(sends)]
    assert max_in_any_window(arrivals) == 26
    assert not _emulator_admits_all(arrivals, 25)


def test_wait_time_and_try_acquire() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0)
    assert limiter.wait_time(EP_CREATE_PRODUCT) == 0.0
    assert limiter.try_acquire(EP_CREATE_PRODUCT)
    # Same endpoint: 1/25 s; another endpoint: only the global 1/100 s spacing.
    assert limiter.wait_time(EP_CREATE_PRODUCT) == pytest.approx(0.04)
    assert limiter.wait_time(EP_CREATE_PRICE) == pytest.approx(0.01)
    assert not limiter.try_acquire(EP_CREATE_PRODUCT)
    assert clock.slept == []  # try_acquire and wait_time never block
    clock.advance(limiter.wait_time(EP_CREATE_PRICE))
    assert limiter.try_acquire(EP_CREATE_PRICE)
    clock.advance(limiter.wait_time(EP_CREATE_PRODUCT))
    assert limiter.wait_time(EP_CREATE_PRODUCT) == 0.0
    assert limiter.try_acquire(EP_CREATE_PRODUCT)


def test_backlog_on_one_endpoint_does_not_block_another() -> None:
    """Eight workers queued on one endpoint must not hold back a request to a different endpoint."""
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0)
    start = clock()
    for _ in range(8):  # as if 8 threads reserved at the same instant: rewind after each wait
        limiter.acquire(EP_CREATE_PRODUCT)
        clock.now = start
    assert limiter.wait_time(EP_CREATE_PRODUCT) == pytest.approx(8 * 0.04)
    # The other endpoint slots into the first free global gap, not behind the queue.
    assert limiter.wait_time(EP_CREATE_PRICE) == pytest.approx(0.01)


def test_endpoint_slots_are_first_come_first_served() -> None:
    slots: list[tuple[str, float]] = []
    clock = FakeClock()
    limiter = RateLimiter(
        LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0, observer=lambda e, t: slots.append((e, t))
    )
    start = clock()
    for _ in range(5):
        limiter.acquire(EP_UPDATE_PRODUCT)
        clock.now = start
    times = [t for _, t in slots]
    assert times == sorted(times)  # each later caller got a later slot: nobody is overtaken


def test_penalize_cuts_the_named_budget_and_recovers() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0, recovery_per_s=0.1)
    limiter.penalize(EP_CREATE_PRODUCT, "endpoint-rate")
    assert limiter.endpoint_rate(EP_CREATE_PRODUCT) == pytest.approx(12.5)
    assert limiter.endpoint_rate(EP_CREATE_PRICE) == pytest.approx(25)
    assert limiter.global_rate() == pytest.approx(100)
    # A burst of 429s from in-flight requests is one signal, not many.
    limiter.penalize(EP_CREATE_PRODUCT, "endpoint-rate")
    assert limiter.endpoint_rate(EP_CREATE_PRODUCT) == pytest.approx(12.5)
    limiter.penalize(EP_CREATE_PRICE, "global-rate")
    assert limiter.global_rate() == pytest.approx(50)
    assert limiter.penalties == {EP_CREATE_PRODUCT: 1, "global": 1}
    clock.advance(2.0)
    assert limiter.endpoint_rate(EP_CREATE_PRODUCT) == pytest.approx(25 * 0.7)
    clock.advance(10.0)
    assert limiter.endpoint_rate(EP_CREATE_PRODUCT) == pytest.approx(25)
    assert limiter.global_rate() == pytest.approx(100)


def test_penalty_floor_and_unknown_reason() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0, floor=0.1)
    for _ in range(20):
        limiter.penalize(EP_CREATE_PRODUCT, "who-knows")  # unknown reason: cut the global budget
        clock.advance(1.0)
    assert limiter.global_rate(clock() - 1.0) == pytest.approx(10.0, rel=0.06)
    assert limiter.endpoint_rate(EP_CREATE_PRODUCT) <= limiter.global_rate()


def test_penalized_endpoint_is_paced_slower() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LimitModel(100, 25), clock=clock, sleep=clock.sleep, safety=1.0, recovery_per_s=0.0)
    limiter.penalize(EP_CREATE_PRICE, "endpoint-concurrency")
    times = []
    for _ in range(40):
        limiter.acquire(EP_CREATE_PRICE)
        times.append(clock())
    assert max_in_any_window(times) == 12  # 12.5/s, whole requests per window


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "try", "penalize", "wait"]),
        st.integers(min_value=0, max_value=len(ENDPOINTS) - 1),
        st.floats(min_value=0.0, max_value=0.3, allow_nan=False),
        st.sampled_from(["global-rate", "endpoint-rate", "resource-specific", "lock_timeout"]),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, limits=st.sampled_from([(100.0, 25.0), (25.0, 25.0), (10.0, 3.0), (7.5, 2.5)]))
def test_property_never_exceeds_global_or_endpoint_budget(
    ops: list[tuple[str, int, float, str]], limits: tuple[float, float]
) -> None:
    """Whatever the mix of endpoints, gaps and 429 penalties: no 1 s window holds more than allowed."""
    clock = FakeClock()
    g, e = limits
    limiter = RateLimiter(LimitModel(g, e), clock=clock, sleep=clock.sleep, safety=1.0)
    admitted: list[tuple[str, float]] = []
    for op, idx, gap, reason in ops:
        ep = ENDPOINTS[idx]
        clock.advance(gap)
        if op == "acquire":
            before = clock()
            limiter.acquire(ep)
            assert clock() >= before
            admitted.append((ep, clock()))
        elif op == "try":
            if limiter.try_acquire(ep):
                admitted.append((ep, clock()))
        elif op == "wait":
            w = limiter.wait_time(ep)
            assert w >= 0
            clock.advance(w)
            assert limiter.try_acquire(ep)  # wait_time told the truth
            admitted.append((ep, clock()))
        else:
            limiter.penalize(ep, reason)
    assert max_in_any_window([t for _, t in admitted]) <= g
    for ep in ENDPOINTS:
        assert max_in_any_window([t for name, t in admitted if name == ep]) <= e


def test_threads_share_one_schedule() -> None:
    """Eight threads reserving at once: the one shared schedule respects both budgets."""
    clock = ThreadsClock(threads=8)
    slots: list[tuple[str, float]] = []
    limiter = RateLimiter(
        LimitModel(200, 60), clock=clock, sleep=clock.sleep, safety=1.0, observer=lambda e, t: slots.append((e, t))
    )
    endpoints = ENDPOINTS[:4]
    returned: list[float] = []
    started = clock()

    def worker(i: int) -> None:
        for _ in range(15):
            limiter.acquire(endpoints[i % 4])
            returned.append(clock())

    run_threads(clock, worker, 8)
    assert len(slots) == 120 and len(returned) == 120
    assert max_in_any_window([t for _, t in slots]) <= 200
    for ep in endpoints:
        assert max_in_any_window([t for name, t in slots if name == ep]) <= 60
    # Every acquire returned only once its slot had come: the last return is at the last slot.
    assert max(returned) == max(t for _, t in slots) > started


class OversleepingClock(FakeClock):
    """A busy machine: each sleep returns `extra` seconds late (taken in turn from a list)."""

    def __init__(self, extra: list[float]) -> None:
        super().__init__()
        self.extra = extra
        self.i = 0

    def sleep(self, seconds: float) -> None:
        late = self.extra[self.i % len(self.extra)] if self.extra else 0.0
        self.i += 1
        super().sleep(seconds + late)


def test_a_late_wake_up_gives_up_its_slot() -> None:
    clock = OversleepingClock([0.030, 0.0])
    slots: list[float] = []
    limiter = RateLimiter(LimitModel(25, 25), clock=clock, sleep=clock.sleep, observer=lambda e, t: slots.append(t))
    assert limiter.max_late(EP_CREATE_PRODUCT) == pytest.approx((25 / 24 - 1) / 2, abs=1e-6)  # ~20.8 ms
    limiter.acquire(EP_CREATE_PRODUCT)  # slot now, no sleep
    limiter.acquire(EP_CREATE_PRODUCT)  # sleeps to 1/24 s, wakes 30 ms late: takes the next free slot
    assert limiter.late_reslots == 1
    assert len(slots) == 3 and clock() == pytest.approx(slots[2])
    assert slots[2] - slots[1] == pytest.approx(1 / 24, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_threads_that_wake_late_never_overfill_a_window(seed: int) -> None:
    """Eight threads on a busy machine (a third of the wake-ups 30-120 ms late): the requests that go
    are never more than 25 in Stripe's one-second window, because late ones re-queue. Without the
    check, late threads send together with the punctual ones after them."""
    import random

    rng = random.Random(seed)
    clock = ThreadsClock(threads=8)

    def busy_sleep(seconds: float) -> None:
        late = rng.uniform(0.03, 0.12) if rng.random() < 0.33 else 0.0
        clock.sleep(seconds + late)

    limiter = RateLimiter(LimitModel(25, 25), clock=clock, sleep=busy_sleep)
    sends: list[float] = []

    def worker(_i: int) -> None:
        for _ in range(12):
            limiter.acquire(EP_CREATE_PRODUCT)
            sends.append(clock())

    run_threads(clock, worker, 8)
    assert len(sends) == 96
    assert limiter.late_reslots > 0
    assert _emulator_admits_all(sends, 25), max_in_any_window(sends)


def test_no_late_check_without_margin() -> None:
    """At safety 1.0 there is no margin to protect: a late thread sends rather than re-queueing."""
    clock = OversleepingClock([0.5])
    limiter = RateLimiter(LimitModel(25, 25), clock=clock, sleep=clock.sleep, safety=1.0)
    limiter.acquire(EP_CREATE_PRODUCT)
    limiter.acquire(EP_CREATE_PRODUCT)
    assert limiter.late_reslots == 0
