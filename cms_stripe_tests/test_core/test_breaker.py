"""The gateway's circuit breaker on a fake clock: consecutive failures open it, one trial at a time
after the timeout, and a straggler's success does not close a circuit that just opened."""

from __future__ import annotations

from cms_stripe.stripe.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_fail_max_consecutive_failures_and_reports_once() -> None:
    clock, opened = Clock(), list[int]()
    breaker = CircuitBreaker(3, 30.0, clock, on_open=opened.append)
    assert [breaker.failure(), breaker.failure()] == [False, False]
    breaker.success()  # resets the count
    assert [breaker.failure(), breaker.failure(), breaker.failure()] == [False, False, True]
    assert breaker.state == "open" and opened == [3]
    assert breaker.failure() is True  # an in-flight attempt failing later: still open, not reopened
    assert opened == [3] and breaker.allow() is False


def test_one_trial_after_the_timeout_then_closed_or_reopened() -> None:
    clock, opened = Clock(), list[int]()
    breaker = CircuitBreaker(1, 30.0, clock, on_open=opened.append)
    breaker.failure()
    clock.now += 29.9
    assert breaker.allow() is False
    clock.now += 0.1
    assert breaker.allow() is True and breaker.state == "half-open"
    assert breaker.allow() is False  # the trial is in flight: everyone else still fails fast
    assert breaker.failure() is True and breaker.state == "open" and opened == [1, 2]
    clock.now += 30.0
    assert breaker.allow() is True
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0 and breaker.allow() is True


def test_a_trial_that_never_reports_is_replaced_after_another_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failure()
    clock.now += 10.0
    assert breaker.allow() is True
    clock.now += 9.0
    assert breaker.allow() is False
    clock.now += 1.0
    assert breaker.allow() is True


def test_a_straggler_success_does_not_close_an_open_circuit() -> None:
    breaker = CircuitBreaker(2, 30.0, Clock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    assert breaker.state == "open" and breaker.allow() is False


def test_one_call_failing_every_attempt_opens_it_below_fail_max() -> None:
    opened: list[int] = []
    breaker = CircuitBreaker(20, 30.0, Clock(), on_open=opened.append)
    for _ in range(7):
        breaker.failure()
    assert breaker.open_if_failing(8) is False and breaker.state == "closed"
    breaker.failure()
    assert breaker.open_if_failing(8) is True and opened == [8] and breaker.opened_after == 8
