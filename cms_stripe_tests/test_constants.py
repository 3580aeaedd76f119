"""The outcome names the assets count and the CLI reads are the engine's own: a new outcome in the
executor without its name in constants.py would be counted nowhere."""

from __future__ import annotations

from typing import get_args

from cms_stripe.constants import OUTCOMES
from cms_stripe.core.executor import Outcome


def test_outcome_names_are_the_executors() -> None:
    assert sorted(OUTCOMES) == sorted(get_args(Outcome))
    assert sorted(OUTCOMES) == [
        "archived",
        "created",
        "failed",
        "noop",
        "reactivated",
        "repriced",
        "skipped",
        "updated",
    ]
