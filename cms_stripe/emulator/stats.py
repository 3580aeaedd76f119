"""Rate limiting (sliding one-second windows) and the counters behind `/_emulator/inspect`."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any


class Window:
    """Timestamps of events in the last second, and the most ever seen in one second."""

    __slots__ = ("events", "peak")

    def __init__(self) -> None:
        self.events: deque[float] = deque()
        self.peak = 0

    def prune(self, now: float) -> int:
        ev = self.events
        cutoff = now - 1.0
        while ev and ev[0] <= cutoff:
            ev.popleft()
        return len(ev)

    def add(self, now: float) -> None:
        self.events.append(now)
        if len(self.events) > self.peak:
            self.peak = len(self.events)


class Stats:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.requests: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.status_by_endpoint: dict[str, Counter[str]] = {}
        self.rate_limited: Counter[str] = Counter()
        self.replays = 0
        self.replays_by_endpoint: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.conflicts_409 = 0
        self.connections_opened = 0
        # every /v1 request as it arrives (the rate the client produced) ...
        self.arrivals = Window()
        self.arrivals_by_endpoint: dict[str, Window] = {}
        # ... and the ones the rate limiter let through (the windows the limits are enforced on)
        self.admitted = Window()
        self.admitted_by_endpoint: dict[str, Window] = {}

    def arrive(self, endpoint: str, now: float) -> None:
        self.requests[endpoint] += 1
        self.arrivals.prune(now)
        self.arrivals.add(now)
        w = self.arrivals_by_endpoint.get(endpoint)
        if w is None:
            w = self.arrivals_by_endpoint[endpoint] = Window()
        w.prune(now)
        w.add(now)

    def admit(self, endpoint: str, now: float, global_limit: float, endpoint_limit: float) -> str | None:
        """Admit the request or return the Stripe-Rate-Limited-Reason it is refused with."""
        g = self.admitted
        e = self.admitted_by_endpoint.get(endpoint)
        if e is None:
            e = self.admitted_by_endpoint[endpoint] = Window()
        if g.prune(now) >= global_limit:
            return "global-rate"
        if e.prune(now) >= endpoint_limit:
            return "endpoint-rate"
        g.add(now)
        e.add(now)
        return None

    def finish(self, endpoint: str, status: int | None) -> None:
        key = str(status) if status is not None else "dropped"
        self.status[key] += 1
        c = self.status_by_endpoint.get(endpoint)
        if c is None:
            c = self.status_by_endpoint[endpoint] = Counter()
        c[key] += 1

    def report(self) -> dict[str, Any]:
        return {
            "requests_total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "status_codes": dict(self.status),
            "status_codes_by_endpoint": {k: dict(v) for k, v in self.status_by_endpoint.items()},
            "rate_limited": dict(self.rate_limited),
            "idempotent_replays": self.replays,
            "idempotent_replays_by_endpoint": dict(self.replays_by_endpoint),
            "idempotency_conflicts_409": self.conflicts_409,
            "connections_opened": self.connections_opened,
            "faults": dict(self.faults),
            "writes": dict(self.writes),
            "writes_total": sum(self.writes.values()),
            "peak_rps": {
                "global": self.arrivals.peak,
                "endpoints": {k: w.peak for k, w in self.arrivals_by_endpoint.items()},
            },
            "peak_admitted_rps": {
                "global": self.admitted.peak,
                "endpoints": {k: w.peak for k, w in self.admitted_by_endpoint.items()},
            },
        }
