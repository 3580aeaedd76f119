"""The progress line users of the tool we replace watch for, computed without Dagster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def format_progress(done: int, total: int, success: int, failed: int, rate: float, eta: datetime | None) -> str:
    """`Progress: 45.2% (452/1000) | Success: 448 | Failed: 4 | Rate: 2.3/s | ETA: 2026-01-15T14:30:00Z`"""
    pct = 100.0 * done / total if total else 100.0
    eta_text = eta.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if eta else "-"
    return (
        f"Progress: {pct:.1f}% ({done}/{total}) | Success: {success} | Failed: {failed}"
        f" | Rate: {rate:.1f}/s | ETA: {eta_text}"
    )


@dataclass
class ProgressTracker:
    """Counts finished products and emits the progress line every `every` products and at the end."""

    total: int
    emit: Callable[[str], None]
    every: int = 100
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._start = self.clock()
        self.done = self.success = self.failed = 0
        self._last_emitted = 0

    def rate(self) -> float:
        elapsed = self.clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        remaining = self.total - self.done
        eta = self.now() + timedelta(seconds=remaining / rate) if rate > 0 else None
        return format_progress(self.done, self.total, self.success, self.failed, rate, eta)

    def record(self, ok: bool, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if ok:
                self.success += n
            else:
                self.failed += n
            due = self.done - self._last_emitted >= self.every or self.done >= self.total
            if due:
                self._last_emitted = self.done
                text = self.line()
        if due:
            self.emit(text)
