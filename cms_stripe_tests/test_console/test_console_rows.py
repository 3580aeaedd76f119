"""The console shows the first row errors and counts the rest (the log and the report hold them
all), but never hides a CRITICAL one: that is the row that stopped the run."""

from __future__ import annotations

import io
import logging

from cms_stripe.console import OperatorConsole
from cms_stripe.core import runlog


def test_console_caps_row_errors_but_always_shows_critical_ones():
    out = io.StringIO()
    console = OperatorConsole(stream=out)
    with console.live():
        for i in range(12):
            runlog.row_error(f"q{i}", "VALIDATION_ERROR[title_missing]", "HIGH", "title is missing or blank")
        runlog.row_error("c1", "STRIPE_UNAVAILABLE", "CRITICAL", "circuit open")
        runlog.progress(
            "Progress: 50.0% (1/2) | Success: 1 | Failed: 0 | Rate: 1.0/s | ETA: -",
            done=1,
            total=2,
            success=1,
            failed=0,
        )
        runlog.note("below INFO is never shown", level=logging.DEBUG)
    assert out.getvalue().splitlines() == [
        *[f"HIGH VALIDATION_ERROR[title_missing] cms_id=q{i}: title is missing or blank" for i in range(10)],
        "CRITICAL STRIPE_UNAVAILABLE cms_id=c1: circuit open",
        "Progress: 50.0% (1/2) | Success: 1 | Failed: 0 | Rate: 1.0/s | ETA: -",
        "… 2 more row errors: see the log file and the report",
    ]
