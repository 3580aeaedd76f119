"""Idempotency keys: stored results (replayed for 24 hours) and the keys of requests still in flight.

A key is scoped by the API key that used it, as on Stripe. Only results the pipeline chooses to
store land here (successes and 5xx); 400s and 429s are never stored, so a retry re-executes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

IDEMPOTENCY_TTL_S = 24 * 3600

Scope = tuple[str, str]  # (API key, idempotency key)


@dataclass
class IdemRecord:
    fingerprint: str
    status: int
    body: bytes
    created: float


class IdempotencyStore:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.records: dict[Scope, IdemRecord] = {}
        # Keys whose first request has not answered yet: a second request with one gets a 409.
        self.in_flight: set[Scope] = set()
        self.dirty = False

    def __len__(self) -> int:
        return len(self.records)

    def get(self, scope: str, key: str) -> IdemRecord | None:
        rec = self.records.get((scope, key))
        if rec is not None and time.time() - rec.created > IDEMPOTENCY_TTL_S:
            del self.records[(scope, key)]
            return None
        return rec

    def put(self, scope: str, key: str, fingerprint: str, status: int, body: bytes) -> None:
        self.records[(scope, key)] = IdemRecord(fingerprint, status, body, time.time())
        self.dirty = True

    def claim(self, scope: str, key: str) -> bool:
        """Mark the key in flight; False when another request already holds it."""
        if (scope, key) in self.in_flight:
            return False
        self.in_flight.add((scope, key))
        return True

    def release(self, scope: str, key: str) -> None:
        self.in_flight.discard((scope, key))
